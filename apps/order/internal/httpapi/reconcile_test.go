package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

// fakeReconciler answers with a fixed report and counts ticks.
type fakeReconciler struct {
	report  reconcile.Report
	ticks   int
	tickErr error
}

func (f *fakeReconciler) Tick(context.Context) (reconcile.TickResult, error) {
	f.ticks++
	return reconcile.TickResult{Ran: true, Repaired: 1}, f.tickErr
}

func (f *fakeReconciler) Report(context.Context) (reconcile.Report, error) { return f.report, nil }

func newReconcileServer(rec *fakeReconciler) http.Handler {
	log := slog.New(slog.DiscardHandler)
	r := server.NewRouter(log, func(context.Context) error { return nil })
	httpapi.ReconcileRoutes(r, rec, "order-reconcile", log)
	return r
}

func TestAdminReconciliation(t *testing.T) {
	t.Parallel()
	checked := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	bucket := 0
	rec := &fakeReconciler{report: reconcile.Report{
		CheckedAt: &checked, Deals: 1, Orders: 2,
		Findings:      []reconcile.Finding{{Kind: reconcile.KindCounterMismatch, DealID: "d1", Bucket: &bucket, Detail: "sold 2"}},
		FindingsTotal: 1,
		Repaired:      []reconcile.Repaired{{Finding: reconcile.Finding{Kind: reconcile.KindOrphanHold, DealID: "d1", OrderID: "o9", Detail: "x", Repair: reconcile.ActionReleaseHold}, At: checked}},
		RepairedTotal: 1,
		Errors:        []string{},
	}}
	h := newReconcileServer(rec)
	tests := []struct {
		name       string
		role       string // "" sends no identity
		wantStatus int
		wantCode   problem.Code
	}{
		{"admin", identity.RoleAdmin, http.StatusOK, ""},
		{"user", identity.RoleUser, http.StatusForbidden, problem.CodeForbidden},
		{"nobody", "", http.StatusUnauthorized, problem.CodeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/admin/reconciliation", nil)
			if tc.role != "" {
				req.Header = identity.User{ID: "1", Username: "someone", Role: tc.role}.Header()
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantCode != "" {
				var doc problem.Document
				if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.Code != tc.wantCode {
					t.Errorf("problem %+v (%v), want code %q", doc, err, tc.wantCode)
				}
				return
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"checked_at", "findings", "repaired"} {
				if _, ok := body[k]; !ok {
					t.Errorf("report lacks %q: %s", k, w.Body)
				}
			}
			if got := string(body["checked_at"]); got != `"2030-01-02T10:00:00Z"` {
				t.Errorf("checked_at %s, want RFC 3339 UTC", got)
			}
			var got reconcile.Report
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, rec.report); diff != "" {
				t.Errorf("report (-got +want):\n%s", diff)
			}
			var findings []map[string]any
			_ = json.Unmarshal(body["findings"], &findings)
			if len(findings) != 1 || findings[0]["kind"] != "counter_mismatch" || findings[0]["bucket"] != 0.0 {
				t.Errorf("findings %s, want the counter mismatch of bucket 0", body["findings"])
			}
		})
	}
}

// TestReconcileBinding: the cron binding's POST runs a tick and answers what it did; a tick
// that failed is a problem answer.
func TestReconcileBinding(t *testing.T) {
	t.Parallel()
	rec := &fakeReconciler{}
	h := newReconcileServer(rec)
	req := httptest.NewRequest(http.MethodPost, "/order-reconcile", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || rec.ticks != 1 {
		t.Fatalf("POST /order-reconcile: %d %s after %d ticks, want 200 after 1", w.Code, w.Body, rec.ticks)
	}
	var res map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res["ran"] != true || res["repaired"] != 1.0 {
		t.Errorf("answer %s (%v), want ran and one repair", w.Body, err)
	}

	rec.tickErr = errors.New("state store down")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/order-reconcile", nil))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("failed tick: %d %s, want 500", w.Code, w.Body)
	}
	// The report is not reachable through the binding's method, nor the binding by GET.
	for _, c := range []struct{ method, path string }{{http.MethodPost, "/admin/reconciliation"}, {http.MethodGet, "/order-reconcile"}} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if !slices.Contains([]int{http.StatusMethodNotAllowed, http.StatusNotFound}, w.Code) {
			t.Errorf("%s %s: %d, want 405 or 404", c.method, c.path, w.Code)
		}
	}
}
