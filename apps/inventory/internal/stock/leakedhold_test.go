package stock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
)

// inFlight is one replica's view of a store it shares with another replica. Once armed, its
// next bucket write stops after it was computed from the bucket as read and before it reaches
// the store, as a CAS still on its way to Redis does, until the test lets it go.
type inFlight struct {
	stock.Store
	mu      sync.Mutex
	armed   bool
	held    chan struct{} // closed when the armed write is held
	release chan struct{} // closed by the test to let it go
}

func (f *inFlight) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.held, f.release = true, make(chan struct{}), make(chan struct{})
}

func (f *inFlight) UpdateBucket(ctx context.Context, b stock.Bucket, etag string) error {
	f.mu.Lock()
	hold, held, release := f.armed, f.held, f.release
	f.armed = false
	f.mu.Unlock()
	if hold {
		close(held)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.Store.UpdateBucket(ctx, b, etag)
}

// TestLeakedHoldReleaseOfAnUnknownOrderStopsItsLateReserve is loss window 1 of issue 8 with two
// replicas over one store. R1's batch holding Reserve(o1) has read its bucket and its CAS is
// still in flight (the order app gave up after 2s, R1 goes on). The order app's retry lands on
// R2, which answers sold out from its marker; the order app undoes the placement and R2's
// Release(o1) finds no hold. Then R1's CAS lands. It must not leave o1 holding stock nobody
// will release: the release's tombstone moved the bucket's ETag, R1 re-applies and finds o1
// released.
func TestLeakedHoldReleaseOfAnUnknownOrderStopsItsLateReserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		buckets int
		// freed picks, relative to o1's home bucket, the bucket whose unit comes back before
		// R1's reserve: its home (the held write is the hold) or the next one (the held write
		// is the passed mark on its home, the hold would follow in the next bucket).
		freed int
	}{
		{name: "one bucket", buckets: 1},
		{name: "home bucket freed", buckets: 4},
		{name: "next bucket freed", buckets: 4, freed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			shared := storetest.NewFake()
			clk := newClock(t0)
			r1Store := &inFlight{Store: shared}
			newReplica := func(s stock.Store) *stock.Service {
				svc, err := stock.NewService(s, stock.Config{Buckets: tt.buckets, SoldOutTTL: time.Minute, Clock: clk.now})
				if err != nil {
					t.Fatal(err)
				}
				return svc
			}
			r1, r2 := newReplica(r1Store), newReplica(shared)
			n := tt.buckets
			if _, err := r2.Create(ctx, "d1", n); err != nil { // one unit per bucket
				t.Fatal(err)
			}
			// Fill every bucket through R2, so R2 saw the deal sold out.
			for i := range n {
				r, err := r2.Reserve(ctx, "d1", fmt.Sprintf("f%d", i), 1, until)
				if err != nil || r.Outcome != stock.OutcomeReserved {
					t.Fatalf("fill f%d: %+v, %v", i, r, err)
				}
			}
			if r, err := r2.Reserve(ctx, "d1", "probe", 1, until); err != nil || r.Outcome != stock.OutcomeSoldOut {
				t.Fatalf("probe: %+v, %v; want sold out", r, err)
			}
			// One unit comes back through R1 (say its filler expired); R2 does not see it.
			freed := (stock.HomeBucket("o1", n) + tt.freed) % n
			filler := ""
			for id := range shared.Buckets("d1")[freed].Holds {
				filler = id
			}
			if s, err := r1.Release(ctx, "d1", filler); err != nil || s != stock.StateReleased {
				t.Fatalf("Release(%s) = %q, %v", filler, s, err)
			}

			// R1: Reserve(o1), its first write held in flight.
			r1Store.arm()
			type answer struct {
				r   stock.Reservation
				err error
			}
			late := make(chan answer, 1)
			go func() {
				r, err := r1.Reserve(ctx, "d1", "o1", 1, until)
				late <- answer{r, err}
			}()
			select {
			case <-r1Store.held:
			case <-ctx.Done():
				t.Fatal("R1's write never reached the store")
			}
			// R2: the retry is answered sold out, and the undo releases an order without a hold.
			if r, err := r2.Reserve(ctx, "d1", "o1", 1, until); err != nil || r.Outcome != stock.OutcomeSoldOut {
				t.Fatalf("R2 Reserve(o1) = %+v, %v; want sold out from its marker", r, err)
			}
			if s, err := r2.Release(ctx, "d1", "o1"); err != nil || s != stock.StateAbsent {
				t.Fatalf("R2 Release(o1) = %q, %v; want absent", s, err)
			}
			// R1's CAS lands now. (In production nobody waits for this answer.)
			close(r1Store.release)
			var a answer
			select {
			case a = <-late:
			case <-ctx.Done():
				t.Fatal("R1's Reserve never returned")
			}
			if a.err == nil && a.r == (stock.Reservation{Outcome: stock.OutcomeReserved, State: stock.StateReserved}) {
				t.Errorf("R1 Reserve(o1) = %+v after o1 was released: a hold nobody will release", a.r)
			}

			holds := map[string]stock.Hold{}
			var lv stock.Levels
			for _, b := range shared.Buckets("d1") {
				if err := b.Check(); err != nil {
					t.Errorf("stored bucket: %v", err)
				}
				for id, h := range b.Holds {
					holds[id] = h
				}
				lv.Available += b.Available
				lv.Reserved += b.Reserved
				lv.Sold += b.Sold
			}
			if h, ok := holds["o1"]; ok && h.State == stock.StateReserved {
				t.Errorf("o1 holds %+v after its release", h)
			}
			if lv.Available != 1 || lv.Reserved != n-1 || lv.Sold != 0 {
				t.Errorf("levels %+v, want the freed unit available and the %d fillers' reserved", lv, n-1)
			}
			// The unit is on sale again.
			if r, err := r1.Reserve(ctx, "d1", "o2", 1, until); err != nil || r.Outcome != stock.OutcomeReserved || r.State != stock.StateReserved {
				t.Errorf("Reserve(o2) = %+v, %v; want the freed unit", r, err)
			}
		})
	}
}

