package stock_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var (
	t0    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	t1    = t0.Add(time.Minute)
	until = t0.Add(15 * time.Minute)
	win   = stock.Window{Age: time.Hour, Ops: stock.DefaultRecentOps} // nothing in these tests is that old
)

// bucket builds a bucket of 10 units from holds, deriving the counters from them.
func bucket(holds map[string]stock.Hold, passed ...string) stock.Bucket {
	b := stock.Bucket{DealID: "d1", Bucket: 0, Stock: 10, Holds: map[string]stock.Hold{}}
	for id, h := range holds {
		b.Holds[id] = h
		switch h.State {
		case stock.StateReserved:
			b.Reserved += h.Qty
		case stock.StateCommitted:
			b.Sold += h.Qty
		}
	}
	b.Available = b.Stock - b.Reserved - b.Sold
	for _, id := range passed {
		if b.Passed == nil {
			b.Passed = map[string]time.Time{}
		}
		b.Passed[id] = t0
	}
	return b
}

func held(qty int, state stock.HoldState, at time.Time) stock.Hold {
	return stock.Hold{Qty: qty, Until: until, State: state, At: at}
}

func reserve(order string, qty int) stock.Op {
	return stock.Op{Kind: stock.OpReserve, OrderID: order, Qty: qty, Until: until}
}

