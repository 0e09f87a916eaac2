//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// sidecarClient calls app through its own sidecar's invoke endpoint (as other apps do), with
// the sidecar's API token and, when role is set, a forwarded user of that role.
func sidecarClient(s *harness.Stack, app, role string) (*harness.Client, map[string]string) {
	_, daprToken := s.Sup.Tokens()
	c := &harness.Client{
		Base: s.App(app).DaprHTTPURL() + "/v1.0/invoke/" + app + "/method",
		HC:   &http.Client{Timeout: 30 * time.Second},
	}
	hdr := map[string]string{"dapr-api-token": daprToken}
	if role != "" {
		hdr["X-User-Id"] = "1"
		hdr["X-Username"] = "operator"
		hdr["X-User-Role"] = role
	}
	return c, hdr
}

type reconcileFinding struct {
	Kind        string    `json:"kind"`
	DealID      string    `json:"deal_id"`
	OrderID     string    `json:"order_id"`
	Detail      string    `json:"detail"`
	Repair      string    `json:"repair"`
	RepairError string    `json:"repair_error"`
	RepairedAt  time.Time `json:"repaired_at"`
}

type reconcileReport struct {
	CheckedAt *time.Time         `json:"checked_at"`
	Findings  []reconcileFinding `json:"findings"`
	Repaired  []reconcileFinding `json:"repaired"`
	Errors    []string           `json:"errors"`
}

