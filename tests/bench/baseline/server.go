package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"

	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Stock takes units off a deal's stock in one atomic step (a Lua script in Redis).
type Stock interface {
	// Take removes qty units; it returns ErrSoldOut when fewer are left and ErrNoDeal when the
	// deal has no stock key.
	Take(ctx context.Context, dealID string, qty int) error
	// Available returns the units left, or ErrNoDeal.
	Available(ctx context.Context, dealID string) (int64, error)
}

// Orders stores orders and reads deals.
type Orders interface {
	Save(ctx context.Context, o Order) error
	Deal(ctx context.Context, dealID string) (Deal, error) // ErrNoDeal when unknown
}

// Publisher publishes an event and returns once the broker confirmed it.
type Publisher interface {
	Publish(ctx context.Context, body []byte) error
}

// Limiter admits a request for key or refuses it with the wait until the next one.
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// IDs issues order ids.
type IDs interface{ NextString() string }

// Errors of the stores.
var (
	ErrSoldOut = errors.New("sold out")
	ErrNoDeal  = errors.New("no such deal")
)

// Order is what the server stores and answers.
type Order struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	DealID    string    `json:"deal_id"`
	Quantity  int       `json:"quantity"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Deal is the stored deal as the harness seeds it.
type Deal struct {
	ID         string `json:"id"`
	ProductID  string `json:"product_id"`
	Kind       string `json:"kind"`
	PriceCents int64  `json:"price_cents"`
	Stock      int    `json:"stock"`
}

// Server is the seed-style single-process shop: every purchase is one Lua decrement, one
// order write and one confirmed publish, on the request path.
type Server struct {
	Stock    Stock
	Orders   Orders
	Pub      Publisher
	PerIP    Limiter
	PerUser  Limiter
	IDs      IDs
	Verifier *Verifier
	Now      func() time.Time
}

// Routes returns the router: the two public routes the benchmark compares, and /healthz.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(s.limit(s.PerIP, func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			return "ip:" + host
		}))
		r.Get("/deals/{id}", s.getDeal)
		r.With(s.authenticate, s.limit(s.PerUser, func(r *http.Request) string {
			return "user:" + userOf(r.Context())
		})).Post("/deals/{id}/orders", s.placeOrder)
	})
	return r
}

func (s *Server) placeOrder(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Quantity int `json:"quantity"`
	}
	if err := httpjson.Decode(w, r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	if in.Quantity < 1 || in.Quantity > 100 {
		problem.Write(w, r, problem.Invalid(problem.FieldError{Field: "quantity", Reason: "must be between 1 and 100"}))
		return
	}
	ctx := r.Context()
	dealID := chi.URLParam(r, "id")
	switch err := s.Stock.Take(ctx, dealID, in.Quantity); {
	case errors.Is(err, ErrSoldOut):
		problem.Write(w, r, problem.New(problem.CodeSoldOut, "the deal is sold out"))
		return
	case errors.Is(err, ErrNoDeal):
		problem.Write(w, r, problem.New(problem.CodeNotFound, "deal not found"))
		return
	case err != nil:
		problem.Write(w, r, fmt.Errorf("take stock: %w", err))
		return
	}
	o := Order{ID: s.IDs.NextString(), UserID: userOf(ctx), DealID: dealID, Quantity: in.Quantity,
		Status: "pending_payment", CreatedAt: s.Now().UTC()}
	if err := s.Orders.Save(ctx, o); err != nil {
		problem.Write(w, r, fmt.Errorf("save order: %w", err))
		return
	}
	body, err := json.Marshal(map[string]any{"type": "order.created", "order": o})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := s.Pub.Publish(ctx, body); err != nil {
		problem.Write(w, r, fmt.Errorf("publish: %w", err))
		return
	}
	httpjson.Write(w, http.StatusCreated, o)
}

func (s *Server) getDeal(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	d, err := s.Orders.Deal(ctx, id)
	if errors.Is(err, ErrNoDeal) {
		problem.Write(w, r, problem.New(problem.CodeNotFound, "deal not found"))
		return
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	avail, err := s.Stock.Available(ctx, id)
	if err != nil && !errors.Is(err, ErrNoDeal) {
		problem.Write(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{
		"id": d.ID, "product_id": d.ProductID, "kind": d.Kind, "price_cents": d.PriceCents, "stock_total": d.Stock,
		"stock": map[string]int64{"available": avail},
	})
}

// limit applies a limiter keyed by key(r); a failing limiter lets the request through, as the
// gateway's does.
func (s *Server) limit(l Limiter, key func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ok, retry, err := l.Allow(r.Context(), key(r))
			if err == nil && !ok {
				problem.Write(w, r, &problem.Error{Code: problem.CodeRateLimited, Detail: "too many requests", RetryAfter: max(retry, time.Second)})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type userKey struct{}

func userOf(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			problem.Write(w, r, &problem.Error{Code: problem.CodeUnauthorized, Detail: "an Authorization: Bearer token is required"})
			return
		}
		sub, err := s.Verifier.Verify(strings.TrimSpace(token))
		if err != nil {
			problem.Write(w, r, &problem.Error{Code: problem.CodeUnauthorized, Detail: "the token is invalid"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, sub)))
	})
}

// Verifier is the gateway's token check, rebuilt here because apps/gateway's auth package is
// internal to that app: HS256 only, issuer and audience pinned, expiry required, and a subject
// with the user or admin role. The gateway's own tokens pass it.
type Verifier struct {
	key    []byte
	parser *jwt.Parser
}

// NewVerifier returns the check for tokens signed with key.
func NewVerifier(key []byte, issuer, audience string) *Verifier {
	return &Verifier{key: key, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)}
}

type claims struct {
	jwt.RegisteredClaims
	Username string `json:"name"`
	Role     string `json:"role"`
}

// Verify returns the token's subject.
func (v *Verifier) Verify(token string) (string, error) {
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return "", err
	}
	if c.Subject == "" || (c.Role != "user" && c.Role != "admin") {
		return "", errors.New("no valid subject or role")
	}
	return c.Subject, nil
}
