package order_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var (
	alice = order.Caller{ID: "u1", Username: "alice", Role: "user"}
	bob   = order.Caller{ID: "u2", Username: "bob", Role: "user"}
)

// ignoreOutbox leaves the events waiting in an order document out of a comparison.
var ignoreOutbox = cmpopts.IgnoreFields(order.Order{}, "Outbox")

// render is the standard rendering with the whole order as the body.
var render = order.ReplyFor(func(o order.Order) ([]byte, error) { return json.Marshal(o) })

// place places an order that must be created and returns it.
func (e *env) place(t *testing.T, u order.Caller, key, dealID string, qty int) order.Order {
	t.Helper()
	reply, err := e.Svc.Place(context.Background(), u, order.PlaceRequest{DealID: dealID, Quantity: qty, IdempotencyKey: key}, render)
	if err != nil {
		t.Fatalf("Place(%s, %s): %v", key, dealID, err)
	}
	if reply.Status != 201 {
		t.Fatalf("Place(%s, %s) status = %d, want 201 (body %s)", key, dealID, reply.Status, reply.Body)
	}
	var o order.Order
	if err := json.Unmarshal(reply.Body, &o); err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	return o
}

// mustOrder returns the stored order.
func (e *env) mustOrder(t *testing.T, id string) order.Order {
	t.Helper()
	o, ok := e.Store.Order(id)
	if !ok {
		t.Fatalf("order %s is not stored", id)
	}
	return o
}

// replyCode is the problem code of a reply ("" for a success).
func replyCode(t *testing.T, r order.Reply) problem.Code {
	t.Helper()
	if r.Status < 400 {
		return ""
	}
	var doc problem.Document
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("decode problem %q: %v", r.Body, err)
	}
	if doc.Status != r.Status {
		t.Errorf("problem status = %d, reply status %d", doc.Status, r.Status)
	}
	return doc.Code
}

// errCode is the problem code of err ("" for nil).
func errCode(err error) problem.Code {
	if err == nil {
		return ""
	}
	return problem.CodeOf(err)
}

func TestPlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(e *env)
		dealID      string
		qty         int
		wantStatus  int
		wantCode    problem.Code
		wantOrder   *order.Order // stored document of o1, nil for none
		wantIndex   []order.IndexEntry
		wantPending []order.PendingEntry
		wantStock   []string // inventory calls for o1
		wantTopics  []string // events of o1
	}{
		{
			name:       "created",
			dealID:     "flash",
			qty:        2,
			wantStatus: 201,
			wantOrder: &order.Order{
				ID: "o1", UserID: "u1", DealID: "flash", Kind: "flash", Quantity: 2,
				UnitPriceCents: 1250, TotalCents: 2500, Status: order.StatusPending,
				PayBy: ordertest.T0.Add(15 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0,
			},
			wantIndex:   []order.IndexEntry{{OrderID: "o1", DealID: "flash", Quantity: 2, Status: order.StatusPending, Until: ordertest.TestDeals["flash"].EndsAt}},
			wantPending: []order.PendingEntry{{OrderID: "o1", UserID: "u1", DealID: "flash", Due: ordertest.T0.Add(15 * time.Minute)}},
			wantStock:   []string{"reserve"},
			wantTopics:  []string{"order.created"},
		},
		{
			name:       "sold out",
			setup:      func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = true }) },
			dealID:     "flash",
			qty:        1,
			wantStatus: 409,
			wantCode:   problem.CodeSoldOut,
			// A sold-out answer may come from inventory's cache without looking for the
			// order's hold, so the hold is released in case an earlier attempt took one.
			wantStock: []string{"reserve", "release"},
		},
		{
			name:       "deal not started",
			dealID:     "future",
			qty:        1,
			wantStatus: 409,
			wantCode:   problem.CodeDealNotActive,
		},
		{
			name:       "deal ended",
			dealID:     "ended",
			qty:        1,
			wantStatus: 409,
			wantCode:   problem.CodeDealNotActive,
		},
		{
			name:       "deal ends this instant",
			dealID:     "ends-now",
			qty:        1,
			wantStatus: 409,
			wantCode:   problem.CodeDealNotActive,
		},
		{
			name:       "group deal",
			dealID:     "group",
			qty:        1,
			wantStatus: 409,
			wantCode:   problem.CodeInvalidState,
		},
		{
			name:       "unknown deal",
			dealID:     "nope",
			qty:        1,
			wantStatus: 404,
			wantCode:   problem.CodeNotFound,
		},
		{
			name:       "over the purchase limit at once",
			dealID:     "limited",
			qty:        3,
			wantStatus: 409,
			wantCode:   problem.CodePurchaseLimit,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			if tt.setup != nil {
				tt.setup(e)
			}
			ctx := context.Background()
			req := order.PlaceRequest{DealID: tt.dealID, Quantity: tt.qty, IdempotencyKey: "k1"}

			got, err := e.Svc.Place(ctx, alice, req, render)
			if err != nil {
				t.Fatalf("Place: %v", err)
			}

			if got.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got.Status, tt.wantStatus, got.Body)
			}
			if code := replyCode(t, got); code != tt.wantCode {
				t.Errorf("code = %q, want %q", code, tt.wantCode)
			}
			stored, ok := e.Store.Order("o1")
			switch {
			case tt.wantOrder == nil && ok:
				t.Errorf("stored order = %+v, want none", stored)
			case tt.wantOrder != nil && !ok:
				t.Error("no stored order, want one")
			case tt.wantOrder != nil:
				// The outbox has tests of its own (TestPlaceWritesCreatedEventWithTheOrder).
				if diff := cmp.Diff(stored, *tt.wantOrder, ignoreOutbox); diff != "" {
					t.Errorf("stored order mismatch (-got +want):\n%s", diff)
				}
				var body order.Order
				if err := json.Unmarshal(got.Body, &body); err != nil {
					t.Fatalf("decode body: %v", err)
				}
				if diff := cmp.Diff(body, *tt.wantOrder, ignoreOutbox); diff != "" {
					t.Errorf("reply body mismatch (-got +want):\n%s", diff)
				}
			}
			if diff := cmp.Diff(e.Users.Of("u1"), tt.wantIndex, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("user index mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Pending.All(), tt.wantPending, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("pending mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}

			// The outcome is stored with the key and replayed as is, with no new side effects.
			rec, _ := e.Idem.Record("u1", "k1")
			if !rec.Done || rec.Status != got.Status || string(rec.Body) != string(got.Body) {
				t.Errorf("idempotency record = done %t status %d body %s, want the reply stored", rec.Done, rec.Status, rec.Body)
			}
			replay, err := e.Svc.Place(ctx, alice, req, render)
			if err != nil {
				t.Fatalf("replay: %v", err)
			}
			if diff := cmp.Diff(replay, got); diff != "" {
				t.Errorf("replayed reply mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls after replay mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events after replay mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// A new Idempotency-Key gets a new order id, so no order document can exist yet: the
// placement does not read one (a resumed placement does, see TestPlaceTransientFailureResumes).
func TestPlaceNewKeyReadsNoOrder(t *testing.T) {
	t.Parallel()
	e := newEnv()

	o := e.place(t, alice, "k1", "flash", 1)

	if n := e.Store.Reads(); n != 0 {
		t.Errorf("%d order reads, want 0", n)
	}
	if got := e.mustOrder(t, o.ID); got.Status != order.StatusPending {
		t.Errorf("stored status = %q, want %q", got.Status, order.StatusPending)
	}
}

func TestPlaceValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  order.PlaceRequest
	}{
		{"no idempotency key", order.PlaceRequest{DealID: "flash", Quantity: 1}},
		{"idempotency key too long", order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: string(make([]byte, 201))}},
		{"zero quantity", order.PlaceRequest{DealID: "flash", Quantity: 0, IdempotencyKey: "k"}},
		{"negative quantity", order.PlaceRequest{DealID: "flash", Quantity: -1, IdempotencyKey: "k"}},
		{"quantity over the maximum", order.PlaceRequest{DealID: "flash", Quantity: 11, IdempotencyKey: "k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()

			_, err := e.Svc.Place(context.Background(), alice, tt.req, render)

			if got, want := errCode(err), problem.CodeValidation; got != want {
				t.Errorf("error code = %q, want %q (error %v)", got, want, err)
			}
			if _, ok := e.Idem.Record("u1", tt.req.IdempotencyKey); ok {
				t.Error("an idempotency record was written for an invalid request")
			}
		})
	}
}

func TestPlaceIdempotencyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *env) // runs before the request below
		caller   order.Caller
		req      order.PlaceRequest
		wantCode problem.Code // of the error or the reply
		wantID   string       // order id of a 201
	}{
		{
			name:   "replay with the same body",
			setup:  func(t *testing.T, e *env) { e.place(t, alice, "k1", "flash", 2) },
			caller: alice,
			req:    order.PlaceRequest{DealID: "flash", Quantity: 2, IdempotencyKey: "k1"},
			wantID: "o1",
		},
		{
			name:     "same key with another quantity",
			setup:    func(t *testing.T, e *env) { e.place(t, alice, "k1", "flash", 2) },
			caller:   alice,
			req:      order.PlaceRequest{DealID: "flash", Quantity: 3, IdempotencyKey: "k1"},
			wantCode: problem.CodeIdempotencyReused,
		},
		{
			name:     "same key with another deal",
			setup:    func(t *testing.T, e *env) { e.place(t, alice, "k1", "flash", 2) },
			caller:   alice,
			req:      order.PlaceRequest{DealID: "limited", Quantity: 2, IdempotencyKey: "k1"},
			wantCode: problem.CodeIdempotencyReused,
		},
		{
			name:   "same key of another user is another request",
			setup:  func(t *testing.T, e *env) { e.place(t, alice, "k1", "flash", 2) },
			caller: bob,
			req:    order.PlaceRequest{DealID: "flash", Quantity: 2, IdempotencyKey: "k1"},
			wantID: "o2",
		},
		{
			name: "owner died: taken over after the lease with the same order id",
			setup: func(t *testing.T, e *env) {
				claimKey(t, e, alice, "k1", "flash", 2)
				e.Clock.Advance(ordertest.TestConfig.IdemLease)
			},
			caller: alice,
			req:    order.PlaceRequest{DealID: "flash", Quantity: 2, IdempotencyKey: "k1"},
			wantID: "o1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			tt.setup(t, e)

			reply, err := e.Svc.Place(ctx, tt.caller, tt.req, render)

			code := errCode(err)
			if err == nil {
				code = replyCode(t, reply)
			}
			if code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %v, reply %d %s)", code, tt.wantCode, err, reply.Status, reply.Body)
			}
			if tt.wantID == "" {
				return
			}
			var o order.Order
			if err := json.Unmarshal(reply.Body, &o); err != nil {
				t.Fatalf("decode reply: %v", err)
			}
			if o.ID != tt.wantID {
				t.Errorf("order id = %q, want %q", o.ID, tt.wantID)
			}
			if got, want := e.Stock.CallsOf(tt.wantID), []string{"reserve"}; !cmp.Equal(got, want) {
				t.Errorf("inventory calls = %v, want %v", got, want)
			}
		})
	}
}

// claimKey claims an Idempotency-Key as a concurrent request for the same body on another
// replica would.
func claimKey(t *testing.T, e *env, u order.Caller, key, dealID string, qty int) {
	t.Helper()
	hash := order.RequestHash("place", dealID, itoa(qty))
	c := idempotency.Claim{UserID: u.ID, Key: key, Hash: hash, Owner: "elsewhere", Lease: ordertest.TestConfig.IdemLease}
	_, claimed, err := e.Idem.Begin(context.Background(), c, func(r *order.IdemRecord) { r.OrderID = "o1" })
	if err != nil || !claimed {
		t.Fatalf("claim key: claimed %t, %v", claimed, err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// Infrastructure failures are not stored as the key's answer: the lease ends, and a retry
// resumes the same placement (same order id) and completes it.
func TestPlaceTransientFailureResumes(t *testing.T) {
	t.Parallel()
	unavailable := problem.New(problem.CodeUnavailable, "inventory is down")
	tests := []struct {
		name       string
		fail       func(e *env)
		heal       func(e *env)
		wantStock  []string
		wantTopics []string
	}{
		{
			name:       "inventory unavailable",
			fail:       func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.ReserveErr = unavailable }) },
			heal:       func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.ReserveErr = nil }) },
			wantStock:  []string{"reserve", "reserve"},
			wantTopics: []string{"order.created"},
		},
		{
			name:       "inventory reserved but the answer was lost",
			fail:       func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.LostReply = unavailable }) },
			heal:       func(e *env) { e.Stock.Set(func(s *ordertest.Stock) { s.LostReply = nil }) },
			wantStock:  []string{"reserve", "reserve"},
			wantTopics: []string{"order.created"},
		},
		{
			name:       "catalog outage (not a problem document)",
			fail:       func(e *env) { e.Deals.SetErr(errors.New("connection refused")) },
			heal:       func(e *env) { e.Deals.SetErr(nil) },
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
		},
		{
			// The order is registered in the outbox index before it is written; without
			// the registration nothing is written and the retry resumes the hold.
			name:       "outbox index unavailable",
			fail:       func(e *env) { e.Outbox.SetRegisterErr(unavailable) },
			heal:       func(e *env) { e.Outbox.SetRegisterErr(nil) },
			wantStock:  []string{"reserve", "reserve"},
			wantTopics: []string{"order.created"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv()
			req := order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}
			tt.fail(e)

			_, err := e.Svc.Place(ctx, alice, req, render)
			if err == nil {
				t.Fatal("first attempt: error = nil, want the transient failure")
			}
			if rec, _ := e.Idem.Record("u1", "k1"); rec.Done || !rec.LeaseUntil.IsZero() {
				t.Errorf("after the failure the record is done %t, lease until %v; want not done and the lease ended", rec.Done, rec.LeaseUntil)
			}

			tt.heal(e)
			e.Clock.Advance(time.Second)
			got := e.place(t, alice, "k1", "flash", 1)

			if got.ID != "o1" {
				t.Errorf("resumed order id = %q, want o1", got.ID)
			}
			if _, ok := e.Store.Order("o2"); ok {
				t.Error("a second order was created")
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}
			if got, want := e.Stock.Hold("o1"), "reserved"; got != want {
				t.Errorf("hold = %q, want %q", got, want)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			if got := len(e.Users.Of("u1")); got != 1 {
				t.Errorf("user index has %d entries, want 1", got)
			}
			if got := len(e.Pending.All()); got != 1 {
				t.Errorf("pending has %d entries, want 1", got)
			}
		})
	}
}

