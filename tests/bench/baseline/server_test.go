package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

const testKey = "0123456789abcdef0123456789abcdef"

// fakeShop is the in-memory stand-in for Redis and RabbitMQ.
type fakeShop struct {
	mu        sync.Mutex
	stock     map[string]int64
	deals     map[string]Deal
	orders    map[string]Order
	published int
	pubErr    error
}

func (f *fakeShop) Take(_ context.Context, dealID string, qty int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	left, ok := f.stock[dealID]
	switch {
	case !ok:
		return ErrNoDeal
	case left < int64(qty):
		return ErrSoldOut
	}
	f.stock[dealID] = left - int64(qty)
	return nil
}

func (f *fakeShop) Available(_ context.Context, dealID string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	left, ok := f.stock[dealID]
	if !ok {
		return 0, ErrNoDeal
	}
	return left, nil
}

func (f *fakeShop) Save(_ context.Context, o Order) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orders[o.ID] = o
	return nil
}

func (f *fakeShop) Deal(_ context.Context, id string) (Deal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.deals[id]
	if !ok {
		return Deal{}, ErrNoDeal
	}
	return d, nil
}

func (f *fakeShop) Publish(context.Context, []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pubErr != nil {
		return f.pubErr
	}
	f.published++
	return nil
}

type allowAll struct{}

func (allowAll) Allow(context.Context, string) (bool, time.Duration, error) { return true, 0, nil }

type denyAll struct{}

func (denyAll) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 2 * time.Second, nil
}

type seqIDs struct{ n int }

func (s *seqIDs) NextString() string { s.n++; return strconv.Itoa(s.n) }

