package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

var t0 = ordertest.T0

const dealID = "d1"

// testConfig gives the windows: quiet = IdemLease+FlushTimeout+Margin = 1m35s, orphan age =
// PayWindow+quiet = 16m35s, a cancelled order's charge is refunded grace+quiet = 2m05s after
// the cancel.
func testConfig() reconcile.Config {
	return reconcile.Config{
		PayWindow: 15 * time.Minute, IdemLease: 30 * time.Second, PaymentGrace: 30 * time.Second,
		FlushTimeout: 5 * time.Second, Margin: time.Minute,
		Lookback: 24 * time.Hour, DealHorizon: 720 * time.Hour,
		Lease: 5 * time.Minute, MinInterval: 30 * time.Second, MaxListed: 100, Concurrency: 4,
	}
}

// env is a reconciler over fakes of the other apps, the order domain's fakes, and its real
// state adapter over the in-memory Dapr state client.
type env struct {
	clock   *ordertest.Clock
	deals   *fakeDeals
	stock   *fakeStock
	pay     *fakePayments
	orders  *ordertest.Store
	pending *ordertest.Pending
	state   *daprstore.Reconcile
	reader  *sdkmetric.ManualReader
	meters  *sdkmetric.MeterProvider // every replica's, so one reader sees them all
	rec     *reconcile.Reconciler
}

func newEnv(t *testing.T, cfg reconcile.Config) *env {
	t.Helper()
	e := &env{
		clock:   ordertest.NewClock(t0),
		deals:   &fakeDeals{deals: []reconcile.Deal{{ID: dealID, Kind: "flash", EndsAt: t0.Add(time.Hour)}}},
		stock:   newFakeStock(),
		pay:     newFakePayments(),
		orders:  ordertest.NewStore(),
		pending: ordertest.NewPending(),
		state:   daprstore.NewReconcile(daprstate.New(daprstatetest.NewClient(), "statestore")),
		reader:  sdkmetric.NewManualReader(),
	}
	e.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	e.rec = e.newReconciler(t, cfg)
	return e
}