// A placement that crashed after reserving is cleaned by the sweep (hold released); a late
// retry of its key then learns it expired, and leaves nothing behind that counts toward the
// purchase limit.
func TestPlaceResumedAfterSweepReleasedHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.Stock.Set(func(s *ordertest.Stock) { s.LostReply = problem.New(problem.CodeUnavailable, "timeout") })
	req := order.PlaceRequest{DealID: "limited", Quantity: 2, IdempotencyKey: "k1"}
	if _, err := e.Svc.Place(ctx, alice, req, render); err == nil {
		t.Fatal("first attempt: error = nil, want the lost reply")
	}
	e.Stock.Set(func(s *ordertest.Stock) { s.LostReply = nil })
	e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second)
	st, err := e.Svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if diff := cmp.Diff(st, order.SweepStats{Examined: 1, Cleaned: 1}); diff != "" {
		t.Fatalf("sweep stats mismatch (-got +want):\n%s", diff)
	}

	reply, err := e.Svc.Place(ctx, alice, req, render)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}

	if got, want := replyCode(t, reply), problem.CodeInvalidState; got != want {
		t.Errorf("retry code = %q, want %q (reply %d %s)", got, want, reply.Status, reply.Body)
	}
	if _, ok := e.Store.Order("o1"); ok {
		t.Error("an order document was created for a released hold")
	}
	if got := e.Users.Of("u1"); len(got) != 0 {
		t.Errorf("user index = %+v, want empty", got)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending = %+v, want empty", got)
	}
	// The error says to retry with a new key; that must work within the limit.
	if o := e.place(t, alice, "k2", "limited", 2); o.ID == "o1" {
		t.Errorf("new order id = %q, want a new one", o.ID)
	}
}

// Inventory's sold-out cache answers without looking for the order's hold, so a retry whose
// first attempt did reserve can be told "sold out": the hold must not leak.
func TestPlaceSoldOutAfterLostReserveReleasesHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.Stock.Set(func(s *ordertest.Stock) { s.LostReply = problem.New(problem.CodeUnavailable, "timeout") })
	req := order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}
	if _, err := e.Svc.Place(ctx, alice, req, render); err == nil {
		t.Fatal("first attempt: error = nil, want the lost reply")
	}
	e.Stock.Set(func(s *ordertest.Stock) { s.LostReply, s.SoldOut = nil, true })

	reply, err := e.Svc.Place(ctx, alice, req, render)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}

	if got, want := replyCode(t, reply), problem.CodeSoldOut; got != want {
		t.Errorf("retry code = %q, want %q", got, want)
	}
	if got, want := e.Stock.Hold("o1"), "released"; got != want {
		t.Errorf("hold of o1 = %q, want %q (stock leaked)", got, want)
	}
	if got := e.Users.Of("u1"); len(got) != 0 {
		t.Errorf("user index = %+v, want empty", got)
	}
}

