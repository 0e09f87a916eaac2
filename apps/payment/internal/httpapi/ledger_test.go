package httpapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// TestLedger reads an order's records through GET /ledger/{orderID}: empty lists (a 200,
// never a 404) without records, the charge, then the charge and its refund.
func TestLedger(t *testing.T) {
	t.Parallel()
	type counts struct{ charges, refunds int }
	tests := []struct {
		name  string
		setup []struct{ path, body string }
		want  counts
		// wantStatus of the charge when there is one.
		wantStatus string
	}{
		{name: "nothing recorded", want: counts{0, 0}},
		{name: "declined charge", setup: []struct{ path, body string }{
			{"/charges", `{"order_id":"o1","amount_cents":500,"payment_token":"tok_declined"}`},
		}, want: counts{1, 0}, wantStatus: "declined"},
		{name: "succeeded charge", setup: []struct{ path, body string }{
			{"/charges", `{"order_id":"o1","amount_cents":500,"payment_token":"tok_ok"}`},
		}, want: counts{1, 0}, wantStatus: "succeeded"},
		{name: "refunded charge", setup: []struct{ path, body string }{
			{"/charges", `{"order_id":"o1","amount_cents":500,"payment_token":"tok_ok"}`},
			{"/refunds", `{"order_id":"o1"}`},
			{"/refunds", `{"order_id":"o1"}`},
		}, want: counts{1, 1}, wantStatus: "succeeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, payment.Faults{})
			for _, s := range tc.setup {
				if rec := e.do(http.MethodPost, s.path, s.body); rec.Code != http.StatusOK {
					t.Fatalf("POST %s: %d %s", s.path, rec.Code, rec.Body)
				}
			}
			rec := e.do(http.MethodGet, "/ledger/o1", "")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /ledger/o1: %d %s", rec.Code, rec.Body)
			}
			var got struct {
				OrderID string           `json:"order_id"`
				Charges []map[string]any `json:"charges"`
				Refunds []map[string]any `json:"refunds"`
			}
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.OrderID != "o1" || got.Charges == nil || got.Refunds == nil {
				t.Errorf("ledger %+v, want order o1 and both lists present", got)
			}
			if c := (counts{len(got.Charges), len(got.Refunds)}); c != tc.want {
				t.Errorf("%d charges, %d refunds, want %d and %d", c.charges, c.refunds, tc.want.charges, tc.want.refunds)
			}
			if len(got.Charges) > 0 {
				checkRecord(t, got.Charges[0], "charge_id", "ch_", map[string]any{"order_id": "o1", "status": tc.wantStatus, "amount_cents": 500.0})
			}
			if len(got.Refunds) > 0 {
				checkRecord(t, got.Refunds[0], "refund_id", "re_", map[string]any{"order_id": "o1", "status": "refunded", "amount_cents": 500.0})
			}
		})
	}
}

func TestLedgerRejectsBadOrderID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{})
	rec := e.do(http.MethodGet, "/ledger/o%20x", "")
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400 (body %s)", rec.Code, rec.Body)
	}
	if got := problemCode(t, rec); got != problem.CodeValidation {
		t.Errorf("code %q, want %q", got, problem.CodeValidation)
	}
}

// TestLedgerStoreDown: a store failure is a 5xx, not an empty ledger (which would read as
// "nothing charged" to the reconciler).
func TestLedgerStoreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{})
	e.repo.Fail(errors.New("connection refused"))
	rec := e.do(http.MethodGet, "/ledger/o1", "")
	if rec.Code < 500 {
		t.Fatalf("status %d, want a 5xx (body %s)", rec.Code, rec.Body)
	}
}
