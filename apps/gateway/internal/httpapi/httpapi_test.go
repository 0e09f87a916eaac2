package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/account"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/auth"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

const tokenTTL = 15 * time.Minute

// fakeRepo is an in-memory account.Repository.
type fakeRepo struct {
	mu     sync.Mutex
	byName map[string]account.Account
}

func (r *fakeRepo) Get(_ context.Context, username string) (account.Account, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.byName[username]
	if !ok {
		return account.Account{}, account.ErrNotFound
	}
	return a, nil
}

func (r *fakeRepo) Create(_ context.Context, a account.Account) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byName[a.Username]; ok {
		return account.ErrExists
	}
	r.byName[a.Username] = a
	return nil
}

func (r *fakeRepo) Upsert(_ context.Context, username string, fn func(a *account.Account, found bool) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, found := r.byName[username]
	if err := fn(&a, found); err != nil {
		if errors.Is(err, account.ErrNoChange) {
			return nil
		}
		return err
	}
	r.byName[username] = a
	return nil
}

type fakeIDs struct {
	mu sync.Mutex
	n  int
}

func (f *fakeIDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return strconv.Itoa(f.n)
}

// invocation is one call the gateway made through the sidecar.
type invocation struct {
	App    string
	Method string
	Path   string
	Header http.Header
	Body   string
}

// fakeInvoker records invocations and answers with resp or err.
type fakeInvoker struct {
	mu    sync.Mutex
	calls []invocation
	resp  *sidecar.Response
	err   error
}

