package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/apps/payment/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment/paymenttest"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

const appToken = "app-token"

type env struct {
	router http.Handler
	repo   *paymenttest.Memory
}

// newEnv builds the router as main does (token-checked) over an in-memory store.
func newEnv(t *testing.T, faults payment.Faults) *env {
	t.Helper()
	repo := paymenttest.NewMemory()
	svc, err := payment.NewService(repo, faults, noop.NewMeterProvider().Meter("payment"))
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	r := server.NewRouter(slog.New(slog.DiscardHandler), func(context.Context) error { return nil }, sidecar.RequireAppToken(appToken))
	httpapi.Routes(r, svc)
	return &env{router: r, repo: repo}
}

func (e *env) do(method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("dapr-api-token", appToken)
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return m
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

// checkRecord verifies the contract's fields: exactly these keys, the given values, an id with
// the given prefix and an RFC 3339 UTC creation time.
func checkRecord(t *testing.T, got map[string]any, idField, idPrefix string, want map[string]any) {
	t.Helper()
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"amount_cents", "created_at", idField, "order_id", "status"}
	slices.Sort(wantKeys)
	if diff := cmp.Diff(keys, wantKeys); diff != "" {
		t.Errorf("fields mismatch (-got +want):\n%s", diff)
	}
	if id, _ := got[idField].(string); !strings.HasPrefix(id, idPrefix) || len(id) <= len(idPrefix) {
		t.Errorf("%s = %v, want %s…", idField, got[idField], idPrefix)
	}
	created, _ := got["created_at"].(string)
	if ts, err := time.Parse(time.RFC3339, created); err != nil || !strings.HasSuffix(created, "Z") || ts.IsZero() {
		t.Errorf("created_at = %q, want an RFC 3339 UTC time", created)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestCharges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   problem.Code
		wantFields map[string]any
	}{
		{
			name:       "tok_ok succeeds",
			body:       `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_ok"}`,
			wantStatus: http.StatusOK,
			wantFields: map[string]any{"order_id": "o1", "status": "succeeded", "amount_cents": 1999.0},
		},
		{
			name:       "another token succeeds",
			body:       `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_mastercard"}`,
			wantStatus: http.StatusOK,
			wantFields: map[string]any{"order_id": "o1", "status": "succeeded", "amount_cents": 1999.0},
		},
		{
			name:       "tok_declined is a 200 with status declined",
			body:       `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_declined"}`,
			wantStatus: http.StatusOK,
			wantFields: map[string]any{"order_id": "o1", "status": "declined", "amount_cents": 1999.0},
		},
		{name: "empty body", body: ``, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "missing token", body: `{"order_id":"o1","amount_cents":1999}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "missing amount", body: `{"order_id":"o1","payment_token":"tok_ok"}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "fractional amount", body: `{"order_id":"o1","amount_cents":19.99,"payment_token":"tok_ok"}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "amount as a string", body: `{"order_id":"o1","amount_cents":"1999","payment_token":"tok_ok"}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "unknown field", body: `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_ok","currency":"EUR"}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "not JSON", body: `order_id=o1`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, payment.Faults{})

			rec := e.do(http.MethodPost, "/charges", tt.body)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode != "" {
				if got := problemCode(t, rec); got != tt.wantCode {
					t.Errorf("code = %q, want %q", got, tt.wantCode)
				}
				if charges, _ := e.repo.Len(); charges != 0 {
					t.Errorf("charges stored = %d, want 0", charges)
				}
				return
			}
			checkRecord(t, decode(t, rec), "charge_id", "ch_", tt.wantFields)
		})
	}
}

// A decline is answered and readable, a later attempt with another card replaces it, and the
// success is final: a replay with the declined token and a read both answer it.
func TestChargeReplayAndRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{})

	declined := e.do(http.MethodPost, "/charges", `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_declined"}`)
	readDeclined := e.do(http.MethodGet, "/charges/o1", "")
	paid := e.do(http.MethodPost, "/charges", `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_ok"}`)
	again := e.do(http.MethodPost, "/charges", `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_declined"}`)
	read := e.do(http.MethodGet, "/charges/o1", "")

	for name, rec := range map[string]*httptest.ResponseRecorder{"declined": declined, "read declined": readDeclined, "paid": paid, "again": again, "read": read} {
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status = %d, want 200 (body %q)", name, rec.Code, rec.Body.String())
		}
	}
	first := decode(t, declined)
	if first["status"] != "declined" {
		t.Errorf("first status = %v, want declined", first["status"])
	}
	if diff := cmp.Diff(decode(t, readDeclined), first); diff != "" {
		t.Errorf("read after the decline mismatch (-got +want):\n%s", diff)
	}
	want := decode(t, paid)
	if want["status"] != "succeeded" || want["charge_id"] == first["charge_id"] {
		t.Errorf("charge after the decline = %v, want a new succeeded charge", want)
	}
	if diff := cmp.Diff(decode(t, again), want); diff != "" {
		t.Errorf("replayed charge mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(decode(t, read), want); diff != "" {
		t.Errorf("read charge mismatch (-got +want):\n%s", diff)
	}
}

func TestRefunds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		token      string // charge made first with this token ("" = no charge)
		body       string
		wantStatus int
		wantCode   problem.Code
	}{
		{name: "succeeded charge", token: "tok_ok", body: `{"order_id":"o1"}`, wantStatus: http.StatusOK},
		{name: "declined charge", token: "tok_declined", body: `{"order_id":"o1"}`, wantStatus: http.StatusConflict, wantCode: problem.CodeConflict},
		{name: "no charge", body: `{"order_id":"o1"}`, wantStatus: http.StatusConflict, wantCode: problem.CodeConflict},
		{name: "missing order id", token: "tok_ok", body: `{}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
		{name: "unknown field", token: "tok_ok", body: `{"order_id":"o1","amount_cents":5}`, wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, payment.Faults{})
			if tt.token != "" {
				if rec := e.do(http.MethodPost, "/charges", `{"order_id":"o1","amount_cents":4200,"payment_token":"`+tt.token+`"}`); rec.Code != http.StatusOK {
					t.Fatalf("charge: status = %d (body %q)", rec.Code, rec.Body.String())
				}
			}

			rec := e.do(http.MethodPost, "/refunds", tt.body)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode != "" {
				if got := problemCode(t, rec); got != tt.wantCode {
					t.Errorf("code = %q, want %q", got, tt.wantCode)
				}
				if _, refunds := e.repo.Len(); refunds != 0 {
					t.Errorf("refunds stored = %d, want 0", refunds)
				}
				return
			}
			checkRecord(t, decode(t, rec), "refund_id", "re_", map[string]any{"order_id": "o1", "status": "refunded", "amount_cents": 4200.0})
		})
	}
}

func TestRefundReplayAndRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{})
	if rec := e.do(http.MethodPost, "/charges", `{"order_id":"o1","amount_cents":4200,"payment_token":"tok_ok"}`); rec.Code != http.StatusOK {
		t.Fatalf("charge: status = %d (body %q)", rec.Code, rec.Body.String())
	}

	first := e.do(http.MethodPost, "/refunds", `{"order_id":"o1"}`)
	again := e.do(http.MethodPost, "/refunds", `{"order_id":"o1"}`)
	read := e.do(http.MethodGet, "/refunds/o1", "")

	for name, rec := range map[string]*httptest.ResponseRecorder{"first": first, "again": again, "read": read} {
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status = %d, want 200 (body %q)", name, rec.Code, rec.Body.String())
		}
	}
	want := decode(t, first)
	if diff := cmp.Diff(decode(t, again), want); diff != "" {
		t.Errorf("replayed refund mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(decode(t, read), want); diff != "" {
		t.Errorf("read refund mismatch (-got +want):\n%s", diff)
	}
	if _, refunds := e.repo.Len(); refunds != 1 {
		t.Errorf("refunds stored = %d, want 1", refunds)
	}
}

func TestReadsOfMissingRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
	}{
		{"unknown charge", "/charges/o404"},
		{"unknown refund", "/refunds/o404"},
		{"invalid order id", "/charges/o%20404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, payment.Faults{})

			rec := e.do(http.MethodGet, tt.path, "")

			if got, want := rec.Code, http.StatusNotFound; got != want {
				t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
			}
			if got := problemCode(t, rec); got != problem.CodeNotFound {
				t.Errorf("code = %q, want %q", got, problem.CodeNotFound)
			}
		})
	}
}

func TestInjectedFailuresAnswer503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{FailureRate: 1})
	tests := []struct {
		name, path, body string
	}{
		{"charge", "/charges", `{"order_id":"o1","amount_cents":1999,"payment_token":"tok_ok"}`},
		{"refund", "/refunds", `{"order_id":"o1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(http.MethodPost, tt.path, tt.body)

			if got, want := rec.Code, http.StatusServiceUnavailable; got != want {
				t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
			}
			if got := problemCode(t, rec); got != problem.CodeUnavailable {
				t.Errorf("code = %q, want %q", got, problem.CodeUnavailable)
			}
		})
	}
	if charges, refunds := e.repo.Len(); charges != 0 || refunds != 0 {
		t.Errorf("stored %d charges and %d refunds, want none", charges, refunds)
	}
	// Reads are not subject to fault injection.
	if rec := e.do(http.MethodGet, "/charges/o1", ""); rec.Code != http.StatusNotFound {
		t.Errorf("GET /charges/o1: status = %d, want 404", rec.Code)
	}
}

func TestCallsWithoutTheAppTokenAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payment.Faults{})
	req := httptest.NewRequest(http.MethodPost, "/charges", strings.NewReader(`{"order_id":"o1","amount_cents":1999,"payment_token":"tok_ok"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()

	e.router.ServeHTTP(rec, req)

	if got, want := rec.Code, http.StatusUnauthorized; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if charges, _ := e.repo.Len(); charges != 0 {
		t.Errorf("charges stored = %d, want 0", charges)
	}
}
