package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/auth"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

const (
	issuer   = "groupbuy-gateway"
	audience = "groupbuy-api"
)

var key = []byte("0123456789abcdef0123456789abcdef") // exactly MinKeyLen

func newTokens(t *testing.T) *auth.Tokens {
	t.Helper()
	tok, err := auth.NewTokens(key, issuer, audience, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validClaims is a claim set Validate accepts; each rejection case changes one thing.
func validClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":  issuer,
		"sub":  "42",
		"aud":  []string{audience},
		"iat":  now.Add(-time.Minute).Unix(),
		"nbf":  now.Add(-time.Minute).Unix(),
		"exp":  now.Add(10 * time.Minute).Unix(),
		"name": "alice",
		"role": identity.RoleUser,
	}
}

func with(change func(c jwt.MapClaims)) jwt.MapClaims {
	c := maps.Clone(validClaims())
	change(c)
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, k any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(k)
	if err != nil {
		t.Fatalf("sign %s token: %v", m.Alg(), err)
	}
	return s
}

func TestNewTokensRejectsShortKey(t *testing.T) {
	t.Parallel()
	if _, err := auth.NewTokens(key[:auth.MinKeyLen-1], issuer, audience, time.Minute); err == nil {
		t.Error("NewTokens with a 31-byte key: error = nil, want an error")
	}
}

func TestIssueValidateRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		user identity.User
	}{
		{"user", identity.User{ID: "42", Username: "alice", Role: identity.RoleUser}},
		{"admin", identity.User{ID: "1", Username: "root", Role: identity.RoleAdmin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokens(t)

			tok, ttl, err := tokens.Issue(tt.user)
			if err != nil {
				t.Fatalf("Issue() error = %v", err)
			}
			got, err := tokens.Validate(tok)
			if err != nil {
				t.Fatalf("Validate() error = %v", err)
			}

			if diff := cmp.Diff(got, tt.user); diff != "" {
				t.Errorf("user mismatch (-got +want):\n%s", diff)
			}
			if ttl != 15*time.Minute {
				t.Errorf("ttl = %v, want %v", ttl, 15*time.Minute)
			}
		})
	}
}

