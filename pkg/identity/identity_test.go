package identity_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

func TestRequireAdmin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		user       *identity.User
		wantStatus int
		wantCode   problem.Code
	}{
		{name: "no forwarded user", wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "a user", user: &identity.User{ID: "u1", Role: identity.RoleUser}, wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden},
		{name: "an admin", user: &identity.User{ID: "a1", Role: identity.RoleAdmin}, wantStatus: http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen identity.User
			h := identity.RequireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen, _ = identity.FromContext(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequest(http.MethodGet, "/admin/x", nil)
			if tt.user != nil {
				req.Header = tt.user.Header()
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantCode == "" {
				if seen.ID != tt.user.ID {
					t.Errorf("handler saw user %+v, want %+v", seen, *tt.user)
				}
				return
			}
			var doc problem.Document
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.Code != tt.wantCode {
				t.Errorf("problem %+v (%v), want code %s", doc, err, tt.wantCode)
			}
		})
	}
}
