package sidecar_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"

	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

func TestRequireAppToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured string
		sent       string
		path       string
		wantStatus int
	}{
		{name: "right token", configured: "s3cret", sent: "s3cret", path: "/deals", wantStatus: http.StatusOK},
		{name: "wrong token", configured: "s3cret", sent: "guess", path: "/deals", wantStatus: http.StatusUnauthorized},
		{name: "token prefix", configured: "s3cret", sent: "s3c", path: "/deals", wantStatus: http.StatusUnauthorized},
		{name: "missing token", configured: "s3cret", path: "/deals", wantStatus: http.StatusUnauthorized},
		{name: "healthz stays open", configured: "s3cret", path: "/healthz", wantStatus: http.StatusOK},
		{name: "readyz stays open", configured: "s3cret", path: "/readyz", wantStatus: http.StatusOK},
		{name: "no token configured lets calls through", path: "/deals", wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			called := false
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
			h := sidecar.RequireAppToken(tt.configured)(next)
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.sent != "" {
				req.Header.Set("dapr-api-token", tt.sent)
			}
			rec := httptest.NewRecorder()

			h.ServeHTTP(rec, req)

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if got, want := called, tt.wantStatus == http.StatusOK; got != want {
				t.Errorf("next called = %t, want %t", got, want)
			}
			if tt.wantStatus == http.StatusUnauthorized {
				if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
					t.Errorf("Content-Type = %q, want %q", got, problem.ContentType)
				}
			}
		})
	}
}

// recorded is what the stand-in sidecar saw of one request.
type recorded struct {
	Method      string
	Path        string
	RawQuery    string
	Token       string
	ContentType string
	UserID      string
	Body        string
}

// fakeSidecar is an httptest server standing in for daprd's HTTP API; it records the request
// and answers with the canned response.
type fakeSidecar struct {
	srv *httptest.Server

	mu  sync.Mutex
	got []recorded
}

func newFakeSidecar(t *testing.T, answer http.HandlerFunc) *fakeSidecar {
	t.Helper()
	f := &fakeSidecar{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, recorded{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Token: r.Header.Get("dapr-api-token"), ContentType: r.Header.Get("Content-Type"),
			UserID: r.Header.Get("X-User-Id"), Body: string(body),
		})
		f.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSidecar) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.got...)
}

// config points a sidecar.Config at the server, as DAPR_HOST/DAPR_HTTP_PORT would.
func config(t *testing.T, srv *httptest.Server, token string) sidecar.Config {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return sidecar.Config{Host: host, HTTPPort: p, APIToken: token}
}

