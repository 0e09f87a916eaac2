package identity_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// TestRequireAndRequireAdmin: the middleware lets through the user the gateway forwarded,
// with it in the request context, and answers problems otherwise.
func TestRequireAndRequireAdmin(t *testing.T) {
	t.Parallel()
	admin := identity.User{ID: "1", Username: "root", Role: identity.RoleAdmin}
	user := identity.User{ID: "2", Username: "ann", Role: identity.RoleUser}
	tests := []struct {
		name       string
		mw         func(http.Handler) http.Handler
		caller     *identity.User
		wantStatus int
		wantCode   problem.Code
	}{
		{"require: user", identity.Require, &user, http.StatusOK, ""},
		{"require: nobody", identity.Require, nil, http.StatusUnauthorized, problem.CodeUnauthorized},
		{"admin: admin", identity.RequireAdmin, &admin, http.StatusOK, ""},
		{"admin: user", identity.RequireAdmin, &user, http.StatusForbidden, problem.CodeForbidden},
		{"admin: nobody", identity.RequireAdmin, nil, http.StatusUnauthorized, problem.CodeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seen identity.User
			h := tc.mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen, _ = identity.FromContext(r.Context())
				w.WriteHeader(http.StatusOK)
			}))
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tc.caller != nil {
				req.Header = tc.caller.Header()
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantCode == "" {
				if seen != *tc.caller {
					t.Errorf("user in context %+v, want %+v", seen, *tc.caller)
				}
				return
			}
			var doc problem.Document
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Code != tc.wantCode {
				t.Errorf("code %q, want %q", doc.Code, tc.wantCode)
			}
		})
	}
}
