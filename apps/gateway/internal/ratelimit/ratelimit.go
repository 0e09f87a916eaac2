// Package ratelimit limits requests per client IP and per user with GCRA counters in Redis
// (go-redis/redis_rate), shared by every gateway replica. Over the limit the caller gets 429
// `rate-limited` with Retry-After.
//
// When Redis is unreachable, browsing and buying fail open (requests go through and the
// failure is counted: an outage of the limiter must not take the shop down; the apps behind
// have their own admission limits), while the account routes, login and register, fail
// closed with 503 (PerIPStrict): they are what a credential-stuffing or sign-up flood goes
// for, and bcrypt makes each of them expensive.
//
// The client address is the connection's peer, unless the peer is a trusted proxy
// (TrustedProxies, e.g. the Ingress controller's addresses): then it is the rightmost address
// of X-Forwarded-For that is not a trusted proxy, or X-Real-IP when X-Forwarded-For is absent.
// A client cannot pick its own bucket: headers from an untrusted peer are ignored, and every
// address a client can write into X-Forwarded-For is left of the one its proxy appended.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Rule is one limit: Rate requests per Period with bursts up to Burst.
type Rule struct {
	Rate   int
	Burst  int
	Period time.Duration
}

func (r Rule) limit() redis_rate.Limit {
	burst := r.Burst
	if burst < r.Rate {
		burst = r.Rate
	}
	return redis_rate.Limit{Rate: r.Rate, Burst: burst, Period: r.Period}
}

// Limiter applies the per-IP and per-user rules.
type Limiter struct {
	rl       *redis_rate.Limiter
	prefix   string
	proxies  []netip.Prefix
	account  AccountRules
	perIP    Rule
	perUser  Rule
	log      *slog.Logger
	rejected metric.Int64Counter
	failures metric.Int64Counter
}

// New returns a limiter; keys are prefixed with prefix so deployments (and test runs) sharing a
// Redis do not share counters.
func New(rl *redis_rate.Limiter, prefix string, perIP, perUser Rule, log *slog.Logger, meter metric.Meter) *Limiter {
	rejected, _ := meter.Int64Counter("gateway_rate_limited_total", metric.WithDescription("Requests refused by a rate limit"))
	failures, _ := meter.Int64Counter("gateway_rate_limiter_errors_total", metric.WithDescription("Rate limiter calls that failed (requests let through)"))
	return &Limiter{rl: rl, prefix: prefix, perIP: perIP, perUser: perUser, log: log, rejected: rejected, failures: failures}
}

// ClientIP is the client address of r under the limiter's trusted proxies.
func (l *Limiter) ClientIP(r *http.Request) string { return ClientIP(r, l.proxies) }

// TrustProxies sets the proxies whose X-Forwarded-For / X-Real-IP name the client.
func (l *Limiter) TrustProxies(p []netip.Prefix) { l.proxies = p }

// ParseProxies reads a comma-separated list of addresses and CIDR prefixes.
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ClientIP is the address r's rate limit is keyed on (see the package comment).
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(peer, trusted) {
		return host
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops := strings.Split(strings.Join(xff, ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				return host // a proxy we trust wrote garbage: key on the proxy
			}
			if !isTrusted(a, trusted) {
				return a.Unmap().String()
			}
		}
		return host
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap().String()
	}
	return host
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// PerIP limits by the client address (ClientIP); it lets requests through when Redis fails.
func (l *Limiter) PerIP(next http.Handler) http.Handler { return l.perIPHandler(next, false) }

// PerIPStrict is PerIP for the account routes: when Redis fails it refuses with 503.
func (l *Limiter) PerIPStrict(next http.Handler) http.Handler { return l.perIPHandler(next, true) }

