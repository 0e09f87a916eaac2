package order_test

import (
	"context"
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
			setup:    func(e *env) { _, _ = e.Groups.Decide(context.Background(), "g1") },
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
				if diff := cmp.Diff(stored, *tt.wantOrder); diff != "" {
					t.Errorf("stored order (-got +want):\n%s", diff)
				}
			}
			if diff := cmp.Diff(e.Stock.CallsOf("g-o1"), tt.wantStock); diff != "" {
				t.Errorf("stock calls (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Pub.TopicsOf("g-o1"), tt.wantTopics); diff != "" {
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
	if diff := cmp.Diff(e.Pub.TopicsOf("g-o1"), []string{"order.created", "order.paid", "order.refunded"}); diff != "" {
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