func answer(status int, contentType, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestInvokerCall(t *testing.T) {
	t.Parallel()
	type deal struct {
		ID    string `json:"id"`
		Stock int    `json:"stock"`
	}
	sc := newFakeSidecar(t, answer(http.StatusCreated, "application/json", `{"id":"d1","stock":5}`))
	inv := sidecar.NewInvoker(config(t, sc.srv, "api-tok"))
	hdr := http.Header{}
	hdr.Set("X-User-Id", "u1")

	var got deal
	err := inv.Call(testCtx(t), "catalog", http.MethodPost, "/deals", hdr, deal{Stock: 5}, &got)

	if err != nil {
		t.Fatalf("Call() error = %v", err)
	}
	if diff := cmp.Diff(got, deal{ID: "d1", Stock: 5}); diff != "" {
		t.Errorf("decoded answer mismatch (-got +want):\n%s", diff)
	}
	want := []recorded{{
		Method: http.MethodPost, Path: "/v1.0/invoke/catalog/method/deals", Token: "api-tok",
		ContentType: "application/json", UserID: "u1", Body: `{"id":"","stock":5}`,
	}}
	if diff := cmp.Diff(sc.requests(), want); diff != "" {
		t.Errorf("request seen by the sidecar mismatch (-got +want):\n%s", diff)
	}
}

func TestInvokerRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		token   string
		method  string
		path    string
		body    []byte
		want    recorded
		wantRsp sidecar.Response
	}{
		{
			name: "get with query and no body", token: "api-tok", method: http.MethodGet, path: "deals?active=true",
			want: recorded{Method: http.MethodGet, Path: "/v1.0/invoke/catalog/method/deals", RawQuery: "active=true", Token: "api-tok"},
		},
		{
			name: "post with body", token: "api-tok", method: http.MethodPost, path: "/deals/7/orders", body: []byte(`{"quantity":1}`),
			want: recorded{Method: http.MethodPost, Path: "/v1.0/invoke/catalog/method/deals/7/orders", Token: "api-tok", ContentType: "application/json", Body: `{"quantity":1}`},
		},
		{
			name: "no api token configured", method: http.MethodGet, path: "deals",
			want: recorded{Method: http.MethodGet, Path: "/v1.0/invoke/catalog/method/deals"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := newFakeSidecar(t, answer(http.StatusOK, "application/json", `{"items":[]}`))
			inv := sidecar.NewInvoker(config(t, sc.srv, tt.token))

			resp, err := inv.Raw(testCtx(t), "catalog", tt.method, tt.path, nil, tt.body)

			if err != nil {
				t.Fatalf("Raw() error = %v", err)
			}
			if got, want := resp.Status, http.StatusOK; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if got, want := string(resp.Body), `{"items":[]}`; got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			if diff := cmp.Diff(sc.requests(), []recorded{tt.want}); diff != "" {
				t.Errorf("request seen by the sidecar mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestInvokerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		answer      http.HandlerFunc
		wantCode    problem.Code // CodeInternal: not a *problem.Error
		wantIs      error        // optional sentinel to match
		wantDetail  string
		wantPrivate string // in Error() and Private, never in the problem document
		wantRetry   time.Duration
	}{
		{
			name:       "problem document is relayed with its code",
			answer:     answer(http.StatusConflict, problem.ContentType, `{"type":"x","title":"Sold out","status":409,"code":"sold-out","detail":"no units left"}`),
			wantCode:   problem.CodeSoldOut,
			wantIs:     &problem.Error{Code: problem.CodeSoldOut},
			wantDetail: "no units left",
		},
		{
			name:       "retry-after is relayed",
			answer:     answer(http.StatusTooManyRequests, problem.ContentType+"; charset=utf-8", `{"status":429,"code":"rate-limited","detail":"slow down"}`, "Retry-After", "7"),
			wantCode:   problem.CodeRateLimited,
			wantDetail: "slow down",
			wantRetry:  7 * time.Second,
		},
		{
			// An app refusing work it cannot finish in time (the order app's admission limit).
			name:       "unavailable keeps its retry-after",
			answer:     answer(http.StatusServiceUnavailable, problem.ContentType, `{"status":503,"code":"unavailable","detail":"at capacity"}`, "Retry-After", "2"),
			wantCode:   problem.CodeUnavailable,
			wantDetail: "at capacity",
			wantRetry:  2 * time.Second,
		},
		{
			name:     "problem with an unknown code is internal",
			answer:   answer(http.StatusTeapot, problem.ContentType, `{"status":418,"code":"teapot"}`),
			wantCode: problem.CodeInternal,
		},
		{
			// Dapr's error text is for the log: the problem document says only "unavailable".
			name:        "dapr direct invoke error is unavailable",
			answer:      answer(http.StatusInternalServerError, "application/json", `{"errorCode":"ERR_DIRECT_INVOKE","message":"failed to invoke, id: catalog"}`),
			wantCode:    problem.CodeUnavailable,
			wantIs:      &problem.Error{Code: problem.CodeUnavailable},
			wantDetail:  "a service is temporarily unavailable; retry shortly",
			wantPrivate: "ERR_DIRECT_INVOKE",
		},
		{
			name:     "bare 5xx is unavailable",
			answer:   answer(http.StatusBadGateway, "text/plain", "bad gateway"),
			wantCode: problem.CodeUnavailable,
		},
		{
			name:     "bare 4xx is an internal error",
			answer:   answer(http.StatusBadRequest, "text/plain", "nope"),
			wantCode: problem.CodeInternal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := newFakeSidecar(t, tt.answer)
			inv := sidecar.NewInvoker(config(t, sc.srv, ""))

			err := inv.Call(testCtx(t), "catalog", http.MethodPost, "deals", nil, map[string]int{"stock": 1}, nil)

			if err == nil {
				t.Fatal("Call() error = nil, want an error")
			}
			if got := problem.CodeOf(err); got != tt.wantCode {
				t.Errorf("CodeOf(%v) = %q, want %q", err, got, tt.wantCode)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.wantIs)
			}
			var perr *problem.Error
			if errors.As(err, &perr) {
				if tt.wantDetail != "" && perr.Detail != tt.wantDetail {
					t.Errorf("detail = %q, want %q", perr.Detail, tt.wantDetail)
				}
				if doc := problem.Doc(err, "/x"); tt.wantPrivate != "" && (!strings.Contains(perr.Private, tt.wantPrivate) || !strings.Contains(err.Error(), tt.wantPrivate) || strings.Contains(doc.Detail, tt.wantPrivate)) {
					t.Errorf("private %q, error %q, public detail %q: want %q in the first two only", perr.Private, err, doc.Detail, tt.wantPrivate)
				}
				if perr.RetryAfter != tt.wantRetry {
					t.Errorf("RetryAfter = %v, want %v", perr.RetryAfter, tt.wantRetry)
				}
			}
		})
	}
}

func TestInvokerRelaysFieldErrors(t *testing.T) {
	t.Parallel()
	sc := newFakeSidecar(t, answer(http.StatusBadRequest, problem.ContentType,
		`{"status":400,"code":"validation","detail":"the request is invalid","errors":[{"field":"stock","reason":"too big"}]}`))
	inv := sidecar.NewInvoker(config(t, sc.srv, ""))

	_, err := inv.Raw(testCtx(t), "catalog", http.MethodPost, "deals", nil, []byte(`{}`))

	var perr *problem.Error
	if !errors.As(err, &perr) {
		t.Fatalf("Raw() error = %v, want a *problem.Error", err)
	}
	want := &problem.Error{Code: problem.CodeValidation, Detail: "the request is invalid", Fields: []problem.FieldError{{Field: "stock", Reason: "too big"}}}
	if diff := cmp.Diff(perr, want); diff != "" {
		t.Errorf("relayed error mismatch (-got +want):\n%s", diff)
	}
}

func TestInvokerUnreachable(t *testing.T) {
	t.Parallel()
	sc := newFakeSidecar(t, answer(http.StatusOK, "", ""))
	cfg := config(t, sc.srv, "")
	sc.srv.Close()
	inv := sidecar.NewInvoker(cfg)

	_, err := inv.Raw(testCtx(t), "catalog", http.MethodGet, "deals", nil, nil)

	if got, want := problem.CodeOf(err), problem.CodeUnavailable; got != want {
		t.Errorf("CodeOf(%v) = %q, want %q", err, got, want)
	}
}

func TestInvokerContextCanceled(t *testing.T) {
	t.Parallel()
	sc := newFakeSidecar(t, answer(http.StatusOK, "", ""))
	inv := sidecar.NewInvoker(config(t, sc.srv, ""))
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()

	_, err := inv.Raw(ctx, "catalog", http.MethodGet, "deals", nil, nil)

	if !errors.Is(err, context.Canceled) {
		t.Errorf("Raw() error = %v, want context.Canceled", err)
	}
}

func TestInvokerCallUndecodableAnswer(t *testing.T) {
	t.Parallel()
	sc := newFakeSidecar(t, answer(http.StatusOK, "text/html", "<html>"))
	inv := sidecar.NewInvoker(config(t, sc.srv, ""))

	var out map[string]any
	err := inv.Call(testCtx(t), "catalog", http.MethodGet, "deals", nil, nil, &out)

	if err == nil {
		t.Error("Call() error = nil, want a decode error")
	}
}

func TestHealthy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		wantErr bool
	}{
		{"no content", http.StatusNoContent, false},
		{"server error", http.StatusInternalServerError, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := newFakeSidecar(t, answer(tt.status, "", ""))

			err := sidecar.Healthy(testCtx(t), config(t, sc.srv, ""), sc.srv.Client())

			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Healthy() error = %v, want error %t", err, tt.wantErr)
			}
			if got := sc.requests(); len(got) != 1 || got[0].Path != "/v1.0/healthz" {
				t.Errorf("requests = %+v, want one GET /v1.0/healthz", got)
			}
		})
	}
}

