package stock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// clock is a settable time source safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.ns.Store(at.UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a service over a fake store, with its metrics readable.
type env struct {
	svc    *stock.Service
	store  *storetest.Fake
	clock  *clock
	reader *sdkmetric.ManualReader
}

func newEnv(t *testing.T, cfg stock.Config) *env {
	t.Helper()
	e := &env{store: storetest.NewFake(), clock: newClock(t0), reader: sdkmetric.NewManualReader()}
	cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader)).Meter("test")
	if cfg.Clock == nil {
		cfg.Clock = e.clock.now
	}
	svc, err := stock.NewService(e.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// metrics reads the engine's instruments: CAS conflicts, batches flushed, ops in them and
// the largest batch.
type metrics struct {
	conflicts, batches, ops, maxBatch int64
}

func (e *env) metrics(t *testing.T) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var m metrics
	for _, sm := range rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			switch d := x.Data.(type) {
			case metricdata.Sum[int64]:
				if x.Name == "inventory_cas_conflicts_total" {
					for _, dp := range d.DataPoints {
						m.conflicts += dp.Value
					}
				}
			case metricdata.Histogram[int64]:
				if x.Name == "inventory_batch_size" {
					for _, dp := range d.DataPoints {
						m.batches += int64(dp.Count)
						m.ops += dp.Sum
						if v, ok := dp.Max.Value(); ok {
							m.maxBatch = max(m.maxBatch, v)
						}
					}
				}
			}
		}
	}
	return m
}

// checkStored verifies every stored bucket of the deal and returns the deal's holds by order
// and the summed levels.
func (e *env) checkStored(t *testing.T, dealID string, wantStock int) (map[string]stock.Hold, stock.Levels) {
	t.Helper()
	holds := map[string]stock.Hold{}
	lv := stock.Levels{DealID: dealID}
	for _, b := range e.store.Buckets(dealID) {
		if err := b.Check(); err != nil {
			t.Errorf("stored bucket: %v", err)
		}
		for id, h := range b.Holds {
			if _, dup := holds[id]; dup {
				t.Errorf("order %s holds stock in two buckets", id)
			}
			holds[id] = h
		}
		lv.Stock += b.Stock
		lv.Available += b.Available
		lv.Reserved += b.Reserved
		lv.Sold += b.Sold
	}
	if lv.Stock != wantStock {
		t.Errorf("buckets hold %d units in all, want %d", lv.Stock, wantStock)
	}
	return holds, lv
}

func TestCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name        string
		buckets     int
		existing    *stock.Meta
		dealID      string
		qty         int
		want        stock.Levels
		wantBuckets []int
		wantErr     error
	}{
		{
			name: "new deal, one bucket", buckets: 1, dealID: "d1", qty: 10,
			want: stock.Levels{DealID: "d1", Stock: 10, Available: 10}, wantBuckets: []int{10},
		},
		{
			name: "new deal, four buckets", buckets: 4, dealID: "d1", qty: 50,
			want: stock.Levels{DealID: "d1", Stock: 50, Available: 50}, wantBuckets: []int{13, 13, 12, 12},
		},
		{
			name: "no more buckets than units", buckets: 8, dealID: "d1", qty: 3,
			want: stock.Levels{DealID: "d1", Stock: 3, Available: 3}, wantBuckets: []int{1, 1, 1},
		},
		{
			name: "same quantity again keeps the recorded split", buckets: 4,
			existing: &stock.Meta{DealID: "d1", Stock: 10, Buckets: 2, CreatedAt: t0},
			dealID:   "d1", qty: 10,
			want: stock.Levels{DealID: "d1", Stock: 10, Available: 10}, wantBuckets: []int{5, 5},
		},
		{
			name:     "different quantity conflicts",
			existing: &stock.Meta{DealID: "d1", Stock: 10, Buckets: 1, CreatedAt: t0},
			dealID:   "d1", qty: 11, wantErr: stock.ErrConflict,
		},
		{name: "largest stock", buckets: 1, dealID: "d1", qty: stock.MaxStock, want: stock.Levels{DealID: "d1", Stock: stock.MaxStock, Available: stock.MaxStock}, wantBuckets: []int{stock.MaxStock}},
		{name: "missing deal id", dealID: "", qty: 10, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "deal id with a colon", dealID: "d1:0", qty: 10, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "zero quantity", dealID: "d1", qty: 0, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "quantity over the limit", dealID: "d1", qty: stock.MaxStock + 1, wantErr: &problem.Error{Code: problem.CodeValidation}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, stock.Config{Buckets: tt.buckets})
			if tt.existing != nil {
				if _, _, err := e.store.CreateMeta(ctx, *tt.existing); err != nil {
					t.Fatal(err)
				}
			}

			got, err := e.svc.Create(ctx, tt.dealID, tt.qty)

			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Create() error = %v, want %v", err, tt.wantErr)
				}
				if n := len(e.store.Buckets(tt.dealID)); n != 0 {
					t.Errorf("%d buckets written by a refused Create", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create() error = %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("levels (-got +want):\n%s", diff)
			}
			var stocks []int
			for i, b := range e.store.Buckets(tt.dealID) {
				if b.Bucket != i || b.DealID != tt.dealID {
					t.Errorf("bucket %d is %s/%d", i, b.DealID, b.Bucket)
				}
				stocks = append(stocks, b.Stock)
			}
			if diff := cmp.Diff(stocks, tt.wantBuckets); diff != "" {
				t.Errorf("bucket stocks (-got +want):\n%s", diff)
			}
			m, err := e.store.Meta(ctx, tt.dealID)
			if err != nil || m.Buckets != len(tt.wantBuckets) || m.Stock != tt.qty {
				t.Errorf("stored meta %+v (%v), want %d units in %d buckets", m, err, tt.qty, len(tt.wantBuckets))
			}
		})
	}
}