// TestLeakedHoldReserveIsNotAppliedAfterItsDeadline: a batch whose CAS keeps losing does not
// retry its reserve past FlushTimeout after the request arrived. That bound is what a release
// tombstone has to outlive.
func TestLeakedHoldReserveIsNotAppliedAfterItsDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{FlushTimeout: time.Minute})
	mustCreate(t, e, "d1", 10)
	var once sync.Once
	e.store.SetConflict(func(string, int) bool {
		lost := false
		// The first CAS loses, and the retry comes after the request's deadline (the
		// service's clock says so; the test does not wait a minute).
		once.Do(func() { e.clock.advance(time.Minute + time.Second); lost = true })
		return lost
	})

	_, err := e.svc.Reserve(context.Background(), "d1", "o1", 1, until)

	if !errors.Is(err, stock.ErrBusy) {
		t.Errorf("Reserve() error = %v, want %v", err, stock.ErrBusy)
	}
	if holds, _ := e.checkStored(t, "d1", 10); len(holds) != 0 {
		t.Errorf("holds %+v: the reserve was applied after its deadline", holds)
	}
}

func TestLeakedHoldRecentWindowBelowTwiceTheFlushTimeoutIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		window  time.Duration
		flush   time.Duration
		wantErr bool
	}{
		{"defaults", 0, 0, false},
		{"default follows a long flush timeout", 0, time.Minute, false},
		{"twice the flush timeout", 10 * time.Second, 5 * time.Second, false},
		{"shorter than a reserve may still land", 9 * time.Second, 5 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := stock.NewService(storetest.NewFake(), stock.Config{RecentWindow: tt.window, FlushTimeout: tt.flush})
			if (err != nil) != tt.wantErr {
				t.Errorf("NewService(RecentWindow %s, FlushTimeout %s) error = %v, want error %t", tt.window, tt.flush, err, tt.wantErr)
			}
		})
	}
}

// A release tombstone goes where a reserve of the order could hold next: past the buckets the
// order passed and the spent ones (every unit sold for good), into the first that could still
// take it.
func TestLeakedHoldTombstoneSkipsSpentBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 2})
	mustCreate(t, e, "d1", 2) // one unit per bucket
	o1 := ordersHomedAt("o", 0, 2, 1)[0]
	buyer := ordersHomedAt("b", 0, 2, 1)[0]
	mustReserve(t, e, "d1", buyer, 1)
	if _, err := e.svc.Commit(ctx, "d1", buyer); err != nil { // o1's home is spent
		t.Fatal(err)
	}

	if s, err := e.svc.Release(ctx, "d1", o1); err != nil || s != stock.StateAbsent {
		t.Fatalf("Release(%s) = %q, %v; want absent", o1, s, err)
	}

	bs := e.store.Buckets("d1")
	if _, ok := bs[0].Holds[o1]; ok {
		t.Errorf("spent home bucket got %s's tombstone: %+v", o1, bs[0].Holds)
	}
	if h, ok := bs[1].Holds[o1]; !ok || !h.Tombstone() {
		t.Errorf("bucket 1 holds %+v for %s, want its release tombstone", bs[1].Holds, o1)
	}
	if r := mustReserve(t, e, "d1", o1, 1); r != (stock.Reservation{Outcome: stock.OutcomeReserved, State: stock.StateReleased}) {
		t.Errorf("late Reserve(%s) = %+v, want the order released", o1, r)
	}
	if _, lv := e.checkStored(t, "d1", 2); lv.Available != 1 || lv.Reserved != 0 {
		t.Errorf("levels %+v, want bucket 1's unit still available", lv)
	}
}
