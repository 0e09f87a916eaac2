package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/admission"
	"github.com/groupbuy/groupbuy/apps/order/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

const binding = "order-expiry"

// newServer returns the real router with the order routes over the real service and fakes.
func newServer() (*ordertest.Env, http.Handler) {
	e := ordertest.NewEnv()
	log := slog.New(slog.DiscardHandler)
	r := server.NewRouter(log, func(context.Context) error { return nil })
	httpapi.Routes(r, e.Svc, binding, log)
	httpapi.GroupRoutes(r, e.Svc, log)
	return e, r
}

// request describes one call; user "" sends no identity.
type request struct {
	method, path, user, key, body string
}

func do(t *testing.T, h http.Handler, r request) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.user != "" {
		req.Header.Set(identity.HeaderUserID, r.user)
		req.Header.Set(identity.HeaderUsername, r.user)
		req.Header.Set(identity.HeaderRole, identity.RoleUser)
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// placeOrder places an order through the API and returns its view.
func placeOrder(t *testing.T, h http.Handler, user, key string, qty int) httpapi.View {
	t.Helper()
	rec := do(t, h, request{http.MethodPost, "/deals/flash/orders", user, key, `{"quantity":` + itoa(qty) + `}`})
	if rec.Code != http.StatusCreated {
		t.Fatalf("place order: status = %d, want 201 (body %s)", rec.Code, rec.Body)
	}
	var v httpapi.View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode order: %v", err)
	}
	return v
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// checkProblem asserts a problem+json response with the status and code.
func checkProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code problem.Code) problem.Document {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	if got, want := rec.Header().Get("Content-Type"), problem.ContentType; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("decode problem %q: %v", rec.Body, err)
	}
	if doc.Code != code {
		t.Errorf("code = %q, want %q (detail %q)", doc.Code, code, doc.Detail)
	}
	if doc.Status != status {
		t.Errorf("problem status = %d, want %d", doc.Status, status)
	}
	return doc
}

func TestUserRoutesRequireIdentity(t *testing.T) {
	t.Parallel()
	tests := []request{
		{method: http.MethodPost, path: "/deals/flash/orders", key: "k1", body: `{"quantity":1}`},
		{method: http.MethodPost, path: "/orders/o1/pay", body: `{"payment_token":"tok_ok"}`},
		{method: http.MethodPost, path: "/orders/o1/cancel"},
		{method: http.MethodGet, path: "/orders/o1"},
		{method: http.MethodGet, path: "/me/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			e, h := newServer()

			rec := do(t, h, tt)

			checkProblem(t, rec, http.StatusUnauthorized, problem.CodeUnauthorized)
			if got := e.Stock.CallsOf("o1"); len(got) != 0 {
				t.Errorf("inventory calls = %v, want none", got)
			}
		})
	}
}

func TestPlaceOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		setup      func(e *ordertest.Env)
		req        request
		wantStatus int
		wantCode   problem.Code // "" for a 201
		wantFields []string     // invalid fields named by a validation problem
	}{
		{
			name:       "created",
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":2}`},
			wantStatus: http.StatusCreated,
		},
		{
			name:       "no Idempotency-Key",
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "", `{"quantity":2}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
			wantFields: []string{"Idempotency-Key"},
		},
		{
			name:       "unknown JSON field",
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":2,"price_cents":1}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
			wantFields: []string{"price_cents"},
		},
		{
			name:       "wrong JSON type",
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":"2"}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
			wantFields: []string{"quantity"},
		},
		{
			name:       "no quantity",
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
			wantFields: []string{"quantity"},
		},
		{
			name:       "sold out",
			setup:      func(e *ordertest.Env) { e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = true }) },
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":1}`},
			wantStatus: http.StatusConflict,
			wantCode:   problem.CodeSoldOut,
		},
		{
			name:       "group deal",
			req:        request{http.MethodPost, "/deals/group/orders", "u1", "k1", `{"quantity":1}`},
			wantStatus: http.StatusConflict,
			wantCode:   problem.CodeInvalidState,
		},
		{
			name: "inventory down",
			setup: func(e *ordertest.Env) {
				e.Stock.Set(func(s *ordertest.Stock) { s.ReserveErr = problem.New(problem.CodeUnavailable, "down") })
			},
			req:        request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":1}`},
			wantStatus: http.StatusServiceUnavailable,
			wantCode:   problem.CodeUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, h := newServer()
			if tt.setup != nil {
				tt.setup(e)
			}

			rec := do(t, h, tt.req)

			if tt.wantCode != "" {
				doc := checkProblem(t, rec, tt.wantStatus, tt.wantCode)
				if tt.wantFields != nil {
					var got []string
					for _, f := range doc.Errors {
						got = append(got, f.Field)
					}
					if diff := cmp.Diff(got, tt.wantFields); diff != "" {
						t.Errorf("invalid fields mismatch (-got +want):\n%s", diff)
					}
				}
				return
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got, want := rec.Header().Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			var got httpapi.View
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := httpapi.View{
				ID: "o1", UserID: "u1", DealID: "flash", Quantity: 2, UnitPriceCents: 1250, TotalCents: 2500,
				Status: "pending_payment", PayBy: ordertest.T0.Add(15 * time.Minute), CreatedAt: ordertest.T0,
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("order mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// A replayed key answers with the stored response byte for byte, with its content type.
func TestPlaceOrderReplay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		setup      func(e *ordertest.Env)
		wantStatus int
		wantType   string
		wantStock  []string // inventory calls for o1, by the first request only
	}{
		{
			name:       "created",
			wantStatus: http.StatusCreated,
			wantType:   "application/json",
			wantStock:  []string{"reserve"},
		},
		{
			name:       "sold out problem",
			setup:      func(e *ordertest.Env) { e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = true }) },
			wantStatus: http.StatusConflict,
			wantType:   problem.ContentType,
			wantStock:  []string{"reserve", "release"},
		},
		{
			name: "purchase limit problem",
			setup: func(e *ordertest.Env) {
				e.Deals.SetDeals(map[string]order.Deal{"flash": {ID: "flash", Kind: "flash", PriceCents: 1250, StartsAt: ordertest.T0.Add(-time.Hour), EndsAt: ordertest.T0.Add(time.Hour), PerUserLimit: 1}})
			},
			wantStatus: http.StatusConflict,
			wantType:   problem.ContentType,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, h := newServer()
			if tt.setup != nil {
				tt.setup(e)
			}
			req := request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":2}`}
			first := do(t, h, req)
			if first.Code != tt.wantStatus {
				t.Fatalf("first status = %d, want %d (body %s)", first.Code, tt.wantStatus, first.Body)
			}
			e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = false })
			e.Clock.Advance(time.Second)

			got := do(t, h, req)

			if got.Code != tt.wantStatus {
				t.Errorf("replay status = %d, want %d", got.Code, tt.wantStatus)
			}
			for _, rec := range []*httptest.ResponseRecorder{first, got} {
				if ct := rec.Header().Get("Content-Type"); ct != tt.wantType {
					t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
				}
			}
			if diff := cmp.Diff(got.Body.String(), first.Body.String()); diff != "" {
				t.Errorf("replayed body mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Stock.CallsOf("o1"), tt.wantStock); diff != "" {
				t.Errorf("inventory calls mismatch (-got +want):\n%s", diff)
			}

			other := do(t, h, request{http.MethodPost, "/deals/flash/orders", "u1", "k1", `{"quantity":1}`})
			checkProblem(t, other, http.StatusUnprocessableEntity, problem.CodeIdempotencyReused)
		})
	}
}

func TestGetOrderView(t *testing.T) {
	t.Parallel()
	public := []string{"id", "user_id", "deal_id", "quantity", "unit_price_cents", "total_cents", "status", "pay_by", "created_at"}
	started := ordertest.T0.Add(time.Minute)
	tests := []struct {
		name     string
		stored   order.Order
		wantKeys []string
	}{
		{
			name: "flash order",
			stored: order.Order{
				ID: "o7", UserID: "u1", DealID: "flash", Kind: "flash", Quantity: 1, UnitPriceCents: 1250, TotalCents: 1250,
				Status: order.StatusPending, PayBy: ordertest.T0.Add(15 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0.Add(time.Minute),
				PaymentStartedAt: &started, Settled: true,
			},
			wantKeys: public,
		},
		{
			name: "group order",
			stored: order.Order{
				ID: "o7", UserID: "u1", DealID: "group", GroupID: "g1", Kind: "group", Quantity: 1, UnitPriceCents: 700, TotalCents: 700,
				Status: order.StatusPaid, PayBy: ordertest.T0.Add(15 * time.Minute), CreatedAt: ordertest.T0, UpdatedAt: ordertest.T0,
			},
			wantKeys: append(slices.Clone(public), "group_id"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, h := newServer()
			e.Store.Put(tt.stored)

			rec := do(t, h, request{method: http.MethodGet, path: "/orders/o7", user: "u1"})

			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
			}
			var fields map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &fields); err != nil {
				t.Fatalf("decode: %v", err)
			}
			got := slices.Sorted(maps.Keys(fields))
			if diff := cmp.Diff(got, slices.Sorted(slices.Values(tt.wantKeys))); diff != "" {
				t.Errorf("fields mismatch (-got +want):\n%s", diff)
			}
			var v httpapi.View
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if diff := cmp.Diff(v, httpapi.ViewOf(tt.stored)); diff != "" {
				t.Errorf("view mismatch (-got +want):\n%s", diff)
			}
			if got, want := fields["pay_by"], "2030-01-02T10:15:00Z"; got != want {
				t.Errorf("pay_by = %v, want %v (RFC 3339 UTC)", got, want)
			}

			other := do(t, h, request{method: http.MethodGet, path: "/orders/o7", user: "u2"})
			checkProblem(t, other, http.StatusNotFound, problem.CodeNotFound)
		})
	}
}

