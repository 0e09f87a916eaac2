// Package auth issues and validates the gateway's access tokens: HS256 JWTs with the algorithm,
// issuer and audience pinned and expiry required. Anything else (alg=none, another algorithm,
// a wrong signature, audience or issuer, an expired or expiry-less token) is rejected.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// MinKeyLen is the shortest accepted HMAC key.
const MinKeyLen = 32

// Tokens issues and validates access tokens.
type Tokens struct {
	key      []byte
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
	parser   *jwt.Parser
}

// Leeway is the clock skew tolerated on exp, nbf and iat: replicas' clocks (and an issuing
// replica's against a validating one) may differ by a few seconds.
const Leeway = 30 * time.Second

// NewTokens returns a token service. The key must be at least MinKeyLen bytes.
func NewTokens(key []byte, issuer, audience string, ttl time.Duration) (*Tokens, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("jwt signing key too short: %d bytes, want at least %d", len(key), MinKeyLen)
	}
	t := &Tokens{key: key, issuer: issuer, audience: audience, ttl: ttl, now: time.Now}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

type claims struct {
	jwt.RegisteredClaims
	Username string `json:"name"`
	Role     string `json:"role"`
}

// Issue returns a signed token for u and its lifetime.
func (t *Tokens) Issue(u identity.User) (string, time.Duration, error) {
	now := t.now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   u.ID,
			Audience:  jwt.ClaimStrings{t.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(t.ttl)),
		},
		Username: u.Username,
		Role:     u.Role,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", 0, fmt.Errorf("sign token: %w", err)
	}
	return s, t.ttl, nil
}

// Validate parses and verifies a token string.
func (t *Tokens) Validate(token string) (identity.User, error) {
	var c claims
	_, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil })
	if err != nil {
		return identity.User{}, unauthorized(tokenReason(err))
	}
	if c.Subject == "" || (c.Role != identity.RoleUser && c.Role != identity.RoleAdmin) {
		return identity.User{}, unauthorized("the token has no valid subject or role")
	}
	return identity.User{ID: c.Subject, Username: c.Username, Role: c.Role}, nil
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "the token signature is invalid"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token is not for this audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token has the wrong issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim"
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed or uses an unsupported algorithm"
	default:
		return "the token is invalid"
	}
}

func unauthorized(detail string) error {
	return &problem.Error{Code: problem.CodeUnauthorized, Detail: detail}
}

// FromRequest extracts and validates the bearer token of r.
func (t *Tokens) FromRequest(r *http.Request) (identity.User, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		return identity.User{}, unauthorized("an Authorization: Bearer token is required")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return identity.User{}, unauthorized("the Authorization header must be 'Bearer <token>'")
	}
	return t.Validate(strings.TrimSpace(token))
}