func TestCreateSameQuantityReturnsCurrentLevels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 2})
	mustCreate(t, e, "d1", 10)
	mustReserve(t, e, "d1", "o1", 3)

	got, err := e.svc.Create(ctx, "d1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, stock.Levels{DealID: "d1", Stock: 10, Available: 7, Reserved: 3}); diff != "" {
		t.Errorf("levels (-got +want):\n%s", diff)
	}
}

// Concurrent creates of the same deal with the same quantity all succeed with one split.
func TestCreateConcurrentSameQuantity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{Buckets: 4})
	const callers = 8
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { _, errs[i] = e.svc.Create(context.Background(), "d1", 10) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if _, lv := e.checkStored(t, "d1", 10); lv.Available != 10 {
		t.Errorf("levels %+v, want 10 available", lv)
	}
}

// A crash between the meta document and the buckets leaves buckets missing: they read as
// their initial state, the first CAS writes them, and a repeated Create fills them in.
func TestMissingBucketsReadAsInitial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{})
	if _, _, err := e.store.CreateMeta(ctx, stock.Meta{DealID: "d1", Stock: 10, Buckets: 2, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	lv, err := e.svc.Levels(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lv, stock.Levels{DealID: "d1", Stock: 10, Available: 10}); diff != "" {
		t.Errorf("levels (-got +want):\n%s", diff)
	}
	mustReserve(t, e, "d1", "o1", 2)
	if got := len(e.store.Buckets("d1")); got != 1 && stock.HomeBucket("o1", 2) == 0 {
		t.Errorf("%d buckets stored after the first reservation, want the reserved one", got)
	}
	if _, err := e.svc.Create(ctx, "d1", 10); err != nil {
		t.Fatal(err)
	}
	if _, lv := e.checkStored(t, "d1", 10); lv.Reserved != 2 {
		t.Errorf("levels %+v, want 2 reserved", lv)
	}
}

func TestLevelsUnknownDeal(t *testing.T) {
	t.Parallel()
	_, err := newEnv(t, stock.Config{}).svc.Levels(context.Background(), "d404")
	if !errors.Is(err, stock.ErrNotFound) || problem.CodeOf(err) != problem.CodeNotFound {
		t.Errorf("Levels(d404) error = %v, want %v", err, stock.ErrNotFound)
	}
}

func mustCreate(t *testing.T, e *env, dealID string, qty int) {
	t.Helper()
	if _, err := e.svc.Create(context.Background(), dealID, qty); err != nil {
		t.Fatalf("Create(%s, %d): %v", dealID, qty, err)
	}
}

func mustReserve(t *testing.T, e *env, dealID, orderID string, qty int) stock.Reservation {
	t.Helper()
	r, err := e.svc.Reserve(context.Background(), dealID, orderID, qty, until)
	if err != nil {
		t.Fatalf("Reserve(%s, %s, %d): %v", dealID, orderID, qty, err)
	}
	return r
}

// TestHoldLifecycle runs scripted call sequences with one and with four buckets and checks
// each answer and the stored state after.
func TestHoldLifecycle(t *testing.T) {
	t.Parallel()
	type call struct {
		do        string // reserve | commit | release
		order     string
		qty       int
		wantOut   stock.Outcome // reserve
		wantState stock.HoldState
		wantErr   error
	}
	reserved := func(o string, q int) call {
		return call{do: "reserve", order: o, qty: q, wantOut: stock.OutcomeReserved, wantState: stock.StateReserved}
	}
	tests := []struct {
		name  string
		stock int
		calls []call
		want  stock.Levels
	}{
		{
			name: "reserve, replay, commit twice, then release conflicts", stock: 10,
			calls: []call{
				reserved("o1", 3),
				reserved("o1", 3),
				{do: "commit", order: "o1", wantState: stock.StateCommitted},
				{do: "commit", order: "o1", wantState: stock.StateCommitted},
				{do: "release", order: "o1", wantErr: stock.ErrHoldCommitted},
				{do: "reserve", order: "o1", qty: 3, wantOut: stock.OutcomeReserved, wantState: stock.StateCommitted},
			},
			want: stock.Levels{Stock: 10, Available: 7, Sold: 3},
		},
		{
			name: "reserve, release twice, then commit conflicts and the replay sees the tombstone", stock: 16,
			calls: []call{
				reserved("o1", 4),
				{do: "release", order: "o1", wantState: stock.StateReleased},
				{do: "release", order: "o1", wantState: stock.StateReleased},
				{do: "commit", order: "o1", wantErr: stock.ErrHoldReleased},
				{do: "reserve", order: "o1", qty: 4, wantOut: stock.OutcomeReserved, wantState: stock.StateReleased},
			},
			want: stock.Levels{Stock: 16, Available: 16},
		},
		{
			name: "no hold: commit is not found, release is absent", stock: 10,
			calls: []call{
				{do: "commit", order: "o9", wantErr: stock.ErrHoldNotFound},
				{do: "release", order: "o9", wantState: stock.StateAbsent},
			},
			want: stock.Levels{Stock: 10, Available: 10},
		},
		{
			name: "sold out, and stock comes back after a release", stock: 4,
			calls: []call{
				reserved("o1", 1), reserved("o2", 1), reserved("o3", 1), reserved("o4", 1),
				{do: "reserve", order: "o5", qty: 1, wantOut: stock.OutcomeSoldOut},
				{do: "release", order: "o2", wantState: stock.StateReleased},
				reserved("o6", 1),
				{do: "reserve", order: "o7", qty: 1, wantOut: stock.OutcomeSoldOut},
			},
			want: stock.Levels{Stock: 4, Reserved: 4},
		},
	}
	for _, buckets := range []int{1, 4} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%d buckets", tt.name, buckets), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := newEnv(t, stock.Config{Buckets: buckets, SoldOutTTL: time.Second})
				mustCreate(t, e, "d1", tt.stock)
				for i, c := range tt.calls {
					var (
						out   stock.Outcome
						state stock.HoldState
						err   error
					)
					switch c.do {
					case "reserve":
						var r stock.Reservation
						r, err = e.svc.Reserve(ctx, "d1", c.order, c.qty, until)
						out, state = r.Outcome, r.State
					case "commit":
						state, err = e.svc.Commit(ctx, "d1", c.order)
					case "release":
						state, err = e.svc.Release(ctx, "d1", c.order)
					}
					if c.wantErr != nil {
						if !errors.Is(err, c.wantErr) {
							t.Fatalf("call %d %s(%s): error = %v, want %v", i, c.do, c.order, err, c.wantErr)
						}
						continue
					}
					if err != nil {
						t.Fatalf("call %d %s(%s): %v", i, c.do, c.order, err)
					}
					if out != c.wantOut || state != c.wantState {
						t.Fatalf("call %d %s(%s) = %q %q, want %q %q", i, c.do, c.order, out, state, c.wantOut, c.wantState)
					}
				}
				_, lv := e.checkStored(t, "d1", tt.stock)
				lv.DealID = ""
				if diff := cmp.Diff(lv, tt.want); diff != "" && buckets == 1 {
					t.Errorf("stored levels (-got +want):\n%s", diff)
				}
				if lv.Reserved+lv.Sold != tt.want.Reserved+tt.want.Sold {
					t.Errorf("stored levels %+v, want %d units held", lv, tt.want.Reserved+tt.want.Sold)
				}
			})
		}
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{})
	mustCreate(t, e, "d1", 10)
	validation := &problem.Error{Code: problem.CodeValidation}
	tests := []struct {
		name    string
		call    func() error
		wantErr error
	}{
		{"reserve without deal", func() error { _, err := e.svc.Reserve(ctx, "", "o1", 1, until); return err }, validation},
		{"reserve without order", func() error { _, err := e.svc.Reserve(ctx, "d1", "", 1, until); return err }, validation},
		{"reserve zero units", func() error { _, err := e.svc.Reserve(ctx, "d1", "o1", 0, until); return err }, validation},
		{"reserve too many units", func() error { _, err := e.svc.Reserve(ctx, "d1", "o1", stock.MaxQuantity+1, until); return err }, validation},
		{"reserve without until", func() error { _, err := e.svc.Reserve(ctx, "d1", "o1", 1, time.Time{}); return err }, validation},
		{"reserve on an unknown deal", func() error { _, err := e.svc.Reserve(ctx, "d404", "o1", 1, until); return err }, stock.ErrNotFound},
		{"commit without order", func() error { _, err := e.svc.Commit(ctx, "d1", ""); return err }, validation},
		{"commit on an unknown deal", func() error { _, err := e.svc.Commit(ctx, "d404", "o1"); return err }, stock.ErrNotFound},
		{"release without deal", func() error { _, err := e.svc.Release(ctx, "", "o1"); return err }, validation},
		{"release on an unknown deal", func() error { _, err := e.svc.Release(ctx, "d404", "o1"); return err }, stock.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, lv := e.checkStored(t, "d1", 10); lv.Available != 10 {
		t.Errorf("refused requests changed the stock: %+v", lv)
	}
}

// ordersHomedAt returns n order ids whose home bucket (of buckets) is home.
func ordersHomedAt(prefix string, home, buckets, n int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if stock.HomeBucket(id, buckets) == home {
			ids = append(ids, id)
		}
	}
	return ids
}