func TestApply(t *testing.T) {
	t.Parallel()
	commit := func(order string) stock.Op { return stock.Op{Kind: stock.OpCommit, OrderID: order} }
	release := func(order string) stock.Op { return stock.Op{Kind: stock.OpRelease, OrderID: order} }
	probe := func(order string, qty int) stock.Op { return stock.Op{Kind: stock.OpProbe, OrderID: order, Qty: qty} }
	done := func(s stock.HoldState) stock.Result { return stock.Result{Status: stock.Done, State: s} }
	seven := map[string]stock.Hold{"x": held(7, stock.StateCommitted, t0)} // 3 left

	tests := []struct {
		name        string
		before      stock.Bucket
		ops         []stock.Op
		want        []stock.Result
		wantBucket  stock.Bucket
		wantChanged bool
	}{
		{
			name:   "reserve places a hold",
			before: bucket(nil),
			ops:    []stock.Op{reserve("o1", 3)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: bucket(map[string]stock.Hold{
				"o1": held(3, stock.StateReserved, t1),
			}),
			wantChanged: true,
		},
		{
			name:   "reserve takes the last units exactly",
			before: bucket(seven),
			ops:    []stock.Op{reserve("o1", 3)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: bucket(map[string]stock.Hold{
				"x": held(7, stock.StateCommitted, t0), "o1": held(3, stock.StateReserved, t1),
			}),
			wantChanged: true,
		},
		{
			name:       "reserve of more than is left is no room, unchanged",
			before:     bucket(seven),
			ops:        []stock.Op{reserve("o1", 4)},
			want:       []stock.Result{{Status: stock.NoRoom}},
			wantBucket: bucket(seven),
		},
		{
			name:        "reserve with mark passes the order on when it does not fit",
			before:      bucket(seven),
			ops:         []stock.Op{{Kind: stock.OpReserve, OrderID: "o1", Qty: 4, Until: until, Mark: true}},
			want:        []stock.Result{{Status: stock.Next}},
			wantBucket:  withPassed(bucket(seven), "o1", t1),
			wantChanged: true,
		},
		{
			name:       "a spent bucket sends the order on without a mark",
			before:     bucket(map[string]stock.Hold{"x": held(10, stock.StateCommitted, t0)}),
			ops:        []stock.Op{{Kind: stock.OpReserve, OrderID: "o1", Qty: 1, Until: until, Mark: true}},
			want:       []stock.Result{{Status: stock.Next}},
			wantBucket: bucket(map[string]stock.Hold{"x": held(10, stock.StateCommitted, t0)}),
		},
		{
			name:       "a passed order is sent on even when it would fit now",
			before:     bucket(nil, "o1"),
			ops:        []stock.Op{reserve("o1", 1)},
			want:       []stock.Result{{Status: stock.Next}},
			wantBucket: bucket(nil, "o1"),
		},
		{
			name:       "reserve on a sold-out bucket",
			before:     bucket(map[string]stock.Hold{"x": held(10, stock.StateReserved, t0)}),
			ops:        []stock.Op{reserve("o1", 1)},
			want:       []stock.Result{{Status: stock.NoRoom}},
			wantBucket: bucket(map[string]stock.Hold{"x": held(10, stock.StateReserved, t0)}),
		},
		{
			name:   "replayed reserve returns the hold, no second hold",
			before: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReserved, t0)}),
			ops:    []stock.Op{reserve("o1", 3)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: bucket(map[string]stock.Hold{
				"o1": held(3, stock.StateReserved, t0),
			}),
		},
		{
			name:       "replayed reserve of a committed order reports committed",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
			ops:        []stock.Op{reserve("o1", 3)},
			want:       []stock.Result{done(stock.StateCommitted)},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
		},
		{
			name:       "replayed reserve of a released order reports the tombstone",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
			ops:        []stock.Op{reserve("o1", 3)},
			want:       []stock.Result{done(stock.StateReleased)},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
		},
		{
			name:   "one batch: each op sees the ones before it",
			before: bucket(seven),
			ops:    []stock.Op{reserve("o1", 2), reserve("o2", 2), reserve("o1", 2), reserve("o3", 1)},
			want: []stock.Result{
				done(stock.StateReserved), {Status: stock.NoRoom}, done(stock.StateReserved), done(stock.StateReserved),
			},
			wantBucket: bucket(map[string]stock.Hold{
				"x": held(7, stock.StateCommitted, t0), "o1": held(2, stock.StateReserved, t1), "o3": held(1, stock.StateReserved, t1),
			}),
			wantChanged: true,
		},
		{
			name:   "commit moves reserved units to sold",
			before: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReserved, t0)}),
			ops:    []stock.Op{commit("o1")},
			want:   []stock.Result{done(stock.StateCommitted)},
			wantBucket: bucket(map[string]stock.Hold{
				"o1": held(3, stock.StateCommitted, t1),
			}),
			wantChanged: true,
		},
		{
			name:       "commit is idempotent",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
			ops:        []stock.Op{commit("o1")},
			want:       []stock.Result{done(stock.StateCommitted)},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
		},
		{
			name:       "commit of a released hold conflicts",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
			ops:        []stock.Op{commit("o1")},
			want:       []stock.Result{{Status: stock.Done, State: stock.StateReleased, Err: stock.ErrHoldReleased}},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
		},
		{
			name:   "release returns reserved units and keeps a tombstone",
			before: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReserved, t0)}),
			ops:    []stock.Op{release("o1")},
			want:   []stock.Result{done(stock.StateReleased)},
			wantBucket: bucket(map[string]stock.Hold{
				"o1": held(3, stock.StateReleased, t1),
			}),
			wantChanged: true,
		},
		{
			name:       "release is idempotent",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
			ops:        []stock.Op{release("o1")},
			want:       []stock.Result{done(stock.StateReleased)},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t0)}),
		},
		{
			name:       "release of a committed hold conflicts",
			before:     bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
			ops:        []stock.Op{release("o1")},
			want:       []stock.Result{{Status: stock.Done, State: stock.StateCommitted, Err: stock.ErrHoldCommitted}},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(3, stock.StateCommitted, t0)}),
		},
		{
			name:       "commit and release of an unknown order are absent",
			before:     bucket(nil),
			ops:        []stock.Op{commit("o1"), release("o1")},
			want:       []stock.Result{{Status: stock.Absent}, {Status: stock.Absent}},
			wantBucket: bucket(nil),
		},
		{
			name:       "commit and release of a passed order go on",
			before:     bucket(nil, "o1"),
			ops:        []stock.Op{commit("o1"), release("o1")},
			want:       []stock.Result{{Status: stock.Next}, {Status: stock.Next}},
			wantBucket: bucket(nil, "o1"),
		},
		{
			name:   "release frees units a later reserve in the batch takes; the tombstone stays",
			before: bucket(map[string]stock.Hold{"o1": held(10, stock.StateReserved, t0)}),
			ops:    []stock.Op{reserve("o2", 4), release("o1"), reserve("o2", 4), reserve("o1", 1)},
			want: []stock.Result{
				{Status: stock.NoRoom}, done(stock.StateReleased), done(stock.StateReserved), done(stock.StateReleased),
			},
			wantBucket: bucket(map[string]stock.Hold{
				"o1": held(10, stock.StateReleased, t1), "o2": held(4, stock.StateReserved, t1),
			}),
			wantChanged: true,
		},
		{
			name:       "probe looks without changing",
			before:     bucket(map[string]stock.Hold{"o1": held(8, stock.StateReserved, t0)}, "o3"),
			ops:        []stock.Op{probe("o1", 5), probe("o2", 2), probe("o2", 3), probe("o3", 1)},
			want:       []stock.Result{done(stock.StateReserved), {Status: stock.Room}, {Status: stock.NoRoom}, {Status: stock.Next}},
			wantBucket: bucket(map[string]stock.Hold{"o1": held(8, stock.StateReserved, t0)}, "o3"),
		},
		{
			name:       "zero quantity is refused",
			before:     bucket(nil),
			ops:        []stock.Op{reserve("o1", 0)},
			want:       []stock.Result{{Err: &problem.Error{Code: problem.CodeValidation}}},
			wantBucket: bucket(nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := tt.before

			got, changed := stock.Apply(&b, tt.ops, t1, win)

			if diff := cmp.Diff(got, tt.want, cmpopts.IgnoreFields(stock.Result{}, "Err")); diff != "" {
				t.Errorf("results (-got +want):\n%s", diff)
			}
			for i := range min(len(got), len(tt.want)) {
				if g, w := got[i].Err, tt.want[i].Err; (g == nil) != (w == nil) || (w != nil && !errors.Is(g, w)) {
					t.Errorf("result %d error = %v, want %v", i, g, w)
				}
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %t, want %t", changed, tt.wantChanged)
			}
			if diff := cmp.Diff(b, tt.wantBucket); diff != "" {
				t.Errorf("bucket (-got +want):\n%s", diff)
			}
			if err := b.Check(); err != nil {
				t.Errorf("bucket breaks its invariants: %v", err)
			}
		})
	}
}

