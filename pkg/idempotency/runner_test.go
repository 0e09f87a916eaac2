package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

type runner = idempotency.Runner[record, *record]

// replicas is a store shared by several runners, each standing for one app replica.
type replicas struct {
	f     *daprstatetest.Client
	s     *store
	clock *clock
	reads chan string // keys read, when watched
}

func newReplicas(watchReads bool) *replicas {
	r := &replicas{f: daprstatetest.NewClient(), clock: &clock{now: t0}}
	if watchReads {
		r.reads = make(chan string, 1000)
		r.f.AfterGet = func(_ context.Context, key string) { r.reads <- key }
	}
	r.s = idempotency.New[record](daprstate.New(r.f, component), ttl, r.clock.Now)
	return r
}

func (r *replicas) runner(wait time.Duration) *runner {
	return idempotency.NewRunner[record](r.s, idempotency.Config{Lease: lease, Wait: wait}, r.clock.Now, slog.New(slog.DiscardHandler))
}

var req = idempotency.Request{UserID: "u1", Key: "key", Hash: "h"}

// reply answers with the attempt's order id.
func reply(_ context.Context, a *idempotency.Attempt[record]) (idempotency.Reply, error) {
	return idempotency.Reply{Status: 201, Body: []byte(fmt.Sprintf(`{"id":%q}`, a.Record.OrderID))}, nil
}

type result struct {
	reply idempotency.Reply
	err   error
}

// blocked is a do function that signals when it starts and waits for release.
type blocked struct {
	started, release chan struct{}
	ctx              atomic.Pointer[context.Context]
}

func newBlocked() *blocked {
	return &blocked{started: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocked) do(ctx context.Context, a *idempotency.Attempt[record]) (idempotency.Reply, error) {
	b.ctx.Store(&ctx)
	close(b.started)
	<-b.release
	return reply(ctx, a)
}

func run(ctx context.Context, r *runner, do func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error)) chan result {
	ch := make(chan result, 1)
	go func() {
		rep, err := r.Run(ctx, req, ids(), do)
		ch <- result{rep, err}
	}()
	return ch
}

func wait[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	transient := problem.New(problem.CodeUnavailable, "inventory is down")
	tests := []struct {
		name     string
		setup    func(t *testing.T, r *runner)
		req      idempotency.Request
		fail     error // do's error
		wantRuns int
		want     idempotency.Reply
		wantErr  error
		wantDone bool
	}{
		{
			name:     "new key: runs and stores the reply",
			req:      req,
			wantRuns: 1,
			want:     idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)},
			wantDone: true,
		},
		{
			name: "finished key: the stored reply, nothing runs",
			setup: func(t *testing.T, r *runner) {
				if _, err := r.Run(context.Background(), req, ids(), reply); err != nil {
					t.Fatal(err)
				}
			},
			req:      req,
			want:     idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)},
			wantDone: true,
		},
		{
			name: "other request with the key: refused",
			setup: func(t *testing.T, r *runner) {
				if _, err := r.Run(context.Background(), req, ids(), reply); err != nil {
					t.Fatal(err)
				}
			},
			req:      idempotency.Request{UserID: "u1", Key: "key", Hash: "other"},
			wantErr:  idempotency.ErrReused,
			wantDone: true,
		},
		{
			name:     "transient failure: not stored",
			req:      req,
			fail:     transient,
			wantRuns: 1,
			wantErr:  transient,
		},
		{
			name: "after a transient failure a retry resumes at once, same references",
			setup: func(t *testing.T, r *runner) {
				_, err := r.Run(context.Background(), req, ids(), func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
					return idempotency.Reply{}, transient
				})
				if !errors.Is(err, transient) {
					t.Fatalf("first attempt error = %v, want %v", err, transient)
				}
			},
			req:      req,
			wantRuns: 1,
			want:     idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)},
			wantDone: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs := newReplicas(false)
			r := rs.runner(time.Minute)
			if tt.setup != nil {
				tt.setup(t, r)
			}
			runs := 0

			got, err := r.Run(ctx, tt.req, ids(), func(ctx context.Context, a *idempotency.Attempt[record]) (idempotency.Reply, error) {
				runs++
				if tt.fail != nil {
					return idempotency.Reply{}, tt.fail
				}
				return reply(ctx, a)
			})

			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("reply mismatch (-got +want):\n%s", diff)
			}
			if runs != tt.wantRuns {
				t.Errorf("do ran %d times, want %d", runs, tt.wantRuns)
			}
			rec, _, err := rs.s.Get(ctx, "u1", "key")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Done != tt.wantDone {
				t.Errorf("record done = %t, want %t", rec.Done, tt.wantDone)
			}
			if !rec.Done && !rec.LeaseUntil.IsZero() {
				t.Errorf("unfinished record keeps its lease until %v, want it ended", rec.LeaseUntil)
			}
		})
	}
}