// An order whose home bucket is full takes the next bucket with room, marking the full ones
// on its way; replays and commits find that one hold even after the home bucket gets room.
func TestReserveSpillsAndStaysIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 4, SoldOutTTL: time.Second})
	mustCreate(t, e, "d1", 8) // 2 units per bucket
	fill := ordersHomedAt("fill", 0, 4, 2)
	for _, id := range fill {
		mustReserve(t, e, "d1", id, 1)
	}
	spill := ordersHomedAt("spill", 0, 4, 1)[0]

	if got := mustReserve(t, e, "d1", spill, 2); got.Outcome != stock.OutcomeReserved {
		t.Fatalf("Reserve(%s) = %+v, want reserved", spill, got)
	}
	bs := e.store.Buckets("d1")
	if _, ok := bs[0].Passed[spill]; !ok {
		t.Errorf("home bucket does not mark %s as passed: %+v", spill, bs[0])
	}
	if h, ok := bs[1].Holds[spill]; !ok || h.Qty != 2 {
		t.Errorf("bucket 1 holds %+v for %s, want 2 units", bs[1].Holds, spill)
	}

	// The home bucket gets room again; the replay must not take a second hold there.
	if s, err := e.svc.Release(ctx, "d1", fill[0]); err != nil || s != stock.StateReleased {
		t.Fatalf("Release(%s) = %q, %v", fill[0], s, err)
	}
	if got := mustReserve(t, e, "d1", spill, 2); got != (stock.Reservation{Outcome: stock.OutcomeReserved, State: stock.StateReserved}) {
		t.Errorf("replayed Reserve(%s) = %+v", spill, got)
	}
	if s, err := e.svc.Commit(ctx, "d1", spill); err != nil || s != stock.StateCommitted {
		t.Fatalf("Commit(%s) = %q, %v", spill, s, err)
	}
	holds, lv := e.checkStored(t, "d1", 8)
	if h := holds[spill]; h.State != stock.StateCommitted || h.Qty != 2 {
		t.Errorf("hold of %s = %+v, want 2 committed", spill, h)
	}
	if lv.Sold != 2 || lv.Reserved != 1 {
		t.Errorf("levels %+v, want 2 sold and 1 reserved", lv)
	}
}

