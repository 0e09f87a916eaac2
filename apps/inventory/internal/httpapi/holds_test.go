package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// TestDealHolds reads a deal's buckets through the audit route after a reserve, a commit and
// a release, and checks that the route answers reads only.
func TestDealHolds(t *testing.T) {
	t.Parallel()
	h := newRouter(t) // two buckets
	for _, s := range []struct{ method, path, body string }{
		{"PUT", "/stock/d1", `{"stock":4}`},
		{"POST", "/reservations", reserveBody("o1", 1)},
		{"POST", "/reservations", reserveBody("o2", 1)},
		{"POST", "/reservations", reserveBody("o3", 1)},
		{"POST", "/reservations/o2/commit", `{"deal_id":"d1"}`},
		{"POST", "/reservations/o3/release", `{"deal_id":"d1"}`},
	} {
		if rec := do(h, s.method, s.path, s.body); rec.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", s.method, s.path, rec.Code, rec.Body)
		}
	}
	rec := do(h, "GET", "/deals/d1/holds", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET holds: %d %s", rec.Code, rec.Body)
	}
	var got httpapi.HoldsView
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	// Which bucket each order landed in is the hash's business; the totals and the holds'
	// states are not.
	holds := map[string]httpapi.HoldView{}
	var sum httpapi.BucketView
	for i, b := range got.Buckets {
		if b.Bucket != i {
			t.Errorf("bucket %d listed at position %d", b.Bucket, i)
		}
		if b.Available+b.Reserved+b.Sold != b.Stock {
			t.Errorf("bucket %d counters do not add up: %+v", b.Bucket, b)
		}
		sum.Stock += b.Stock
		sum.Available += b.Available
		sum.Reserved += b.Reserved
		sum.Sold += b.Sold
		for id, hv := range b.Holds {
			holds[id] = hv
		}
	}
	if len(got.Buckets) != 2 || got.DealID != "d1" || got.Stock != 4 {
		t.Errorf("deal %q stock %d in %d buckets, want d1, 4 units, 2 buckets", got.DealID, got.Stock, len(got.Buckets))
	}
	if diff := cmp.Diff(sum, httpapi.BucketView{Stock: 4, Available: 2, Reserved: 1, Sold: 1}); diff != "" {
		t.Errorf("summed counters (-got +want):\n%s", diff)
	}
	want := map[string]httpapi.HoldView{
		"o1": {Qty: 1, State: "reserved"},
		"o2": {Qty: 1, State: "committed"},
		"o3": {Qty: 1, State: "released"},
	}
	if diff := cmp.Diff(holds, want, cmpopts.IgnoreFields(httpapi.HoldView{}, "Until", "At")); diff != "" {
		t.Errorf("holds (-got +want):\n%s", diff)
	}
	for id, hv := range holds {
		if hv.Until.IsZero() || hv.At.IsZero() || time.Since(hv.At) > time.Minute {
			t.Errorf("hold %s: until %s at %s, want both set, at just now", id, hv.Until, hv.At)
		}
	}
	// A read: the levels are what they were.
	if rec := do(h, "GET", "/stock/d1", ""); rec.Body.String() != `{"deal_id":"d1","stock":4,"available":2,"reserved":1,"sold":1}`+"\n" {
		t.Errorf("levels after the read: %s", rec.Body)
	}
}

func TestDealHoldsErrors(t *testing.T) {
	t.Parallel()
	h := newRouter(t)
	tests := []struct {
		name, path string
		wantStatus int
		wantCode   problem.Code
	}{
		{"unknown deal", "/deals/d404/holds", http.StatusNotFound, problem.CodeNotFound},
		{"key separator in the id", "/deals/d1:0/holds", http.StatusBadRequest, problem.CodeValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(h, "GET", tc.path, "")
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if got := problemCode(t, rec); got != tc.wantCode {
				t.Errorf("code %q, want %q", got, tc.wantCode)
			}
		})
	}
}
