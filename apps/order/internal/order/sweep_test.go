package order_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

func TestSweep(t *testing.T) {
	t.Parallel()
	payBy := ordertest.T0.Add(ordertest.TestConfig.PayWindow)
	// lostCharge makes a Pay at the given time whose charge succeeds at the payment app but
	// whose answer is lost, leaving the order pending with a payment marker.
	lostCharge := func(t *testing.T, e *env, at time.Time) {
		t.Helper()
		e.Clock.Set(at)
		e.Pay.SetMode("lost")
		if _, err := e.Svc.Pay(context.Background(), alice, "o1", "tok_ok"); !errors.Is(err, order.ErrPaymentDown) {
			t.Fatalf("Pay error = %v, want %v", err, order.ErrPaymentDown)
		}
	}
	// rewrite changes the stored order as a crashed writer left it.
	rewrite := func(t *testing.T, e *env, fn func(o *order.Order)) {
		t.Helper()
		o := e.mustOrder(t, "o1")
		fn(&o)
		e.Store.Put(o)
	}
	tests := []struct {
		name        string
		setup       func(t *testing.T, e *env) // at ordertest.T0, o1 already placed (2 units of flash)
		at          time.Time
		wantStats   order.SweepStats
		wantStatus  order.Status // stored status of o1; "" for no document
		wantStock   []string     // inventory calls for o1
		wantHold    string
		wantTopics  []string
		wantIndex   order.Status // status in the user index; "" for no entry
		wantPending bool
	}{
		{
			name:       "expired pending order",
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Cancelled: 1},
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantHold:   "released",
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
		},
		{
			name:        "not yet due",
			at:          payBy.Add(-time.Second),
			wantStats:   order.SweepStats{},
			wantStatus:  order.StatusPending,
			wantStock:   []string{"reserve"},
			wantHold:    "reserved",
			wantTopics:  []string{"order.created"},
			wantIndex:   order.StatusPending,
			wantPending: true,
		},
		{
			name:        "due exactly now is not yet due",
			at:          payBy,
			wantStats:   order.SweepStats{},
			wantStatus:  order.StatusPending,
			wantStock:   []string{"reserve"},
			wantHold:    "reserved",
			wantTopics:  []string{"order.created"},
			wantIndex:   order.StatusPending,
			wantPending: true,
		},
		{
			name: "placement crashed between reserve and create",
			setup: func(t *testing.T, e *env) {
				e.Store.Delete("o1")
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Cleaned: 1},
			wantStock:  []string{"reserve", "release"},
			wantHold:   "released",
			wantTopics: []string{"order.created"},
		},
		{
			name:       "charge went through but its answer was lost",
			setup:      func(t *testing.T, e *env) { lostCharge(t, e, payBy.Add(-time.Minute)) },
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Completed: 1},
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantHold:   "committed",
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed,
		},
		{
			name: "charge never reached the payment app",
			setup: func(t *testing.T, e *env) {
				e.Clock.Set(payBy.Add(-time.Minute))
				e.Pay.SetMode("unavailable")
				if _, err := e.Svc.Pay(context.Background(), alice, "o1", "tok_ok"); !errors.Is(err, order.ErrPaymentDown) {
					t.Fatalf("Pay error = %v, want %v", err, order.ErrPaymentDown)
				}
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Cancelled: 1},
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantHold:   "released",
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
		},
		{
			name:        "charge in flight within the grace",
			setup:       func(t *testing.T, e *env) { lostCharge(t, e, payBy.Add(-time.Second)) },
			at:          payBy.Add(ordertest.TestConfig.PaymentGrace - 2*time.Second),
			wantStats:   order.SweepStats{Examined: 1},
			wantStatus:  order.StatusPending,
			wantStock:   []string{"reserve"},
			wantHold:    "reserved",
			wantTopics:  []string{"order.created"},
			wantIndex:   order.StatusPending,
			wantPending: true,
		},
		{
			name: "cancelled but side effects interrupted",
			setup: func(t *testing.T, e *env) {
				rewrite(t, e, func(o *order.Order) { o.Status, o.Settled = order.StatusCancelled, false })
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Completed: 1},
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantHold:   "released",
			// The cancellation's event went into the order's outbox with its write: the relay's.
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusCancelled,
		},
		{
			name: "paid but not confirmed",
			setup: func(t *testing.T, e *env) {
				e.Pay.Record("o1", order.ChargeResult{Status: "succeeded"})
				rewrite(t, e, func(o *order.Order) { o.Status, o.Settled = order.StatusPaid, false })
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Completed: 1},
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantHold:   "committed",
			wantTopics: []string{"order.created", "order.confirmed"}, // order.paid: written with the Paid CAS
			wantIndex:  order.StatusConfirmed,
		},
		{
			name: "confirmed but not settled",
			setup: func(t *testing.T, e *env) {
				e.Stock.SetHold("o1", "committed")
				rewrite(t, e, func(o *order.Order) { o.Status, o.Settled = order.StatusConfirmed, false })
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Completed: 1},
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve"},
			wantHold:   "committed",
			wantTopics: []string{"order.created"}, // order.confirmed: written with its CAS
			wantIndex:  order.StatusConfirmed,
		},
		{
			name: "settled order left in the set",
			setup: func(t *testing.T, e *env) {
				rewrite(t, e, func(o *order.Order) { o.Status, o.Settled = order.StatusCancelled, true })
			},
			at:         payBy.Add(time.Second),
			wantStats:  order.SweepStats{Examined: 1, Cleaned: 1},
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve"},
			wantHold:   "reserved",
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending,
		},
		{
			name: "release fails: counted, left for the next pass",
			setup: func(t *testing.T, e *env) {
				e.Stock.Set(func(s *ordertest.Stock) { s.ReleaseErr = problem.New(problem.CodeUnavailable, "down") })
			},
			at:          payBy.Add(time.Second),
			wantStats:   order.SweepStats{Examined: 1, Failed: 1},
			wantStatus:  order.StatusCancelled,
			wantStock:   []string{"reserve", "release"},
			wantHold:    "reserved",
			wantTopics:  []string{"order.created", "order.cancelled"}, // with the write, before the release
			wantIndex:   order.StatusPending,
			wantPending: true,
		},
		{
			name: "payment lookup fails: counted, left for the next pass",
			setup: func(t *testing.T, e *env) {
				lostCharge(t, e, payBy.Add(-time.Minute))
				e.Pay.SetLookupErr(ordertest.ErrPaymentDown)
			},
			at:          payBy.Add(time.Second),
			wantStats:   order.SweepStats{Examined: 1, Failed: 1},
			wantStatus:  order.StatusPending,
			wantStock:   []string{"reserve"},
			wantHold:    "reserved",
			wantTopics:  []string{"order.created"},
			wantIndex:   order.StatusPending,
			wantPending: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv()
			e.place(t, alice, "k1", "flash", 2)
			if tt.setup != nil {
				tt.setup(t, e)
			}
			e.Clock.Set(tt.at)

			got, err := e.Svc.Sweep(ctx)

			if err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			if diff := cmp.Diff(got, tt.wantStats); diff != "" {
				t.Errorf("stats mismatch (-got +want):\n%s", diff)
			}
			stored, ok := e.Store.Order("o1")
			if !ok {
				stored.Status = ""
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status = %q, want %q", stored.Status, tt.wantStatus)
			}
			if ok && !tt.wantPending && !stored.Settled {
				t.Error("order left the pending set unsettled")
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}
			if got := e.Stock.Hold("o1"); got != tt.wantHold {
				t.Errorf("hold = %q, want %q", got, tt.wantHold)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			var index order.Status
			if idx := e.Users.Of("u1"); len(idx) > 0 {
				index = idx[0].Status
			}
			if index != tt.wantIndex {
				t.Errorf("user index status = %q, want %q", index, tt.wantIndex)
			}
			if got := len(e.Pending.All()) == 1; got != tt.wantPending {
				t.Errorf("still pending = %t, want %t", got, tt.wantPending)
			}
		})
	}
}