// A write to a bucket a window's age after its records were made prunes them and keeps the
// levels exact; an order whose passed mark was pruned is still found further on.
func TestPruneKeepsLevelsAndFindsSpilledHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 4})
	mustCreate(t, e, "d1", 8) // 2 units per bucket
	fill := ordersHomedAt("fill", 0, 4, 2)
	for _, id := range fill {
		mustReserve(t, e, "d1", id, 1)
	}
	spill := ordersHomedAt("spill", 0, 4, 1)[0]
	mustReserve(t, e, "d1", spill, 2) // marks bucket 0, holds in bucket 1
	if s, err := e.svc.Commit(ctx, "d1", fill[0]); err != nil || s != stock.StateCommitted {
		t.Fatalf("Commit(%s) = %q, %v", fill[0], s, err)
	}

	e.clock.advance(stock.DefaultRecentWindow)
	// The write to bucket 0 prunes fill[0]'s committed hold and spill's mark.
	if s, err := e.svc.Release(ctx, "d1", fill[1]); err != nil || s != stock.StateReleased {
		t.Fatalf("Release(%s) = %q, %v", fill[1], s, err)
	}
	b0 := e.store.Buckets("d1")[0]
	if _, ok := b0.Holds[fill[0]]; ok || len(b0.Passed) != 0 || b0.Archived != 1 {
		t.Errorf("bucket 0 after the prune = %+v, want %s's hold archived and no marks", b0, fill[0])
	}
	if s, err := e.svc.Commit(ctx, "d1", spill); err != nil || s != stock.StateCommitted {
		t.Fatalf("Commit(%s) after its mark was pruned = %q, %v", spill, s, err)
	}
	holds, lv := e.checkStored(t, "d1", 8)
	if h := holds[spill]; h.State != stock.StateCommitted || h.Qty != 2 {
		t.Errorf("hold of %s = %+v, want 2 committed", spill, h)
	}
	if want := (stock.Levels{DealID: "d1", Stock: 8, Available: 5, Sold: 3}); lv != want {
		t.Errorf("stored levels %+v, want %+v", lv, want)
	}
	if got, err := e.svc.Levels(ctx, "d1"); err != nil || got != lv {
		t.Errorf("Levels() = %+v, %v, want %+v", got, err, lv)
	}
	// Past the window a finished order is forgotten: its order document knows how it ended.
	if _, err := e.svc.Commit(ctx, "d1", fill[0]); !errors.Is(err, stock.ErrHoldNotFound) {
		t.Errorf("Commit(%s) after its hold was pruned: %v, want ErrHoldNotFound", fill[0], err)
	}
}

// snowflakes returns n order ids of the order app's kind (pkg/ids, made now) whose home
// bucket (of buckets) is home.
func snowflakes(gen *ids.Generator, home, buckets, n int) []string {
	var out []string
	for len(out) < n {
		id := gen.NextString()
		if stock.HomeBucket(id, buckets) == home {
			out = append(out, id)
		}
	}
	return out
}