// When the release after a sold-out answer fails, the id stays pending so the sweep releases.
func TestPlaceSoldOutReleaseFailureLeavesItToTheSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.Stock.Set(func(s *ordertest.Stock) {
		s.SoldOut = true
		s.ReleaseErr = problem.New(problem.CodeUnavailable, "inventory is down")
	})

	reply, err := e.Svc.Place(ctx, alice, order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}, render)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	if got, want := replyCode(t, reply), problem.CodeSoldOut; got != want {
		t.Errorf("code = %q, want %q", got, want)
	}
	if got := e.Users.Of("u1"); len(got) != 0 {
		t.Errorf("user index = %+v, want empty (the limit must not count a refused order)", got)
	}
	if got := len(e.Pending.All()); got != 1 {
		t.Fatalf("pending has %d entries, want 1 for the sweep", got)
	}

	e.Stock.Set(func(s *ordertest.Stock) { s.ReleaseErr = nil })
	e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second)
	st, err := e.Svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if diff := cmp.Diff(st, order.SweepStats{Examined: 1, Cleaned: 1}); diff != "" {
		t.Errorf("sweep stats mismatch (-got +want):\n%s", diff)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending after the sweep = %+v, want empty", got)
	}
}

// per_user_limit 2: one unit, then two more is over; a cancelled order stops counting.
func TestPlacePurchaseLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	place := func(key string, qty int) problem.Code {
		t.Helper()
		reply, err := e.Svc.Place(ctx, alice, order.PlaceRequest{DealID: "limited", Quantity: qty, IdempotencyKey: key}, render)
		if err != nil {
			t.Fatalf("Place(%s): %v", key, err)
		}
		return replyCode(t, reply)
	}

	if got := place("k1", 1); got != "" {
		t.Fatalf("first unit: code = %q, want success", got)
	}
	if got, want := place("k2", 2), problem.CodePurchaseLimit; got != want {
		t.Errorf("two more: code = %q, want %q", got, want)
	}
	if got := e.Stock.CallsOf("o2"); len(got) != 0 {
		t.Errorf("inventory calls for the refused order = %v, want none", got)
	}
	if _, err := e.Svc.Cancel(ctx, alice, "o1"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got := place("k3", 2); got != "" {
		t.Errorf("two after cancelling: code = %q, want success", got)
	}
	if got := place("k4", 1); got != problem.CodePurchaseLimit {
		t.Errorf("one more after that: code = %q, want %q", got, problem.CodePurchaseLimit)
	}
	// Another user has a limit of their own.
	reply, err := e.Svc.Place(ctx, bob, order.PlaceRequest{DealID: "limited", Quantity: 2, IdempotencyKey: "k1"}, render)
	if err != nil || reply.Status != 201 {
		t.Errorf("another user = %d %s, %v; want 201", reply.Status, reply.Body, err)
	}
}