func TestConfigHTTPBase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sidecar.Config
		want string
	}{
		{"ipv4", sidecar.Config{Host: "127.0.0.1", HTTPPort: 3500}, "http://127.0.0.1:3500"},
		{"ipv6", sidecar.Config{Host: "::1", HTTPPort: 3501}, "http://[::1]:3501"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cfg.HTTPBase(); got != tt.want {
				t.Errorf("HTTPBase() = %q, want %q", got, tt.want)
			}
		})
	}
}

// testCtx bounds a test's calls to the stand-in sidecar.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestInvokerBoundsEachCallByTarget(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sc := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/invoke/slow/") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := config(t, sc.srv, "")
	cfg.InvokeTimeouts = map[string]time.Duration{"slow": 50 * time.Millisecond}
	cfg.InvokeTimeout = 0 // every other app: only the caller's context
	inv := sidecar.NewInvoker(cfg)

	start := time.Now()
	_, err := inv.Raw(testCtx(t), "slow", http.MethodGet, "x", nil, nil)
	if got, want := problem.CodeOf(err), problem.CodeUnavailable; got != want {
		t.Errorf("slow target: CodeOf(%v) = %q, want %q", err, got, want)
	}
	if !strings.Contains(err.Error(), "did not answer within 50ms") {
		t.Errorf("slow target: error %q does not say it timed out", err)
	}
	// The outcome is unknown, not refused: the caller is told when to retry (with the same
	// Idempotency-Key, which is safe), as for any other transient refusal.
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.RetryAfter <= 0 {
		t.Errorf("slow target: error %#v has no Retry-After", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slow target answered after %s, want about its 50ms bound", d)
	}
	if _, err := inv.Raw(testCtx(t), "fast", http.MethodGet, "x", nil, nil); err != nil {
		t.Errorf("other target: %v", err)
	}
}

func TestInvokeTimeoutsFromEnv(t *testing.T) {
	var c sidecar.Config
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{
		Target:   &c,
		Lookuper: envconfig.MapLookuper(map[string]string{"INVOKE_TIMEOUTS": "inventory:750ms,payment:3s"}),
	}); err != nil {
		t.Fatal(err)
	}
	for app, want := range map[string]time.Duration{"inventory": 750 * time.Millisecond, "payment": 3 * time.Second, "catalog": 5 * time.Second} {
		if got := c.InvokeTimeoutFor(app); got != want {
			t.Errorf("InvokeTimeoutFor(%q) = %s, want %s", app, got, want)
		}
	}
	var d sidecar.Config
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &d, Lookuper: envconfig.MapLookuper(nil)}); err != nil {
		t.Fatal(err)
	}
	if got, want := d.InvokeTimeoutFor("inventory"), 2*time.Second; got != want {
		t.Errorf("default InvokeTimeoutFor(inventory) = %s, want %s", got, want)
	}
}
