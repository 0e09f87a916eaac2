//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestPaymentDownBreakerOpensAndRecovers stops the payment app: pay answers 503
// payment-unavailable, the order sidecar's circuit breaker on payment opens (read from its
// Prometheus metrics), and once payment is back the same order is paid and confirmed, charged
// exactly once.
func TestPaymentDownBreakerOpensAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "payment-down",
		Apps: []string{"gateway", "catalog", "inventory", "order", "payment"},
	})
	dealID := newFlashDeal(t, s, 5)
	user, _ := s.NewUser(t)
	r, err := placeOrder(ctx, user, dealID, 1, "pd")
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %v", err, r)
	}
	var o orderView
	_ = r.JSON(&o)

	if err := s.Sup.StopApp("payment"); err != nil {
		t.Fatal(err)
	}
	pay := func() *harness.Response {
		resp, err := user.Do(ctx, http.MethodPost, "/orders/"+o.ID+"/pay", map[string]string{"payment_token": "tok_ok"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	open := false
	for i := 0; i < 20 && !open; i++ {
		resp := pay()
		if resp.Status != http.StatusServiceUnavailable || resp.Problem().Code != "payment-unavailable" {
			t.Fatalf("pay while payment is down: %d %s", resp.Status, resp.Body)
		}
		open = breakerOpen(t, s)
	}
	if !open {
		t.Fatalf("the order sidecar's circuit breaker on payment did not open")
	}
	// While open, pay still fails cleanly and the order stays payable.
	if resp := pay(); resp.Status != http.StatusServiceUnavailable || resp.Problem().Code != "payment-unavailable" {
		t.Fatalf("pay with the breaker open: %d %s", resp.Status, resp.Body)
	}
	var cur orderView
	user.MustDo(t, http.MethodGet, "/orders/"+o.ID, nil, http.StatusOK, &cur)
	if cur.Status != "pending_payment" {
		t.Fatalf("order status %q while payment is down", cur.Status)
	}

	if err := s.Sup.StartApp(ctx, "payment"); err != nil {
		t.Fatal(err)
	}
	var paid *harness.Response
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if resp := pay(); resp.Status == http.StatusOK {
			paid = resp
			break
		} else if resp.Problem().Code != "payment-unavailable" {
			t.Fatalf("pay after recovery: %d %s", resp.Status, resp.Body)
		}
	}
	if paid == nil {
		t.Fatal("pay never succeeded after payment came back")
	}
	_ = paid.JSON(&cur)
	if cur.Status != "confirmed" {
		t.Errorf("status %q after payment recovered, want confirmed", cur.Status)
	}
	if breakerOpen(t, s) {
		t.Errorf("breaker still open after a successful call")
	}
	// Exactly one charge record, succeeded, for the full amount; no refund.
	var charge struct {
		OrderID     string `json:"order_id"`
		Status      string `json:"status"`
		AmountCents int64  `json:"amount_cents"`
	}
	found, err := s.State(ctx, "payment", "charge:"+o.ID, &charge)
	if err != nil || !found {
		t.Fatalf("charge record: found=%v err=%v", found, err)
	}
	if charge.Status != "succeeded" || charge.AmountCents != o.TotalCents {
		t.Errorf("charge %+v, want succeeded for %d", charge, o.TotalCents)
	}
	keys, err := s.StateKeys(ctx, "payment")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if strings.Contains(k, o.ID) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("payment records for the order: %v, want exactly the one charge", keys)
	}
	if st, _ := s.Stock(ctx, dealID); st.Sold != 1 || st.Reserved != 0 {
		t.Errorf("stock after recovery: %+v", st)
	}
}

// TestPayAfterDeclineSucceeds (issue 8, loss window 6): a declined card does not block the
// order. Paying with tok_declined answers 402; paying again with tok_ok confirms the order,
// and the payment app's store holds exactly one charge record for it, succeeded, for the
// full amount, and no refund.
func TestPayAfterDeclineSucceeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dealID := newFlashDeal(t, stack, 5)
	user, _ := stack.NewUser(t)
	r, err := placeOrder(ctx, user, dealID, 1, "decline-then-pay")
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %v", err, r)
	}
	var o orderView
	if err := r.JSON(&o); err != nil {
		t.Fatal(err)
	}

	if r := user.MustDo(t, http.MethodPost, "/orders/"+o.ID+"/pay", map[string]string{"payment_token": "tok_declined"}, http.StatusPaymentRequired, nil); r.Problem().Code != "payment-declined" {
		t.Fatalf("pay with tok_declined: %s", r.Body)
	}
	var declined struct {
		Status string `json:"status"`
	}
	if found, err := stack.State(ctx, "payment", "charge:"+o.ID, &declined); err != nil || !found || declined.Status != "declined" {
		t.Errorf("charge record after the decline: %+v found=%v err=%v; want declined", declined, found, err)
	}
	var paid orderView
	user.MustDo(t, http.MethodPost, "/orders/"+o.ID+"/pay", map[string]string{"payment_token": "tok_ok"}, http.StatusOK, &paid)
	if paid.Status != "confirmed" {
		t.Errorf("status after paying with tok_ok: %q, want confirmed", paid.Status)
	}

	var charge struct {
		OrderID     string `json:"order_id"`
		Status      string `json:"status"`
		AmountCents int64  `json:"amount_cents"`
	}
	found, err := stack.State(ctx, "payment", "charge:"+o.ID, &charge)
	if err != nil || !found {
		t.Fatalf("charge record: found=%v err=%v", found, err)
	}
	if charge.OrderID != o.ID || charge.Status != "succeeded" || charge.AmountCents != o.TotalCents {
		t.Errorf("charge %+v, want succeeded for %d", charge, o.TotalCents)
	}
	keys, err := stack.StateKeys(ctx, "payment")
	if err != nil {
		t.Fatal(err)
	}
	var records []string
	for _, k := range keys {
		if strings.Contains(k, o.ID) {
			records = append(records, k)
		}
	}
	if len(records) != 1 || records[0] != "charge:"+o.ID {
		t.Errorf("payment records for the order: %v, want exactly the one charge", records)
	}
	stored, err := storedOrderOf(ctx, stack, o.ID)
	if err != nil || stored.Status != "confirmed" {
		t.Errorf("stored order: %+v, %v; want confirmed", stored, err)
	}
	if st, _ := stack.Stock(ctx, dealID); st.Sold != 1 || st.Reserved != 0 {
		t.Errorf("stock after paying: %+v", st)
	}
}

// breakerOpen reads the order sidecar's metrics: Dapr exports one dapr_resiliency_cb_state
// gauge per state, 1 for the current one.
func breakerOpen(t *testing.T, s *harness.Stack) bool {
	t.Helper()
	body := get(t, &http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.App("order").MetricsPort))
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "dapr_resiliency_cb_state{") && strings.Contains(line, "payment") &&
			strings.Contains(line, `status="open"`) && strings.HasSuffix(line, " 1") {
			return true
		}
	}
	return false
}