func TestPay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(t *testing.T, e *env)
		caller      order.Caller
		id          string
		token       string
		wantCode    problem.Code
		wantStatus  order.Status // stored afterwards
		wantMarker  bool         // a charge still marked in flight
		wantStock   []string
		wantTopics  []string
		wantIndex   order.Status
		wantPending bool
		wantCharges int
	}{
		{
			name:       "succeeded",
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed, wantCharges: 1,
		},
		{
			name:       "succeeded despite write conflicts",
			setup:      func(_ *testing.T, e *env) { e.Store.InjectConflicts(3) },
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed, wantCharges: 1,
		},
		{
			name:       "declined",
			setup:      func(_ *testing.T, e *env) { e.Pay.SetMode("declined") },
			caller:     alice,
			id:         "o1",
			token:      "tok_declined",
			wantCode:   problem.CodePaymentDeclined,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending, wantPending: true, wantCharges: 1,
		},
		{
			// The outcome is unknown: the marker stays so expiry asks the payment app.
			name:       "payment app unavailable",
			setup:      func(_ *testing.T, e *env) { e.Pay.SetMode("unavailable") },
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodePaymentUnavailable,
			wantStatus: order.StatusPending, wantMarker: true,
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending, wantPending: true, wantCharges: 1,
		},
		{
			name:       "another user's order",
			caller:     bob,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodeNotFound,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending, wantPending: true,
		},
		{
			name:     "unknown order",
			caller:   alice,
			id:       "o9",
			token:    "tok_ok",
			wantCode: problem.CodeNotFound, wantStatus: order.StatusPending,
			wantStock: []string{"reserve"}, wantTopics: []string{"order.created"},
			wantIndex: order.StatusPending, wantPending: true,
		},
		{
			name:     "no token",
			caller:   alice,
			id:       "o1",
			wantCode: problem.CodeValidation, wantStatus: order.StatusPending,
			wantStock: []string{"reserve"}, wantTopics: []string{"order.created"},
			wantIndex: order.StatusPending, wantPending: true,
		},
		{
			name: "paid twice",
			setup: func(t *testing.T, e *env) {
				if _, err := e.Svc.Pay(context.Background(), alice, "o1", "tok_ok"); err != nil {
					t.Fatalf("first Pay: %v", err)
				}
			},
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed, wantCharges: 1,
		},
		{
			name:       "after pay_by",
			setup:      func(_ *testing.T, e *env) { e.Clock.Advance(ordertest.TestConfig.PayWindow + time.Second) },
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"}, wantTopics: []string{"order.created"},
			wantIndex: order.StatusPending, wantPending: true,
		},
		{
			name:       "at pay_by",
			setup:      func(_ *testing.T, e *env) { e.Clock.Advance(ordertest.TestConfig.PayWindow) },
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"}, wantTopics: []string{"order.created"},
			wantIndex: order.StatusPending, wantPending: true,
		},
		{
			name: "cancelled",
			setup: func(t *testing.T, e *env) {
				if _, err := e.Svc.Cancel(context.Background(), alice, "o1"); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
			},
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
		},
		{
			name: "a marker left by an attempt of unknown outcome does not block a retry",
			setup: func(t *testing.T, e *env) {
				started := e.Clock.Now()
				o := e.mustOrder(t, "o1")
				o.PaymentStartedAt = &started
				e.Store.Put(o)
				e.Clock.Advance(ordertest.TestConfig.PaymentGrace - time.Second)
			},
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed, wantCharges: 1,
		},
		{
			name: "a stale charge marker is retried",
			setup: func(t *testing.T, e *env) {
				started := e.Clock.Now()
				o := e.mustOrder(t, "o1")
				o.PaymentStartedAt = &started
				e.Store.Put(o)
				e.Clock.Advance(ordertest.TestConfig.PaymentGrace)
			},
			caller:     alice,
			id:         "o1",
			token:      "tok_ok",
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed, wantCharges: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			e.place(t, alice, "k1", "flash", 2)
			e.Clock.Advance(time.Minute)
			if tt.setup != nil {
				tt.setup(t, e)
			}

			got, err := e.Svc.Pay(context.Background(), tt.caller, tt.id, tt.token)

			if code := errCode(err); code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %v)", code, tt.wantCode, err)
			}
			stored := e.mustOrder(t, "o1")
			if err == nil {
				if diff := cmp.Diff(got, stored); diff != "" {
					t.Errorf("returned order differs from the stored one (-got +want):\n%s", diff)
				}
				if !stored.Settled {
					t.Error("stored order is not settled")
				}
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status = %q, want %q", stored.Status, tt.wantStatus)
			}
			if got := stored.PaymentStartedAt != nil; got != tt.wantMarker {
				t.Errorf("payment marker set = %t, want %t", got, tt.wantMarker)
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			if idx := e.Users.Of("u1"); len(idx) != 1 || idx[0].Status != tt.wantIndex {
				t.Errorf("user index = %+v, want one entry with status %q", idx, tt.wantIndex)
			}
			if got := len(e.Pending.All()) == 1; got != tt.wantPending {
				t.Errorf("still pending = %t, want %t", got, tt.wantPending)
			}
			if got := e.Pay.ChargeCount(); got != tt.wantCharges {
				t.Errorf("charges = %d, want %d", got, tt.wantCharges)
			}
		})
	}
}

// A declined payment leaves the order payable: the owner can pay again at once.
func TestPayAfterDeclineRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.place(t, alice, "k1", "flash", 1)
	// The fake answers like the payment app: tok_declined is declined, and a decline is not
	// final, so the owner's next attempt with another card is charged.
	if _, err := e.Svc.Pay(ctx, alice, "o1", "tok_declined"); !errors.Is(err, order.ErrPaymentDeclined) {
		t.Fatalf("first Pay error = %v, want %v", err, order.ErrPaymentDeclined)
	}

	got, err := e.Svc.Pay(ctx, alice, "o1", "tok_ok")

	if err != nil {
		t.Fatalf("second Pay: %v", err)
	}
	if got.Status != order.StatusConfirmed {
		t.Errorf("status = %q, want %q", got.Status, order.StatusConfirmed)
	}
}