// A failed pass leaves the order for the next, which finishes it.
func TestSweepRetriesAfterFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.place(t, alice, "k1", "flash", 1)
	e.Stock.Set(func(s *ordertest.Stock) { s.ReleaseErr = problem.New(problem.CodeUnavailable, "down") })
	e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second)
	if st, err := e.Svc.Sweep(ctx); err != nil || st.Failed != 1 {
		t.Fatalf("first pass = %+v, %v; want one failure", st, err)
	}
	e.Stock.Set(func(s *ordertest.Stock) { s.ReleaseErr = nil })

	got, err := e.Svc.Sweep(ctx)

	if err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if diff := cmp.Diff(got, order.SweepStats{Examined: 1, Completed: 1}); diff != "" {
		t.Errorf("stats mismatch (-got +want):\n%s", diff)
	}
	o := e.mustOrder(t, "o1")
	if o.Status != order.StatusCancelled || !o.Settled {
		t.Errorf("order = %s settled %t, want cancelled and settled", o.Status, o.Settled)
	}
	if diff := cmp.Diff(e.Store.TransitionsOf("o1"), []order.Status{order.StatusCancelled}); diff != "" {
		t.Errorf("status transitions mismatch (-got +want):\n%s", diff)
	}
	if got := e.Stock.Hold("o1"); got != "released" {
		t.Errorf("hold = %q, want released", got)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending = %+v, want empty", got)
	}
}

