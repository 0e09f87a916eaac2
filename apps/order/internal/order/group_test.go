package order_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// groupOrder places a member's order of group g1 on the "group" deal, due by ordertest.T0+5m.
func (e *env) groupOrder(t *testing.T, orderID, userID string) order.Order {
	t.Helper()
	o, err := e.Svc.PlaceGroupOrder(context.Background(), order.GroupOrderRequest{
		OrderID: orderID, UserID: userID, DealID: "group", GroupID: "g1", PayBy: ordertest.T0.Add(5 * time.Minute)})
	if err != nil {
		t.Fatalf("PlaceGroupOrder(%s): %v", orderID, err)
	}
	return o
}

func (e *env) payAs(t *testing.T, userID, orderID string) {
	t.Helper()
	if _, err := e.Svc.Pay(context.Background(), order.Caller{ID: userID}, orderID, "tok_ok"); err != nil {
		t.Fatalf("Pay(%s): %v", orderID, err)
	}
}

func TestPlaceGroupOrder(t *testing.T) {
	t.Parallel()
	req := order.GroupOrderRequest{OrderID: "g-o1", UserID: "u1", DealID: "group", GroupID: "g1", PayBy: ordertest.T0.Add(5 * time.Minute)}
	tests := []struct {
		name       string
		setup      func(e *env)
		req        func(r *order.GroupOrderRequest)
		wantCode   problem.Code
		wantOrder  *order.Order
		wantStock  []string
		wantTopics []string
		wantGroup  []order.GroupEntry
	}{
		{
			name: "created with the pay window cut at the group's deadline",
			wantOrder: &order.Order{ID: "g-o1", UserID: "u1", DealID: "group", GroupID: "g1", Kind: "group", Quantity: 1,
				UnitPriceCents: 700, TotalCents: 700, Status: order.StatusPending, PayBy: ordertest.T0.Add(5 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0},
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantGroup:  []order.GroupEntry{{OrderID: "g-o1", UserID: "u1"}},
		},
		{
			name: "pay window shorter than the deadline",
			req:  func(r *order.GroupOrderRequest) { r.PayBy = ordertest.T0.Add(time.Hour) },
			wantOrder: &order.Order{ID: "g-o1", UserID: "u1", DealID: "group", GroupID: "g1", Kind: "group", Quantity: 1,
				UnitPriceCents: 700, TotalCents: 700, Status: order.StatusPending, PayBy: ordertest.T0.Add(15 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0},
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantGroup:  []order.GroupEntry{{OrderID: "g-o1", UserID: "u1"}},
		},
		{name: "deadline passed", req: func(r *order.GroupOrderRequest) { r.PayBy = ordertest.T0 }, wantCode: problem.CodeGroupClosed},
		{name: "flash deal", req: func(r *order.GroupOrderRequest) { r.DealID = "flash" }, wantCode: problem.CodeInvalidState},
		{name: "missing group", req: func(r *order.GroupOrderRequest) { r.GroupID = "" }, wantCode: problem.CodeValidation},
		{
			name:      "sold out",
			setup:     func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = true }) },
			wantCode:  problem.CodeSoldOut,
			wantStock: []string{"reserve", "release"},
			wantGroup: []order.GroupEntry{{OrderID: "g-o1", UserID: "u1"}},
		},
		{
			name: "one seat per user and deal",
			setup: func(e *env) {
				if _, err := e.Svc.PlaceGroupOrder(context.Background(), order.GroupOrderRequest{OrderID: "other", UserID: "u1", DealID: "group", GroupID: "g2", PayBy: ordertest.T0.Add(time.Minute)}); err != nil {
					panic(err)
				}
			},
			wantCode:  problem.CodePurchaseLimit,
			wantGroup: []order.GroupEntry{{OrderID: "g-o1", UserID: "u1"}},
		},
		{
			name:     "group already decided",
			setup:    func(e *env) { _, _, _ = e.Groups.Decide(context.Background(), order.GroupOutcome{GroupID: "g1"}) },
			wantCode: problem.CodeGroupClosed,
		},
		{
			// Settlement ran between the index entry and the order's creation: the order
			// it could not see is cancelled at once.
			name:     "group decided while the order was being made",
			setup:    func(e *env) { e.Groups.SetDecideOnAdd(true) },
			wantCode: problem.CodeGroupClosed,
			wantOrder: &order.Order{ID: "g-o1", UserID: "u1", DealID: "group", GroupID: "g1", Kind: "group", Quantity: 1,
				UnitPriceCents: 700, TotalCents: 700, Status: order.StatusCancelled, PayBy: ordertest.T0.Add(5 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0, Settled: true},
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantGroup:  []order.GroupEntry{{OrderID: "g-o1", UserID: "u1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			if tt.setup != nil {
				tt.setup(e)
			}
			r := req
			if tt.req != nil {
				tt.req(&r)
			}
			o, err := e.Svc.PlaceGroupOrder(context.Background(), r)
			if got := errCode(err); got != tt.wantCode {
				t.Fatalf("code = %q, want %q (err %v)", got, tt.wantCode, err)
			}
			if err == nil && o.ID != "g-o1" {
				t.Errorf("answer %+v", o)
			}
			stored, ok := e.Store.Order("g-o1")
			switch {
			case tt.wantOrder == nil && ok:
				t.Errorf("stored %+v, want none", stored)
			case tt.wantOrder != nil && !ok:
				t.Errorf("no order stored")
			case tt.wantOrder != nil:
				if diff := cmp.Diff(stored, *tt.wantOrder, ignoreOutbox); diff != "" {
					t.Errorf("stored order (-got +want):\n%s", diff)
				}
			}
			if diff := cmp.Diff(e.Stock.CallsOf("g-o1"), tt.wantStock); diff != "" {
				t.Errorf("stock calls (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("g-o1"), tt.wantTopics); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Groups.Of("g1"), tt.wantGroup); diff != "" {
				t.Errorf("group index (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPlaceGroupOrderReplay(t *testing.T) {
	t.Parallel()
	e := newEnv()
	first := e.groupOrder(t, "g-o1", "u1")
	e.Clock.Advance(time.Second)
	again := e.groupOrder(t, "g-o1", "u1")
	if diff := cmp.Diff(again, first); diff != "" {
		t.Errorf("replay (-got +want):\n%s", diff)
	}
	if got := e.Stock.CallsOf("g-o1"); len(got) != 1 {
		t.Errorf("stock calls %v, want one reserve", got)
	}
	if len(e.Users.Of("u1")) != 1 {
		t.Errorf("user index %v", e.Users.Of("u1"))
	}
	// The id of another user's order is refused.
	_, err := e.Svc.PlaceGroupOrder(context.Background(), order.GroupOrderRequest{OrderID: "g-o1", UserID: "u2", DealID: "group", GroupID: "g1", PayBy: ordertest.T0.Add(time.Minute)})
	if errCode(err) != problem.CodeConflict {
		t.Errorf("foreign order id: %v", err)
	}
}

func TestPayGroupOrderStaysPaid(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.groupOrder(t, "g-o1", "u1")
	o, err := e.Svc.Pay(context.Background(), order.Caller{ID: "u1"}, "g-o1", "tok_ok")
	if err != nil || o.Status != order.StatusPaid {
		t.Fatalf("Pay: %+v %v, want paid", o, err)
	}
	if got := e.Stock.Hold("g-o1"); got != "reserved" {
		t.Errorf("hold %q, want reserved until the group is decided", got)
	}
	if len(e.Pending.All()) != 0 {
		t.Errorf("pending %v: a paid group order leaves the expiry set", e.Pending.All())
	}
	// The sweep never cancels it, past its pay_by or not.
	e.Clock.Advance(time.Hour)
	if _, err := e.Svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.mustOrder(t, "g-o1").Status; got != order.StatusPaid {
		t.Errorf("after sweep: %s", got)
	}
}

func TestSettleGroup(t *testing.T) {
	t.Parallel()
	// Three members: u1 and u2 paid, u3 did not.
	setup := func(t *testing.T) *env {
		e := newEnv()
		for _, u := range []string{"1", "2", "3"} {
			e.groupOrder(t, "g-o"+u, "u"+u)
		}
		e.payAs(t, "u1", "g-o1")
		e.payAs(t, "u2", "g-o2")
		return e
	}
	members := []string{"g-o1", "g-o2", "g-o3"}
	tests := []struct {
		name         string
		prepare      func(t *testing.T, e *env) // before settling
		outcome      order.GroupOutcome
		wantStatus   map[string]order.Status
		wantHolds    map[string]string
		wantRefunded []string
	}{
		{
			name: "succeeded: paid members confirmed",
			prepare: func(t *testing.T, e *env) {
				e.payAs(t, "u3", "g-o3")
			},
			outcome:    order.GroupOutcome{GroupID: "g1", Succeeded: true, Members: members},
			wantStatus: map[string]order.Status{"g-o1": order.StatusConfirmed, "g-o2": order.StatusConfirmed, "g-o3": order.StatusConfirmed},
			wantHolds:  map[string]string{"g-o1": "committed", "g-o2": "committed", "g-o3": "committed"},
		},
		{
			name:         "failed: paid refunded, unpaid cancelled, all stock released",
			outcome:      order.GroupOutcome{GroupID: "g1", Members: members},
			wantStatus:   map[string]order.Status{"g-o1": order.StatusRefunded, "g-o2": order.StatusRefunded, "g-o3": order.StatusCancelled},
			wantHolds:    map[string]string{"g-o1": "released", "g-o2": "released", "g-o3": "released"},
			wantRefunded: []string{"g-o1", "g-o2"},
		},
		{
			name:         "orders missing from the event are settled from the index",
			outcome:      order.GroupOutcome{GroupID: "g1"},
			wantStatus:   map[string]order.Status{"g-o1": order.StatusRefunded, "g-o2": order.StatusRefunded, "g-o3": order.StatusCancelled},
			wantHolds:    map[string]string{"g-o1": "released", "g-o2": "released", "g-o3": "released"},
			wantRefunded: []string{"g-o1", "g-o2"},
		},
		{
			name: "succeeded: a paid order that lost its seat is refunded",
			prepare: func(t *testing.T, e *env) {
				e.payAs(t, "u3", "g-o3")
			},
			outcome:      order.GroupOutcome{GroupID: "g1", Succeeded: true, Members: []string{"g-o1", "g-o2"}},
			wantStatus:   map[string]order.Status{"g-o1": order.StatusConfirmed, "g-o2": order.StatusConfirmed, "g-o3": order.StatusRefunded},
			wantHolds:    map[string]string{"g-o1": "committed", "g-o2": "committed", "g-o3": "released"},
			wantRefunded: []string{"g-o3"},
		},
		{
			name: "failed after the sweep expired the unpaid order",
			prepare: func(t *testing.T, e *env) {
				e.Clock.Advance(6 * time.Minute)
				if _, err := e.Svc.Sweep(context.Background()); err != nil {
					t.Fatal(err)
				}
			},
			outcome:      order.GroupOutcome{GroupID: "g1", Members: members},
			wantStatus:   map[string]order.Status{"g-o1": order.StatusRefunded, "g-o2": order.StatusRefunded, "g-o3": order.StatusCancelled},
			wantHolds:    map[string]string{"g-o1": "released", "g-o2": "released", "g-o3": "released"},
			wantRefunded: []string{"g-o1", "g-o2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			if tt.prepare != nil {
				tt.prepare(t, e)
			}
			// Delivered three times, as a redelivering broker might.
			for i := range 3 {
				if err := e.Svc.SettleGroup(context.Background(), tt.outcome); err != nil {
					t.Fatalf("SettleGroup #%d: %v", i+1, err)
				}
			}
			for id, want := range tt.wantStatus {
				o := e.mustOrder(t, id)
				if o.Status != want || !o.Settled {
					t.Errorf("order %s: %s settled=%v, want %s settled", id, o.Status, o.Settled, want)
				}
				// Each order changed status by one CAS per step of its path, once.
				tr := e.Store.TransitionsOf(id)
				if n := len(tr); n > 2 || (n > 0 && tr[n-1] != want) {
					t.Errorf("order %s transitions %v", id, tr)
				}
				if got := e.Stock.Hold(id); got != tt.wantHolds[id] {
					t.Errorf("order %s hold %q, want %q", id, got, tt.wantHolds[id])
				}
				if st := e.Users.Of(o.UserID); len(st) != 1 || st[0].Status != want {
					t.Errorf("user index of %s: %+v", o.UserID, st)
				}
			}
			if diff := cmp.Diff(e.Pay.Refunded(), tt.wantRefunded); diff != "" {
				t.Errorf("refunds (-got +want):\n%s", diff)
			}
			if len(e.Pending.All()) != 0 {
				t.Errorf("pending left: %v", e.Pending.All())
			}
		})
	}
}

func TestSettleGroupRetriesUntilPaymentIsBack(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.groupOrder(t, "g-o1", "u1")
	e.payAs(t, "u1", "g-o1")
	e.Pay.SetRefundErr(ordertest.ErrPaymentDown)
	out := order.GroupOutcome{GroupID: "g1", Members: []string{"g-o1"}}
	if err := e.Svc.SettleGroup(context.Background(), out); err == nil {
		t.Fatal("SettleGroup succeeded with payment down")
	}
	if o := e.mustOrder(t, "g-o1"); o.Status != order.StatusPaid || e.Stock.Hold("g-o1") != "reserved" {
		t.Errorf("after a failed refund: %s, hold %s; want still paid and held", o.Status, e.Stock.Hold("g-o1"))
	}
	e.Pay.SetRefundErr(nil)
	if err := e.Svc.SettleGroup(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	if o := e.mustOrder(t, "g-o1"); o.Status != order.StatusRefunded || !o.Settled || e.Stock.Hold("g-o1") != "released" {
		t.Errorf("after the retry: %+v", o)
	}
	if diff := cmp.Diff(e.Outbox.TopicsOf("g-o1"), []string{"order.created", "order.paid", "order.refunded"}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	// Once decided, the group takes no more orders.
	_, err := e.Svc.PlaceGroupOrder(context.Background(), order.GroupOrderRequest{OrderID: "g-o9", UserID: "u9", DealID: "group", GroupID: "g1", PayBy: ordertest.T0.Add(time.Minute)})
	if errCode(err) != problem.CodeGroupClosed {
		t.Errorf("order for a decided group: %v", err)
	}
}

// A charge whose answer was lost before the group failed is found and refunded: the order
// is not cancelled over a charge that went through.
func TestSettleGroupRefundsALostCharge(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.groupOrder(t, "g-o1", "u1")
	e.Pay.SetMode("lost") // the charge goes through, its answer is lost
	if _, err := e.Svc.Pay(context.Background(), order.Caller{ID: "u1"}, "g-o1", "tok_ok"); err == nil {
		t.Fatal("Pay with a lost answer succeeded")
	}
	if err := e.Svc.SettleGroup(context.Background(), order.GroupOutcome{GroupID: "g1", Members: []string{"g-o1"}}); err != nil {
		t.Fatal(err)
	}
	if o := e.mustOrder(t, "g-o1"); o.Status != order.StatusRefunded || !o.Settled {
		t.Fatalf("order %+v, want refunded", o)
	}
	if diff := cmp.Diff(e.Pay.Refunded(), []string{"g-o1"}); diff != "" {
		t.Errorf("refunds (-got +want):\n%s", diff)
	}
	if got := e.Stock.Hold("g-o1"); got != "released" {
		t.Errorf("hold %q, want released", got)
	}
}

// Loss window 3 (issue 8): the group's outcome event is redelivered for as long as the broker
// allows while payment or inventory is down, then dead-lettered. The outcome was recorded with
// the group's orders and the unsettled orders stayed in the pending set, so the sweep settles
// every member once the outage is over; a replayed event (either outcome) changes nothing more.
func TestPaidGroupOrderSettledAfterDeadLetteredOutcome(t *testing.T) {
	t.Parallel()
	members := []string{"g-o1", "g-o2", "g-o3"}
	deadline := ordertest.T0.Add(5 * time.Minute) // the members' pay_by (groupOrder)
	tests := []struct {
		name       string
		paid       []string // members that pay before the group is decided
		outcome    order.GroupOutcome
		decideAt   time.Time
		outage     func(e *env, down bool)
		wantStatus map[string]order.Status
		wantHolds  map[string]string
		wantRefund []string
	}{
		{
			name:     "failed while payment is down",
			paid:     []string{"g-o1", "g-o2"},
			outcome:  order.GroupOutcome{GroupID: "g1", Members: members},
			decideAt: deadline.Add(time.Second),
			outage: func(e *env, down bool) {
				var err error
				if down {
					err = ordertest.ErrPaymentDown
				}
				e.Pay.SetRefundErr(err)
			},
			wantStatus: map[string]order.Status{"g-o1": order.StatusRefunded, "g-o2": order.StatusRefunded, "g-o3": order.StatusCancelled},
			wantHolds:  map[string]string{"g-o1": "released", "g-o2": "released", "g-o3": "released"},
			wantRefund: []string{"g-o1", "g-o2"},
		},
		{
			name:     "failed while inventory is down",
			paid:     []string{"g-o1", "g-o2"},
			outcome:  order.GroupOutcome{GroupID: "g1", Members: members},
			decideAt: deadline.Add(time.Second),
			outage: func(e *env, down bool) {
				var err error
				if down {
					err = problem.New(problem.CodeUnavailable, "inventory down")
				}
				e.Stock.Set(func(s *ordertest.Stock) { s.ReleaseErr = err })
			},
			wantStatus: map[string]order.Status{"g-o1": order.StatusRefunded, "g-o2": order.StatusRefunded, "g-o3": order.StatusCancelled},
			wantHolds:  map[string]string{"g-o1": "released", "g-o2": "released", "g-o3": "released"},
			wantRefund: []string{"g-o1", "g-o2"},
		},
		{
			name:     "succeeded while inventory is down",
			paid:     members,
			outcome:  order.GroupOutcome{GroupID: "g1", Succeeded: true, Members: members},
			decideAt: ordertest.T0.Add(time.Minute),
			outage: func(e *env, down bool) {
				var err error
				if down {
					err = problem.New(problem.CodeUnavailable, "inventory down")
				}
				e.Stock.Set(func(s *ordertest.Stock) { s.CommitErr = err })
			},
			wantStatus: map[string]order.Status{"g-o1": order.StatusConfirmed, "g-o2": order.StatusConfirmed, "g-o3": order.StatusConfirmed},
			wantHolds:  map[string]string{"g-o1": "committed", "g-o2": "committed", "g-o3": "committed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := newEnv()
			for i, id := range members {
				e.groupOrder(t, id, "u"+string(rune('1'+i)))
			}
			for _, id := range tt.paid {
				e.payAs(t, "u"+id[len(id)-1:], id)
			}
			e.Clock.Set(tt.decideAt)
			tt.outage(e, true)
			// Every delivery the broker makes before it dead-letters the event fails.
			for i := range 3 {
				if err := e.Svc.SettleGroup(ctx, tt.outcome); err == nil {
					t.Fatalf("delivery %d settled the group during the outage", i+1)
				}
				e.Clock.Advance(15 * time.Second)
			}
			tt.outage(e, false)
			e.Clock.Advance(time.Minute)

			st, err := e.Svc.Sweep(ctx)

			if err != nil || st.Failed != 0 {
				t.Fatalf("Sweep = %+v, %v; want no failures", st, err)
			}
			check := func(when string) {
				t.Helper()
				for id, want := range tt.wantStatus {
					o := e.mustOrder(t, id)
					if o.Status != want || !o.Settled {
						t.Errorf("%s: order %s is %s settled=%t, want %s and settled", when, id, o.Status, o.Settled, want)
					}
					if got := e.Stock.Hold(id); got != tt.wantHolds[id] {
						t.Errorf("%s: order %s hold %q, want %q", when, id, got, tt.wantHolds[id])
					}
					if idx := e.Users.Of(o.UserID); len(idx) != 1 || idx[0].Status != want {
						t.Errorf("%s: user index of %s = %+v, want one %s entry", when, o.UserID, idx, want)
					}
				}
				if diff := cmp.Diff(e.Pay.Refunded(), tt.wantRefund); diff != "" {
					t.Errorf("%s: refunds (-got +want):\n%s", when, diff)
				}
				if got := e.Pending.All(); len(got) != 0 {
					t.Errorf("%s: pending = %+v, want empty", when, got)
				}
			}
			check("after the sweep")

			// An admin replays the dead letter, and a stale opposite outcome arrives: the
			// recorded decision stands and nothing happens twice.
			type trace struct {
				Transitions []order.Status
				Topics      []string
				Refunds     int
			}
			snapshot := func() map[string]trace {
				m := map[string]trace{}
				for _, id := range members {
					m[id] = trace{e.Store.TransitionsOf(id), e.Outbox.TopicsOf(id), e.Pay.RefundCalls(id)}
				}
				return m
			}
			before := snapshot()
			opposite := tt.outcome
			opposite.Succeeded = !opposite.Succeeded
			for _, out := range []order.GroupOutcome{tt.outcome, opposite} {
				if err := e.Svc.SettleGroup(ctx, out); err != nil {
					t.Fatalf("replayed outcome (succeeded=%t): %v", out.Succeeded, err)
				}
			}
			if _, err := e.Svc.Sweep(ctx); err != nil {
				t.Fatalf("Sweep after the replay: %v", err)
			}
			if diff := cmp.Diff(snapshot(), before); diff != "" {
				t.Errorf("a replay changed orders (-got +want):\n%s", diff)
			}
			check("after the replay")
		})
	}
}

// A member pays after the group was decided (the settlement could not cancel the unpaid order:
// payment was down for its lookup). The payment settles the order at once from the recorded
// outcome instead of leaving it paid out of the sweep's sight.
func TestPayAfterGroupDecidedIsSettled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv()
	e.groupOrder(t, "g-o1", "u1")
	e.groupOrder(t, "g-o2", "u2")
	e.payAs(t, "u1", "g-o1")
	// g-o2's first charge attempt left a marker of unknown outcome.
	e.Pay.SetMode("unavailable")
	if _, err := e.Svc.Pay(ctx, order.Caller{ID: "u2"}, "g-o2", "tok_ok"); errCode(err) != problem.CodePaymentUnavailable {
		t.Fatalf("first Pay = %v, want payment-unavailable", err)
	}
	e.Pay.SetMode("succeeded")
	e.Pay.SetLookupErr(ordertest.ErrPaymentDown)
	out := order.GroupOutcome{GroupID: "g1", Succeeded: true, Members: []string{"g-o1"}}
	if err := e.Svc.SettleGroup(ctx, out); err == nil {
		t.Fatal("SettleGroup succeeded without a lookup of g-o2's charge")
	}
	e.Pay.SetLookupErr(nil)

	got, err := e.Svc.Pay(ctx, order.Caller{ID: "u2"}, "g-o2", "tok_ok")

	if err != nil {
		t.Fatalf("Pay after the decision: %v", err)
	}
	if got.Status != order.StatusRefunded || !got.Settled {
		t.Errorf("Pay answered %s settled=%t, want refunded: g-o2 lost its seat", got.Status, got.Settled)
	}
	for id, want := range map[string]order.Status{"g-o1": order.StatusConfirmed, "g-o2": order.StatusRefunded} {
		if o := e.mustOrder(t, id); o.Status != want || !o.Settled {
			t.Errorf("order %s = %s settled=%t, want %s", id, o.Status, o.Settled, want)
		}
	}
	if diff := cmp.Diff(e.Pay.Refunded(), []string{"g-o2"}); diff != "" {
		t.Errorf("refunds (-got +want):\n%s", diff)
	}
	if got := e.Stock.Hold("g-o2"); got != "released" {
		t.Errorf("g-o2 hold = %q, want released", got)
	}
	if diff := cmp.Diff(e.Outbox.TopicsOf("g-o2"), []string{"order.created", "order.paid", "order.refunded"}); diff != "" {
		t.Errorf("g-o2 events (-got +want):\n%s", diff)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending = %+v, want empty", got)
	}
}

// After an outage, a replay of the outcome and the sweeps of several replicas settle the same
// orders at once: each paid order moves to refunded by one CAS and is refunded once.
func TestSettleGroupAndSweepsConcurrently(t *testing.T) {
	t.Parallel()
	const members, sweepers, rounds = 6, 3, 5
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := newEnv()
			var ids []string
			for i := range members {
				id, user := fmt.Sprintf("g-o%d", i+1), fmt.Sprintf("u%d", i+1)
				e.groupOrder(t, id, user)
				e.payAs(t, user, id)
				ids = append(ids, id)
			}
			out := order.GroupOutcome{GroupID: "g1", Members: ids}
			e.Pay.SetRefundErr(ordertest.ErrPaymentDown)
			if err := e.Svc.SettleGroup(ctx, out); err == nil {
				t.Fatal("SettleGroup succeeded with payment down")
			}
			e.Pay.SetRefundErr(nil)
			e.Store.InjectConflicts(members / 2)
			e.Clock.Advance(time.Minute)

			errs := make([]error, sweepers+1)
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				<-start
				errs[0] = e.Svc.SettleGroup(ctx, out)
			})
			for i := range sweepers {
				wg.Go(func() {
					<-start
					st, err := e.Svc.Sweep(ctx)
					if err == nil && st.Failed != 0 {
						err = fmt.Errorf("stats %+v", st)
					}
					errs[i+1] = err
				})
			}
			close(start)
			wg.Wait()

			for i, err := range errs {
				if err != nil {
					t.Errorf("runner %d: %v", i, err)
				}
			}
			for _, id := range ids {
				if diff := cmp.Diff(e.Store.TransitionsOf(id), []order.Status{order.StatusPaid, order.StatusRefunded}); diff != "" {
					t.Errorf("%s transitions (-got +want):\n%s", id, diff)
				}
				if o := e.mustOrder(t, id); !o.Settled {
					t.Errorf("%s not settled", id)
				}
				if got := e.Stock.Hold(id); got != "released" {
					t.Errorf("%s hold = %q, want released", id, got)
				}
			}
			if diff := cmp.Diff(e.Pay.Refunded(), ids); diff != "" {
				t.Errorf("refunds (-got +want):\n%s", diff)
			}
			if got := e.Pending.All(); len(got) != 0 {
				t.Errorf("pending = %+v, want empty", got)
			}
		})
	}
}