// A payer that gives up (the gateway's invocation timeout, a closed connection) after the
// charge went through must still get a confirmed order: the money is taken, so the rest of the
// payment (paid, stock committed, confirmed) finishes without the request, not at pay_by.
func TestPayFinishesAfterTheCallerGaveUp(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.place(t, alice, "k1", "flash", 1)
	ctx, cancel := context.WithCancel(context.Background())
	e.Pay.SetOnCharge(func(string) { cancel() })

	_, _ = e.Svc.Pay(ctx, alice, "o1", "tok_ok") // the caller is gone; its answer does not matter

	if got := e.mustOrder(t, "o1"); got.Status != order.StatusConfirmed || !got.Settled {
		t.Errorf("stored status = %q settled=%v, want %q settled", got.Status, got.Settled, order.StatusConfirmed)
	}
	if got := e.Stock.Hold("o1"); got != "committed" {
		t.Errorf("hold = %q, want committed", got)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	setMarker := func(e *env, age time.Duration) {
		started := e.Clock.Now().Add(-age)
		o, _ := e.Store.Order("o1")
		o.PaymentStartedAt = &started
		e.Store.Put(o)
	}
	tests := []struct {
		name        string
		setup       func(t *testing.T, e *env)
		caller      order.Caller
		wantCode    problem.Code
		wantStatus  order.Status
		wantStock   []string
		wantTopics  []string
		wantIndex   order.Status
		wantPending bool
		wantCAS     []order.Status // status transitions written
	}{
		{
			name:       "pending",
			caller:     alice,
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
			wantCAS:    []order.Status{order.StatusCancelled},
		},
		{
			name:       "pending despite write conflicts",
			setup:      func(_ *testing.T, e *env) { e.Store.InjectConflicts(5) },
			caller:     alice,
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
			wantCAS:    []order.Status{order.StatusCancelled},
		},
		{
			name: "confirmed",
			setup: func(t *testing.T, e *env) {
				if _, err := e.Svc.Pay(context.Background(), alice, "o1", "tok_ok"); err != nil {
					t.Fatalf("Pay: %v", err)
				}
			},
			caller:     alice,
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed,
			wantCAS:    []order.Status{order.StatusPaid, order.StatusConfirmed},
		},
		{
			name: "cancelled twice",
			setup: func(t *testing.T, e *env) {
				if _, err := e.Svc.Cancel(context.Background(), alice, "o1"); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
			},
			caller:     alice,
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
			wantCAS:    []order.Status{order.StatusCancelled},
		},
		{
			name:       "a payment in flight",
			setup:      func(_ *testing.T, e *env) { setMarker(e, ordertest.TestConfig.PaymentGrace-time.Second) },
			caller:     alice,
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending, wantPending: true,
		},
		{
			name:       "a stale payment marker whose charge never happened",
			setup:      func(_ *testing.T, e *env) { setMarker(e, ordertest.TestConfig.PaymentGrace) },
			caller:     alice,
			wantStatus: order.StatusCancelled,
			wantStock:  []string{"reserve", "release"},
			wantTopics: []string{"order.created", "order.cancelled"},
			wantIndex:  order.StatusCancelled,
			wantCAS:    []order.Status{order.StatusCancelled},
		},
		{
			// The payment app took the money but its answer was lost: cancelling would keep
			// the money for an order that releases its stock.
			name: "a stale payment marker whose charge went through",
			setup: func(t *testing.T, e *env) {
				e.Pay.SetMode("lost")
				if _, err := e.Svc.Pay(context.Background(), alice, "o1", "tok_ok"); !errors.Is(err, order.ErrPaymentDown) {
					t.Fatalf("Pay error = %v, want %v", err, order.ErrPaymentDown)
				}
				e.Clock.Advance(ordertest.TestConfig.PaymentGrace)
			},
			caller:     alice,
			wantCode:   problem.CodeInvalidState,
			wantStatus: order.StatusConfirmed,
			wantStock:  []string{"reserve", "commit"},
			wantTopics: []string{"order.created", "order.paid", "order.confirmed"},
			wantIndex:  order.StatusConfirmed,
			wantCAS:    []order.Status{order.StatusPaid, order.StatusConfirmed},
		},
		{
			name:       "another user's order",
			caller:     bob,
			wantCode:   problem.CodeNotFound,
			wantStatus: order.StatusPending,
			wantStock:  []string{"reserve"},
			wantTopics: []string{"order.created"},
			wantIndex:  order.StatusPending, wantPending: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			e.place(t, alice, "k1", "flash", 2)
			e.Clock.Advance(time.Minute)
			if tt.setup != nil {
				tt.setup(t, e)
			}

			got, err := e.Svc.Cancel(context.Background(), tt.caller, "o1")

			if code := errCode(err); code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %v)", code, tt.wantCode, err)
			}
			stored := e.mustOrder(t, "o1")
			if err == nil {
				if diff := cmp.Diff(got, stored); diff != "" {
					t.Errorf("returned order differs from the stored one (-got +want):\n%s", diff)
				}
				if !stored.Settled {
					t.Error("stored order is not settled")
				}
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status = %q, want %q", stored.Status, tt.wantStatus)
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Outbox.TopicsOf("o1"), tt.wantTopics); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			if idx := e.Users.Of("u1"); len(idx) != 1 || idx[0].Status != tt.wantIndex {
				t.Errorf("user index = %+v, want one entry with status %q", idx, tt.wantIndex)
			}
			if got := len(e.Pending.All()) == 1; got != tt.wantPending {
				t.Errorf("still pending = %t, want %t", got, tt.wantPending)
			}
			if diff := cmp.Diff(e.Store.TransitionsOf("o1"), tt.wantCAS); diff != "" {
				t.Errorf("status transitions mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		caller   order.Caller
		id       string
		wantCode problem.Code
	}{
		{"owner", alice, "o1", ""},
		{"another user", bob, "o1", problem.CodeNotFound},
		{"unknown", alice, "o9", problem.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv()
			want := e.place(t, alice, "k1", "flash", 1)

			got, err := e.Svc.Get(context.Background(), tt.caller, tt.id)

			if code := errCode(err); code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %v)", code, tt.wantCode, err)
			}
			if err != nil {
				if !errors.Is(err, order.ErrNotFound) {
					t.Errorf("error = %v, want %v", err, order.ErrNotFound)
				}
				return
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("order mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	for _, key := range []string{"k1", "k2", "k3"} {
		e.place(t, alice, key, "flash", 1)
		e.Clock.Advance(time.Second)
	}
	e.place(t, bob, "k1", "flash", 1)
	// A placement in flight has an index entry but no document yet.
	if err := e.Users.Add(ctx, "u1", order.IndexEntry{OrderID: "o9", DealID: "flash", Quantity: 1, Status: order.StatusPending}, 5); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		caller order.Caller
		want   []string
	}{
		{"newest first", alice, []string{"o3", "o2", "o1"}},
		{"only the caller's", bob, []string{"o4"}},
		{"none", order.Caller{ID: "u3"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			list, err := e.Svc.List(ctx, tt.caller, "", 0)

			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got := []string{}
			for _, o := range list {
				got = append(got, o.ID)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("order ids mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// The answer never waits for the broker: the order is stored with its order.created event in
// its outbox, registered in the outbox index first, so a process that dies before the relay
// publishes leaves both behind for the relay's recovery.
func TestPlaceWritesCreatedEventWithTheOrder(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.Outbox.SetLose(true) // the process dies between the write and the publish

	got := e.place(t, alice, "k1", "flash", 1)

	o := e.mustOrder(t, got.ID)
	want := []order.OutboxEvent{{Topic: "order.created", Status: order.StatusPending, At: o.CreatedAt, Slot: "slot-1"}}
	if diff := cmp.Diff(o.Outbox, want); diff != "" {
		t.Errorf("outbox (-got +want):\n%s", diff)
	}
	if got := e.Outbox.Registered(o.ID); got != 1 {
		t.Errorf("registered %d times, want 1", got)
	}
	if got := e.Outbox.TopicsOf(o.ID); len(got) != 0 {
		t.Errorf("relayed %v, want nothing (lost)", got)
	}
}

// Every transition writes its event in the same write: the event carries the new status and
// the transition's time, and one registration serves the write's CAS retries.
func TestTransitionsRecordTheirEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	got := e.place(t, alice, "k1", "flash", 1)
	e.Clock.Advance(time.Second)
	if _, err := e.Svc.Pay(ctx, alice, got.ID, "tok_ok"); err != nil {
		t.Fatalf("Pay: %v", err)
	}

	o := e.mustOrder(t, got.ID)
	var gotEvents []string
	for _, ev := range o.Outbox {
		gotEvents = append(gotEvents, ev.Topic+"/"+string(ev.Status))
	}
	want := []string{"order.created/pending_payment", "order.paid/paid", "order.confirmed/confirmed"}
	if diff := cmp.Diff(gotEvents, want); diff != "" {
		t.Errorf("outbox (-got +want):\n%s", diff)
	}
	if got, want := e.Outbox.Registered(o.ID), 3; got != want {
		t.Errorf("registered %d times, want %d (one per recording write)", got, want)
	}
	if diff := cmp.Diff(e.Outbox.TopicsOf(o.ID), []string{"order.created", "order.paid", "order.confirmed"}); diff != "" {
		t.Errorf("relayed (-got +want):\n%s", diff)
	}
}