// The cron binding fires on every replica: overlapping sweeps cancel each due order exactly
// once (one successful status CAS), and every order ends cancelled, settled and released.
func TestSweepConcurrent(t *testing.T) {
	t.Parallel()
	const orders, sweepers, rounds = 12, 3, 10
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := newEnv()
			var ids []string
			for i := range orders {
				u := order.Caller{ID: fmt.Sprintf("user%d", i)}
				reply, err := e.Svc.Place(ctx, u, order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k"}, render)
				if err != nil || reply.Status != 201 {
					t.Fatalf("Place %d = %d, %v", i, reply.Status, err)
				}
				ids = append(ids, fmt.Sprintf("o%d", i+1))
			}
			// Some conflicts on top of the sweepers' own contention.
			e.Store.InjectConflicts(orders / 2)
			e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second)

			stats := make([]order.SweepStats, sweepers)
			errs := make([]error, sweepers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range sweepers {
				wg.Go(func() {
					<-start
					stats[i], errs[i] = e.Svc.Sweep(ctx)
				})
			}
			close(start)
			wg.Wait()

			cancelled := 0
			for i, err := range errs {
				if err != nil {
					t.Errorf("sweeper %d: %v", i, err)
				}
				if stats[i].Failed != 0 {
					t.Errorf("sweeper %d stats = %+v, want no failures", i, stats[i])
				}
				cancelled += stats[i].Cancelled
			}
			if cancelled != orders {
				t.Errorf("cancellations reported = %d, want %d (%+v)", cancelled, orders, stats)
			}
			for i, id := range ids {
				if diff := cmp.Diff(e.Store.TransitionsOf(id), []order.Status{order.StatusCancelled}); diff != "" {
					t.Errorf("%s status transitions mismatch (-got +want):\n%s", id, diff)
				}
				o := e.mustOrder(t, id)
				if o.Status != order.StatusCancelled || !o.Settled {
					t.Errorf("%s = %s settled %t, want cancelled and settled", id, o.Status, o.Settled)
				}
				if got := e.Stock.Hold(id); got != "released" {
					t.Errorf("%s hold = %q, want released", id, got)
				}
				if idx := e.Users.Of(fmt.Sprintf("user%d", i)); len(idx) != 1 || idx[0].Status != order.StatusCancelled {
					t.Errorf("%s index = %+v, want one cancelled entry", id, idx)
				}
				if got := e.Outbox.TopicsOf(id); len(got) < 2 || got[0] != "order.created" {
					t.Errorf("%s events = %v, want order.created then order.cancelled (repeats allowed)", id, got)
				}
			}
			if got := e.Pending.All(); len(got) != 0 {
				t.Errorf("pending = %+v, want empty", got)
			}
		})
	}
}

