package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

func newRouter(t *testing.T) http.Handler {
	t.Helper()
	svc, err := stock.NewService(storetest.NewFake(), stock.Config{Buckets: 2, SoldOutTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := server.NewRouter(slog.New(slog.DiscardHandler), func(context.Context) error { return nil })
	httpapi.Routes(r, svc)
	return r
}

func do(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func reserveBody(order string, qty int) string {
	b, _ := json.Marshal(map[string]any{
		"deal_id": "d1", "order_id": order, "quantity": qty,
		"until": time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339),
	})
	return string(b)
}

// TestReservationFlow walks the internal API the order app uses, call after call, against
// one router.
func TestReservationFlow(t *testing.T) {
	t.Parallel()
	h := newRouter(t)
	steps := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string       // JSON, for 200 answers
		wantCode   problem.Code // for problem answers
	}{
		{"create stock", "PUT", "/stock/d1", `{"stock":3}`, 200, `{"deal_id":"d1","stock":3,"available":3,"reserved":0,"sold":0}`, ""},
		{"reserve", "POST", "/reservations", reserveBody("o1", 1), 200, `{"outcome":"reserved","state":"reserved"}`, ""},
		{"replay", "POST", "/reservations", reserveBody("o1", 1), 200, `{"outcome":"reserved","state":"reserved"}`, ""},
		{"reserve another", "POST", "/reservations", reserveBody("o2", 1), 200, `{"outcome":"reserved","state":"reserved"}`, ""},
		{"reserve the last", "POST", "/reservations", reserveBody("o3", 1), 200, `{"outcome":"reserved","state":"reserved"}`, ""},
		{"sold out is a 200", "POST", "/reservations", reserveBody("o4", 1), 200, `{"outcome":"sold_out","state":""}`, ""},
		{"levels", "GET", "/stock/d1", "", 200, `{"deal_id":"d1","stock":3,"available":0,"reserved":3,"sold":0}`, ""},
		{"commit", "POST", "/reservations/o1/commit", `{"deal_id":"d1"}`, 200, `{"state":"committed"}`, ""},
		{"commit again", "POST", "/reservations/o1/commit", `{"deal_id":"d1"}`, 200, `{"state":"committed"}`, ""},
		{"release a committed hold", "POST", "/reservations/o1/release", `{"deal_id":"d1"}`, 409, "", problem.CodeConflict},
		{"release", "POST", "/reservations/o2/release", `{"deal_id":"d1"}`, 200, `{"state":"released"}`, ""},
		{"release again", "POST", "/reservations/o2/release", `{"deal_id":"d1"}`, 200, `{"state":"released"}`, ""},
		{"commit a released hold", "POST", "/reservations/o2/commit", `{"deal_id":"d1"}`, 409, "", problem.CodeConflict},
		{"replay of a released order", "POST", "/reservations", reserveBody("o2", 1), 200, `{"outcome":"reserved","state":"released"}`, ""},
		{"commit without a hold", "POST", "/reservations/o9/commit", `{"deal_id":"d1"}`, 404, "", problem.CodeNotFound},
		{"release without a hold", "POST", "/reservations/o9/release", `{"deal_id":"d1"}`, 200, `{"state":"absent"}`, ""},
		{"release without a hold again", "POST", "/reservations/o9/release", `{"deal_id":"d1"}`, 200, `{"state":"absent"}`, ""},
		// The release left a tombstone: a late reserve of the order cannot hold stock.
		{"reserve after the release", "POST", "/reservations", reserveBody("o9", 1), 200, `{"outcome":"reserved","state":"released"}`, ""},
		{"commit after the release", "POST", "/reservations/o9/commit", `{"deal_id":"d1"}`, 409, "", problem.CodeConflict},
		{"stock came back", "POST", "/reservations", reserveBody("o5", 1), 200, `{"outcome":"reserved","state":"reserved"}`, ""},
		{"final levels", "GET", "/stock/d1", "", 200, `{"deal_id":"d1","stock":3,"available":0,"reserved":2,"sold":1}`, ""},
	}
	for _, s := range steps {
		rec := do(h, s.method, s.path, s.body)
		if rec.Code != s.wantStatus {
			t.Fatalf("%s: status %d, want %d (body %s)", s.name, rec.Code, s.wantStatus, rec.Body)
		}
		if s.wantCode != "" {
			if got := problemCode(t, rec); got != s.wantCode {
				t.Errorf("%s: code %q, want %q", s.name, got, s.wantCode)
			}
			continue
		}
		var got, want any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v in %s", s.name, err, rec.Body)
		}
		_ = json.Unmarshal([]byte(s.wantBody), &want)
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s: body (-got +want):\n%s", s.name, diff)
		}
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	h := newRouter(t)
	if rec := do(h, "PUT", "/stock/d1", `{"stock":10}`); rec.Code != 200 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   problem.Code
	}{
		{"unknown field", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":1,"until":"` + until + `","colour":"red"}`, 400, problem.CodeValidation},
		{"zero quantity", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":0,"until":"` + until + `"}`, 400, problem.CodeValidation},
		{"quantity over 1000", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":1001,"until":"` + until + `"}`, 400, problem.CodeValidation},
		{"fractional quantity", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":1.5,"until":"` + until + `"}`, 400, problem.CodeValidation},
		{"until not RFC 3339", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":1,"until":"tomorrow"}`, 400, problem.CodeValidation},
		{"until missing", "POST", "/reservations", `{"deal_id":"d1","order_id":"o1","quantity":1}`, 400, problem.CodeValidation},
		{"order missing", "POST", "/reservations", `{"deal_id":"d1","quantity":1,"until":"` + until + `"}`, 400, problem.CodeValidation},
		{"unknown deal", "POST", "/reservations", `{"deal_id":"d404","order_id":"o1","quantity":1,"until":"` + until + `"}`, 404, problem.CodeNotFound},
		{"commit without deal", "POST", "/reservations/o1/commit", `{}`, 400, problem.CodeValidation},
		{"commit on an unknown deal", "POST", "/reservations/o1/commit", `{"deal_id":"d404"}`, 404, problem.CodeNotFound},
		{"release with an unknown field", "POST", "/reservations/o1/release", `{"deal_id":"d1","qty":1}`, 400, problem.CodeValidation},
		{"stock of an unknown deal", "GET", "/stock/d404", "", 404, problem.CodeNotFound},
		{"stock again with another quantity", "PUT", "/stock/d1", `{"stock":11}`, 409, problem.CodeConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.method, tt.path, tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := problemCode(t, rec); got != tt.wantCode {
				t.Errorf("code %q, want %q", got, tt.wantCode)
			}
		})
	}
	rec := do(h, "GET", "/stock/d1", "")
	if !strings.Contains(rec.Body.String(), `"available":10`) {
		t.Errorf("refused requests changed the stock: %s", rec.Body)
	}
}

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