func (f *fakeInvoker) Raw(_ context.Context, app, method, path string, hdr http.Header, body []byte) (*sidecar.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, invocation{App: app, Method: method, Path: path, Header: hdr.Clone(), Body: string(body)})
	if f.err != nil {
		return nil, f.err
	}
	if f.resp != nil {
		return f.resp, nil
	}
	return &sidecar.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{}`)}, nil
}

func (f *fakeInvoker) invocations() []invocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invocation(nil), f.calls...)
}

// fakeLimiter lets everything through unless told to refuse a scope, then answers like the
// real limiter: 429 rate-limited with Retry-After.
type fakeLimiter struct {
	refuseIP, refuseUser bool
}

func (l fakeLimiter) PerIP(next http.Handler) http.Handler { return l.gate(l.refuseIP, "ip", next) }
func (l fakeLimiter) PerIPStrict(next http.Handler) http.Handler {
	return l.gate(l.refuseIP, "ip", next)
}
func (l fakeLimiter) Register(next http.Handler) http.Handler  { return next }
func (fakeLimiter) LoginBlocked(context.Context, string) error { return nil }
func (fakeLimiter) LoginFailed(context.Context, string)        {}
func (fakeLimiter) LoginSucceeded(context.Context, string)     {}
func (l fakeLimiter) PerUser(next http.Handler) http.Handler {
	return l.gate(l.refuseUser, "user", next)
}

func (fakeLimiter) gate(refuse bool, scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse {
			problem.Write(w, r, &problem.Error{Code: problem.CodeRateLimited, Detail: "too many requests from this " + scope, RetryAfter: 3 * time.Second})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type env struct {
	router   http.Handler
	tokens   *auth.Tokens
	invoker  *fakeInvoker
	accounts *account.Service
	hub      *live.Hub
}

// appToken is the app API token the tests' gateway expects from its sidecar.
const appToken = "sidecar-secret"

type option func(*httpapi.API)

func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	tokens, err := auth.NewTokens([]byte(strings.Repeat("k", auth.MinKeyLen)), "groupbuy-gateway", "groupbuy-api", tokenTTL)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := account.NewService(&fakeRepo{byName: map[string]account.Account{}}, &fakeIDs{}, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	inv := &fakeInvoker{}
	hub := live.NewHub(16)
	t.Cleanup(hub.Close)
	api := &httpapi.API{
		Accounts: accounts,
		Tokens:   func() (*auth.Tokens, error) { return tokens, nil },
		Invoker:  inv,
		Limiter:  fakeLimiter{},
		Apps:     httpapi.Apps{Catalog: "catalog", Order: "order", Notify: "notify"},
		Hub:      hub,
		SSE:      live.SSE{Heartbeat: 50 * time.Millisecond},
		AppToken: appToken,
	}
	for _, o := range opts {
		o(api)
	}
	r := server.NewRouter(slog.New(slog.DiscardHandler), func(context.Context) error { return nil })
	api.Routes(r)
	return &env{router: r, tokens: tokens, invoker: inv, accounts: accounts, hub: hub}
}

func (e *env) token(t *testing.T, u identity.User) string {
	t.Helper()
	tok, _, err := e.tokens.Issue(u)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) do(method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	return rec
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

var (
	alice = identity.User{ID: "u1", Username: "alice", Role: identity.RoleUser}
	root  = identity.User{ID: "a1", Username: "root", Role: identity.RoleAdmin}
)

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) problem.Document {
	t.Helper()
	if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q (body %q)", got, problem.ContentType, rec.Body.String())
	}
	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("decode problem %q: %v", rec.Body.String(), err)
	}
	return doc
}

func decodeMap(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return m
}

func TestRegister(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	rec := e.do(http.MethodPost, "/api/v1/auth/register", `{"username":"Alice","password":"correct horse"}`, nil)

	if got, want := rec.Code, http.StatusCreated; got != want {
		t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
	}
	want := map[string]any{"user_id": "1", "username": "alice"}
	if diff := cmp.Diff(decodeMap(t, rec), want); diff != "" {
		t.Errorf("body mismatch (-got +want):\n%s", diff)
	}
}

func TestRegisterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   problem.Code
		wantFields []problem.FieldError
	}{
		{
			name:       "username taken",
			body:       `{"username":"taken","password":"correct horse"}`,
			wantStatus: http.StatusConflict,
			wantCode:   problem.CodeConflict,
		},
		{
			name:       "unknown field cannot smuggle a role",
			body:       `{"username":"mallory","password":"correct horse","role":"admin"}`,
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "role", Reason: "unknown field"}},
		},
		{
			name:       "invalid credentials",
			body:       `{"username":"x","password":"short"}`,
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
		},
		{
			name:       "not json",
			body:       `username=x`,
			wantStatus: http.StatusBadRequest,
			wantCode:   problem.CodeValidation,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if _, err := e.accounts.Register(context.Background(), account.Credentials{Username: "taken", Password: "correct horse"}); err != nil {
				t.Fatal(err)
			}

			rec := e.do(http.MethodPost, "/api/v1/auth/register", tt.body, nil)

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			doc := decodeProblem(t, rec)
			if doc.Code != tt.wantCode {
				t.Errorf("code = %q, want %q", doc.Code, tt.wantCode)
			}
			if tt.wantFields != nil {
				if diff := cmp.Diff(doc.Errors, tt.wantFields); diff != "" {
					t.Errorf("field errors mismatch (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acc, err := e.accounts.Register(context.Background(), account.Credentials{Username: "alice", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}

	rec := e.do(http.MethodPost, "/api/v1/auth/login", `{"username":"alice","password":"correct horse"}`, nil)

	if got, want := rec.Code, http.StatusOK; got != want {
		t.Fatalf("status = %d, want %d (body %q)", got, want, rec.Body.String())
	}
	var got struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode login answer: %v", err)
	}
	if got.TokenType != "Bearer" || got.ExpiresIn != int(tokenTTL.Seconds()) || got.AccessToken == "" {
		t.Errorf("answer = %+v, want token_type Bearer, expires_in %d and a token", got, int(tokenTTL.Seconds()))
	}
	user, err := e.tokens.Validate(got.AccessToken)
	if err != nil {
		t.Fatalf("issued token does not validate: %v", err)
	}
	if diff := cmp.Diff(user, acc.User()); diff != "" {
		t.Errorf("token user mismatch (-got +want):\n%s", diff)
	}
}

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	starting := func(a *httpapi.API) {
		a.Tokens = func() (*auth.Tokens, error) {
			return nil, problem.New(problem.CodeUnavailable, "the gateway is starting")
		}
	}
	tests := []struct {
		name       string
		opts       []option
		body       string
		wantStatus int
		wantCode   problem.Code
	}{
		{"wrong password", nil, `{"username":"alice","password":"wrong horse"}`, http.StatusUnauthorized, problem.CodeUnauthorized},
		{"unknown user", nil, `{"username":"bob","password":"correct horse"}`, http.StatusUnauthorized, problem.CodeUnauthorized},
		{"unknown field", nil, `{"username":"alice","password":"correct horse","otp":"1"}`, http.StatusBadRequest, problem.CodeValidation},
		{"signing key not loaded yet", []option{starting}, `{"username":"alice","password":"correct horse"}`, http.StatusServiceUnavailable, problem.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.opts...)
			if _, err := e.accounts.Register(context.Background(), account.Credentials{Username: "alice", Password: "correct horse"}); err != nil {
				t.Fatal(err)
			}

			rec := e.do(http.MethodPost, "/api/v1/auth/login", tt.body, nil)

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if got := decodeProblem(t, rec).Code; got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
		})
	}
}

func TestAdminWritesRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		header     func(e *env, t *testing.T) map[string]string
		wantStatus int
		wantCode   problem.Code
		wantAuthN  bool // WWW-Authenticate expected
	}{
		{
			name:       "deal without token",
			path:       "/api/v1/deals",
			header:     func(*env, *testing.T) map[string]string { return nil },
			wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized, wantAuthN: true,
		},
		{
			name:       "deal with a bad token",
			path:       "/api/v1/deals",
			header:     func(*env, *testing.T) map[string]string { return bearer("nope") },
			wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized, wantAuthN: true,
		},
		{
			name: "deal with identity headers but no token",
			path: "/api/v1/deals",
			header: func(*env, *testing.T) map[string]string {
				return map[string]string{identity.HeaderUserID: "a1", identity.HeaderRole: identity.RoleAdmin}
			},
			wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized, wantAuthN: true,
		},
		{
			name:       "deal by a non-admin",
			path:       "/api/v1/deals",
			header:     func(e *env, t *testing.T) map[string]string { return bearer(e.token(t, alice)) },
			wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden,
		},
		{
			name:       "product by a non-admin",
			path:       "/api/v1/products",
			header:     func(e *env, t *testing.T) map[string]string { return bearer(e.token(t, alice)) },
			wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)

			rec := e.do(http.MethodPost, tt.path, `{"product_id":"p1"}`, tt.header(e, t))

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if got := decodeProblem(t, rec).Code; got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
			if got := rec.Header().Get("WWW-Authenticate") != ""; got != tt.wantAuthN {
				t.Errorf("WWW-Authenticate present = %t, want %t", got, tt.wantAuthN)
			}
			if got := e.invoker.invocations(); len(got) != 0 {
				t.Errorf("invoker called %d times, want 0: %+v", len(got), got)
			}
		})
	}
}

func TestAdminCreateDealIsForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.invoker.resp = &sidecar.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   []byte(`{"id":"d1","kind":"flash"}`),
	}
	body := `{"product_id":"p1","kind":"flash","price_cents":500,"stock":10}`
	hdr := bearer(e.token(t, root))
	hdr["Idempotency-Key"] = "k-1"

	rec := e.do(http.MethodPost, "/api/v1/deals", body, hdr)

	if got, want := rec.Code, http.StatusCreated; got != want {
		t.Errorf("status = %d, want %d (body %q)", got, want, rec.Body.String())
	}
	if got, want := rec.Body.String(), `{"id":"d1","kind":"flash"}`; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if got, want := rec.Header().Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	want := []invocation{{
		App: "catalog", Method: http.MethodPost, Path: "deals",
		Header: http.Header{
			"X-User-Id":       {"a1"},
			"X-Username":      {"root"},
			"X-User-Role":     {"admin"},
			"Idempotency-Key": {"k-1"},
		},
		Body: body,
	}}
	if diff := cmp.Diff(e.invoker.invocations(), want); diff != "" {
		t.Errorf("invocations mismatch (-got +want):\n%s", diff)
	}
}

func TestForwardedProblemIsRendered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantCode       problem.Code
		wantRetryAfter string
	}{
		{
			name:       "not found",
			err:        problem.New(problem.CodeNotFound, "product not found"),
			wantStatus: http.StatusNotFound,
			wantCode:   problem.CodeNotFound,
		},
		{
			name:           "downstream rate limit keeps Retry-After",
			err:            &problem.Error{Code: problem.CodeRateLimited, Detail: "slow down", RetryAfter: 4 * time.Second},
			wantStatus:     http.StatusTooManyRequests,
			wantCode:       problem.CodeRateLimited,
			wantRetryAfter: "4",
		},
		{
			name:           "app at capacity keeps Retry-After",
			err:            &problem.Error{Code: problem.CodeUnavailable, Detail: "at capacity", RetryAfter: 2 * time.Second},
			wantStatus:     http.StatusServiceUnavailable,
			wantCode:       problem.CodeUnavailable,
			wantRetryAfter: "2",
		},
		{
			name:       "catalog unreachable",
			err:        problem.New(problem.CodeUnavailable, "catalog is unreachable"),
			wantStatus: http.StatusServiceUnavailable,
			wantCode:   problem.CodeUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.invoker.err = tt.err

			rec := e.do(http.MethodPost, "/api/v1/deals", `{"product_id":"p404"}`, bearer(e.token(t, root)))

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if got := decodeProblem(t, rec).Code; got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
		})
	}
}

func TestPublicReadsAreForwarded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		path     string
		header   func(e *env, t *testing.T) map[string]string
		wantPath string
		wantHdr  http.Header
	}{
		{
			name:     "active deals anonymously",
			path:     "/api/v1/deals?active=true",
			header:   func(*env, *testing.T) map[string]string { return nil },
			wantPath: "deals?active=true",
			wantHdr:  http.Header{},
		},
		{
			name: "spoofed identity headers are not forwarded",
			path: "/api/v1/deals/101",
			header: func(*env, *testing.T) map[string]string {
				return map[string]string{identity.HeaderUserID: "a1", identity.HeaderRole: identity.RoleAdmin}
			},
			wantPath: "deals/101",
			wantHdr:  http.Header{},
		},
		{
			name:     "signed-in user's identity is forwarded",
			path:     "/api/v1/products/301",
			header:   func(e *env, t *testing.T) map[string]string { return bearer(e.token(t, alice)) },
			wantPath: "products/301",
			wantHdr:  http.Header{"X-User-Id": {"u1"}, "X-Username": {"alice"}, "X-User-Role": {"user"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)

			rec := e.do(http.MethodGet, tt.path, "", tt.header(e, t))

			if got, want := rec.Code, http.StatusOK; got != want {
				t.Errorf("status = %d, want %d (body %q)", got, want, rec.Body.String())
			}
			want := []invocation{{App: "catalog", Method: http.MethodGet, Path: tt.wantPath, Header: tt.wantHdr}}
			if diff := cmp.Diff(e.invoker.invocations(), want); diff != "" {
				t.Errorf("invocations mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPublicReadWithBadTokenIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	rec := e.do(http.MethodGet, "/api/v1/deals", "", bearer("forged"))

	if got, want := rec.Code, http.StatusUnauthorized; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Errorf("invoker called %d times, want 0", len(got))
	}
}

func TestForwardRejectsInvalidJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	rec := e.do(http.MethodPost, "/api/v1/deals", `{"product_id":`, bearer(e.token(t, root)))

	if got, want := rec.Code, http.StatusBadRequest; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := decodeProblem(t, rec).Code, problem.CodeValidation; got != want {
		t.Errorf("code = %q, want %q", got, want)
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Errorf("invoker called %d times, want 0", len(got))
	}
}

func TestRateLimitIsWired(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		limiter    fakeLimiter
		method     string
		path       string
		body       string
		asAdmin    bool
		wantStatus int
	}{
		{name: "per-ip on register", limiter: fakeLimiter{refuseIP: true}, method: http.MethodPost, path: "/api/v1/auth/register", body: `{"username":"alice","password":"correct horse"}`, wantStatus: http.StatusTooManyRequests},
		{name: "per-ip on login", limiter: fakeLimiter{refuseIP: true}, method: http.MethodPost, path: "/api/v1/auth/login", body: `{"username":"alice","password":"correct horse"}`, wantStatus: http.StatusTooManyRequests},
		{name: "per-ip on public reads", limiter: fakeLimiter{refuseIP: true}, method: http.MethodGet, path: "/api/v1/deals", wantStatus: http.StatusTooManyRequests},
		{name: "per-user on public reads", limiter: fakeLimiter{refuseUser: true}, method: http.MethodGet, path: "/api/v1/deals", asAdmin: true, wantStatus: http.StatusTooManyRequests},
		{name: "per-user on admin writes", limiter: fakeLimiter{refuseUser: true}, method: http.MethodPost, path: "/api/v1/deals", body: `{}`, asAdmin: true, wantStatus: http.StatusTooManyRequests},
		{name: "per-user does not apply to register", limiter: fakeLimiter{refuseUser: true}, method: http.MethodPost, path: "/api/v1/auth/register", body: `{"username":"alice","password":"correct horse"}`, wantStatus: http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(a *httpapi.API) { a.Limiter = tt.limiter })
			var hdr map[string]string
			if tt.asAdmin {
				hdr = bearer(e.token(t, root))
			}

			rec := e.do(tt.method, tt.path, tt.body, hdr)

			if got := rec.Code; got != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantStatus != http.StatusTooManyRequests {
				return
			}
			if got, want := decodeProblem(t, rec).Code, problem.CodeRateLimited; got != want {
				t.Errorf("code = %q, want %q", got, want)
			}
			if got, want := rec.Header().Get("Retry-After"), "3"; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			if got := e.invoker.invocations(); len(got) != 0 {
				t.Errorf("invoker called %d times, want 0", len(got))
			}
		})
	}
}

// adminRoutes are the admin-only operations routes and where the gateway forwards them.
var adminRoutes = []struct {
	method, path      string
	wantApp, wantPath string
}{
	{http.MethodGet, "/api/v1/admin/reconciliation", "order", "admin/reconciliation"},
	{http.MethodGet, "/api/v1/admin/dead-letters", "notify", "admin/dead-letters"},
	{http.MethodGet, "/api/v1/admin/dead-letters?topic=order.created.dead", "notify", "admin/dead-letters?topic=order.created.dead"},
	{http.MethodPost, "/api/v1/admin/dead-letters/o1:order.created/replay", "notify", "admin/dead-letters/o1:order.created/replay"},
	{http.MethodPost, "/api/v1/admin/dead-letters/a%20b/replay?topic=order.paid", "notify", "admin/dead-letters/a%20b/replay?topic=order.paid"},
	{http.MethodPost, "/api/v1/admin/dead-letters/replay?topic=order.paid&include_replayed=true", "notify", "admin/dead-letters/replay?topic=order.paid&include_replayed=true"},
}

func TestAdminRoutesAreForwardedForAdmins(t *testing.T) {
	t.Parallel()
	for _, rt := range adminRoutes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.invoker.resp = &sidecar.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"replayed":1}`)}

			rec := e.do(rt.method, rt.path, "", bearer(e.token(t, root)))

			if rec.Code != http.StatusOK || rec.Body.String() != `{"replayed":1}` {
				t.Errorf("answer = %d %q, want the app's 200 relayed", rec.Code, rec.Body.String())
			}
			want := invocation{App: rt.wantApp, Method: rt.method, Path: rt.wantPath,
				Header: http.Header{"X-User-Id": {"a1"}, "X-Username": {"root"}, "X-User-Role": {"admin"}}}
			if rt.method == http.MethodPost {
				want.Body = "{}" // the apps decode a body strictly; an empty POST carries an empty object
			}
			if diff := cmp.Diff([]invocation{want}, e.invoker.invocations()); diff != "" {
				t.Errorf("invocations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdminRoutesRefuseOthers(t *testing.T) {
	t.Parallel()
	callers := []struct {
		name       string
		header     func(e *env, t *testing.T) map[string]string
		wantStatus int
		wantCode   problem.Code
	}{
		{name: "anonymous", header: func(*env, *testing.T) map[string]string { return nil },
			wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "forged identity headers", header: func(*env, *testing.T) map[string]string {
			return map[string]string{identity.HeaderUserID: "a1", identity.HeaderRole: identity.RoleAdmin}
		}, wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "a user", header: func(e *env, t *testing.T) map[string]string { return bearer(e.token(t, alice)) },
			wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden},
	}
	for _, rt := range adminRoutes {
		for _, c := range callers {
			t.Run(rt.method+" "+rt.path+" by "+c.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)

				rec := e.do(rt.method, rt.path, "", c.header(e, t))

				if rec.Code != c.wantStatus {
					t.Errorf("status = %d, want %d (%s)", rec.Code, c.wantStatus, rec.Body.String())
				}
				if got := decodeProblem(t, rec).Code; got != c.wantCode {
					t.Errorf("code = %q, want %q", got, c.wantCode)
				}
				if got := e.invoker.invocations(); len(got) != 0 {
					t.Errorf("invoker called: %+v, want no call", got)
				}
			})
		}
	}
}