func TestValidateAcceptsHandBuiltToken(t *testing.T) {
	t.Parallel()
	// Proves the claim set the rejection cases start from is itself valid.
	got, err := newTokens(t).Validate(sign(t, jwt.SigningMethodHS256, key, validClaims()))
	if err != nil {
		t.Fatalf("Validate() error = %v", err)
	}
	if diff := cmp.Diff(got, identity.User{ID: "42", Username: "alice", Role: identity.RoleUser}); diff != "" {
		t.Errorf("user mismatch (-got +want):\n%s", diff)
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// hs256 signs the valid claims, changed by change, with the right algorithm and key.
	hs256 := func(change func(c jwt.MapClaims)) func(t *testing.T) string {
		return func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, key, with(change)) }
	}
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()

	tests := []struct {
		name       string
		token      func(t *testing.T) string
		wantDetail string // the reason, so a case cannot pass for the wrong one
	}{
		{
			name:       "expired",
			token:      hs256(func(c jwt.MapClaims) { c["exp"] = past }),
			wantDetail: "the token has expired",
		},
		{
			name: "alg none",
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims())
			},
			wantDetail: "the token signature is invalid",
		},
		{
			name:       "HS384 with the same key",
			token:      func(t *testing.T) string { return sign(t, jwt.SigningMethodHS384, key, validClaims()) },
			wantDetail: "the token signature is invalid",
		},
		{
			name:       "HS512 with the same key",
			token:      func(t *testing.T) string { return sign(t, jwt.SigningMethodHS512, key, validClaims()) },
			wantDetail: "the token signature is invalid",
		},
		{
			name:       "RS256",
			token:      func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey, validClaims()) },
			wantDetail: "the token signature is invalid",
		},
		{
			name: "RS256 header over an HMAC signature",
			token: func(t *testing.T) string {
				// Key confusion: claim RS256 but sign with the shared secret.
				signing, err := jwt.NewWithClaims(jwt.SigningMethodRS256, validClaims()).SigningString()
				if err != nil {
					t.Fatal(err)
				}
				sig, err := jwt.SigningMethodHS256.Sign(signing, key)
				if err != nil {
					t.Fatal(err)
				}
				return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
			},
			wantDetail: "the token signature is invalid",
		},
		{
			name: "wrong key",
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), validClaims())
			},
			wantDetail: "the token signature is invalid",
		},
		{
			name: "tampered payload",
			token: func(t *testing.T) string {
				good := strings.Split(sign(t, jwt.SigningMethodHS256, key, validClaims()), ".")
				admin := strings.Split(sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["role"] = identity.RoleAdmin })), ".")
				return good[0] + "." + admin[1] + "." + good[2]
			},
			wantDetail: "the token signature is invalid",
		},
		{
			name:       "wrong audience",
			token:      hs256(func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }),
			wantDetail: "the token is not for this audience",
		},
		{
			name:       "no audience",
			token:      hs256(func(c jwt.MapClaims) { delete(c, "aud") }),
			wantDetail: "the token lacks a required claim",
		},
		{
			name:       "wrong issuer",
			token:      hs256(func(c jwt.MapClaims) { c["iss"] = "evil" }),
			wantDetail: "the token has the wrong issuer",
		},
		{
			name:       "missing exp",
			token:      hs256(func(c jwt.MapClaims) { delete(c, "exp") }),
			wantDetail: "the token lacks a required claim",
		},
		{
			name:       "not valid yet",
			token:      hs256(func(c jwt.MapClaims) { c["nbf"] = future }),
			wantDetail: "the token is invalid",
		},
		{
			name:       "issued in the future",
			token:      hs256(func(c jwt.MapClaims) { c["iat"] = future }),
			wantDetail: "the token is invalid",
		},
		{
			name:       "missing sub",
			token:      hs256(func(c jwt.MapClaims) { delete(c, "sub") }),
			wantDetail: "the token has no valid subject or role",
		},
		{
			name:       "unknown role",
			token:      hs256(func(c jwt.MapClaims) { c["role"] = "superuser" }),
			wantDetail: "the token has no valid subject or role",
		},
		{
			name:       "missing role",
			token:      hs256(func(c jwt.MapClaims) { delete(c, "role") }),
			wantDetail: "the token has no valid subject or role",
		},
		{
			name:       "garbage",
			token:      func(*testing.T) string { return "not.a.jwt" },
			wantDetail: "the token is malformed or uses an unsupported algorithm",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := tt.token(t)

			got, err := newTokens(t).Validate(tok)

			var perr *problem.Error
			if !errors.As(err, &perr) {
				t.Fatalf("Validate() = %+v, %v, want a *problem.Error", got, err)
			}
			if perr.Code != problem.CodeUnauthorized {
				t.Errorf("code = %q, want %q", perr.Code, problem.CodeUnauthorized)
			}
			if perr.Detail != tt.wantDetail {
				t.Errorf("detail = %q, want %q", perr.Detail, tt.wantDetail)
			}
			if diff := cmp.Diff(got, identity.User{}); diff != "" {
				t.Errorf("user of a rejected token is not empty (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	t.Parallel()
	tokens := newTokens(t)
	user := identity.User{ID: "42", Username: "alice", Role: identity.RoleUser}
	valid, _, err := tokens.Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		header   string
		wantUser identity.User
		wantErr  bool
	}{
		{name: "bearer token", header: "Bearer " + valid, wantUser: user},
		{name: "scheme is case-insensitive", header: "bearer " + valid, wantUser: user},
		{name: "extra spaces", header: "Bearer   " + valid + " ", wantUser: user},
		{name: "missing header", wantErr: true},
		{name: "wrong scheme", header: "Basic YWxpY2U6c2VjcmV0", wantErr: true},
		{name: "scheme only", header: "Bearer", wantErr: true},
		{name: "scheme and blank", header: "Bearer   ", wantErr: true},
		{name: "token without scheme", header: valid, wantErr: true},
		{name: "invalid token", header: "Bearer " + valid + "x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/me/orders", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}

			got, err := tokens.FromRequest(req)

			if tt.wantErr {
				if code := problem.CodeOf(err); code != problem.CodeUnauthorized {
					t.Errorf("FromRequest() error = %v (code %q), want %q", err, code, problem.CodeUnauthorized)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromRequest() error = %v", err)
			}
			if diff := cmp.Diff(got, tt.wantUser); diff != "" {
				t.Errorf("user mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// Clock skew up to Leeway is tolerated on exp, nbf and iat; beyond it the token is refused.
func TestValidateLeeway(t *testing.T) {
	t.Parallel()
	tok := newTokens(t)
	now := time.Now()
	for _, tc := range []struct {
		name  string
		claim string
		at    time.Time
		ok    bool
	}{
		{"expired 10 s ago", "exp", now.Add(-10 * time.Second), true},
		{"expired 40 s ago", "exp", now.Add(-40 * time.Second), false},
		{"valid from 10 s ahead", "nbf", now.Add(10 * time.Second), true},
		{"valid from 40 s ahead", "nbf", now.Add(40 * time.Second), false},
		{"issued 10 s ahead", "iat", now.Add(10 * time.Second), true},
		{"issued 40 s ahead", "iat", now.Add(40 * time.Second), false},
	} {
		s := sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c[tc.claim] = tc.at.Unix() }))
		_, err := tok.Validate(s)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %t", tc.name, err, tc.ok)
		}
	}
}
