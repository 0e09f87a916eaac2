//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/tests/harness"
)

type product struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
}

type stockLevels struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Reserved  int `json:"reserved"`
	Sold      int `json:"sold"`
}

type dealView struct {
	ID           string      `json:"id"`
	ProductID    string      `json:"product_id"`
	Kind         string      `json:"kind"`
	PriceCents   int64       `json:"price_cents"`
	StartsAt     time.Time   `json:"starts_at"`
	EndsAt       time.Time   `json:"ends_at"`
	PerUserLimit int         `json:"per_user_limit"`
	Stock        stockLevels `json:"stock"`
}

type createdDeal struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Stock int    `json:"stock"`
}

func flashDealBody(productID string, stock int) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"product_id":     productID,
		"kind":           "flash",
		"price_cents":    990,
		"stock":          stock,
		"starts_at":      now.Add(-time.Minute).Format(time.RFC3339),
		"ends_at":        now.Add(time.Hour).Format(time.RFC3339),
		"per_user_limit": 2,
	}
}

func createProduct(t *testing.T, admin *harness.Client) product {
	t.Helper()
	var p product
	admin.MustDo(t, http.MethodPost, "/products", map[string]any{"name": "Oolong tea", "description": "500 g", "price_cents": 1500}, http.StatusCreated, &p)
	return p
}

// TestSmokeFlashDealShowsStock is the first vertical slice: register, login, an admin creates
// a product and a flash deal, and the deal shows its live stock from inventory. The stock
// record is checked in the state store itself.
func TestSmokeFlashDealShowsStock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	user, userID := stack.NewUser(t)
	if userID == "" {
		t.Fatal("no user id")
	}
	admin := stack.Admin(t)

	p := createProduct(t, admin)
	var p2 product
	stack.NewClient().MustDo(t, http.MethodGet, "/products/"+p.ID, nil, http.StatusOK, &p2)
	if diff := cmp.Diff(p, p2); diff != "" {
		t.Errorf("GET product differs from created (-created +got):\n%s", diff)
	}

	var d createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", flashDealBody(p.ID, 50), http.StatusCreated, &d)
	if d.ID == "" || d.Kind != "flash" || d.Stock != 50 {
		t.Fatalf("created deal %+v", d)
	}

	var got dealView
	user.MustDo(t, http.MethodGet, "/deals/"+d.ID, nil, http.StatusOK, &got)
	want := stockLevels{Total: 50, Available: 50}
	if diff := cmp.Diff(want, got.Stock); diff != "" {
		t.Errorf("deal stock (-want +got):\n%s", diff)
	}

	// Inventory keeps a meta document "stock:<deal>" and bucket documents "stock:<deal>:<i>";
	// Stock reads them all and checks each bucket's invariant.
	rec, err := stack.Stock(ctx, d.ID)
	if err != nil {
		t.Fatalf("stock documents in the store: %v", err)
	}
	if rec.Stock != 50 || rec.Available != 50 || rec.Reserved != 0 || rec.Sold != 0 {
		t.Errorf("stored stock %+v, want 50 available of 50", rec)
	}

	var list struct {
		Items []createdDeal `json:"items"`
	}
	stack.NewClient().MustDo(t, http.MethodGet, "/deals?active=true", nil, http.StatusOK, &list)
	if !slices.ContainsFunc(list.Items, func(x createdDeal) bool { return x.ID == d.ID }) {
		t.Errorf("active deals %+v do not include %s", list.Items, d.ID)
	}

	stack.NewClient().MustDo(t, http.MethodGet, "/deals/does-not-exist", nil, http.StatusNotFound, nil)
}

// TestSmokeBadInputChangesNothing sends invalid writes and checks each gets a problem
// document with the right code and that no key was added to any store.
func TestSmokeBadInputChangesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := stack.Admin(t)
	user, _ := stack.NewUser(t)
	p := createProduct(t, admin)

	before := map[string][]string{}
	for _, app := range []string{"catalog", "inventory", "gateway"} {
		keys, err := stack.StateKeys(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		before[app] = keys
	}

	now := time.Now().UTC()
	bad := func(mut func(map[string]any)) map[string]any {
		b := flashDealBody(p.ID, 10)
		mut(b)
		return b
	}
	tests := []struct {
		name       string
		client     *harness.Client
		path       string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"unknown field on product", admin, "/products", map[string]any{"name": "x", "price_cents": 1, "colour": "red"}, 400, "validation"},
		{"negative product price", admin, "/products", map[string]any{"name": "x", "price_cents": -1}, 400, "validation"},
		{"unknown field on deal", admin, "/deals", bad(func(b map[string]any) { b["discount"] = 5 }), 400, "validation"},
		{"negative deal price", admin, "/deals", bad(func(b map[string]any) { b["price_cents"] = -100 }), 400, "validation"},
		{"ends before starts", admin, "/deals", bad(func(b map[string]any) {
			b["starts_at"] = now.Add(2 * time.Hour).Format(time.RFC3339)
			b["ends_at"] = now.Add(time.Hour).Format(time.RFC3339)
		}), 400, "validation"},
		{"not json", admin, "/deals", []byte(`{"kind":`), 400, "validation"},
		{"unknown product", admin, "/deals", bad(func(b map[string]any) { b["product_id"] = "nope" }), 404, "not-found"},
		{"non-admin creates deal", user, "/deals", flashDealBody(p.ID, 10), 403, "forbidden"},
		{"non-admin creates product", user, "/products", map[string]any{"name": "x", "price_cents": 1}, 403, "forbidden"},
		{"anonymous creates deal", stack.NewClient(), "/deals", flashDealBody(p.ID, 10), 401, "unauthorized"},
		{"register unknown field", stack.NewClient(), "/auth/register", map[string]any{"username": "zz" + harness.UniqueName(""), "password": "password-123", "admin": true}, 400, "validation"},
		{"register short password", stack.NewClient(), "/auth/register", map[string]any{"username": harness.UniqueName("v"), "password": "short"}, 400, "validation"},
		{"wrong password", stack.NewClient(), "/auth/login", map[string]any{"username": "admin", "password": "not-the-password"}, 401, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Do(ctx, http.MethodPost, tc.path, tc.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.Status, tc.wantStatus, resp.Body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type %q, want application/problem+json", ct)
			}
			pr := resp.Problem()
			if pr.Code != tc.wantCode || pr.Status != tc.wantStatus || pr.Title == "" || pr.Type == "" {
				t.Errorf("problem %+v, want code %q status %d", pr, tc.wantCode, tc.wantStatus)
			}
		})
	}

	for app, keys := range before {
		after, err := stack.StateKeys(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		slices.Sort(after)
		// Other tests run sequentially, so any new key came from the requests above.
		if diff := cmp.Diff(keys, after); diff != "" {
			t.Errorf("%s state keys changed by rejected requests (-before +after):\n%s", app, diff)
		}
	}
}

