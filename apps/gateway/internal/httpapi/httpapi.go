// Package httpapi is the public REST edge (/api/v1): accounts and tokens are served here;
// everything else is authenticated, rate limited and forwarded to the owning app through Dapr
// service invocation with the caller's identity attached.
//
// Live streams (GET /api/v1/events, GET /api/v1/groups/{id}/events) are the exception: daprd
// buffers a streamed invocation response until it ends, so the gateway serves them itself from
// a hub (pkg/live) fed by its sidecar over the broadcast pub/sub component (live.go).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/account"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/auth"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/readcache"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/soldout"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// Invoker forwards calls to other apps (sidecar.Invoker).
type Invoker interface {
	Raw(ctx context.Context, app, method, path string, hdr http.Header, body []byte) (*sidecar.Response, error)
}

// Limiter is the rate limiter (ratelimit.Limiter).
type Limiter interface {
	PerIP(http.Handler) http.Handler
	// PerIPStrict is PerIP that refuses (503) when the limiter itself fails: login, register.
	PerIPStrict(http.Handler) http.Handler
	// Register is the stricter per-address limit on registrations.
	Register(http.Handler) http.Handler
	// LoginBlocked refuses a login of a username whose failed logins are used up;
	// LoginFailed and LoginSucceeded count them.
	LoginBlocked(ctx context.Context, username string) error
	LoginFailed(ctx context.Context, username string)
	LoginSucceeded(ctx context.Context, username string)
	PerUser(http.Handler) http.Handler
}

// TokenSource returns the token service once the signing key is loaded.
type TokenSource func() (*auth.Tokens, error)

// Apps names the app ids requests are forwarded to.
type Apps struct {
	Catalog string
	Order   string
	Notify  string
	Group   string
}

// API holds the gateway's handlers.
type API struct {
	Accounts *account.Service
	Tokens   TokenSource
	Invoker  Invoker
	Limiter  Limiter
	Apps     Apps
	// Hub holds this replica's streaming clients; the live relay routes publish into it.
	Hub *live.Hub
	// SSE tunes the streams (heartbeat, write timeout); the zero value takes the defaults.
	SSE live.SSE
	// Streams bounds the open streams per user, per client address and per replica.
	Streams StreamLimits
	// ClientIP names a request's client address (ratelimit's, which knows the trusted
	// proxies); nil takes the connection's peer.
	ClientIP func(*http.Request) string
	// AppToken is the app API token the gateway's sidecar sends (APP_API_TOKEN); the live relay
	// routes refuse calls without it, and every call when it is empty.
	AppToken string
	// SoldOut answers purchases of a deal the order app just answered sold out without
	// invoking it (package soldout); nil forwards every purchase.
	SoldOut *soldout.Edge
	// Reads answers product and deal reads from memory (package readcache); nil forwards
	// them to the catalog.
	Reads *readcache.Cache
	Log   *slog.Logger

	slotsOnce sync.Once
	slots     streamSlots
}

// Routes mounts /api/v1 and the live relay routes on r.
func (a *API) Routes(r chi.Router) {
	a.liveRoutes(r)
	r.Route("/api/v1", func(r chi.Router) {
		// The account routes fail closed when the rate limiter is down (ratelimit.PerIPStrict).
		r.With(a.Limiter.PerIPStrict, a.Limiter.Register).Post("/auth/register", a.register)
		r.With(a.Limiter.PerIPStrict).Post("/auth/login", a.login)
		r.Group(func(r chi.Router) {
			r.Use(a.Limiter.PerIP)
			a.apiRoutes(r)
		})
	})
}