// A forwarded write must say its body is JSON: a form or text/plain body (which a browser
// sends cross-site without a preflight) is refused before any call; an empty body needs no
// Content-Type.
func TestForwardedWritesRequireJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auth := bearer(e.token(t, alice))
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "nonsense/"} {
		hdr := map[string]string{"Content-Type": ct, "Idempotency-Key": "k1"}
		maps.Copy(hdr, auth)
		rec := e.do(http.MethodPost, "/api/v1/deals/1/orders", `{"quantity":1}`, hdr)
		if rec.Code != http.StatusUnsupportedMediaType || !strings.Contains(rec.Body.String(), `"code":"unsupported-media-type"`) {
			t.Errorf("Content-Type %q: %d %s, want 415 unsupported-media-type", ct, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders/9/cancel", strings.NewReader(`{}`))
	req.Header.Set("Authorization", auth["Authorization"])
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("a body without Content-Type: %d, want 415", rec.Code)
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Fatalf("invocations %+v, want none", got)
	}
	if rec := e.do(http.MethodPost, "/api/v1/orders/9/cancel", "", auth); rec.Code != http.StatusOK {
		t.Errorf("an empty body without Content-Type: %d %s, want forwarded", rec.Code, rec.Body)
	}
	if got := e.invoker.invocations(); len(got) != 1 || got[0].Body != "{}" {
		t.Errorf("invocations %+v, want one with body {}", got)
	}
}

// Ids that cannot name anything (ids are decimal Snowflake ids from the past) are 404 at the
// edge, before any call, on every route that takes one.
func TestMalformedIDsRefusedAtTheEdge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auth := bearer(e.token(t, alice))
	future := strconv.FormatInt(time.Now().Add(time.Hour).Sub(ids.Epoch).Milliseconds()<<22, 10)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/deals/a%20b"},
		{http.MethodGet, "/api/v1/products/p1"},
		{http.MethodGet, "/api/v1/groups/-3"},
		{http.MethodGet, "/api/v1/deals/007/groups"},
		{http.MethodGet, "/api/v1/orders/1e9"},
		{http.MethodPost, "/api/v1/deals/abc/orders"},
		{http.MethodPost, "/api/v1/groups/" + future + "/join"},
		{http.MethodPost, "/api/v1/orders/12345678901234567890/pay"},
		{http.MethodGet, "/api/v1/groups/x/events"},
	} {
		rec := e.do(c.method, c.path, "", auth)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `"code":"not-found"`) {
			t.Errorf("%s %s = %d %s, want 404 not-found", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Errorf("invocations %+v, want none", got)
	}
}