func token(t *testing.T, key, sub, role, aud string, exp time.Time) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "groupbuy-gateway", Subject: sub, Audience: jwt.ClaimStrings{aud},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)},
		Role: role,
	}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestServer(shop *fakeShop, perUser Limiter) *Server {
	return &Server{
		Stock: shop, Orders: shop, Pub: shop, PerIP: allowAll{}, PerUser: perUser, IDs: &seqIDs{},
		Verifier: NewVerifier([]byte(testKey), "groupbuy-gateway", "groupbuy-api"),
		Now:      func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
}

func TestPlaceOrder(t *testing.T) {
	t.Parallel()
	valid := token(t, testKey, "u1", "user", "groupbuy-api", time.Now().Add(time.Hour))
	tests := []struct {
		name      string
		deal      string
		auth      string
		body      string
		stock     int64
		perUser   Limiter
		pubErr    error
		wantCode  int
		wantProb  string
		wantLeft  int64
		wantSaved int
	}{
		{name: "reserves, saves and publishes", deal: "d1", auth: "Bearer " + valid, body: `{"quantity":2}`, stock: 5,
			perUser: allowAll{}, wantCode: http.StatusCreated, wantLeft: 3, wantSaved: 1},
		{name: "sold out", deal: "d1", auth: "Bearer " + valid, body: `{"quantity":2}`, stock: 1,
			perUser: allowAll{}, wantCode: http.StatusConflict, wantProb: "sold-out", wantLeft: 1},
		{name: "unknown deal", deal: "nope", auth: "Bearer " + valid, body: `{"quantity":1}`, stock: 5,
			perUser: allowAll{}, wantCode: http.StatusNotFound, wantProb: "not-found", wantLeft: 5},
		{name: "no token", deal: "d1", body: `{"quantity":1}`, stock: 5,
			perUser: allowAll{}, wantCode: http.StatusUnauthorized, wantProb: "unauthorized", wantLeft: 5},
		{name: "wrong key", deal: "d1", auth: "Bearer " + token(t, strings.Repeat("x", 32), "u1", "user", "groupbuy-api", time.Now().Add(time.Hour)),
			body: `{"quantity":1}`, stock: 5, perUser: allowAll{}, wantCode: http.StatusUnauthorized, wantProb: "unauthorized", wantLeft: 5},
		{name: "wrong audience", deal: "d1", auth: "Bearer " + token(t, testKey, "u1", "user", "other", time.Now().Add(time.Hour)),
			body: `{"quantity":1}`, stock: 5, perUser: allowAll{}, wantCode: http.StatusUnauthorized, wantProb: "unauthorized", wantLeft: 5},
		{name: "expired", deal: "d1", auth: "Bearer " + token(t, testKey, "u1", "user", "groupbuy-api", time.Now().Add(-time.Minute)),
			body: `{"quantity":1}`, stock: 5, perUser: allowAll{}, wantCode: http.StatusUnauthorized, wantProb: "unauthorized", wantLeft: 5},
		{name: "rate limited", deal: "d1", auth: "Bearer " + valid, body: `{"quantity":1}`, stock: 5,
			perUser: denyAll{}, wantCode: http.StatusTooManyRequests, wantProb: "rate-limited", wantLeft: 5},
		{name: "unknown field", deal: "d1", auth: "Bearer " + valid, body: `{"qty":1}`, stock: 5,
			perUser: allowAll{}, wantCode: http.StatusBadRequest, wantProb: "validation", wantLeft: 5},
		{name: "publish fails", deal: "d1", auth: "Bearer " + valid, body: `{"quantity":1}`, stock: 5,
			perUser: allowAll{}, pubErr: errors.New("broker down"), wantCode: http.StatusInternalServerError, wantLeft: 4, wantSaved: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shop := &fakeShop{stock: map[string]int64{"d1": tt.stock}, orders: map[string]Order{}, pubErr: tt.pubErr}
			srv := httptest.NewServer(newTestServer(shop, tt.perUser).Routes())
			defer srv.Close()
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/deals/"+tt.deal+"/orders", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Code   string `json:"code"`
				ID     string `json:"id"`
				UserID string `json:"user_id"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if got, want := resp.StatusCode, tt.wantCode; got != want {
				t.Errorf("status = %d, want %d (code %q)", got, want, body.Code)
			}
			if tt.wantProb != "" && body.Code != tt.wantProb {
				t.Errorf("problem code = %q, want %q", body.Code, tt.wantProb)
			}
			if got, want := shop.stock["d1"], tt.wantLeft; got != want {
				t.Errorf("stock left = %d, want %d", got, want)
			}
			if got, want := len(shop.orders), tt.wantSaved; got != want {
				t.Errorf("orders saved = %d, want %d", got, want)
			}
			if tt.wantCode == http.StatusCreated {
				want := Order{ID: body.ID, UserID: "u1", DealID: "d1", Quantity: 2, Status: "pending_payment",
					CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
				if diff := cmp.Diff(want, shop.orders[body.ID]); diff != "" {
					t.Errorf("stored order (-want +got):\n%s", diff)
				}
				if shop.published != 1 {
					t.Errorf("published %d events, want 1", shop.published)
				}
			}
		})
	}
}

func TestGetDeal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		id       string
		wantCode int
		wantLeft int64
	}{
		{name: "known deal with its stock", id: "d1", wantCode: http.StatusOK, wantLeft: 7},
		{name: "unknown deal", id: "d2", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shop := &fakeShop{stock: map[string]int64{"d1": 7}, deals: map[string]Deal{"d1": {ID: "d1", Kind: "flash", Stock: 10}}}
			srv := httptest.NewServer(newTestServer(shop, allowAll{}).Routes())
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + "/api/v1/deals/" + tt.id)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got, want := resp.StatusCode, tt.wantCode; got != want {
				t.Fatalf("status = %d, want %d", got, want)
			}
			if tt.wantCode != http.StatusOK {
				return
			}
			var body struct {
				ID    string `json:"id"`
				Stock struct {
					Available int64 `json:"available"`
				} `json:"stock"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.ID != tt.id || body.Stock.Available != tt.wantLeft {
				t.Errorf("deal = %+v, want id %s with %d available", body, tt.id, tt.wantLeft)
			}
		})
	}
}