// A window another runner holds is left to it: a sweep takes only the windows it leases, and
// gives its leases back when it is done.
func TestSweepSharesWindowsByLease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv()
	first := e.place(t, alice, "k1", "flash", 1)
	e.Clock.Advance(10 * time.Second)
	second := e.place(t, alice, "k2", "flash", 1)
	e.Clock.Set(second.PayBy.Add(time.Second))

	ws, err := e.Pending.Windows(ctx, e.Clock.Now())
	if err != nil || len(ws) != 2 {
		t.Fatalf("Windows = %v, %v; want two", ws, err)
	}
	other, ok, err := e.Pending.Claim(ctx, ws[0], e.Clock.Now()) // another replica's sweep
	if err != nil || !ok {
		t.Fatalf("Claim = %t, %v", ok, err)
	}

	st, err := e.Svc.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, order.SweepStats{Examined: 1, Cancelled: 1}); diff != "" {
		t.Errorf("stats with the first window leased (-got +want):\n%s", diff)
	}
	if got := e.mustOrder(t, first.ID).Status; got != order.StatusPending {
		t.Errorf("order in the leased window = %s, want untouched", got)
	}
	if got := e.mustOrder(t, second.ID).Status; got != order.StatusCancelled {
		t.Errorf("order in the free window = %s, want cancelled", got)
	}
	if got := e.Pending.Leased(); !cmp.Equal(got, []string{ws[0]}) {
		t.Errorf("leased after the sweep = %v, want only the other runner's %s", got, ws[0])
	}

	if err := e.Pending.Release(ctx, other); err != nil {
		t.Fatal(err)
	}
	if st, err := e.Svc.Sweep(ctx); err != nil || st.Cancelled != 1 {
		t.Errorf("sweep after the release = %+v, %v; want the first order cancelled", st, err)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending = %+v, want empty", got)
	}
}

// One pass cancels a whole wave of due orders, many at once (SweepParallelism), each once,
// over many windows.
func TestSweepParallelWave(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := ordertest.TestConfig
	cfg.SweepParallelism = 16
	e := &env{ordertest.NewEnvWith(ordertest.Options{Config: cfg})}
	const orders = 120
	for i := range orders {
		u := order.Caller{ID: fmt.Sprintf("user%d", i)}
		e.place(t, u, "k", "flash", 1)
		e.Clock.Advance(250 * time.Millisecond) // 4 orders per one-second window
	}
	e.Clock.Advance(cfg.PayWindow)

	st, err := e.Svc.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, order.SweepStats{Examined: orders, Cancelled: orders}); diff != "" {
		t.Errorf("stats (-got +want):\n%s", diff)
	}
	for i := range orders {
		id := fmt.Sprintf("o%d", i+1)
		if diff := cmp.Diff(e.Store.TransitionsOf(id), []order.Status{order.StatusCancelled}); diff != "" {
			t.Errorf("%s transitions (-got +want):\n%s", id, diff)
		}
		if got := e.Stock.Hold(id); got != "released" {
			t.Errorf("%s hold = %q, want released", id, got)
		}
	}
	if got := e.Pending.Leased(); len(got) != 0 {
		t.Errorf("leases left = %v", got)
	}

}

// A pass whose request ended gives its workers back: the next pass still runs.
func TestSweepCancelledPassFreesWorkers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv() // one worker
	for i := range 3 {
		e.place(t, order.Caller{ID: fmt.Sprintf("user%d", i)}, "k", "flash", 1)
	}
	e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second)
	gone, stop := context.WithCancel(ctx)
	stop()
	first, err := e.Svc.Sweep(gone)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sweep with an ended request = %v, want %v", err, context.Canceled)
	}
	st, err := e.Svc.Sweep(ctx)
	if err != nil || first.Cancelled+st.Cancelled != 3 {
		t.Errorf("Sweeps = %+v then %+v, %v; want the three orders cancelled between them", first, st, err)
	}
	if got := e.Pending.Leased(); len(got) != 0 {
		t.Errorf("leases left = %v", got)
	}
}