func (l *Limiter) perIPHandler(next http.Handler, strict bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.allow(w, r, "ip", "ip:"+ClientIP(r, l.proxies), l.perIP, strict) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PerUser limits by the authenticated user in the request context.
func (l *Limiter) PerUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := identity.FromContext(r.Context()); ok {
			if !l.allow(w, r, "user", "user:"+u.ID, l.perUser, false) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (l *Limiter) allow(w http.ResponseWriter, r *http.Request, scope, key string, rule Rule, strict bool) bool {
	if rule.Rate <= 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), 200*time.Millisecond)
	defer cancel()
	res, err := l.rl.Allow(ctx, l.prefix+key, rule.limit())
	if err != nil {
		l.failures.Add(r.Context(), 1, metric.WithAttributes(attribute.String("scope", scope)))
		l.log.WarnContext(r.Context(), "rate_limiter_unavailable", slog.String("error", err.Error()), slog.Bool("refused", strict))
		if strict {
			problem.Write(w, r, &problem.Error{Code: problem.CodeUnavailable, Detail: "the rate limiter is unavailable; retry shortly", RetryAfter: time.Second})
			return false
		}
		return true
	}
	if res.Allowed > 0 {
		return true
	}
	l.rejected.Add(r.Context(), 1, metric.WithAttributes(attribute.String("scope", scope)))
	retry := res.RetryAfter
	if retry < time.Second {
		retry = time.Second
	}
	problem.Write(w, r, &problem.Error{
		Code:       problem.CodeRateLimited,
		Detail:     "too many requests from this " + scope,
		RetryAfter: retry,
	})
	return false
}

// Account rules: registrations per client address, stricter than PerIP, and failed logins
// per username (a credential-stuffing run against one account backs off to one try per
// Period/Rate once Burst attempts failed, whatever addresses it comes from). Both fail
// closed: they guard the routes PerIPStrict guards.
type AccountRules struct {
	Register      Rule
	LoginFailures Rule
}

// SetAccountRules sets the account rules; a rule with Rate 0 is off.
func (l *Limiter) SetAccountRules(r AccountRules) { l.account = r }

// Register limits registrations per client address (AccountRules.Register).
func (l *Limiter) Register(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.allow(w, r, "register", "register:"+ClientIP(r, l.proxies), l.account.Register, true) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LoginBlocked reports whether username has used up its failed logins: the login is then
// refused, before any password is checked, with 429 rate-limited and a Retry-After.
func (l *Limiter) LoginBlocked(ctx context.Context, username string) error {
	rule := l.account.LoginFailures
	if rule.Rate <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	res, err := l.rl.AllowN(ctx, l.loginKey(username), rule.limit(), 0) // a look, no cost
	if err != nil {
		l.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("scope", "login")))
		return &problem.Error{Code: problem.CodeUnavailable, Detail: "the rate limiter is unavailable; retry shortly", RetryAfter: time.Second}
	}
	if res.Remaining >= 1 {
		return nil
	}
	l.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("scope", "login")))
	return &problem.Error{Code: problem.CodeRateLimited, Detail: "too many failed logins for this account; retry later",
		RetryAfter: max(rule.Period/time.Duration(rule.Rate), time.Second)}
}

// LoginFailed counts a failed login of username.
func (l *Limiter) LoginFailed(ctx context.Context, username string) {
	if l.account.LoginFailures.Rate <= 0 {
		return
	}
	if _, err := l.rl.Allow(context.WithoutCancel(ctx), l.loginKey(username), l.account.LoginFailures.limit()); err != nil {
		l.log.WarnContext(ctx, "rate_limiter_unavailable", slog.String("error", err.Error()), slog.String("scope", "login"))
	}
}

// LoginSucceeded forgets username's failed logins.
func (l *Limiter) LoginSucceeded(ctx context.Context, username string) {
	if l.account.LoginFailures.Rate <= 0 {
		return
	}
	if err := l.rl.Reset(context.WithoutCancel(ctx), l.loginKey(username)); err != nil {
		l.log.WarnContext(ctx, "rate_limiter_unavailable", slog.String("error", err.Error()), slog.String("scope", "login"))
	}
}

func (l *Limiter) loginKey(username string) string {
	return l.prefix + "loginfail:" + strings.ToLower(strings.TrimSpace(username))
}