// A retry of a key whose first attempt is still working waits for that attempt and answers
// its reply, on the same replica (notified) or another one (polling); the work runs once.
func TestRunRetryWaitsForTheFirstAttempt(t *testing.T) {
	t.Parallel()
	for _, sameReplica := range []bool{true, false} {
		t.Run(fmt.Sprintf("same replica %t", sameReplica), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs := newReplicas(true)
			first, second := rs.runner(time.Minute), rs.runner(time.Minute)
			if sameReplica {
				second = first
			}
			b := newBlocked()
			a := run(ctx, first, b.do)
			wait(t, ctx, b.started, "the first attempt") // its claim created the key, no read

			retried := run(ctx, second, func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
				t.Error("the retry ran the work again")
				return idempotency.Reply{}, nil
			})
			wait(t, ctx, rs.reads, "the retry's read") // it saw the key held
			close(b.release)
			ra, rb := wait(t, ctx, a, "the first attempt"), wait(t, ctx, retried, "the retry")

			want := idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)}
			if ra.err != nil || !cmp.Equal(ra.reply, want) {
				t.Errorf("first attempt = %+v, %v; want %+v", ra.reply, ra.err, want)
			}
			if rb.err != nil || !cmp.Equal(rb.reply, want) {
				t.Errorf("retry = %+v, %v; want the first attempt's %+v", rb.reply, rb.err, want)
			}
		})
	}
}

// A retry waits at most Config.Wait: then it is refused with idempotency-key-in-use and a
// Retry-After, and the first attempt goes on.
func TestRunRetryRefusedAfterWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := newReplicas(false)
	first, second := rs.runner(time.Minute), rs.runner(50*time.Millisecond)
	b := newBlocked()
	a := run(ctx, first, b.do)
	wait(t, ctx, b.started, "the first attempt")

	_, err := second.Run(ctx, req, ids(), func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
		t.Error("the retry ran the work again")
		return idempotency.Reply{}, nil
	})
	close(b.release)

	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.CodeIdempotencyInUse || pe.RetryAfter != time.Second {
		t.Errorf("retry error = %#v, want idempotency-key-in-use with Retry-After 1s", err)
	}
	if r := wait(t, ctx, a, "the first attempt"); r.err != nil || r.reply.Status != 201 {
		t.Errorf("first attempt = %+v, %v; want 201", r.reply, r.err)
	}
}

// The work goes on when its caller gives up (a sidecar timeout, a client that left): its
// reply is stored for the retry.
func TestRunWorkOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := newReplicas(false)
	r := rs.runner(time.Minute)
	callerCtx, leave := context.WithCancel(ctx)
	b := newBlocked()
	a := run(callerCtx, r, b.do)
	wait(t, ctx, b.started, "the attempt")

	leave()
	workErr := (*b.ctx.Load()).Err()
	close(b.release)
	wait(t, ctx, a, "the attempt")
	replay, err := r.Run(ctx, req, ids(), func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
		t.Error("the retry ran the work again")
		return idempotency.Reply{}, nil
	})

	if workErr != nil {
		t.Errorf("the work's context ended with its caller: %v", workErr)
	}
	if want := (idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)}); err != nil || !cmp.Equal(replay, want) {
		t.Errorf("retry = %+v, %v; want the stored %+v", replay, err, want)
	}
}

// An attempt whose claim landed but whose answer was lost, and which could not let go of the
// key either (the store failing meanwhile), does not lock the key for a lease: a retry on the
// same replica knows that attempt ended and takes over at once.
func TestRunRetryAfterALostClaimAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := newReplicas(false)
	var failing atomic.Bool
	rs.f.BeforeSave = func(context.Context, string) {
		if failing.Load() {
			rs.f.SetGetErr(daprstatetest.ErrUnavailable) // every read after the write fails
		}
	}
	r := rs.runner(time.Hour) // the lease never passes on the test's clock
	failing.Store(true)
	rs.f.SetLostReply(daprstatetest.ErrReplyLost)
	_, err := r.Run(ctx, req, ids(), func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
		t.Error("the work ran without a claim")
		return idempotency.Reply{}, nil
	})
	if err == nil {
		t.Fatal("first attempt: error = nil, want the store's failure")
	}
	failing.Store(false)
	rs.f.SetLostReply(nil)
	rs.f.SetGetErr(nil)
	if rec, _, _ := rs.s.Get(ctx, "u1", "key"); rec.Owner == "" || rec.LeaseUntil.IsZero() {
		t.Fatalf("record = %+v, want the lost claim still holding the key", rec)
	}

	got, err := r.Run(ctx, req, ids(), reply)

	if want := (idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)}); err != nil || !cmp.Equal(got, want) {
		t.Errorf("retry = %+v, %v; want %+v", got, err, want)
	}
}