// Loss window 4 (issue 8): the group fails while a member's charge is in flight, so its
// settlement finds no charge and cancels the order. The charge then lands. Whether or not the
// Pay request lives to see it, the order stays watched until a lookup after PaymentGrace: a
// charge that went through is refunded exactly once and the order ends refunded; otherwise
// the watch ends with the order cancelled.
func TestLateChargeAfterCancelRefundedBySweep(t *testing.T) {
	t.Parallel()
	deadline := ordertest.T0.Add(5 * time.Minute) // g-o1's pay_by and the group's deadline
	grace := ordertest.TestConfig.PaymentGrace
	tests := []struct {
		name          string
		mode          string // how the charge ends at the payment app (ordertest.Payments)
		refundDown    bool   // payment refuses refunds at the first sweep after the grace
		wantPayCode   problem.Code
		wantStatus    order.Status
		wantRefunds   []string
		wantTopics    []string
		wantWatched   bool // still pending within the grace
		wantLastStats order.SweepStats
	}{
		{
			// The charge lands, its answer is lost: as if the Pay request's process died.
			name:          "charge landed, Pay died",
			mode:          "lost",
			wantPayCode:   problem.CodePaymentUnavailable,
			wantStatus:    order.StatusRefunded,
			wantRefunds:   []string{"g-o1"},
			wantTopics:    []string{"order.created", "order.cancelled", "order.refunded"},
			wantWatched:   true,
			wantLastStats: order.SweepStats{Examined: 1, Refunded: 1},
		},
		{
			name:          "charge landed, Pay died, refund fails once",
			mode:          "lost",
			refundDown:    true,
			wantPayCode:   problem.CodePaymentUnavailable,
			wantStatus:    order.StatusRefunded,
			wantRefunds:   []string{"g-o1"},
			wantTopics:    []string{"order.created", "order.cancelled", "order.refunded"},
			wantWatched:   true,
			wantLastStats: order.SweepStats{Examined: 1, Refunded: 1},
		},
		{
			// The live request refunds it itself; the sweep finds nothing left to do.
			name:        "charge landed, Pay alive",
			mode:        "succeeded",
			wantPayCode: problem.CodeInvalidState,
			wantStatus:  order.StatusRefunded,
			wantRefunds: []string{"g-o1"},
			wantTopics:  []string{"order.created", "order.cancelled", "order.refunded"},
		},
		{
			name:          "charge never landed",
			mode:          "unavailable",
			wantPayCode:   problem.CodePaymentUnavailable,
			wantStatus:    order.StatusCancelled,
			wantTopics:    []string{"order.created", "order.cancelled"},
			wantWatched:   true,
			wantLastStats: order.SweepStats{Examined: 1, Cleaned: 1},
		},
		{
			name:          "charge declined",
			mode:          "declined",
			wantPayCode:   problem.CodePaymentDeclined,
			wantStatus:    order.StatusCancelled,
			wantTopics:    []string{"order.created", "order.cancelled"},
			wantWatched:   true,
			wantLastStats: order.SweepStats{Examined: 1, Cleaned: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := newEnv()
			e.groupOrder(t, "g-o1", "u1")
			started := deadline.Add(-time.Second)
			e.Clock.Set(started)
			e.Pay.SetMode(tt.mode)
			// While the charge is in flight the deadline passes and the group fails.
			var settleErr error
			e.Pay.SetOnCharge(func(string) {
				e.Pay.SetOnCharge(nil)
				e.Clock.Set(deadline.Add(time.Second))
				settleErr = e.Svc.SettleGroup(ctx, order.GroupOutcome{GroupID: "g1", Members: []string{"g-o1"}})
			})

			_, err := e.Svc.Pay(ctx, order.Caller{ID: "u1"}, "g-o1", "tok_ok")

			if settleErr != nil {
				t.Fatalf("SettleGroup during the charge: %v", settleErr)
			}
			if got := errCode(err); got != tt.wantPayCode {
				t.Fatalf("Pay code = %q, want %q (error %v)", got, tt.wantPayCode, err)
			}
			// Within the grace the sweep keeps watching and refunds nothing yet.
			e.Clock.Set(started.Add(grace - time.Second))
			if _, err := e.Svc.Sweep(ctx); err != nil {
				t.Fatalf("Sweep within the grace: %v", err)
			}
			if got := len(e.Pending.All()) == 1; got != tt.wantWatched {
				t.Errorf("watched within the grace = %t, want %t", got, tt.wantWatched)
			}
			if tt.wantWatched && len(e.Pay.Refunded()) != 0 {
				t.Errorf("refunded %v within the grace", e.Pay.Refunded())
			}
			e.Clock.Set(started.Add(grace + time.Second))
			if tt.refundDown {
				e.Pay.SetRefundErr(ordertest.ErrPaymentDown)
				if st, err := e.Svc.Sweep(ctx); err != nil || st.Failed != 1 {
					t.Fatalf("Sweep with refunds down = %+v, %v; want one failure", st, err)
				}
				e.Pay.SetRefundErr(nil)
				e.Clock.Advance(time.Minute)
			}

			st, err := e.Svc.Sweep(ctx)

			if err != nil {
				t.Fatalf("Sweep after the grace: %v", err)
			}
			if diff := cmp.Diff(st, tt.wantLastStats); diff != "" {
				t.Errorf("stats (-got +want):\n%s", diff)
			}
			// Another pass finds nothing: the watch is over.
			if st, err := e.Svc.Sweep(ctx); err != nil || st != (order.SweepStats{}) {
				t.Errorf("next Sweep = %+v, %v; want nothing to do", st, err)
			}
			o := e.mustOrder(t, "g-o1")
			if o.Status != tt.wantStatus || !o.Settled || o.PaymentStartedAt != nil {
				t.Errorf("order = %s settled=%t marker=%v, want %s, settled, no marker", o.Status, o.Settled, o.PaymentStartedAt, tt.wantStatus)
			}
			if diff := cmp.Diff(e.Pay.Refunded(), tt.wantRefunds); diff != "" {
				t.Errorf("refunds (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("g-o1"), tt.wantTopics); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
			if got := e.Stock.Hold("g-o1"); got != "released" {
				t.Errorf("hold = %q, want released", got)
			}
			if idx := e.Users.Of("u1"); len(idx) != 1 || idx[0].Status != tt.wantStatus {
				t.Errorf("user index = %+v, want one %s entry", idx, tt.wantStatus)
			}
			if got := e.Pending.All(); len(got) != 0 {
				t.Errorf("pending = %+v, want empty", got)
			}
		})
	}
}

// Loss window 5 (issue 8), closed by the outbox: order.paid (the group counts a seat as paid
// from it) is written by the Paid CAS itself, so a process that dies right after that write,
// before anything is published, leaves the event in the order document, registered in the
// outbox index for the relay's recovery.
func TestPaidEventIsWrittenWithThePaidCAS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv()
	e.groupOrder(t, "g-o1", "u1")
	e.Outbox.SetLose(true) // the crash: nothing handed to the relay is published

	if _, err := e.Svc.Pay(ctx, order.Caller{ID: "u1"}, "g-o1", "tok_ok"); err != nil {
		t.Fatalf("Pay: %v", err)
	}

	o := e.mustOrder(t, "g-o1")
	if o.Status != order.StatusPaid {
		t.Errorf("order = %s, want paid until the group is decided", o.Status)
	}
	var topics []string
	for _, ev := range o.Outbox {
		topics = append(topics, ev.Topic)
	}
	if diff := cmp.Diff(topics, []string{"order.created", "order.paid"}); diff != "" {
		t.Errorf("outbox (-got +want):\n%s", diff)
	}
	if got := e.Outbox.Registered("g-o1"); got != 2 {
		t.Errorf("registered %d times, want 2 (creation and payment)", got)
	}
	if diff := cmp.Diff(e.Outbox.TopicsOf("g-o1"), []string{"order.created"}); diff != "" {
		t.Errorf("relayed (-got +want):\n%s (order.paid lost)", diff)
	}
}