// A replay of a walked order after the window dropped its mark (and the home bucket has room
// again) finds the hold further on instead of taking a second one: its home bucket forgot
// records made since the order was born, so the service looks in every bucket first.
func TestReplayAfterTheMarkWasPrunedFindsTheWalkedHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 2})
	e.clock.advance(time.Since(t0)) // the ids below are made now
	mustCreate(t, e, "d1", 4)       // 2 units per bucket
	gen, err := ids.New(1)
	if err != nil {
		t.Fatal(err)
	}
	fill := snowflakes(gen, 0, 2, 2)
	for _, id := range fill {
		mustReserve(t, e, "d1", id, 1)
	}
	spill := snowflakes(gen, 0, 2, 1)[0]
	mustReserve(t, e, "d1", spill, 1) // marks bucket 0, holds in bucket 1
	if bs := e.store.Buckets("d1"); bs[0].Passed[spill].IsZero() || bs[1].Holds[spill].State != stock.StateReserved {
		t.Fatalf("buckets %+v, want %s passed in 0 and held in 1", bs, spill)
	}

	e.clock.advance(stock.DefaultRecentWindow)
	// Bucket 0 gets room again, and the write prunes the mark.
	if s, err := e.svc.Release(ctx, "d1", fill[0]); err != nil || s != stock.StateReleased {
		t.Fatalf("Release(%s) = %q, %v", fill[0], s, err)
	}
	if b0 := e.store.Buckets("d1")[0]; len(b0.Passed) != 0 || b0.Forgot.IsZero() {
		t.Fatalf("bucket 0 = %+v, want the mark pruned and Forgot set", b0)
	}

	if got := mustReserve(t, e, "d1", spill, 1); got != (stock.Reservation{Outcome: stock.OutcomeReserved, State: stock.StateReserved}) {
		t.Errorf("replayed Reserve(%s) = %+v, want its hold", spill, got)
	}
	holds, lv := e.checkStored(t, "d1", 4) // fails on a hold in two buckets
	if h := holds[spill]; h.State != stock.StateReserved {
		t.Errorf("hold of %s = %+v", spill, h)
	}
	if lv.Reserved != 2 || lv.Available != 2 {
		t.Errorf("levels %+v, want 2 reserved (fill[1], spill) and 2 available", lv)
	}
	// A new order still takes the freed unit (its id is a minute older than the clock says,
	// so it is looked for everywhere first).
	fresh := snowflakes(gen, 0, 2, 1)[0]
	if got := mustReserve(t, e, "d1", fresh, 1); got.State != stock.StateReserved {
		t.Errorf("Reserve(%s) = %+v, want reserved", fresh, got)
	}
	if b := e.store.Buckets("d1")[0]; b.Holds[fresh].State != stock.StateReserved {
		t.Errorf("bucket 0 = %+v, want %s held at home", b, fresh)
	}
}

// A reserve in flight when the window's cap pushed out a record made since it began answers
// ErrBusy and takes nothing: that record may have been its order's release tombstone.
func TestReserveAfterAnEarlyDropIsBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{RecentOps: 2})
	mustCreate(t, e, "d1", 10)
	store := &inFlight{Store: e.store}
	r1, err := stock.NewService(store, stock.Config{RecentOps: 2, Clock: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	// R1's reserve of o1 is read and computed; its write waits.
	store.arm()
	res := make(chan error, 1)
	go func() {
		_, err := r1.Reserve(ctx, "d1", "o1", 1, until)
		res <- err
	}()
	<-store.held
	// Meanwhile the order is released elsewhere (a tombstone), and three more releases push
	// that tombstone out of a window of two.
	e.clock.advance(time.Millisecond)
	for _, id := range []string{"o1", "x1", "x2", "x3"} {
		e.clock.advance(time.Millisecond)
		if s, err := e.svc.Release(ctx, "d1", id); err != nil || s != stock.StateAbsent {
			t.Fatalf("Release(%s) = %q, %v", id, s, err)
		}
	}
	if b := e.store.Buckets("d1")[0]; len(b.Holds) != 2 {
		t.Fatalf("bucket %+v, want a window of two records", b)
	}
	close(store.release)

	if err := <-res; !errors.Is(err, stock.ErrBusy) {
		t.Errorf("late Reserve(o1) error = %v, want ErrBusy", err)
	}
	if _, lv := e.checkStored(t, "d1", 10); lv.Available != 10 {
		t.Errorf("levels %+v: the late reserve took stock", lv)
	}
}

// However many orders pass through a bucket, its document stays within the bound the package
// documents: 200 + 140·(R+W) bytes for R reserved holds and a window of W.
func TestBucketDocumentIsBounded(t *testing.T) {
	// Not parallel: it is CPU-heavy, and the contention tests' timing should not pay for it.
	ctx := context.Background()
	e := newEnv(t, stock.Config{})
	const units = 10_000
	mustCreate(t, e, "d1", units)
	gen, err := ids.New(3)
	if err != nil {
		t.Fatal(err)
	}
	largest, reservedNow := 0, 0
	var open []string
	for i := range 400 {
		e.clock.advance(time.Millisecond)
		id := gen.NextString()
		mustReserve(t, e, "d1", id, 1)
		open = append(open, id)
		switch {
		case i%10 == 9: // an undone placement: a tombstone
			if _, err := e.svc.Release(ctx, "d1", "undone-"+id); err != nil {
				t.Fatal(err)
			}
		case len(open) > 20: // at most ~20 in flight: commit or release the oldest
			var err error
			if i%3 == 0 {
				_, err = e.svc.Release(ctx, "d1", open[0])
			} else {
				_, err = e.svc.Commit(ctx, "d1", open[0])
			}
			if err != nil {
				t.Fatal(err)
			}
			open = open[1:]
		}
		if i%4 != 0 {
			continue
		}
		for _, b := range e.store.Buckets("d1") {
			doc, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			largest = max(largest, len(doc))
			reservedNow = max(reservedNow, b.Reserved)
		}
	}
	if bound := 200 + 140*(reservedNow+stock.DefaultRecentOps); largest > bound {
		t.Errorf("largest bucket document %d bytes, want at most %d (R=%d, W=%d)", largest, bound, reservedNow, stock.DefaultRecentOps)
	}
	_, lv := e.checkStored(t, "d1", units)
	if lv.Reserved != len(open) || lv.Reserved+lv.Sold+lv.Available != units {
		t.Errorf("levels %+v with %d orders open", lv, len(open))
	}
	t.Logf("400 orders: largest bucket %d bytes", largest)
}

// When no bucket can cover the order, the probe answers sold out without writing marks.
func TestReserveSoldOutEverywhereWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{Buckets: 4})
	mustCreate(t, e, "d1", 8)
	for i := range 4 {
		mustReserve(t, e, "d1", ordersHomedAt("a", i, 4, 1)[0], 1) // one unit left per bucket
	}
	before := e.store.Stats().Writes

	if got := mustReserve(t, e, "d1", "big", 2); got.Outcome != stock.OutcomeSoldOut {
		t.Fatalf("Reserve(2 units) = %+v, want sold out", got)
	}
	if got := e.store.Stats().Writes - before; got != 0 {
		t.Errorf("%d writes for a sold-out answer, want 0", got)
	}
}