// An attempt that stalls past its lease loses the key to a retry on another replica. When it
// resumes, Confirm tells it so, its own reply is never stored, and it answers the retry's.
func TestRunStaleAttempt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		confirm bool // whether the stale attempt confirms before answering
	}{
		{"confirms before acting", true},
		{"answers without confirming", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs := newReplicas(false)
			r1, r2 := rs.runner(time.Minute), rs.runner(time.Minute)
			started, release := make(chan struct{}), make(chan struct{})
			var confirmErr error
			stale := run(ctx, r1, func(ctx context.Context, a *idempotency.Attempt[record]) (idempotency.Reply, error) {
				if err := a.Confirm(ctx); err != nil {
					return idempotency.Reply{}, fmt.Errorf("confirm while fresh: %w", err)
				}
				close(started)
				<-release
				if tt.confirm {
					if confirmErr = a.Confirm(ctx); confirmErr != nil {
						return idempotency.Reply{}, confirmErr
					}
				}
				return idempotency.Reply{Status: 409, Body: []byte(`{"code":"sold-out"}`)}, nil
			})
			wait(t, ctx, started, "the first attempt")

			rs.clock.Advance(lease + time.Second)
			retry, err := r2.Run(ctx, req, ids(), reply)
			if err != nil || retry.Status != 201 {
				t.Fatalf("retry after the lease = %+v, %v; want 201", retry, err)
			}
			close(release)
			got := wait(t, ctx, stale, "the stale attempt")

			if tt.confirm && !errors.Is(confirmErr, idempotency.ErrNotOwner) {
				t.Errorf("Confirm after the takeover = %v, want %v", confirmErr, idempotency.ErrNotOwner)
			}
			if got.err != nil || !cmp.Equal(got.reply, retry) {
				t.Errorf("stale attempt = %+v, %v; want the retry's %+v", got.reply, got.err, retry)
			}
			rec, _, err := rs.s.Get(ctx, "u1", "key")
			if err != nil {
				t.Fatal(err)
			}
			if !rec.Done || rec.Status != 201 {
				t.Errorf("stored reply = %d %s, want the retry's 201", rec.Status, rec.Body)
			}
		})
	}
}

// Concurrent requests with one key on several replicas: the work runs once and every one of
// them answers its reply.
func TestRunConcurrentRequests(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := newReplicas(false)
	runners := []*runner{rs.runner(10 * time.Second), rs.runner(10 * time.Second)}
	var runs atomic.Int32
	const requests = 10
	results := make([]result, requests)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			<-start
			rep, err := runners[i%2].Run(ctx, req, ids(), func(ctx context.Context, a *idempotency.Attempt[record]) (idempotency.Reply, error) {
				runs.Add(1)
				return reply(ctx, a)
			})
			results[i] = result{rep, err}
		})
	}
	close(start)
	wg.Wait()

	if got := runs.Load(); got != 1 {
		t.Errorf("the work ran %d times, want 1", got)
	}
	for i, r := range results {
		if r.err != nil || r.reply.Status != 201 || string(r.reply.Body) != string(results[0].reply.Body) {
			t.Errorf("request %d = %+v, %v; want request 0's 201 %s", i, r.reply, r.err, results[0].reply.Body)
		}
	}
}

// A new key is the hot path of every purchase: its claim is a create (nobody can hold a key
// that does not exist yet), so it costs two writes and one read (the reply's CAS).
func TestRunNewKeyCostsTwoWritesAndOneRead(t *testing.T) {
	t.Parallel()
	r := newReplicas(true)

	got, err := r.runner(time.Second).Run(context.Background(), req, ids(), reply)

	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := (idempotency.Reply{Status: 201, Body: []byte(`{"id":"o1"}`)}); !cmp.Equal(got, want) {
		t.Errorf("reply = %+v, want %+v", got, want)
	}
	if n := len(r.reads); n != 1 {
		t.Errorf("%d reads of the record, want 1 (the reply's CAS)", n)
	}
	if n := r.f.SaveCalls(); n != 2 {
		t.Errorf("%d writes, want 2 (claim, reply)", n)
	}
	rec, found, err := r.s.Get(context.Background(), req.UserID, req.Key)
	if err != nil || !found || !rec.Done || rec.Status != 201 || rec.OrderID != "o1" {
		t.Errorf("stored record = %+v found=%v err=%v, want done with 201 and order o1", rec, found, err)
	}
	// A replay gets the stored reply without running anything.
	again, err := r.runner(time.Second).Run(context.Background(), req, ids(), func(context.Context, *idempotency.Attempt[record]) (idempotency.Reply, error) {
		t.Error("do ran for a finished key")
		return idempotency.Reply{}, nil
	})
	if err != nil || !cmp.Equal(again, got) {
		t.Errorf("replay = %+v, %v; want %+v", again, err, got)
	}
}