// apiRoutes mounts every /api/v1 route but the account routes.
func (a *API) apiRoutes(r chi.Router) {
	// Public reads.
	r.Group(func(r chi.Router) {
		r.Use(a.optionalUser, a.Limiter.PerUser)
		r.With(validID).Get("/products/{id}", a.read(events.KindProduct))
		r.With(validID).Get("/deals/{id}", a.read(events.KindDeal))
		r.Get("/deals", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Catalog, "deals?" + r.URL.RawQuery
		}))
		r.With(validID).Get("/groups/{id}", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Group, "groups/" + url.PathEscape(chi.URLParam(r, "id"))
		}))
		r.With(validID).Get("/deals/{id}/groups", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Group, "deals/" + url.PathEscape(chi.URLParam(r, "id")) + "/groups?" + r.URL.RawQuery
		}))
	})

	// A user's own orders and notifications.
	r.Group(func(r chi.Router) {
		r.Use(a.requireUser, a.Limiter.PerUser)
		r.With(validID).Post("/deals/{id}/orders", a.purchase)
		r.With(validID).Post("/deals/{id}/groups", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Group, "deals/" + url.PathEscape(chi.URLParam(r, "id")) + "/groups"
		}))
		r.With(validID).Post("/groups/{id}/join", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Group, "groups/" + url.PathEscape(chi.URLParam(r, "id")) + "/join"
		}))
		r.With(validID).Post("/orders/{id}/pay", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Order, "orders/" + url.PathEscape(chi.URLParam(r, "id")) + "/pay"
		}))
		r.With(validID).Post("/orders/{id}/cancel", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Order, "orders/" + url.PathEscape(chi.URLParam(r, "id")) + "/cancel"
		}))
		r.With(validID).Get("/orders/{id}", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Order, "orders/" + url.PathEscape(chi.URLParam(r, "id"))
		}))
		r.Get("/me/orders", a.forward(func(r *http.Request) (string, string) { return a.Apps.Order, withQuery("me/orders", r) }))
		r.Get("/me/notifications", a.forward(func(*http.Request) (string, string) { return a.Apps.Notify, "me/notifications" }))
		r.Get("/events", a.userStream)
	})

	// Public live progress of a group (rate limited per IP, like every /api/v1 route).
	r.With(validID).Get("/groups/{id}/events", a.groupStream)

	// Admin routes: 401 without a token, 403 without the admin role, before any call. The
	// target apps check the forwarded role again (identity.RequireAdmin).
	r.Group(func(r chi.Router) {
		r.Use(a.requireUser, a.Limiter.PerUser, requireAdmin)
		r.Post("/products", a.create(events.KindProduct, "products"))
		r.Post("/deals", a.create(events.KindDeal, "deals"))
		r.Get("/admin/reconciliation", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Order, withQuery("admin/reconciliation", r)
		}))
		r.Get("/admin/dead-letters", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Notify, withQuery("admin/dead-letters", r)
		}))
		r.Post("/admin/dead-letters/replay", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Notify, withQuery("admin/dead-letters/replay", r)
		}))
		r.Post("/admin/dead-letters/{id}/replay", a.forward(func(r *http.Request) (string, string) {
			return a.Apps.Notify, withQuery("admin/dead-letters/"+url.PathEscape(chi.URLParam(r, "id"))+"/replay", r)
		}))
	})
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var in account.Credentials
	if err := httpjson.Decode(w, r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	acc, err := a.Accounts.Register(r.Context(), in)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, map[string]string{"user_id": acc.ID, "username": acc.Username})
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in account.Credentials
	if err := httpjson.Decode(w, r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	tokens, err := a.Tokens()
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := a.Limiter.LoginBlocked(r.Context(), in.Username); err != nil {
		problem.Write(w, r, err)
		return
	}
	acc, err := a.Accounts.Login(r.Context(), in)
	if errors.Is(err, account.ErrInvalidCredentials) {
		a.Limiter.LoginFailed(r.Context(), in.Username)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	a.Limiter.LoginSucceeded(r.Context(), in.Username)
	tok, ttl, err := tokens.Issue(acc.User())
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(ttl.Seconds()),
	})
}

