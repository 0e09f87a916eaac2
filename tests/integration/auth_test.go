//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestSmokeTokensAreValidatedStrictly presents forged and broken admin tokens to an admin-only
// endpoint: each must get 401 and create nothing.
func TestSmokeTokensAreValidatedStrictly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	secrets, err := harness.DevSecrets()
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(secrets["jwt-signing-key"])
	admin := stack.Admin(t)
	// The admin's real subject, so only the broken property makes a token invalid.
	adminClaims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(admin.Token, adminClaims); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": "groupbuy-gateway", "aud": []string{"groupbuy-api"}, "sub": adminClaims["sub"],
			"name": "admin", "role": "admin",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, c jwt.MapClaims, k any) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The control: a well-formed token made the same way is accepted.
	good := sign(jwt.SigningMethodHS256, claims(nil), key)

	tests := []struct {
		name   string
		header string
	}{
		{"missing", ""},
		{"not bearer", "Basic " + good},
		{"expired", "Bearer " + sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), key)},
		{"no expiry", "Bearer " + sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { delete(c, "exp") }), key)},
		{"alg none", "Bearer " + sign(jwt.SigningMethodNone, claims(nil), jwt.UnsafeAllowNoneSignatureType)},
		{"HS512 with the right key", "Bearer " + sign(jwt.SigningMethodHS512, claims(nil), key)},
		{"wrong signature", "Bearer " + sign(jwt.SigningMethodHS256, claims(nil), []byte(strings.Repeat("k", 48)))},
		{"wrong audience", "Bearer " + sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["aud"] = []string{"someone-else"} }), key)},
		{"wrong issuer", "Bearer " + sign(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }), key)},
		{"tampered payload", "Bearer " + tamper(good)},
		{"garbage", "Bearer not.a.token"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.header != "" {
				hdr["Authorization"] = tc.header
			}
			name := "forged-" + strconv.Itoa(i)
			resp, err := stack.NewClient().Do(ctx, http.MethodPost, "/products", map[string]any{"name": name, "price_cents": 100}, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != http.StatusUnauthorized || resp.Problem().Code != "unauthorized" {
				t.Fatalf("status %d body %s, want 401 unauthorized", resp.Status, resp.Body)
			}
		})
	}

	t.Run("control: a valid token is accepted", func(t *testing.T) {
		resp, err := stack.NewClient().Do(ctx, http.MethodPost, "/products",
			map[string]any{"name": "control", "price_cents": 100}, map[string]string{"Authorization": "Bearer " + good})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusCreated {
			t.Fatalf("status %d body %s, want 201", resp.Status, resp.Body)
		}
	})
}

// tamper flips the role claim of a signed token without re-signing it.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := jwt.NewParser().DecodeSegment(parts[1])
	payload = []byte(strings.Replace(string(payload), `"role":"admin"`, `"role":"user" `, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}