// TestConcurrentReserve is the flash sale: 500 buyers at once on 50 units in 4 buckets,
// with another replica stealing every third write. Exactly 50 units are reserved, every
// buyer gets an answer, answers match the stored holds, and requests share CASes.
// Unbatched, 150 buyers (still three per unit): each request runs its own CAS loop, so the
// work grows with the square of the buyers per bucket, and 500 of them took from 5 s to
// over the minute FlushTimeout under -race on a busy 2-core machine (CI, 2026-12-02).
func TestConcurrentReserve(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("batching disabled=%t", disable), func(t *testing.T) {
			t.Parallel()
			buyers := 500
			if disable {
				buyers = 150
			}
			// FlushTimeout bounds each request's CAS loop, unbatched ones too.
			e := newEnv(t, stock.Config{Buckets: 4, SoldOutTTL: time.Second, DisableBatching: disable, FlushTimeout: time.Minute})
			mustCreate(t, e, "d1", 50)
			e.store.Latency = 200 * time.Microsecond
			var writes atomic.Int64
			e.store.SetConflict(func(string, int) bool { return writes.Add(1)%3 == 0 })

			res := make([]stock.Reservation, buyers)
			errs := make([]error, buyers)
			var wg sync.WaitGroup
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := range buyers {
				wg.Go(func() { res[i], errs[i] = e.svc.Reserve(ctx, "d1", fmt.Sprintf("o%d", i), 1, until) })
			}
			wg.Wait()

			reserved := map[string]bool{}
			for i := range buyers {
				switch {
				case errs[i] != nil:
					t.Errorf("buyer %d: %v", i, errs[i])
				case res[i].Outcome == stock.OutcomeReserved && res[i].State == stock.StateReserved:
					reserved[fmt.Sprintf("o%d", i)] = true
				case res[i].Outcome != stock.OutcomeSoldOut:
					t.Errorf("buyer %d: answer %+v", i, res[i])
				}
			}
			if len(reserved) != 50 {
				t.Errorf("%d buyers reserved, want 50", len(reserved))
			}
			holds, lv := e.checkStored(t, "d1", 50)
			if lv.Reserved != 50 || lv.Available != 0 {
				t.Errorf("stored levels %+v, want all 50 reserved", lv)
			}
			for id := range holds {
				if !reserved[id] {
					t.Errorf("order %s holds stock but was not told so", id)
				}
			}
			m := e.metrics(t)
			t.Logf("batches %d, ops %d, largest batch %d, cas conflicts %d", m.batches, m.ops, m.maxBatch, m.conflicts)
			if m.conflicts == 0 {
				t.Error("no CAS conflicts counted, though every third write conflicted")
			}
			if !disable && m.maxBatch < 2 {
				t.Errorf("largest batch %d, want requests sharing a CAS", m.maxBatch)
			}
			if disable && m.maxBatch != 1 {
				t.Errorf("largest batch %d with batching disabled, want 1", m.maxBatch)
			}
		})
	}
}