func withPassed(b stock.Bucket, order string, at time.Time) stock.Bucket {
	b.Passed = map[string]time.Time{order: at}
	return b
}

func withArchived(b stock.Bucket, units int) stock.Bucket {
	b.Archived = units
	b.Sold += units
	b.Available -= units
	return b
}

func withForgot(b stock.Bucket, at time.Time) stock.Bucket {
	b.Forgot = at
	return b
}

// TestApplyPrunes: a write drops the window's records at least its age old, then the oldest
// beyond its cap (committed holds first), folding committed units into Archived and moving
// Forgot for the others; reserved holds, younger records and buckets that are not written
// keep everything.
func TestApplyPrunes(t *testing.T) {
	t.Parallel()
	const age = time.Minute
	now := t0.Add(age) // anything dated t0 is exactly age old
	young := t0.Add(time.Second)
	commit := func(order string) stock.Op { return stock.Op{Kind: stock.OpCommit, OrderID: order} }
	done := func(s stock.HoldState) stock.Result { return stock.Result{Status: stock.Done, State: s} }
	old := map[string]stock.Hold{
		"c": held(3, stock.StateCommitted, t0),
		"r": held(2, stock.StateReleased, t0),
		"h": held(1, stock.StateReserved, t0),
	}

	tests := []struct {
		name        string
		before      stock.Bucket
		window      stock.Window
		ops         []stock.Op
		want        []stock.Result
		wantBucket  stock.Bucket
		wantChanged bool
	}{
		{
			name:   "a write prunes old records, keeps reserved holds",
			before: bucket(old, "p"),
			window: stock.Window{Age: age, Ops: 100},
			ops:    []stock.Op{reserve("o1", 1)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: withForgot(withArchived(bucket(map[string]stock.Hold{
				"h": held(1, stock.StateReserved, t0), "o1": held(1, stock.StateReserved, now),
			}), 3), t0),
			wantChanged: true,
		},
		{
			name: "records younger than the window stay",
			before: withPassed(bucket(map[string]stock.Hold{
				"c": held(3, stock.StateCommitted, young), "r": held(2, stock.StateReleased, young),
			}), "p", young),
			window: stock.Window{Age: age, Ops: 100},
			ops:    []stock.Op{reserve("o1", 1)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: withPassed(bucket(map[string]stock.Hold{
				"c": held(3, stock.StateCommitted, young), "r": held(2, stock.StateReleased, young),
				"o1": held(1, stock.StateReserved, now),
			}), "p", young),
			wantChanged: true,
		},
		{
			name:       "no write, no pruning",
			before:     bucket(old, "p"),
			window:     stock.Window{Age: age, Ops: 100},
			ops:        []stock.Op{reserve("c", 3), commit("c"), reserve("p", 1)},
			want:       []stock.Result{done(stock.StateCommitted), done(stock.StateCommitted), {Status: stock.Next}},
			wantBucket: bucket(old, "p"),
		},
		{
			name:        "a zero window keeps everything",
			before:      bucket(old, "p"),
			ops:         []stock.Op{reserve("o1", 1)},
			want:        []stock.Result{done(stock.StateReserved)},
			wantBucket:  bucket(map[string]stock.Hold{"o1": held(1, stock.StateReserved, now), "c": old["c"], "r": old["r"], "h": old["h"]}, "p"),
			wantChanged: true,
		},
		{
			name:   "the batch sees a record it prunes",
			before: bucket(old),
			window: stock.Window{Age: age, Ops: 100},
			ops:    []stock.Op{commit("h"), reserve("c", 3)},
			want:   []stock.Result{done(stock.StateCommitted), done(stock.StateCommitted)},
			wantBucket: withForgot(withArchived(bucket(map[string]stock.Hold{
				"h": held(1, stock.StateCommitted, now),
			}), 3), t0),
			wantChanged: true,
		},
		{
			name:   "archived units add up over prunes; committed holds leave Forgot alone",
			before: withArchived(bucket(map[string]stock.Hold{"c": held(3, stock.StateCommitted, t0)}), 4),
			window: stock.Window{Age: age, Ops: 100},
			ops:    []stock.Op{reserve("o1", 1)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: withArchived(bucket(map[string]stock.Hold{
				"o1": held(1, stock.StateReserved, now),
			}), 7),
			wantChanged: true,
		},
		{
			name: "over the cap, committed holds go first, whatever their age",
			before: withPassed(bucket(map[string]stock.Hold{
				"c": held(3, stock.StateCommitted, young), "r": held(2, stock.StateReleased, t0.Add(time.Millisecond)),
			}), "p", t0.Add(time.Millisecond)),
			window: stock.Window{Age: age, Ops: 2},
			ops:    []stock.Op{reserve("o1", 1)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: withArchived(withPassed(bucket(map[string]stock.Hold{
				"r": held(2, stock.StateReleased, t0.Add(time.Millisecond)), "o1": held(1, stock.StateReserved, now),
			}), "p", t0.Add(time.Millisecond)), 3),
			wantChanged: true,
		},
		{
			name: "over the cap, then the oldest go and Forgot moves to the newest of them",
			before: withPassed(bucket(map[string]stock.Hold{
				"r1": held(2, stock.StateReleased, t0.Add(time.Millisecond)),
				"r2": held(1, stock.StateReleased, t0.Add(3*time.Millisecond)),
				"h":  held(1, stock.StateReserved, t0),
			}), "p", t0.Add(2*time.Millisecond)),
			window: stock.Window{Age: age, Ops: 1},
			ops:    []stock.Op{reserve("o1", 1)},
			want:   []stock.Result{done(stock.StateReserved)},
			wantBucket: withForgot(bucket(map[string]stock.Hold{
				"r2": held(1, stock.StateReleased, t0.Add(3*time.Millisecond)),
				"h":  held(1, stock.StateReserved, t0), "o1": held(1, stock.StateReserved, now),
			}), t0.Add(2*time.Millisecond)),
			wantChanged: true,
		},
		{
			// A committed hold that left the window is forgotten: only its order knows.
			name:   "a pruned committed order replayed is a new order",
			before: withArchived(bucket(nil), 3),
			window: stock.Window{Age: age, Ops: 100},
			ops:    []stock.Op{reserve("c", 3), commit("c")},
			want:   []stock.Result{done(stock.StateReserved), done(stock.StateCommitted)},
			wantBucket: withArchived(bucket(map[string]stock.Hold{
				"c": held(3, stock.StateCommitted, now),
			}), 3),
			wantChanged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := clone(tt.before)

			got, changed := stock.Apply(&b, tt.ops, now, tt.window)

			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("results (-got +want):\n%s", diff)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %t, want %t", changed, tt.wantChanged)
			}
			if diff := cmp.Diff(b, tt.wantBucket, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("bucket (-got +want):\n%s", diff)
			}
			if err := b.Check(); err != nil {
				t.Errorf("bucket breaks its invariants: %v", err)
			}
		})
	}
}

// TestApplyForgotten: a reserve about to take a hold for an order the bucket has no record
// of refuses when the window dropped a record it may have needed: one made since the request
// began (Forgotten) or since the order came to be (Unsure). Records the bucket still has,
// and reserves that would not take anything, answer as usual.
func TestApplyForgotten(t *testing.T) {
	t.Parallel()
	forgot := t0.Add(10 * time.Second)
	at := func(since, born time.Time, mark bool) stock.Op {
		return stock.Op{Kind: stock.OpReserve, OrderID: "o1", Qty: 1, Until: until, Since: since, Born: born, Mark: mark}
	}
	full := map[string]stock.Hold{"x": held(10, stock.StateReserved, t0)}
	tests := []struct {
		name   string
		before stock.Bucket
		op     stock.Op
		want   stock.Result
	}{
		{"began before the dropped record", bucket(nil), at(forgot, time.Time{}, false), stock.Result{Status: stock.Forgotten}},
		{"began after it", bucket(nil), at(forgot.Add(time.Nanosecond), time.Time{}, false), stock.Result{Status: stock.Done, State: stock.StateReserved}},
		{"order born before it", bucket(nil), at(forgot.Add(time.Second), forgot, false), stock.Result{Status: stock.Unsure}},
		{"order born after it", bucket(nil), at(forgot.Add(time.Second), forgot.Add(time.Nanosecond), false), stock.Result{Status: stock.Done, State: stock.StateReserved}},
		{"a hold still here answers", bucket(map[string]stock.Hold{"o1": held(1, stock.StateReleased, t0)}), at(forgot, forgot, false), stock.Result{Status: stock.Done, State: stock.StateReleased}},
		{"a mark still here answers", bucket(nil, "o1"), at(forgot, forgot, false), stock.Result{Status: stock.Next}},
		{"no room: nothing to take", bucket(full), at(forgot, forgot, false), stock.Result{Status: stock.NoRoom}},
		{"no room, marked: a mark is harmless", bucket(full), at(forgot, forgot, true), stock.Result{Status: stock.Next}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := withForgot(clone(tt.before), forgot)
			got, _ := stock.Apply(&b, []stock.Op{tt.op}, forgot.Add(2*time.Second), win)
			if diff := cmp.Diff(got, []stock.Result{tt.want}); diff != "" {
				t.Errorf("results (-got +want):\n%s", diff)
			}
			if err := b.Check(); err != nil {
				t.Errorf("bucket breaks its invariants: %v", err)
			}
		})
	}
}

// clone deep-copies b, so a test can compare before and after.
func clone(b stock.Bucket) stock.Bucket {
	c := b
	c.Holds = maps.Clone(b.Holds)
	c.Passed = maps.Clone(b.Passed)
	c.Pages = slices.Clone(b.Pages)
	return c
}

// TestApplyKeepsInvariants applies long random op sequences in random batches, on a clock
// that advances past the window's age and with a small cap, so both prunings kick in, and
// checks after every batch: the invariants (counters never negative,
// available+reserved+sold == stock, the counters equal to what the holds and archived units
// account for), that a batch that changed nothing left the bucket as it was, that reserved
// holds are never pruned, that a written bucket's window is within its cap, that a record
// younger than the age goes only over the cap, and that Forgot covers every dropped record
// but committed holds.
func TestApplyKeepsInvariants(t *testing.T) {
	t.Parallel()
	w := stock.Window{Age: 20 * time.Second, Ops: 6}
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []stock.OpKind{stock.OpReserve, stock.OpReserve, stock.OpCommit, stock.OpRelease, stock.OpProbe}
	var pruned, archived int
	for run := range 200 {
		b := stock.Meta{DealID: "d1", Stock: 1 + rng.IntN(30), Buckets: 1}.InitialBucket(0)
		placed := map[string]bool{}
		now := t0
		for step := range 50 {
			now = now.Add(time.Duration(rng.IntN(4)) * time.Second)
			ops := make([]stock.Op, 1+rng.IntN(8))
			for i := range ops {
				ops[i] = stock.Op{
					Kind:      kinds[rng.IntN(len(kinds))],
					OrderID:   fmt.Sprintf("o%d", rng.IntN(40)),
					Qty:       1 + rng.IntN(5),
					Until:     until,
					Mark:      rng.IntN(4) == 0,
					Tombstone: rng.IntN(2) == 0,
				}
				if rng.IntN(8) == 0 {
					ops[i].NotAfter = now.Add(-time.Nanosecond) // came too late: must change nothing
				}
			}
			before := clone(b)
			results, changed := stock.Apply(&b, ops, now, w)
			if err := b.Check(); err != nil {
				t.Fatalf("run %d step %d: %v after %+v", run, step, err, ops)
			}
			if !changed {
				if diff := cmp.Diff(b, before, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("run %d step %d: bucket changed without a write (-got +want):\n%s", run, step, diff)
				}
			}
			if b.Sold < before.Sold || b.Archived < before.Archived {
				t.Fatalf("run %d step %d: sold or archived went down: %+v -> %+v", run, step, before, b)
			}
			records := len(b.Passed)
			for _, h := range b.Holds {
				if h.State != stock.StateReserved {
					records++
				}
			}
			if changed && records > w.Ops {
				t.Fatalf("run %d step %d: %d records in a window of %d", run, step, records, w.Ops)
			}
			full := changed && records == w.Ops
			finished := map[string]bool{} // orders this batch may have moved into the window
			for _, op := range ops {
				finished[op.OrderID] = finished[op.OrderID] || op.Kind == stock.OpCommit || op.Kind == stock.OpRelease
			}
			for id, h := range before.Holds {
				if _, ok := b.Holds[id]; ok {
					continue
				}
				pruned++
				if (h.State == stock.StateReserved && !finished[id]) || (now.Sub(h.At) < w.Age && !full) {
					t.Fatalf("run %d step %d: pruned %s's hold %+v at %s", run, step, id, h, now)
				}
				if h.State == stock.StateReleased && b.Forgot.Before(h.At) {
					t.Fatalf("run %d step %d: dropped %s's hold %+v, Forgot %s", run, step, id, h, b.Forgot)
				}
			}
			for id, at := range before.Passed {
				if _, ok := b.Passed[id]; ok {
					continue
				}
				if _, ok := b.Holds[id]; ok {
					t.Fatalf("run %d step %d: %s's mark became a hold", run, step, id)
				}
				if (now.Sub(at) < w.Age && !full) || b.Forgot.Before(at) {
					t.Fatalf("run %d step %d: pruned %s's mark of %s at %s, Forgot %s", run, step, id, at, now, b.Forgot)
				}
			}
			for i, r := range results {
				op := ops[i]
				if expired := !op.NotAfter.IsZero(); expired != (r.Err != nil && r.Status == 0) {
					t.Fatalf("run %d step %d: %+v (expired %t) answered %+v", run, step, op, expired, r)
				}
				if op.Kind == stock.OpReserve && r.Status == stock.Done && r.State == stock.StateReserved && !placed[op.OrderID] {
					placed[op.OrderID] = true
				}
				if h := b.Holds[op.OrderID]; h.Tombstone() {
					placed[op.OrderID] = true // a tombstone answers like a released hold
				}
				if r.Status == stock.Done && !placed[op.OrderID] {
					t.Fatalf("run %d step %d: %s answered %+v without ever being placed", run, step, op.OrderID, r)
				}
			}
		}
		archived += b.Archived
	}
	if pruned == 0 || archived == 0 {
		t.Errorf("pruned %d holds and archived %d units in all runs: pruning never kicked in", pruned, archived)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ok := bucket(map[string]stock.Hold{"a": held(2, stock.StateReserved, t0), "b": held(3, stock.StateCommitted, t0)})
	tests := []struct {
		name    string
		mutate  func(*stock.Bucket)
		wantErr bool
	}{
		{"consistent", func(*stock.Bucket) {}, false},
		{"fresh", func(b *stock.Bucket) { *b = stock.Meta{DealID: "d", Stock: 4}.InitialBucket(0) }, false},
		{"counters exceed stock", func(b *stock.Bucket) { b.Available++ }, true},
		{"counters short of stock", func(b *stock.Bucket) { b.Available-- }, true},
		{"negative available", func(b *stock.Bucket) { b.Available, b.Reserved = -1, b.Reserved+b.Available+1 }, true},
		{"reserved disagrees with the holds", func(b *stock.Bucket) { b.Reserved++; b.Available-- }, true},
		{"sold disagrees with the holds", func(b *stock.Bucket) { b.Sold--; b.Available++ }, true},
		{"sold includes archived units", func(b *stock.Bucket) { b.Archived = 4; b.Sold += 4; b.Available -= 4 }, false},
		{"archived not in sold", func(b *stock.Bucket) { b.Archived = 1 }, true},
		{"negative archived", func(b *stock.Bucket) { b.Archived = -1; b.Sold--; b.Available++ }, true},
		{"held and passed", func(b *stock.Bucket) { b.Passed = map[string]time.Time{"a": t0} }, true},
		{"unknown state", func(b *stock.Bucket) { b.Holds["z"] = held(0, "lost", t0) }, true},
		{"release tombstone", func(b *stock.Bucket) { b.Holds["z"] = stock.Hold{State: stock.StateReleased, At: t0} }, false},
		{"reserved hold of no units", func(b *stock.Bucket) { b.Holds["z"] = held(0, stock.StateReserved, t0) }, true},
		{"negative units", func(b *stock.Bucket) { b.Holds["z"] = held(-1, stock.StateReleased, t0) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := ok
			b.Holds = map[string]stock.Hold{}
			for k, v := range ok.Holds {
				b.Holds[k] = v
			}
			tt.mutate(&b)
			if err := b.Check(); (err != nil) != tt.wantErr {
				t.Errorf("Check() error = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

func TestInitialBucketsSplitEvenly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stock, buckets int
		want           []int
	}{
		{10, 1, []int{10}},
		{10, 4, []int{3, 3, 2, 2}},
		{50, 4, []int{13, 13, 12, 12}},
		{8, 4, []int{2, 2, 2, 2}},
		{5, 0, []int{5}}, // a record from before buckets
	}
	for _, tt := range tests {
		m := stock.Meta{DealID: "d", Stock: tt.stock, Buckets: tt.buckets}
		var got []int
		for i := range m.BucketCount() {
			b := m.InitialBucket(i)
			if err := b.Check(); err != nil {
				t.Error(err)
			}
			got = append(got, b.Stock)
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("split of %d over %d (-got +want):\n%s", tt.stock, tt.buckets, diff)
		}
	}
}

func TestHomeBucketSpreads(t *testing.T) {
	t.Parallel()
	counts := make([]int, 4)
	for i := range 4000 {
		h := stock.HomeBucket(fmt.Sprint(1_000_000+i), 4)
		if h != stock.HomeBucket(fmt.Sprint(1_000_000+i), 4) {
			t.Fatal("HomeBucket is not deterministic")
		}
		counts[h]++
	}
	for i, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("bucket %d is home to %d of 4000 orders, want about 1000 (%v)", i, c, counts)
		}
	}
	if got := stock.HomeBucket("anything", 1); got != 0 {
		t.Errorf("HomeBucket(_, 1) = %d, want 0", got)
	}
}

// TestLeakedHoldTombstones: what a release of an order that holds nothing leaves behind, and
// how later ops of that order see it (loss window 1 of issue 8).
func TestLeakedHoldTombstones(t *testing.T) {
	t.Parallel()
	forget := func(order string) stock.Op { return stock.Op{Kind: stock.OpRelease, OrderID: order, Tombstone: true} }
	release := func(order string) stock.Op { return stock.Op{Kind: stock.OpRelease, OrderID: order} }
	commit := func(order string) stock.Op { return stock.Op{Kind: stock.OpCommit, OrderID: order} }
	probe := func(order string, qty int) stock.Op { return stock.Op{Kind: stock.OpProbe, OrderID: order, Qty: qty} }
	tomb := func(at time.Time) stock.Hold { return stock.Hold{State: stock.StateReleased, At: at} }
	done := func(s stock.HoldState) stock.Result { return stock.Result{Status: stock.Done, State: s} }
	withTomb := func(b stock.Bucket, order string, at time.Time) stock.Bucket {
		b = clone(b)
		b.Holds[order] = tomb(at)
		return b
	}
	reserved := map[string]stock.Hold{"x": held(10, stock.StateReserved, t0)} // nothing available
	sold := map[string]stock.Hold{"x": held(10, stock.StateCommitted, t0)}    // nothing ever again

	tests := []struct {
		name        string
		before      stock.Bucket
		ops         []stock.Op
		want        []stock.Result
		wantBucket  stock.Bucket
		wantChanged bool
	}{
		{
			name:        "a release of an unknown order leaves a tombstone and answers absent",
			before:      bucket(nil),
			ops:         []stock.Op{forget("o1")},
			want:        []stock.Result{{Status: stock.Absent}},
			wantBucket:  withTomb(bucket(nil), "o1", t1),
			wantChanged: true,
		},
		{
			name:       "a late reserve finds the order released and takes nothing",
			before:     withTomb(bucket(nil), "o1", t0),
			ops:        []stock.Op{reserve("o1", 2), probe("o1", 2), {Kind: stock.OpReserve, OrderID: "o1", Qty: 2, Until: until, Mark: true}},
			want:       []stock.Result{done(stock.StateReleased), done(stock.StateReleased), done(stock.StateReleased)},
			wantBucket: withTomb(bucket(nil), "o1", t0),
		},
		{
			name:        "the tombstone lands before a reserve in the same batch",
			before:      bucket(nil),
			ops:         []stock.Op{forget("o1"), reserve("o1", 2)},
			want:        []stock.Result{{Status: stock.Absent}, done(stock.StateReleased)},
			wantBucket:  withTomb(bucket(nil), "o1", t1),
			wantChanged: true,
		},
		{
			name:       "releasing again answers absent and writes nothing",
			before:     withTomb(bucket(nil), "o1", t0),
			ops:        []stock.Op{forget("o1"), release("o1")},
			want:       []stock.Result{{Status: stock.Absent}, {Status: stock.Absent}},
			wantBucket: withTomb(bucket(nil), "o1", t0),
		},
		{
			name:       "a commit of a tombstoned order is refused as released",
			before:     withTomb(bucket(nil), "o1", t0),
			ops:        []stock.Op{commit("o1")},
			want:       []stock.Result{{Status: stock.Done, State: stock.StateReleased, Err: stock.ErrHoldReleased}},
			wantBucket: withTomb(bucket(nil), "o1", t0),
		},
		{
			name:        "a bucket with nothing available but units reserved can give them back: tombstone",
			before:      bucket(reserved),
			ops:         []stock.Op{forget("o1")},
			want:        []stock.Result{{Status: stock.Absent}},
			wantBucket:  withTomb(bucket(reserved), "o1", t1),
			wantChanged: true,
		},
		{
			name:       "a spent bucket can never hold the order: no tombstone, look on",
			before:     bucket(sold),
			ops:        []stock.Op{forget("o1")},
			want:       []stock.Result{{Status: stock.Next}},
			wantBucket: bucket(sold),
		},
		{
			name:       "a bucket the order passed sends the release on",
			before:     bucket(nil, "o1"),
			ops:        []stock.Op{forget("o1")},
			want:       []stock.Result{{Status: stock.Next}},
			wantBucket: bucket(nil, "o1"),
		},
		{
			name:        "a held order is released as usual",
			before:      bucket(map[string]stock.Hold{"o1": held(3, stock.StateReserved, t0)}),
			ops:         []stock.Op{forget("o1")},
			want:        []stock.Result{done(stock.StateReleased)},
			wantBucket:  bucket(map[string]stock.Hold{"o1": held(3, stock.StateReleased, t1)}),
			wantChanged: true,
		},
		{
			name:   "an op past its deadline fails busy and changes nothing; one at it applies",
			before: bucket(nil),
			ops: []stock.Op{
				{Kind: stock.OpReserve, OrderID: "o1", Qty: 1, Until: until, NotAfter: t1.Add(-time.Nanosecond)},
				{Kind: stock.OpReserve, OrderID: "o2", Qty: 1, Until: until, NotAfter: t1},
			},
			want:        []stock.Result{{Err: stock.ErrBusy}, done(stock.StateReserved)},
			wantBucket:  bucket(map[string]stock.Hold{"o2": held(1, stock.StateReserved, t1)}),
			wantChanged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := clone(tt.before)

			got, changed := stock.Apply(&b, tt.ops, t1, win)

			if diff := cmp.Diff(got, tt.want, cmpopts.IgnoreFields(stock.Result{}, "Err")); diff != "" {
				t.Errorf("results (-got +want):\n%s", diff)
			}
			for i := range min(len(got), len(tt.want)) {
				if g, w := got[i].Err, tt.want[i].Err; (g == nil) != (w == nil) || (w != nil && !errors.Is(g, w)) {
					t.Errorf("result %d error = %v, want %v", i, g, w)
				}
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %t, want %t", changed, tt.wantChanged)
			}
			if diff := cmp.Diff(b, tt.wantBucket, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("bucket (-got +want):\n%s", diff)
			}
			if err := b.Check(); err != nil {
				t.Errorf("bucket breaks its invariants: %v", err)
			}
		})
	}
}

// TestLeakedHoldTombstonesLeaveWithTheWindow: a release tombstone goes with the first write
// at least the window's age after it, and moves Forgot, so a reserve of its order that was
// in flight all along answers Forgotten instead of taking a hold.
func TestLeakedHoldTombstonesLeaveWithTheWindow(t *testing.T) {
	t.Parallel()
	keep := stock.Window{Age: time.Minute, Ops: 100}
	before := bucket(map[string]stock.Hold{
		"old":   {State: stock.StateReleased, At: t0},
		"young": {State: stock.StateReleased, At: t0.Add(time.Second)},
	})
	b := clone(before)

	stock.Apply(&b, []stock.Op{reserve("o1", 1)}, t0.Add(time.Minute), keep)

	want := withForgot(bucket(map[string]stock.Hold{
		"young": {State: stock.StateReleased, At: t0.Add(time.Second)},
		"o1":    held(1, stock.StateReserved, t0.Add(time.Minute)),
	}), t0)
	if diff := cmp.Diff(b, want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("bucket (-got +want):\n%s", diff)
	}
	late := stock.Op{Kind: stock.OpReserve, OrderID: "old", Qty: 1, Until: until, Since: t0.Add(-time.Second)}
	if got, _ := stock.Apply(&b, []stock.Op{late}, t0.Add(time.Minute), keep); got[0].Status != stock.Forgotten {
		t.Errorf("a reserve in flight since before the pruned tombstone = %+v, want Forgotten", got[0])
	}
	// No write, no pruning: an idle bucket keeps its tombstones.
	b = clone(before)
	stock.Apply(&b, []stock.Op{reserve("old", 1)}, t0.Add(time.Hour), keep)
	if diff := cmp.Diff(b, before, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("bucket changed without a write (-got +want):\n%s", diff)
	}
}
