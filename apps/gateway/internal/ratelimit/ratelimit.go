// Package ratelimit limits requests per client IP and per user with GCRA counters in Redis
// (go-redis/redis_rate), shared by every gateway replica. Over the limit the caller gets 429
// `rate-limited` with Retry-After. If Redis is unreachable the limiter lets requests through
// and counts the failure: an outage of the limiter must not take the shop down.
package ratelimit

import (
	"context"
	"log/slog"
	"net"
	"net/http"
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

// PerIP limits by the connection's remote address. X-Forwarded-For is not trusted: a client
// could otherwise pick its own bucket.
func (l *Limiter) PerIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !l.allow(w, r, "ip", "ip:"+host, l.perIP) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PerUser limits by the authenticated user in the request context.
func (l *Limiter) PerUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := identity.FromContext(r.Context()); ok {
			if !l.allow(w, r, "user", "user:"+u.ID, l.perUser) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (l *Limiter) allow(w http.ResponseWriter, r *http.Request, scope, key string, rule Rule) bool {
	if rule.Rate <= 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), 200*time.Millisecond)
	defer cancel()
	res, err := l.rl.Allow(ctx, l.prefix+key, rule.limit())
	if err != nil {
		l.failures.Add(r.Context(), 1, metric.WithAttributes(attribute.String("scope", scope)))
		l.log.WarnContext(r.Context(), "rate_limiter_unavailable", slog.String("error", err.Error()))
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
