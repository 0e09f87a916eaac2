package batch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/pkg/batch"
)

// recorder is a flush that records its batches and can be held in flight.
type recorder struct {
	mu      sync.Mutex
	batches map[string][][]int
	active  map[string]int
	overlap bool          // two flushes of one key ran at once
	gate    chan struct{} // when non-nil, each flush waits for a token
}

func newRecorder() *recorder {
	return &recorder{batches: map[string][][]int{}, active: map[string]int{}}
}

func (r *recorder) flush(_ context.Context, key string, ops []int) []string {
	r.mu.Lock()
	r.active[key]++
	if r.active[key] > 1 {
		r.overlap = true
	}
	r.batches[key] = append(r.batches[key], slices.Clone(ops))
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = fmt.Sprintf("%s:%d", key, op)
	}
	r.mu.Lock()
	r.active[key]--
	r.mu.Unlock()
	return out
}

func TestRequestsArrivingDuringAFlushShareTheNext(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := batch.New(rec.flush, 0, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	results := make([]string, 6)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	wg.Go(func() { results[0], errs[0] = b.Do(ctx, "k", 0) })
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.batches["k"]) == 1 })
	// The first flush is in flight: these five queue up for the next one.
	for i := 1; i < 6; i++ {
		wg.Go(func() { results[i], errs[i] = b.Do(ctx, "k", i) })
	}
	waitFor(t, func() bool { return queued(b, "k") == 5 })
	rec.gate <- struct{}{}
	rec.gate <- struct{}{}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if want := fmt.Sprintf("k:%d", i); results[i] != want {
			t.Errorf("request %d got %q, want %q", i, results[i], want)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.batches["k"]) != 2 || len(rec.batches["k"][1]) != 5 {
		t.Errorf("batches %v, want [[0] [five queued ops]]", rec.batches["k"])
	}
}

func queued(b *batch.Batcher[string, int, string], key string) int { return b.Queued(key) }

func TestMaxBatchSplitsAndKeysAreIndependent(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	b := batch.New(rec.flush, 3, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for i := range 200 {
		key := fmt.Sprintf("k%d", i%4)
		wg.Go(func() {
			got, err := b.Do(ctx, key, i)
			if err != nil || got != fmt.Sprintf("%s:%d", key, i) {
				t.Errorf("Do(%s, %d) = %q, %v", key, i, got, err)
			}
		})
	}
	wg.Wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlap {
		t.Error("two flushes of one key ran at once")
	}
	total := 0
	for key, bs := range rec.batches {
		for _, ops := range bs {
			if len(ops) > 3 {
				t.Errorf("%s: batch of %d, want at most 3", key, len(ops))
			}
			total += len(ops)
		}
	}
	if total != 200 {
		t.Errorf("%d ops flushed, want 200", total)
	}
	waitFor(t, func() bool { return b.Active() == 0 })
}

func TestGoneRequestsAreSkipped(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := batch.New(rec.flush, 0, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = b.Do(ctx, "k", 0) })
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.batches["k"]) == 1 })
	gone, give := context.WithCancel(ctx)
	goneErr := make(chan error, 1)
	wg.Go(func() { _, err := b.Do(gone, "k", 1); goneErr <- err })
	waitFor(t, func() bool { return queued(b, "k") == 1 })
	wg.Go(func() { _, _ = b.Do(ctx, "k", 2) })
	waitFor(t, func() bool { return queued(b, "k") == 2 })
	give()
	if err := <-goneErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Do() error = %v", err)
	}
	rec.gate <- struct{}{}
	rec.gate <- struct{}{}
	wg.Wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.batches["k"]; len(got) != 2 || !slices.Equal(got[1], []int{2}) {
		t.Errorf("batches %v, want [[0] [2]]", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLeakedHoldFlushEndsByItsRequestsDeadline: a flush may not run (and write) past the
// latest deadline of its requests, their callers' own or the batcher's timeout after they
// were queued. (Issue 8, loss window 1: a CAS retried long after its caller gave up landed
// after the caller had undone the placement.)
func TestLeakedHoldFlushEndsByItsRequestsDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		timeout     time.Duration
		callerLimit time.Duration // 0: no deadline of its own
	}{
		{name: "the caller's deadline", timeout: time.Hour, callerLimit: 50 * time.Millisecond},
		{name: "the batcher's timeout", timeout: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				deadline time.Time
				err      error
			}
			flushed, answer := make(chan seen, 1), make(chan struct{})
			b := batch.New(func(ctx context.Context, _ string, ops []int) []string {
				d, _ := ctx.Deadline()
				<-ctx.Done() // a CAS that keeps losing until the flush must stop
				flushed <- seen{d, ctx.Err()}
				<-answer // so Do cannot get this answer before its deadline
				return make([]string, len(ops))
			}, 0, tt.timeout)
			defer close(answer)
			ctx, cancel := context.Background(), func() {}
			if tt.callerLimit > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.callerLimit)
			}
			defer cancel()

			_, err := b.Do(ctx, "k", 1)

			// Do gives up at the request's deadline: the flush must end by then too.
			by, wantErr := time.Now(), batch.ErrTimeout
			if d, ok := ctx.Deadline(); ok {
				by, wantErr = d, context.DeadlineExceeded
			}
			if !errors.Is(err, wantErr) {
				t.Errorf("Do() error = %v, want %v", err, wantErr)
			}
			select {
			case s := <-flushed:
				if s.deadline.IsZero() || s.deadline.After(by) {
					t.Errorf("flush deadline %s, want by %s", s.deadline, by)
				}
				if !errors.Is(s.err, context.DeadlineExceeded) {
					t.Errorf("flush context ended with %v", s.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the flush did not end")
			}
		})
	}
}

// A request still queued when its deadline passes is not flushed at all.
func TestLeakedHoldExpiredQueuedRequestIsSkipped(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := batch.New(rec.flush, 0, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = b.Do(ctx, "k", 0) })
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.batches["k"]) == 1 })
	expired := make(chan error, 1)
	wg.Go(func() { _, err := b.Do(ctx, "k", 1); expired <- err })
	if err := <-expired; !errors.Is(err, batch.ErrTimeout) {
		t.Errorf("queued Do() error = %v, want %v", err, batch.ErrTimeout)
	}
	rec.gate <- struct{}{} // the first flush ends; request 1 is past its deadline
	wg.Wait()
	waitFor(t, func() bool { return b.Active() == 0 })

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.batches["k"]; len(got) != 1 {
		t.Errorf("batches %v, want only [[0]]", got)
	}
}