func TestOrderActions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		setup      func(e *ordertest.Env)
		req        request
		wantStatus int
		wantCode   problem.Code // "" for a 200 order
		wantOrder  string       // status of the returned order
	}{
		{
			name:       "pay",
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u1", body: `{"payment_token":"tok_ok"}`},
			wantStatus: http.StatusOK,
			wantOrder:  "confirmed",
		},
		{
			name:       "pay declined",
			setup:      func(e *ordertest.Env) { e.Pay.SetMode("declined") },
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u1", body: `{"payment_token":"tok_declined"}`},
			wantStatus: http.StatusPaymentRequired,
			wantCode:   problem.CodePaymentDeclined,
		},
		{
			name:       "pay while the payment app is down",
			setup:      func(e *ordertest.Env) { e.Pay.SetMode("unavailable") },
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u1", body: `{"payment_token":"tok_ok"}`},
			wantStatus: http.StatusServiceUnavailable,
			wantCode:   problem.CodePaymentUnavailable,
		},
		{
			name:       "pay without a token",
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u1", body: `{}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
		},
		{
			name:       "pay with an unknown field",
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u1", body: `{"payment_token":"tok_ok","amount":1}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
		},
		{
			name:       "pay another user's order",
			req:        request{method: http.MethodPost, path: "/orders/o1/pay", user: "u2", body: `{"payment_token":"tok_ok"}`},
			wantStatus: http.StatusNotFound,
			wantCode:   problem.CodeNotFound,
		},
		{
			name:       "cancel",
			req:        request{method: http.MethodPost, path: "/orders/o1/cancel", user: "u1"},
			wantStatus: http.StatusOK,
			wantOrder:  "cancelled",
		},
		{
			name:       "cancel a confirmed order",
			setup:      func(e *ordertest.Env) { _, _ = e.Svc.Pay(context.Background(), order.Caller{ID: "u1"}, "o1", "tok_ok") },
			req:        request{method: http.MethodPost, path: "/orders/o1/cancel", user: "u1"},
			wantStatus: http.StatusConflict,
			wantCode:   problem.CodeInvalidState,
		},
		{
			name:       "cancel with an unknown field",
			req:        request{method: http.MethodPost, path: "/orders/o1/cancel", user: "u1", body: `{"reason":"x"}`},
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, h := newServer()
			placeOrder(t, h, "u1", "k1", 1)
			if tt.setup != nil {
				tt.setup(e)
			}

			rec := do(t, h, tt.req)

			if tt.wantCode != "" {
				checkProblem(t, rec, tt.wantStatus, tt.wantCode)
				return
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			var v httpapi.View
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if v.Status != tt.wantOrder {
				t.Errorf("order status = %q, want %q", v.Status, tt.wantOrder)
			}
			if stored, _ := e.Store.Order("o1"); string(stored.Status) != tt.wantOrder {
				t.Errorf("stored status = %q, want %q", stored.Status, tt.wantOrder)
			}
		})
	}
}