// newReconciler is one more replica over the same stores.
func (e *env) newReconciler(t *testing.T, cfg reconcile.Config) *reconcile.Reconciler {
	t.Helper()
	rec, err := reconcile.New(cfg, reconcile.Deps{
		Deals: e.deals, Stock: e.stock, Payments: e.pay, Orders: e.orders, Pending: e.pending, State: e.state,
		Meter: e.meters.Meter("test"),
		Now:   e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) tick(t *testing.T) reconcile.TickResult {
	t.Helper()
	res, err := e.rec.Tick(testContext(t))
	if err != nil {
		t.Fatalf("Tick: %v", err)
	}
	if !res.Ran {
		t.Fatalf("Tick skipped: %s", res.Skipped)
	}
	return res
}

func (e *env) report(t *testing.T) reconcile.Report {
	t.Helper()
	rep, err := e.rec.Report(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// counters sums reconcile_* counter points by metric name and attribute set.
func (e *env) counters(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				key := m.Name
				for _, kv := range dp.Attributes.ToSlice() {
					key += " " + string(kv.Key) + "=" + kv.Value.String()
				}
				out[key] += dp.Value
			}
		}
	}
	return out
}

// bucket builds a bucket whose counters agree with its holds.
func bucket(i, stock int, holds map[string]reconcile.Hold) reconcile.Bucket {
	b := reconcile.Bucket{Bucket: i, Stock: stock, Holds: holds}
	for _, h := range holds {
		switch h.State {
		case reconcile.HoldReserved:
			b.Reserved += h.Qty
		case reconcile.HoldCommitted:
			b.Sold += h.Qty
		}
	}
	b.Available = stock - b.Reserved - b.Sold
	return b
}

// hold is a hold of qty units last changed at at, reserved for the pay window from then.
func hold(state string, qty int, at time.Time) reconcile.Hold {
	return reconcile.Hold{Qty: qty, Until: at.Add(15 * time.Minute), State: state, At: at}
}

// doc is a flash order of deal d1 last changed at at (placed then, unless changed).
func doc(id string, st order.Status, qty int, at time.Time) order.Order {
	return order.Order{ID: id, UserID: "u-" + id, DealID: dealID, Kind: "flash", Quantity: qty, UnitPriceCents: 100,
		TotalCents: 100 * int64(qty), Status: st, PayBy: at.Add(15 * time.Minute), CreatedAt: at, UpdatedAt: at,
		Settled: st != order.StatusPending && st != order.StatusPaid}
}

func charged(cents int64, refunds int) reconcile.Ledger {
	l := reconcile.Ledger{Charges: []reconcile.Charge{{ChargeID: "ch_1", Status: reconcile.ChargeSucceeded, AmountCents: cents}}}
	for range refunds {
		l.Refunds = append(l.Refunds, reconcile.Refund{RefundID: "re_1", AmountCents: cents})
	}
	return l
}

// got is a finding or repair as the tests compare it.
type got struct {
	Kind    reconcile.Kind
	OrderID string
	Repair  reconcile.Action
}

func project[T any](xs []T, f func(T) reconcile.Finding) []got {
	out := []got{}
	for _, x := range xs {
		fd := f(x)
		out = append(out, got{fd.Kind, fd.OrderID, fd.Repair})
	}
	return out
}

// TestPass runs one pass over a deal set up for each case and checks what it reported, what
// it repaired, and the stores afterwards.
func TestPass(t *testing.T) {
	t.Parallel()
	old := t0.Add(-time.Hour) // long past every window
	tests := []struct {
		name         string
		deal         *reconcile.Deal // instead of the flash deal d1
		holds        map[string]reconcile.Hold
		stockUnits   int
		edit         func(b *reconcile.Bucket) // breaks the bucket's counters
		orders       []order.Order
		ledgers      map[string]reconcile.Ledger
		pending      []order.PendingEntry
		wantFindings []got
		wantRepaired []got
		check        func(t *testing.T, e *env)
	}{
		{
			name:       "a clean deal produces no findings",
			stockUnits: 10,
			holds: map[string]reconcile.Hold{
				"o-pending":   hold(reconcile.HoldReserved, 1, t0.Add(-time.Minute)),
				"o-confirmed": hold(reconcile.HoldCommitted, 2, old),
				"o-cancelled": hold(reconcile.HoldReleased, 1, old),
				"o-late-paid": hold(reconcile.HoldReleased, 1, old),
				"o-undone":    hold(reconcile.HoldReleased, 1, old), // a placement that never made an order
			},
			orders: []order.Order{
				doc("o-pending", order.StatusPending, 1, t0.Add(-time.Minute)),
				doc("o-confirmed", order.StatusConfirmed, 2, old),
				doc("o-cancelled", order.StatusCancelled, 1, old),
				doc("o-late-paid", order.StatusCancelled, 1, old), // charged after it expired, refunded
			},
			ledgers: map[string]reconcile.Ledger{
				"o-confirmed": charged(200, 0),
				"o-late-paid": charged(100, 1),
			},
			pending:      []order.PendingEntry{{OrderID: "o-pending", UserID: "u-o-pending", DealID: dealID, Due: t0.Add(14 * time.Minute)}},
			wantFindings: []got{},
			wantRepaired: []got{},
			check: func(t *testing.T, e *env) {
				if calls := e.stock.releaseCalls(); len(calls) != 0 {
					t.Errorf("releases %v, want none", calls)
				}
				if calls := e.pay.refundCalls(); len(calls) != 0 {
					t.Errorf("refunds %v, want none", calls)
				}
			},
		},
		{
			name:         "a leaked hold of a cancelled order is released",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldReserved, 2, old)},
			orders:       []order.Order{doc("o1", order.StatusCancelled, 2, old)},
			wantFindings: []got{},
			wantRepaired: []got{{reconcile.KindLeakedHold, "o1", reconcile.ActionReleaseHold}},
			check: func(t *testing.T, e *env) {
				if h, _ := e.stock.hold(dealID, "o1"); h.State != reconcile.HoldReleased {
					t.Errorf("hold %+v, want released", h)
				}
				if b := e.stock.buckets(dealID)[0]; b.Available != 5 || b.Reserved != 0 {
					t.Errorf("bucket %+v, want all 5 units available", b)
				}
			},
		},
		{
			name:       "a hold of a missing order is released past the windows, a fresh one is not",
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"ghost-old":   hold(reconcile.HoldReserved, 1, t0.Add(-17*time.Minute)),
				"ghost-fresh": hold(reconcile.HoldReserved, 1, t0.Add(-16*time.Minute)), // a placement may still be in flight
			},
			wantFindings: []got{},
			wantRepaired: []got{{reconcile.KindOrphanHold, "ghost-old", reconcile.ActionReleaseHold}},
			check: func(t *testing.T, e *env) {
				if h, _ := e.stock.hold(dealID, "ghost-old"); h.State != reconcile.HoldReleased {
					t.Errorf("old hold %+v, want released", h)
				}
				if h, _ := e.stock.hold(dealID, "ghost-fresh"); h.State != reconcile.HoldReserved {
					t.Errorf("fresh hold %+v, want still reserved", h)
				}
			},
		},
		{
			name:       "an orphaned hold whose placement the sweep still owns is left to it, and reported once overdue",
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"ghost-due":     hold(reconcile.HoldReserved, 1, old),
				"ghost-overdue": hold(reconcile.HoldReserved, 1, old),
			},
			pending: []order.PendingEntry{
				{OrderID: "ghost-due", UserID: "u1", DealID: dealID, Due: t0.Add(-10 * time.Second)},
				{OrderID: "ghost-overdue", UserID: "u2", DealID: dealID, Due: t0.Add(-10 * time.Minute)},
			},
			wantFindings: []got{{reconcile.KindOrphanHold, "ghost-overdue", ""}},
			wantRepaired: []got{},
			check: func(t *testing.T, e *env) {
				if calls := e.stock.releaseCalls(); len(calls) != 0 {
					t.Errorf("releases %v, want none: the sweep releases holds of its pending entries", calls)
				}
			},
		},
		{
			name:         "a succeeded charge of a cancelled order is refunded",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldReleased, 1, t0.Add(-3*time.Minute))},
			orders:       []order.Order{doc("o1", order.StatusCancelled, 1, t0.Add(-3*time.Minute))},
			ledgers:      map[string]reconcile.Ledger{"o1": charged(100, 0)},
			wantFindings: []got{},
			wantRepaired: []got{{reconcile.KindChargedCancelled, "o1", reconcile.ActionRefundCharge}},
			check: func(t *testing.T, e *env) {
				if l := e.pay.ledger("o1"); len(l.Refunds) != 1 {
					t.Errorf("ledger %+v, want one refund", l)
				}
			},
		},
		{
			name:         "a charge of an order cancelled within the payment grace is left to the live path",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldReleased, 1, t0.Add(-2*time.Minute))},
			orders:       []order.Order{doc("o1", order.StatusCancelled, 1, t0.Add(-2*time.Minute))},
			ledgers:      map[string]reconcile.Ledger{"o1": charged(100, 0)},
			wantFindings: []got{},
			wantRepaired: []got{},
		},
		{
			name:         "a sold counter that disagrees with the confirmed orders is reported, not repaired",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldCommitted, 1, old)},
			orders:       []order.Order{doc("o1", order.StatusConfirmed, 1, old)},
			ledgers:      map[string]reconcile.Ledger{"o1": charged(100, 0)},
			edit:         func(b *reconcile.Bucket) { b.Sold, b.Available = 2, 2 }, // one confirmed order holds 1 unit
			wantFindings: []got{{reconcile.KindCounterMismatch, "", ""}},
			wantRepaired: []got{},
			check: func(t *testing.T, e *env) {
				if b := e.stock.buckets(dealID)[0]; b.Sold != 2 || b.Available != 2 {
					t.Errorf("bucket %+v changed, want it as it was", b)
				}
				if calls := e.stock.releaseCalls(); len(calls) != 0 {
					t.Errorf("releases %v, want none", calls)
				}
			},
		},
		{
			name:         "units sold to a cancelled order are reported",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldCommitted, 1, old)},
			orders:       []order.Order{doc("o1", order.StatusCancelled, 1, old)},
			wantFindings: []got{{reconcile.KindSoldWithoutConfirmed, "o1", ""}},
			wantRepaired: []got{},
		},
		{
			name:         "a confirmed order without a charge is reported",
			stockUnits:   5,
			holds:        map[string]reconcile.Hold{"o1": hold(reconcile.HoldCommitted, 1, old)},
			orders:       []order.Order{doc("o1", order.StatusConfirmed, 1, old)},
			wantFindings: []got{{reconcile.KindKeptWithoutCharge, "o1", ""}},
			wantRepaired: []got{},
		},
		{
			name:       "refund anomalies are reported",
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"o-twice": hold(reconcile.HoldReleased, 1, old),
				"o-never": hold(reconcile.HoldReleased, 1, old),
				"o-kept":  hold(reconcile.HoldCommitted, 1, old),
			},
			orders: []order.Order{
				doc("o-twice", order.StatusRefunded, 1, old),
				doc("o-never", order.StatusRefunded, 1, old),
				doc("o-kept", order.StatusConfirmed, 1, old),
			},
			ledgers: map[string]reconcile.Ledger{
				"o-twice": charged(100, 2),
				"o-never": charged(100, 0),
				"o-kept":  charged(100, 1),
			},
			wantFindings: []got{
				{reconcile.KindKeptRefunded, "o-kept", ""},
				{reconcile.KindRefundedWithoutRefund, "o-never", ""},
				{reconcile.KindMultipleRefunds, "o-twice", ""},
				{reconcile.KindRefundWithoutCharge, "o-twice", ""},
			},
			wantRepaired: []got{},
		},
		{
			name:       "orders the sweep should finish but cannot see go back to the pending set",
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"o-overdue":   hold(reconcile.HoldReserved, 1, t0.Add(-20*time.Minute)),
				"o-paid":      hold(reconcile.HoldReserved, 1, old),
				"o-unsettled": hold(reconcile.HoldReleased, 1, old),
			},
			orders: []order.Order{
				doc("o-overdue", order.StatusPending, 1, t0.Add(-20*time.Minute)), // pay_by 5 minutes ago
				doc("o-paid", order.StatusPaid, 1, old),
				func() order.Order {
					o := doc("o-unsettled", order.StatusCancelled, 1, old)
					o.Settled = false
					return o
				}(),
			},
			ledgers:      map[string]reconcile.Ledger{"o-paid": charged(100, 0)},
			wantFindings: []got{},
			wantRepaired: []got{
				{reconcile.KindOverduePending, "o-overdue", reconcile.ActionRequeue},
				{reconcile.KindPaidNotSettled, "o-paid", reconcile.ActionRequeue},
				{reconcile.KindUnsettled, "o-unsettled", reconcile.ActionRequeue},
			},
			check: func(t *testing.T, e *env) {
				var ids []string
				for _, p := range e.pending.All() {
					ids = append(ids, p.OrderID)
					if p.Due != t0 || p.DealID != dealID || p.UserID != "u-"+p.OrderID {
						t.Errorf("pending entry %+v, want due now with the order's user and deal", p)
					}
				}
				if diff := cmp.Diff(ids, []string{"o-overdue", "o-paid", "o-unsettled"}); diff != "" {
					t.Errorf("pending set (-got +want):\n%s", diff)
				}
			},
		},
		{
			name:       "orders without the stock they need are reported",
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"o-pending":   hold(reconcile.HoldReleased, 1, old),
				"o-confirmed": hold(reconcile.HoldReleased, 1, old),
				"o-paid":      hold(reconcile.HoldReleased, 1, old),
				"o-qty":       hold(reconcile.HoldReserved, 2, t0.Add(-2*time.Minute)),
			},
			orders: []order.Order{
				doc("o-pending", order.StatusPending, 1, t0.Add(-2*time.Minute)),
				doc("o-confirmed", order.StatusConfirmed, 1, old),
				func() order.Order {
					o := doc("o-paid", order.StatusPaid, 1, old)
					o.Kind, o.GroupID = "group", "g1"
					return o
				}(),
				doc("o-qty", order.StatusPending, 1, t0.Add(-2*time.Minute)),
				doc("o-nohold", order.StatusPending, 1, t0.Add(-2*time.Minute)),
			},
			ledgers: map[string]reconcile.Ledger{"o-confirmed": charged(100, 0), "o-paid": charged(100, 0)},
			pending: []order.PendingEntry{
				{OrderID: "o-pending", UserID: "u-o-pending", DealID: dealID, Due: t0.Add(13 * time.Minute)},
				{OrderID: "o-qty", UserID: "u-o-qty", DealID: dealID, Due: t0.Add(13 * time.Minute)},
				{OrderID: "o-nohold", UserID: "u-o-nohold", DealID: dealID, Due: t0.Add(13 * time.Minute)},
			},
			wantFindings: []got{
				{reconcile.KindConfirmedWithoutSold, "o-confirmed", ""},
				{reconcile.KindPendingWithoutHold, "o-nohold", ""},
				{reconcile.KindPaidWithoutHold, "o-paid", ""},
				{reconcile.KindPendingWithoutHold, "o-pending", ""},
				{reconcile.KindQuantityMismatch, "o-qty", ""},
			},
			wantRepaired: []got{},
		},
		{
			// Inventory keeps finished holds only for its short recent-ops window: a confirmed
			// or paid order without any hold is what a commit leaves. A reserved hold of a
			// confirmed order is a second hold nobody will commit.
			name:       "finished orders need no hold; a reserved one of a confirmed order is released",
			stockUnits: 5,
			holds:      map[string]reconcile.Hold{"o-second": hold(reconcile.HoldReserved, 1, old)},
			orders: []order.Order{
				doc("o-second", order.StatusConfirmed, 1, old),
				doc("o-gone", order.StatusConfirmed, 1, old),
				func() order.Order {
					o := doc("o-paid", order.StatusPaid, 1, old)
					o.Kind, o.GroupID = "group", "g1"
					return o
				}(),
			},
			ledgers: map[string]reconcile.Ledger{"o-second": charged(100, 0), "o-gone": charged(100, 0), "o-paid": charged(100, 0)},
			pending: []order.PendingEntry{
				{OrderID: "o-gone", UserID: "u-o-gone", DealID: dealID, Due: t0.Add(13 * time.Minute)},
				{OrderID: "o-paid", UserID: "u-o-paid", DealID: dealID, Due: t0.Add(13 * time.Minute)},
			},
			wantFindings: []got{},
			wantRepaired: []got{{reconcile.KindLeakedHold, "o-second", reconcile.ActionReleaseHold}},
		},
		{
			name:       "a paid group order is reported once its group's deadline is long past",
			deal:       &reconcile.Deal{ID: dealID, Kind: "group", EndsAt: t0.Add(time.Hour), GroupTTLSeconds: 600},
			stockUnits: 5,
			holds: map[string]reconcile.Hold{
				"o-stuck":   hold(reconcile.HoldReserved, 1, t0.Add(-20*time.Minute)),
				"o-waiting": hold(reconcile.HoldReserved, 1, t0.Add(-5*time.Minute)),
			},
			orders: []order.Order{
				func() order.Order {
					o := doc("o-stuck", order.StatusPaid, 1, t0.Add(-20*time.Minute))
					o.Kind, o.GroupID = "group", "g1"
					return o
				}(),
				func() order.Order {
					o := doc("o-waiting", order.StatusPaid, 1, t0.Add(-5*time.Minute))
					o.Kind, o.GroupID = "group", "g2"
					return o
				}(),
			},
			ledgers:      map[string]reconcile.Ledger{"o-stuck": charged(100, 0), "o-waiting": charged(100, 0)},
			wantFindings: []got{{reconcile.KindPaidNotSettled, "o-stuck", ""}},
			wantRepaired: []got{},
		},
		{
			name:       "a charge of an order left pending past its pay window is reported",
			stockUnits: 5,
			holds:      map[string]reconcile.Hold{"o1": hold(reconcile.HoldReserved, 1, t0.Add(-20*time.Minute))},
			orders: []order.Order{func() order.Order {
				o := doc("o1", order.StatusPending, 1, t0.Add(-20*time.Minute))
				started := t0.Add(-16 * time.Minute)
				o.PaymentStartedAt = &started
				return o
			}()},
			ledgers: map[string]reconcile.Ledger{"o1": charged(100, 0)},
			pending: []order.PendingEntry{{OrderID: "o1", UserID: "u-o1", DealID: dealID, Due: t0.Add(-5 * time.Minute)}},
			wantFindings: []got{
				{reconcile.KindChargedPending, "o1", ""},
				{reconcile.KindOverduePending, "o1", ""},
			},
			wantRepaired: []got{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testConfig())
			if tc.deal != nil {
				e.deals.deals = []reconcile.Deal{*tc.deal}
			}
			b := bucket(0, tc.stockUnits, tc.holds)
			if tc.edit != nil {
				tc.edit(&b)
			}
			e.stock.put(dealID, b)
			for _, o := range tc.orders {
				e.orders.Put(o)
			}
			for id, l := range tc.ledgers {
				e.pay.put(id, l)
			}
			for _, p := range tc.pending {
				_ = e.pending.Add(context.Background(), p)
			}

			res := e.tick(t)

			rep := e.report(t)
			gotFindings := project(rep.Findings, func(f reconcile.Finding) reconcile.Finding { return f })
			if diff := cmp.Diff(gotFindings, tc.wantFindings); diff != "" {
				t.Errorf("findings (-got +want):\n%s\nreport: %+v", diff, rep)
			}
			gotRepaired := project(rep.Repaired, func(r reconcile.Repaired) reconcile.Finding { return r.Finding })
			// The report lists repairs newest first; the pass made them in order.
			for i, j := 0, len(gotRepaired)-1; i < j; i, j = i+1, j-1 {
				gotRepaired[i], gotRepaired[j] = gotRepaired[j], gotRepaired[i]
			}
			if diff := cmp.Diff(gotRepaired, tc.wantRepaired); diff != "" {
				t.Errorf("repaired (-got +want):\n%s", diff)
			}
			if rep.Errors == nil || len(rep.Errors) != 0 {
				t.Errorf("errors %v, want an empty list", rep.Errors)
			}
			if res.Findings != len(tc.wantFindings) || res.Repaired != len(tc.wantRepaired) ||
				rep.FindingsTotal != len(tc.wantFindings) || rep.RepairedTotal != len(tc.wantRepaired) {
				t.Errorf("tick %+v, report totals %d findings %d repaired; want %d and %d",
					res, rep.FindingsTotal, rep.RepairedTotal, len(tc.wantFindings), len(tc.wantRepaired))
			}
			if rep.CheckedAt == nil || !rep.CheckedAt.Equal(t0) || rep.Deals != 1 {
				t.Errorf("report checked_at %v, %d deals; want %s and 1", rep.CheckedAt, rep.Deals, t0)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}
