package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/apps/catalog/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

// fakeStore is an in-memory catalog.Store with the not-found errors of the Dapr adapter.
type fakeStore struct {
	mu           sync.Mutex
	products     map[string]catalog.Product
	deals        map[string]catalog.Deal
	completeFrom time.Time
}

func (s *fakeStore) CreateProduct(_ context.Context, p catalog.Product) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.products[p.ID] = p
	return nil
}

func (s *fakeStore) Product(_ context.Context, id string) (catalog.Product, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.products[id]
	if !ok {
		return catalog.Product{}, fmt.Errorf("product %s: %w", id, catalog.ErrProductNotFound)
	}
	return p, nil
}

func (s *fakeStore) CreateDeal(_ context.Context, d catalog.Deal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deals[d.ID] = d
	return nil
}

func (s *fakeStore) Deal(_ context.Context, id string) (catalog.Deal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deals[id]
	if !ok {
		return catalog.Deal{}, fmt.Errorf("deal %s: %w", id, catalog.ErrDealNotFound)
	}
	return d, nil
}

func (s *fakeStore) Deals(context.Context) ([]catalog.Deal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]catalog.Deal, 0, len(s.deals))
	for _, d := range s.deals {
		out = append(out, d)
	}
	return out, nil
}

func (s *fakeStore) KnownIDs(context.Context) (catalog.KnownIDs, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var k catalog.KnownIDs
	for id := range s.products {
		k.Products = append(k.Products, id)
	}
	for id := range s.deals {
		k.Deals = append(k.Deals, id)
	}
	slices.Sort(k.Products)
	slices.Sort(k.Deals)
	k.ProductsCompleteFrom = s.completeFrom
	return k, nil
}

// fakeStock reports every deal's stock as untouched.
type fakeStock struct {
	mu      sync.Mutex
	created map[string]int
}

func (s *fakeStock) Create(_ context.Context, dealID string, qty int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created[dealID] = qty
	return nil
}

func (s *fakeStock) Levels(_ context.Context, dealID string) (catalog.Levels, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.created[dealID]
	return catalog.Levels{Total: q, Available: q}, nil
}

type fakeIDs struct {
	mu sync.Mutex
	n  int
}

func (f *fakeIDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return strconv.Itoa(100 + f.n)
}

type env struct {
	router http.Handler
	store  *fakeStore
	stock  *fakeStock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	now := time.Now().UTC()
	store := &fakeStore{
		products: map[string]catalog.Product{"p1": {ID: "p1", Name: "Mug", PriceCents: 1200}},
		deals: map[string]catalog.Deal{
			"active": {ID: "active", ProductID: "p1", Kind: catalog.KindFlash, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), CreatedAt: now.Add(-time.Hour)},
			"ended":  {ID: "ended", ProductID: "p1", Kind: catalog.KindFlash, StartsAt: now.Add(-2 * time.Hour), EndsAt: now.Add(-time.Hour), CreatedAt: now.Add(-2 * time.Hour)},
		},
	}
	stock := &fakeStock{created: map[string]int{"active": 5}}
	r := server.NewRouter(slog.New(slog.DiscardHandler), func(context.Context) error { return nil })
	httpapi.Routes(r, catalog.NewService(store, stock, &fakeIDs{}, nil, nil))
	return &env{router: r, store: store, stock: stock}
}

func (e *env) do(method, path, body string, u *identity.User) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if u != nil {
		for k, v := range u.Header() {
			req.Header[k] = v
		}
	}
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	return rec
}

var (
	admin = &identity.User{ID: "a1", Username: "root", Role: identity.RoleAdmin}
	user  = &identity.User{ID: "u1", Username: "alice", Role: identity.RoleUser}
)

func problemCode(t *testing.T, rec *httptest.ResponseRecorder) problem.Code {
	t.Helper()
	if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q (body %q)", got, problem.ContentType, rec.Body.String())
	}
	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("decode problem %q: %v", rec.Body.String(), err)
	}
	return doc.Code
}

func dealBody() string {
	now := time.Now().UTC()
	return fmt.Sprintf(`{"product_id":"p1","kind":"flash","price_cents":900,"stock":10,"starts_at":%q,"ends_at":%q,"per_user_limit":1}`,
		now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
}

func TestAdminWrites(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		body       string
		who        *identity.User
		wantStatus int
		wantCode   problem.Code // for problem answers
	}{
		{name: "product without identity", path: "/products", body: `{"name":"Kettle","price_cents":4500}`, wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "product by a user", path: "/products", body: `{"name":"Kettle","price_cents":4500}`, who: user, wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden},
		{name: "product by an admin", path: "/products", body: `{"name":"Kettle","price_cents":4500}`, who: admin, wantStatus: http.StatusCreated},
		{name: "deal without identity", path: "/deals", body: dealBody(), wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "deal by a user", path: "/deals", body: dealBody(), who: user, wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden},
		{name: "deal by an admin", path: "/deals", body: dealBody(), who: admin, wantStatus: http.StatusCreated},
		{name: "deal with an unknown field", path: "/deals", body: `{"product_id":"p1","discount":5}`, who: admin, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "invalid deal", path: "/deals", body: `{"product_id":"p1","kind":"flash"}`, who: admin, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "deal of an unknown product", path: "/deals", body: strings.Replace(dealBody(), `"p1"`, `"p404"`, 1), who: admin, wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)

			rec := e.do(http.MethodPost, tt.path, tt.body, tt.who)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode != "" {
				if got := problemCode(t, rec); got != tt.wantCode {
					t.Errorf("code = %q, want %q", got, tt.wantCode)
				}
			}
			if tt.wantStatus != http.StatusCreated {
				e.stock.mu.Lock()
				defer e.stock.mu.Unlock()
				if got := len(e.stock.created); got != 1 {
					t.Errorf("stock records = %d, want only the seeded one", got)
				}
			}
		})
	}
}

func TestCreateDealAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	rec := e.do(http.MethodPost, "/deals", dealBody(), admin)

	if got, want := rec.Code, http.StatusCreated; got != want {
		t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
	}
	var got catalog.Deal
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	if got.ID != "101" || got.ProductID != "p1" || got.Kind != catalog.KindFlash || got.Stock != 10 || got.PriceCents != 900 {
		t.Errorf("deal = %+v, want id 101 of p1, flash, 10 units at 900", got)
	}
	stored, err := e.store.Deal(context.Background(), "101")
	if err != nil {
		t.Fatalf("stored deal: %v", err)
	}
	if diff := cmp.Diff(stored, got); diff != "" {
		t.Errorf("stored deal mismatch (-got +want):\n%s", diff)
	}
}

func TestListDeals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		query      string
		wantStatus int
		wantIDs    []string
		wantFields []problem.FieldError
	}{
		{name: "all", query: "", wantStatus: http.StatusOK, wantIDs: []string{"active", "ended"}},
		{name: "active=false", query: "?active=false", wantStatus: http.StatusOK, wantIDs: []string{"active", "ended"}},
		{name: "active=true", query: "?active=true", wantStatus: http.StatusOK, wantIDs: []string{"active"}},
		{
			name: "active=bogus", query: "?active=bogus", wantStatus: http.StatusBadRequest,
			wantFields: []problem.FieldError{{Field: "active", Reason: `must be "true" or "false"`}},
		},
		{
			name: "active=1", query: "?active=1", wantStatus: http.StatusBadRequest,
			wantFields: []problem.FieldError{{Field: "active", Reason: `must be "true" or "false"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)

			rec := e.do(http.MethodGet, "/deals"+tt.query, "", nil)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantFields != nil {
				var doc problem.Document
				if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
					t.Fatal(err)
				}
				if doc.Code != problem.CodeValidation {
					t.Errorf("code = %q, want %q", doc.Code, problem.CodeValidation)
				}
				if diff := cmp.Diff(doc.Errors, tt.wantFields); diff != "" {
					t.Errorf("field errors mismatch (-got +want):\n%s", diff)
				}
				return
			}
			var body struct {
				Items []catalog.Deal `json:"items"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("decode %q: %v", rec.Body.String(), err)
			}
			var ids []string
			for _, d := range body.Items {
				ids = append(ids, d.ID)
			}
			if diff := cmp.Diff(ids, tt.wantIDs); diff != "" {
				t.Errorf("deal ids mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestEmptyDealListIsAnArray(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.deals = map[string]catalog.Deal{}

	rec := e.do(http.MethodGet, "/deals?active=true", "", nil)

	if got, want := strings.TrimSpace(rec.Body.String()), `{"items":[]}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestReads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantCode   problem.Code
		wantStock  *catalog.Levels
	}{
		{name: "product", path: "/products/p1", wantStatus: http.StatusOK},
		{name: "unknown product", path: "/products/p404", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
		{name: "deal with live stock", path: "/deals/active", wantStatus: http.StatusOK, wantStock: &catalog.Levels{Total: 5, Available: 5}},
		{name: "unknown deal", path: "/deals/d404", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
		{name: "internal deal", path: "/internal/deals/active", wantStatus: http.StatusOK},
		{name: "unknown internal deal", path: "/internal/deals/d404", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)

			rec := e.do(http.MethodGet, tt.path, "", nil)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode != "" {
				if got := problemCode(t, rec); got != tt.wantCode {
					t.Errorf("code = %q, want %q", got, tt.wantCode)
				}
			}
			if tt.wantStock != nil {
				var got catalog.DealWithStock
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("decode %q: %v", rec.Body.String(), err)
				}
				if diff := cmp.Diff(got.Stock, *tt.wantStock, cmpopts.IgnoreFields(catalog.Levels{}, "AsOf")); diff != "" {
					t.Errorf("stock mismatch (-got +want):\n%s", diff)
				}
				if age := time.Since(got.Stock.AsOf); got.Stock.AsOf.IsZero() || age < 0 || age > time.Minute {
					t.Errorf("stock as_of = %v, want the time of the read", got.Stock.AsOf)
				}
			}
		})
	}
}

func TestKnownIDs(t *testing.T) {
	t.Parallel()
	upgraded := time.Date(2026, 3, 1, 10, 30, 0, 123_000_000, time.UTC)
	tests := []struct {
		name  string
		setup func(e *env)
		want  string
	}{
		{
			name: "products and deals",
			setup: func(e *env) {
				e.store.completeFrom = upgraded
			},
			want: `{"products":["p1"],"deals":["active","ended"],"products_complete_from":"2026-03-01T10:30:00.123Z"}`,
		},
		{
			name: "an empty catalog answers empty lists and the zero time",
			setup: func(e *env) {
				e.store.products = map[string]catalog.Product{}
				e.store.deals = map[string]catalog.Deal{}
			},
			want: `{"products":[],"deals":[],"products_complete_from":"0001-01-01T00:00:00Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			tt.setup(e)

			// No identity: other apps call it through their sidecars, like /internal/deals/{id}.
			rec := e.do(http.MethodGet, "/internal/ids", "", nil)

			if got, want := rec.Code, http.StatusOK; got != want {
				t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
			}
			if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tt.want {
				t.Errorf("body = %s, want %s", got, tt.want)
			}
		})
	}
}