// TestRandomOpsKeepInvariants drives random reserves, commits and releases from concurrent
// callers (fixed seed per caller) against four buckets with injected conflicts, then checks
// the stored buckets and that every caller's last answer matches the stored hold.
func TestRandomOpsKeepInvariants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{Buckets: 4, SoldOutTTL: 10 * time.Millisecond, Clock: time.Now, FlushTimeout: 30 * time.Second})
	mustCreate(t, e, "d1", 40)
	var writes atomic.Int64
	e.store.SetConflict(func(string, int) bool { return writes.Add(1)%5 == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const callers, steps = 16, 60
	// lasts[c] is what the service last told caller c about each of its orders' holds.
	lasts := make([]map[string]stock.HoldState, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(7, uint64(c)))
			mine := map[string]stock.HoldState{}
			lasts[c] = mine
			for range steps {
				id := fmt.Sprintf("c%d-o%d", c, rng.IntN(6)) // each caller owns its orders
				switch rng.IntN(4) {
				case 0, 1:
					r, err := e.svc.Reserve(ctx, "d1", id, 1+rng.IntN(3), until)
					if err != nil {
						errs[c] = err
						return
					}
					if r.Outcome == stock.OutcomeReserved {
						mine[id] = r.State
					}
				case 2:
					s, err := e.svc.Commit(ctx, "d1", id)
					switch {
					case err == nil:
						mine[id] = s
					case errors.Is(err, stock.ErrHoldNotFound), errors.Is(err, stock.ErrHoldReleased):
					default:
						errs[c] = err
						return
					}
				case 3:
					s, err := e.svc.Release(ctx, "d1", id)
					switch {
					case err == nil && s != stock.StateAbsent:
						mine[id] = s
					case err == nil, errors.Is(err, stock.ErrHoldCommitted):
					default:
						errs[c] = err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for c, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", c, err)
		}
	}
	holds, lv := e.checkStored(t, "d1", 40)
	if lv.Available < 0 || lv.Reserved+lv.Sold > 40 {
		t.Errorf("levels %+v", lv)
	}
	told := map[string]stock.HoldState{}
	for _, m := range lasts {
		for id, s := range m {
			told[id] = s
		}
	}
	for id, h := range holds {
		if _, ok := told[id]; !ok && h.Tombstone() {
			continue // released while it held nothing, and never reserved since
		}
		if told[id] != h.State {
			t.Errorf("order %s: stored %s, last answer %q", id, h.State, told[id])
		}
	}
	for id := range told {
		if _, ok := holds[id]; !ok {
			t.Errorf("order %s was told it holds stock, the store has no hold", id)
		}
	}
}

// The sold-out marker answers without reading the store (except replays of orders this
// replica saw hold stock), expires after SoldOutTTL and is cleared at once by a local release.
func TestSoldOutMarker(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d buckets", buckets), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, stock.Config{Buckets: buckets, SoldOutTTL: time.Second})
			mustCreate(t, e, "d1", 4)
			for i := range 4 {
				if r := mustReserve(t, e, "d1", fmt.Sprintf("o%d", i), 1); r.Outcome != stock.OutcomeReserved {
					// With buckets, an order may find its home full and take another bucket.
					t.Fatalf("o%d: %+v", i, r)
				}
			}
			mustReserve(t, e, "d1", "probe", 1) // sees every bucket empty

			reads := e.store.Stats().Reads
			for i := range 100 {
				if r := mustReserve(t, e, "d1", fmt.Sprintf("late%d", i), 1); r.Outcome != stock.OutcomeSoldOut {
					t.Fatalf("late%d: %+v, want sold out", i, r)
				}
			}
			if got := e.store.Stats().Reads - reads; got != 0 {
				t.Errorf("%d store reads while the sold-out marker holds, want 0", got)
			}
			// An order this replica saw reserve is a replay: it gets its hold back.
			if r := mustReserve(t, e, "d1", "o1", 1); r != (stock.Reservation{Outcome: stock.OutcomeReserved, State: stock.StateReserved}) {
				t.Errorf("replay of o1 while sold out: %+v, want its hold", r)
			}

			e.clock.advance(time.Second)
			reads = e.store.Stats().Reads
			if r := mustReserve(t, e, "d1", "after-ttl", 1); r.Outcome != stock.OutcomeSoldOut {
				t.Fatalf("after the TTL: %+v, want sold out", r)
			}
			if e.store.Stats().Reads == reads {
				t.Error("no store read after the marker expired")
			}

			if s, err := e.svc.Release(context.Background(), "d1", "o2"); err != nil || s != stock.StateReleased {
				t.Fatalf("Release(o2) = %q, %v", s, err)
			}
			if r := mustReserve(t, e, "d1", "after-release", 1); r.Outcome != stock.OutcomeReserved {
				t.Errorf("right after a local release: %+v, want reserved", r)
			}
		})
	}
}

// Conflicts are retried with backoff until the flush timeout; then the batch fails busy.
func TestConflictsUntilTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{FlushTimeout: 50 * time.Millisecond})
	mustCreate(t, e, "d1", 10)
	e.store.SetConflict(func(string, int) bool { return true })

	_, err := e.svc.Reserve(context.Background(), "d1", "o1", 1, until)

	if !errors.Is(err, stock.ErrBusy) || problem.CodeOf(err) != problem.CodeUnavailable {
		t.Fatalf("Reserve() error = %v, want %v", err, stock.ErrBusy)
	}
	if m := e.metrics(t); m.conflicts < 3 {
		t.Errorf("%d conflicts counted in 50ms of 2ms..100ms backoff, want several", m.conflicts)
	}
	e.store.SetConflict(nil)
	if r := mustReserve(t, e, "d1", "o1", 1); r.Outcome != stock.OutcomeReserved {
		t.Errorf("after the contention: %+v", r)
	}
}

func TestStoreOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{})
	mustCreate(t, e, "d1", 10)
	errDown := errors.New("state store down")
	e.store.SetErr(errDown)
	ctx := context.Background()

	if _, err := e.svc.Reserve(ctx, "d1", "o1", 1, until); !errors.Is(err, errDown) {
		t.Errorf("Reserve() error = %v, want %v", err, errDown)
	}
	if _, err := e.svc.Release(ctx, "d1", "o1"); !errors.Is(err, errDown) {
		t.Errorf("Release() error = %v, want %v", err, errDown)
	}
	if _, err := e.svc.Create(ctx, "d2", 10); !errors.Is(err, errDown) {
		t.Errorf("Create() error = %v, want %v", err, errDown)
	}
}

// A caller that gives up before its batch starts is not applied.
func TestCancelledRequestIsNotApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{})
	mustCreate(t, e, "d1", 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.svc.Reserve(ctx, "d1", "o1", 1, until); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reserve() error = %v, want %v", err, context.Canceled)
	}
	// A second request on the same bucket runs through the same batcher after any flush that
	// (wrongly) took o1, so once it is answered that flush has landed too.
	if _, err := e.svc.Reserve(context.Background(), "d1", "o2", 1, until); err != nil {
		t.Fatalf("Reserve(o2) error = %v", err)
	}
	if holds, _ := e.checkStored(t, "d1", 10); len(holds) != 1 || holds["o1"] != (stock.Hold{}) {
		t.Errorf("holds %+v after a cancelled request, want only o2's", holds)
	}
}