func TestListMyOrders(t *testing.T) {
	t.Parallel()
	e, h := newServer()
	for _, key := range []string{"k1", "k2", "k3"} {
		placeOrder(t, h, "u1", key, 1)
		e.Clock.Advance(time.Second)
	}
	placeOrder(t, h, "u2", "k1", 1)
	tests := []struct {
		user string
		want []string
	}{
		{"u1", []string{"o3", "o2", "o1"}},
		{"u2", []string{"o4"}},
		{"u3", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()

			rec := do(t, h, request{method: http.MethodGet, path: "/me/orders", user: tt.user})

			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
			}
			var body struct {
				Items []httpapi.View `json:"items"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if body.Items == nil {
				t.Error("items = null, want an array")
			}
			got := []string{}
			for _, v := range body.Items {
				got = append(got, v.ID)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("order ids mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// The cron binding's POST runs the sweep without a user and answers its stats.
func TestExpiryBinding(t *testing.T) {
	t.Parallel()
	e, h := newServer()
	placeOrder(t, h, "u1", "k1", 1) // o1, expires
	e.Clock.Advance(10 * time.Minute)
	placeOrder(t, h, "u1", "k2", 1) // o2, not yet due
	e.Clock.Advance(5*time.Minute + time.Second)

	rec := do(t, h, request{method: http.MethodPost, path: "/" + binding, body: `{}`})

	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
	}
	var got map[string]int
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", rec.Body, err)
	}
	want := map[string]int{"examined": 1, "cancelled": 1, "completed": 0, "cleaned": 0, "refunded": 0, "failed": 0}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("stats mismatch (-got +want):\n%s", diff)
	}
	for id, status := range map[string]order.Status{"o1": order.StatusCancelled, "o2": order.StatusPending} {
		if o, _ := e.Store.Order(id); o.Status != status {
			t.Errorf("%s status = %q, want %q", id, o.Status, status)
		}
	}
	if got, want := e.Stock.Hold("o1"), "released"; got != want {
		t.Errorf("o1 hold = %q, want %q", got, want)
	}
}

// A placement the app has no room for is answered 503 unavailable with a Retry-After header
// (the real admission limiter, full), and the same key is placed once there is room.
func TestPlaceOverCapacity(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate, err := admission.New(admission.Config{Limit: 1, Queue: 0, RetryAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := ordertest.NewEnvWith(ordertest.Options{Config: ordertest.TestConfig, Gate: gate})
	log := slog.New(slog.DiscardHandler)
	r := server.NewRouter(log, func(context.Context) error { return nil })
	httpapi.Routes(r, e.Svc, binding, log)
	entered, release := make(chan struct{}), make(chan struct{})
	e.Stock.Set(func(s *ordertest.Stock) {
		s.OnReserve = func() {
			close(entered)
			<-release
		}
	})
	first := make(chan int, 1)
	go func() {
		first <- do(t, r, request{http.MethodPost, "/deals/flash/orders", "alice", "k1", `{"quantity":1}`}).Code
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the first placement never reached inventory")
	}

	rec := do(t, r, request{http.MethodPost, "/deals/flash/orders", "bob", "k2", `{"quantity":1}`})
	e.Stock.Set(func(s *ordertest.Stock) { s.OnReserve = nil })
	close(release)

	checkProblem(t, rec, http.StatusServiceUnavailable, problem.CodeUnavailable)
	if got, want := rec.Header().Get("Retry-After"), "2"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	select {
	case code := <-first:
		if code != http.StatusCreated {
			t.Errorf("first placement = %d, want 201", code)
		}
	case <-ctx.Done():
		t.Fatal("the first placement did not finish")
	}
	placeOrder(t, r, "bob", "k2", 1)
}

// GET /me/orders pages: limit bounds a page and "next" names the cursor of the one after;
// a bad limit or cursor is a 400 naming the field.
func TestListMyOrdersPages(t *testing.T) {
	t.Parallel()
	e, h := newServer()
	for _, key := range []string{"k1", "k2", "k3"} {
		placeOrder(t, h, "u1", key, 1)
		e.Clock.Advance(time.Second)
	}
	rec := do(t, h, request{method: http.MethodGet, path: "/me/orders?limit=2", user: "u1"})
	var page struct {
		Items []httpapi.View `json:"items"`
		Next  string         `json:"next"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("page: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if len(page.Items) != 2 || page.Items[0].ID != "o3" || page.Next != "o2" {
		t.Errorf("first page %+v next %q, want o3, o2 and next o2", page.Items, page.Next)
	}
	rec = do(t, h, request{method: http.MethodGet, path: "/me/orders?limit=5", user: "u1"})
	if strings.Contains(rec.Body.String(), `"next"`) {
		t.Errorf("a page shorter than its limit has a next cursor: %s", rec.Body)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "before=abc", "before=-1"} {
		rec := do(t, h, request{method: http.MethodGet, path: "/me/orders?" + q, user: "u1"})
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"code":"validation"`) {
			t.Errorf("?%s = %d %s, want 400 validation", q, rec.Code, rec.Body)
		}
	}
}