// authenticate validates the bearer token; required says whether its absence is an error.
func (a *API) authenticate(required bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !required && r.Header.Get("Authorization") == "" {
				next.ServeHTTP(w, r)
				return
			}
			tokens, err := a.Tokens()
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			u, err := tokens.FromRequest(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="groupbuy"`)
				problem.Write(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(identity.WithUser(r.Context(), u)))
		})
	}
}

func (a *API) requireUser(next http.Handler) http.Handler  { return a.authenticate(true)(next) }
func (a *API) optionalUser(next http.Handler) http.Handler { return a.authenticate(false)(next) }

func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := identity.FromContext(r.Context())
		if !u.IsAdmin() {
			problem.Write(w, r, problem.New(problem.CodeForbidden, "admin role required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withQuery appends the request's query string, if any, to an app's method path.
func withQuery(path string, r *http.Request) string {
	if r.URL.RawQuery == "" {
		return path
	}
	return path + "?" + r.URL.RawQuery
}

// forward relays the request to an app through Dapr invocation. The body must be one JSON
// value (the target decodes it strictly); the answer, success or problem, is relayed (relay).
func (a *API) forward(target func(*http.Request) (app, path string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		app, path := target(r)
		_ = a.relay(w, r, app, path, body) // answered either way
	}
}

// purchase forwards a flash purchase to the order app, unless the deal is known to be sold
// out and the purchase's Idempotency-Key was never forwarded (package soldout): then the
// order app's sold-out refusal is answered from memory.
func (a *API) purchase(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	dealID := chi.URLParam(r, "id")
	path := "deals/" + url.PathEscape(dealID) + "/orders"
	if a.SoldOut == nil {
		_ = a.relay(w, r, a.Apps.Order, path, body) // answered either way
		return
	}
	u, _ := identity.FromContext(r.Context())
	refusal, settle, err := a.SoldOut.Decide(r.Context(), soldout.Purchase{UserID: u.ID, Key: r.Header.Get("Idempotency-Key"), DealID: dealID, Body: body})
	switch {
	case err != nil:
		problem.Write(w, r, err)
		return
	case refusal != nil:
		problem.Write(w, r, refusal)
		return
	}
	settle(a.relay(w, r, a.Apps.Order, path, body))
}

// validID answers 404 for a route's {id} that cannot name anything: ids are decimal
// Snowflake ids (pkg/ids) from the past, so any other string is refused before a call.
func validID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, created, ok := ids.Parse(chi.URLParam(r, "id")); !ok || time.Until(created) > idClockSkew {
			problem.Write(w, r, problem.New(problem.CodeNotFound, "not found"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// idClockSkew is how far in the future an id's time may be (another replica's clock ahead).
const idClockSkew = time.Minute

// readBody reads a request body that must be one JSON value ({} when empty) sent as
// Content-Type: application/json (a form or text/plain body, which a browser sends cross-site
// without a preflight, is refused); it answers the problem itself when not.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil, true
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, httpjson.MaxBody))
	if err != nil {
		problem.Write(w, r, problem.Errorf(problem.CodePayloadTooLarge, "the body exceeds %d bytes", httpjson.MaxBody))
		return nil, false
	}
	if err := httpjson.CheckContentType(r, len(b) > 0); err != nil {
		problem.Write(w, r, err)
		return nil, false
	}
	if len(b) == 0 {
		b = []byte("{}")
	}
	if !json.Valid(b) {
		problem.Write(w, r, problem.New(problem.CodeValidation, "the body is not valid JSON"))
		return nil, false
	}
	return b, true
}

// relay invokes the app with the caller's identity and writes its answer: a success as is, a
// problem (the app's own, decoded by the invoker, or the call's failure) through problem.Write.
// It returns that problem, nil for a success.
func (a *API) relay(w http.ResponseWriter, r *http.Request, app, path string, body []byte) error {
	_, err := a.send(w, r, app, path, body)
	return err
}

// send is relay that also returns the app's successful answer.
func (a *API) send(w http.ResponseWriter, r *http.Request, app, path string, body []byte) (*sidecar.Response, error) {
	hdr := http.Header{}
	if u, ok := identity.FromContext(r.Context()); ok {
		hdr = u.Header()
	}
	for _, h := range []string{"Idempotency-Key", "Accept"} {
		if v := r.Header.Get(h); v != "" {
			hdr.Set(h, v)
		}
	}
	resp, err := a.Invoker.Raw(r.Context(), app, r.Method, path, hdr, body)
	if err != nil {
		// The client sees the public detail; the log keeps what failed where (Private). An
		// app's own answer (the order app at capacity, say) has none and is not logged here.
		if pe := (*problem.Error)(nil); errors.As(err, &pe) && pe.Private != "" {
			a.log().WarnContext(r.Context(), "invocation_failed", slog.String("app", app), slog.String("path", path), slog.String("error", err.Error()))
		}
		problem.Write(w, r, err)
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
	return resp, nil
}

// read serves a public product or deal read from the read cache, or forwards it when the
// cache is off.
func (a *API) read(kind readcache.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if a.Reads != nil {
			a.Reads.Serve(w, r, kind, id)
			return
		}
		_ = a.relay(w, r, a.Apps.Catalog, kind+"s/"+url.PathEscape(id), nil) // answered either way
	}
}

// create forwards an admin's create of a product or deal to the catalog; the new id is
// readable through this replica at once (the other replicas learn it from its change event).
func (a *API) create(kind readcache.Kind, path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		resp, err := a.send(w, r, a.Apps.Catalog, path, body)
		if err != nil || a.Reads == nil || resp.Status != http.StatusCreated {
			return
		}
		var created struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(resp.Body, &created) == nil && created.ID != "" {
			_ = a.Reads.Changed(r.Context(), events.CatalogChangedV1{V: 1, Kind: kind, ID: created.ID})
		}
	}
}