// TestSmokeRegisterConflict checks usernames are unique.
func TestSmokeRegisterConflict(t *testing.T) {
	name := harness.UniqueName("dup")
	body := map[string]string{"username": name, "password": "password-123"}
	stack.NewClient().MustDo(t, http.MethodPost, "/auth/register", body, http.StatusCreated, nil)
	resp := stack.NewClient().MustDo(t, http.MethodPost, "/auth/register", body, http.StatusConflict, nil)
	if code := resp.Problem().Code; code != "conflict" {
		t.Errorf("code %q, want conflict", code)
	}
	// The first password still works; the second registration changed nothing.
	stack.Login(t, name, "password-123")
}

// TestCatalogChangesAndIDs: a deal's stock carries as_of; creating a product and a deal
// indexes both ids in the catalog's index documents (read from the store) and in
// GET /internal/ids (invoked through the catalog's sidecar, as the gateway does), and the
// catalog published both change events without a warning (its sidecar accepted them: the
// broadcast component lets the catalog publish the change topics).
func TestCatalogChangesAndIDs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := stack.Admin(t)

	p := createProduct(t, admin)
	var d createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", flashDealBody(p.ID, 5), http.StatusCreated, &d)

	before := time.Now()
	var got struct {
		Stock struct {
			Total int       `json:"total"`
			AsOf  time.Time `json:"as_of"`
		} `json:"stock"`
	}
	stack.NewClient().MustDo(t, http.MethodGet, "/deals/"+d.ID, nil, http.StatusOK, &got)
	after := time.Now()
	// The catalog's clock on the same machine: within the request, to the millisecond.
	if got.Stock.Total != 5 || got.Stock.AsOf.Before(before.Truncate(time.Millisecond)) || got.Stock.AsOf.After(after) {
		t.Errorf("stock %+v, want total 5 and as_of between %v and %v", got.Stock, before, after)
	}

	var products struct {
		IDs          []string  `json:"ids"`
		CompleteFrom time.Time `json:"complete_from"`
	}
	if found, err := stack.State(ctx, "catalog", "products:index", &products); err != nil || !found {
		t.Fatalf("products:index: found %v, error %v", found, err)
	}
	if !slices.Contains(products.IDs, p.ID) {
		t.Errorf("products:index %v lacks %s", products.IDs, p.ID)
	}
	// A fresh install: the index was created by the run's first product, before any deal.
	if !products.CompleteFrom.IsZero() {
		t.Errorf("products:index complete_from %v, want zero on a fresh install", products.CompleteFrom)
	}
	var deals struct {
		IDs []string `json:"ids"`
	}
	if found, err := stack.State(ctx, "catalog", "deals:index", &deals); err != nil || !found {
		t.Fatalf("deals:index: found %v, error %v", found, err)
	}
	if !slices.Contains(deals.IDs, d.ID) {
		t.Errorf("deals:index %v lacks %s", deals.IDs, d.ID)
	}

	out, err := stack.SidecarClient(t, "catalog").InvokeMethod(ctx, "catalog", "internal/ids", http.MethodGet)
	if err != nil {
		t.Fatalf("GET /internal/ids: %v", err)
	}
	var ids struct {
		Products             []string  `json:"products"`
		Deals                []string  `json:"deals"`
		ProductsCompleteFrom time.Time `json:"products_complete_from"`
	}
	if err := json.Unmarshal(out, &ids); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if !slices.Contains(ids.Products, p.ID) || !slices.Contains(ids.Deals, d.ID) || !ids.ProductsCompleteFrom.IsZero() {
		t.Errorf("GET /internal/ids = %s, want product %s, deal %s and a zero products_complete_from", out, p.ID, d.ID)
	}

	logs, err := os.ReadFile(filepath.Join(stack.LogDir, "catalog.log"))
	if err != nil {
		t.Fatalf("catalog log: %v", err)
	}
	if strings.Contains(string(logs), "catalog_change_unpublished") {
		t.Errorf("the catalog could not publish a change event (see %s)", filepath.Join(stack.LogDir, "catalog.log"))
	}
}
