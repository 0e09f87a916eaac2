// Package identity carries the authenticated caller from the gateway to internal apps. The
// gateway validates the JWT and forwards the user as headers on Dapr service invocation;
// internal apps accept them only on calls that passed the app API token check, i.e. that came
// through their own sidecar.
package identity

import (
	"context"
	"net/http"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Header names set by the gateway on invocations.
const (
	HeaderUserID   = "X-User-Id"
	HeaderUsername = "X-Username"
	HeaderRole     = "X-User-Role"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// User is an authenticated caller.
type User struct {
	ID       string
	Username string
	Role     string
}

// IsAdmin reports whether the user has the admin role.
func (u User) IsAdmin() bool { return u.Role == RoleAdmin }

// Header renders the user as invocation headers.
func (u User) Header() http.Header {
	h := http.Header{}
	h.Set(HeaderUserID, u.ID)
	h.Set(HeaderUsername, u.Username)
	h.Set(HeaderRole, u.Role)
	return h
}

// FromHeader reads the user forwarded by the gateway; ok is false when none was.
func FromHeader(h http.Header) (User, bool) {
	u := User{ID: h.Get(HeaderUserID), Username: h.Get(HeaderUsername), Role: h.Get(HeaderRole)}
	return u, u.ID != ""
}

type ctxKey struct{}

// WithUser stores the user in the context.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, ctxKey{}, u)
}

// FromContext returns the user stored by WithUser.
func FromContext(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(ctxKey{}).(User)
	return u, ok
}

// Require is middleware for internal apps: it takes the user the gateway forwarded into the
// request context, and answers 401 unauthorized when there is none.
func Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := FromHeader(r.Header)
		if !ok {
			problem.Write(w, r, problem.New(problem.CodeUnauthorized, "authentication required"))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
	})
}

// RequireAdmin is Require for operator routes: 401 unauthorized without a forwarded user,
// 403 forbidden for a user without the admin role. Internal apps check the role themselves
// as well as the gateway, since their sidecar accepts calls that never passed the gateway.
func RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := FromHeader(r.Header)
		switch {
		case !ok:
			problem.Write(w, r, problem.New(problem.CodeUnauthorized, "authentication required"))
		case !u.IsAdmin():
			problem.Write(w, r, problem.New(problem.CodeForbidden, "admin role required"))
		default:
			next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
		}
	})
}