// TestRandomReplicasNeverOversellOrDoubleHold drives orders the way the order app does, over
// two replicas sharing one store, with injected ETag conflicts, little stock in three buckets
// (so orders walk) and a window of three records (so buckets forget all the time). Each order
// reserves; a third of them first make an attempt whose answer is lost (its context ends
// while it is queued, or it completes and the caller never hears) and retry on the other
// replica. A placement that ends sold out, released or busy is undone with a release; a
// reserved one is committed or released, and that is replayed on the other replica. When all
// are done no unit may be reserved (no hold nobody releases, no second hold) and sold must be
// exactly the units of the orders told committed. The paged runs page every hold out of its
// bucket as soon as there are two (Config.PageOut), and rewrite pages all the time.
func TestRandomReplicasNeverOversellOrDoubleHold(t *testing.T) {
	// Not parallel, one seed at a time: CPU-heavy, and the contention tests' timing should
	// not pay for it.
	var pages [2]int
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { pages[0] += randomReplicas(t, seed, stock.Config{}) })
		t.Run(fmt.Sprint(seed, "-paged"), func(t *testing.T) {
			pages[1] += randomReplicas(t, seed, stock.Config{PageOut: 1, PageMax: 2, PageFinishedCap: 1})
		})
	}
	if pages[0] != 0 || pages[1] < 8 {
		t.Errorf("%d pages written by the default runs, %d by the paged ones", pages[0], pages[1])
	}
}

// randomReplicas runs one seed and returns the pages it wrote.
func randomReplicas(t *testing.T, seed uint64, cfg stock.Config) int {
	store := storetest.NewFake()
	var writes atomic.Int64
	store.SetConflict(func(string, int) bool { return writes.Add(1)%4 == 0 })
	var replicas [2]*stock.Service
	for i := range replicas {
		cfg.Buckets, cfg.RecentOps, cfg.FlushTimeout = 3, 3, 10*time.Second
		svc, err := stock.NewService(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = svc
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const units = 6
	if _, err := replicas[0].Create(ctx, "d1", units); err != nil {
		t.Fatal(err)
	}
	gen, err := ids.New(int(seed))
	if err != nil {
		t.Fatal(err)
	}
	const orders = 60
	sold := make([]int, orders)
	errs := make([]error, orders)
	var wg sync.WaitGroup
	for o := range orders {
		id := gen.NextString()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(o)))
			yield := func() {
				for range rng.IntN(200) {
					runtime.Gosched()
				}
			}
			qty := 1 + rng.IntN(2)
			first := rng.IntN(2)
			switch rng.IntN(6) {
			case 0: // the answer is lost while the request is queued
				lost, stop := context.WithTimeout(ctx, time.Duration(rng.IntN(300))*time.Microsecond)
				_, _ = replicas[first].Reserve(lost, "d1", id, qty, until)
				stop()
				first = 1 - first
			case 1: // the answer is lost on its way back
				_, _ = replicas[first].Reserve(ctx, "d1", id, qty, until)
				yield()
				first = 1 - first
			}
			var res stock.Reservation
			var err error
			for range 50 {
				if res, err = replicas[first].Reserve(ctx, "d1", id, qty, until); !errors.Is(err, stock.ErrBusy) {
					break
				}
				yield()
			}
			switch {
			case errors.Is(err, stock.ErrBusy), err == nil && (res.Outcome == stock.OutcomeSoldOut || res.State != stock.StateReserved):
				_, errs[o] = replicas[rng.IntN(2)].Release(ctx, "d1", id)
				return
			case err != nil:
				errs[o] = err
				return
			}
			yield()
			if rng.IntN(3) == 0 {
				for k := range 2 { // the commit, and its replay on the other replica
					if _, err := replicas[(first+k)%2].Commit(ctx, "d1", id); err != nil && !(k == 1 && errors.Is(err, stock.ErrHoldNotFound)) {
						errs[o] = fmt.Errorf("commit %d: %w", k, err)
						return
					}
				}
				sold[o] = qty
				return
			}
			for k := range 2 {
				if _, err := replicas[(first+k)%2].Release(ctx, "d1", id); err != nil {
					errs[o] = fmt.Errorf("release %d: %w", k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, r := range replicas {
		r.Close() // unlisted pages are deleted in the background
	}
	want := 0
	for o := range orders {
		if errs[o] != nil {
			t.Errorf("order %d: %v", o, errs[o])
		}
		want += sold[o]
	}
	var lv stock.Levels
	for _, b := range store.Buckets("d1") {
		if err := b.Check(); err != nil {
			t.Error(err)
		}
		var listed []string
		for _, r := range b.Pages {
			listed = append(listed, r.Key)
		}
		slices.Sort(listed)
		if stored := store.Pages("d1", b.Bucket); !slices.Equal(stored, listed) {
			t.Errorf("bucket %d lists pages %v, the store has %v", b.Bucket, listed, stored)
		}
		lv.Stock += b.Stock
		lv.Available += b.Available
		lv.Reserved += b.Reserved
		lv.Sold += b.Sold
	}
	if lv.Stock != units || lv.Reserved != 0 || lv.Sold != want || lv.Available != units-want {
		t.Errorf("levels %+v, want nothing reserved and %d sold", lv, want)
	}
	return store.Stats().Pages
}