// TestReconcilerRepairsStores creates two discrepancies directly in the apps' stores, behind
// the order app's back: a reserved hold for an order that does not exist (reserved through
// inventory's own API) and a succeeded charge of a cancelled order (charged through payment's
// own API). The reconciler, ticked every second by its cron binding, must release the hold
// and refund the charge once, report both repairs at GET /admin/reconciliation, leave a clean
// confirmed order alone, and count the repairs in its metrics. Windows are shortened so that
// "past every timeout" comes within seconds.
func TestReconcilerRepairsStores(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "reconcile",
		Apps: []string{"gateway", "catalog", "inventory", "order", "payment"},
		AppEnv: map[string]map[string]string{"order": {
			"IDEMPOTENCY_LEASE":       "1s",
			"PAYMENT_GRACE":           "1s",
			"RECONCILE_MIN_INTERVAL":  "0s",
			"RECONCILE_MARGIN":        "1s",
			"RECONCILE_FLUSH_TIMEOUT": "1s",
			"RECONCILE_ORPHAN_AGE":    "3s",
		}},
		Components: map[string]map[string]string{"order-reconcile": {"schedule": "@every 1s"}},
	})
	dealID := newFlashDeal(t, s, 5)
	user, _ := s.NewUser(t)

	// A clean order: placed and paid, so confirmed.
	var kept orderView
	if r, err := placeOrder(ctx, user, dealID, 1, "rec-kept"); err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %v", err, r)
	} else if err := r.JSON(&kept); err != nil {
		t.Fatal(err)
	}
	user.MustDo(t, http.MethodPost, "/orders/"+kept.ID+"/pay", map[string]string{"payment_token": "tok_ok"}, http.StatusOK, &kept)
	if kept.Status != "confirmed" {
		t.Fatalf("paid order is %s, want confirmed", kept.Status)
	}

	// A cancelled order, then charged behind the order app's back.
	var gone orderView
	if r, err := placeOrder(ctx, user, dealID, 1, "rec-gone"); err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %v", err, r)
	} else if err := r.JSON(&gone); err != nil {
		t.Fatal(err)
	}
	user.MustDo(t, http.MethodPost, "/orders/"+gone.ID+"/cancel", struct{}{}, http.StatusOK, &gone)
	pay, payHdr := sidecarClient(s, "payment", "")
	r, err := pay.Do(ctx, http.MethodPost, "/charges", map[string]any{"order_id": gone.ID, "amount_cents": gone.TotalCents, "payment_token": "tok_ok"}, payHdr)
	if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"succeeded"`) {
		t.Fatalf("charge the cancelled order: %v %v", err, r)
	}

	// A hold for an order that never existed.
	ghost := fmt.Sprintf("ghost-%d", time.Now().UnixNano())
	inv, invHdr := inventoryClient(s)
	r, err = inv.Do(ctx, http.MethodPost, "/reservations", map[string]any{"deal_id": dealID, "order_id": ghost, "quantity": 2,
		"until": time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)}, invHdr)
	if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"reserved"`) {
		t.Fatalf("reserve for the ghost order: %v %v", err, r)
	}
	if st, err := s.Stock(ctx, dealID); err != nil || st.Reserved != 2 || st.Holds[ghost].State != "reserved" {
		t.Fatalf("stock before the reconciler: %+v, %v", st, err)
	}

	// Wait for the report to list both repairs.
	admin, adminHdr := sidecarClient(s, "order", "admin")
	var rep reconcileReport
	repaired := func(kind, orderID string) bool {
		for _, f := range rep.Repaired {
			if f.Kind == kind && f.OrderID == orderID && f.DealID == dealID {
				return true
			}
		}
		return false
	}
	for {
		r, err := admin.Do(ctx, http.MethodGet, "/admin/reconciliation", nil, adminHdr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusOK {
			t.Fatalf("GET /admin/reconciliation: %d %s", r.Status, r.Body)
		}
		rep = reconcileReport{}
		if err := r.JSON(&rep); err != nil {
			t.Fatal(err)
		}
		if repaired("orphan_hold", ghost) && repaired("charge_of_cancelled_order", gone.ID) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the report never listed both repairs: %+v", rep)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if rep.CheckedAt == nil || rep.Findings == nil || rep.Errors == nil {
		t.Errorf("report %+v, want checked_at and the lists", rep)
	}
	// The stacks of one run share the Redis DB and so the catalog's deals: other tests reserve
	// stock behind the order app's back on deals of their own. This deal must be clean.
	for _, f := range rep.Findings {
		if f.DealID == dealID {
			t.Errorf("unexpected finding: %+v", f)
		}
	}
	for _, e := range rep.Errors {
		t.Errorf("pass error: %s", e)
	}

	// The stores, not the report's word: the hold is released and the stock whole...
	st, err := s.Stock(ctx, dealID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Holds[ghost].State != "released" || st.Reserved != 0 || st.Sold != 1 || st.Available != 4 {
		t.Errorf("stock after the reconciler: %+v, want the ghost's hold released, 1 sold, 4 available", st)
	}
	// ...the cancelled order's charge refunded exactly once, and nothing touched the clean one.
	for _, c := range []struct {
		order   string
		refunds int
	}{{gone.ID, 1}, {kept.ID, 0}} {
		var l struct {
			Charges []struct{ Status string }     `json:"charges"`
			Refunds []struct{ AmountCents int64 } `json:"refunds"`
		}
		r, err := pay.Do(ctx, http.MethodGet, "/ledger/"+c.order, nil, payHdr)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("ledger of %s: %v %v", c.order, err, r)
		}
		if err := r.JSON(&l); err != nil {
			t.Fatal(err)
		}
		if len(l.Charges) != 1 || l.Charges[0].Status != "succeeded" || len(l.Refunds) != c.refunds {
			t.Errorf("ledger of %s: %+v, want one succeeded charge and %d refunds", c.order, l, c.refunds)
		}
	}
	var refund struct {
		AmountCents int64 `json:"amount_cents"`
	}
	if found, err := s.State(ctx, "payment", "refund:"+gone.ID, &refund); err != nil || !found || refund.AmountCents != gone.TotalCents {
		t.Errorf("payment's refund record of %s: %+v (found %t, %v), want %d cents", gone.ID, refund, found, err, gone.TotalCents)
	}
	var stored orderView
	if found, err := s.State(ctx, "order", "order:"+gone.ID, &stored); err != nil || !found || stored.Status != "cancelled" {
		t.Errorf("stored order %s: %+v (found %t, %v), want still cancelled", gone.ID, stored, found, err)
	}

	// Operators only.
	userCall, userHdr := sidecarClient(s, "order", "user")
	if r, err := userCall.Do(ctx, http.MethodGet, "/admin/reconciliation", nil, userHdr); err != nil || r.Status != http.StatusForbidden || r.Problem().Code != "forbidden" {
		t.Errorf("GET /admin/reconciliation as a user: %v %v, want 403 forbidden", err, r)
	}

	// Counted for Prometheus on the admin listener.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL("order")+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kind="orphan_hold"`, `kind="charge_of_cancelled_order"`} {
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "reconcile_repairs_total{") && strings.Contains(line, want) && strings.Contains(line, `outcome="ok"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("metrics lack reconcile_repairs_total{%s,outcome=\"ok\"}", want)
		}
	}
}
