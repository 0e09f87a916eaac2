// Package baseline is the seed-style single-process server the benchmark harness
// (tests/bench) measures beside the platform: baseline (b) of docs/BENCHMARKS.md. The harness
// runs it as a child process of its own binary (`bench serve-baseline [flags]`), so its CPU
// is measured apart from the load generator.
//
// It is the design the platform replaces: one process, chi, the gateway's JWT check (HS256,
// issuer, audience and expiry pinned), per-IP and per-user rate limits with redis_rate, then
// per purchase a Lua decrement of the deal's stock key, the order written to Redis, and
// order.created published to RabbitMQ with publisher confirms, all on the request path. It
// serves POST /api/v1/deals/{id}/orders and GET /api/v1/deals/{id}; the harness seeds deals
// and stock straight into Redis (see adapters.go for the keys).
//
// Configuration is by flags (Serve); the harness passes the Redis DB and RabbitMQ vhost of its run.
package baseline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/groupbuy/groupbuy/pkg/ids"
)

// Serve parses args (flags, without the program name) and serves until ctx ends.
func Serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve-baseline", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8099", "listen address")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address")
	redisDB := fs.Int("redis-db", 0, "Redis database")
	amqpURL := fs.String("amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL (with vhost)")
	key := fs.String("jwt-key", "", "HS256 signing key of the gateway's tokens (required)")
	issuer := fs.String("jwt-issuer", "groupbuy-gateway", "token issuer")
	audience := fs.String("jwt-audience", "groupbuy-api", "token audience")
	ratePrefix := fs.String("rate-key-prefix", KeyPrefix+"rate:", "rate-limit key prefix")
	rateIP := fs.Int("rate-ip", 1_000_000, "requests per second per IP")
	rateUser := fs.Int("rate-user", 1_000_000, "requests per second per user")
	channels := fs.Int("amqp-channels", 4, "confirming AMQP channels")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		return errors.New("-jwt-key is required")
	}

	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, DB: *redisDB, PoolSize: 256})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	pub, err := NewAMQPPublisher(*amqpURL, *channels)
	if err != nil {
		return err
	}
	defer pub.Close()
	gen, err := ids.New(900)
	if err != nil {
		return err
	}
	rl := redis_rate.NewLimiter(rdb)
	s := &Server{
		Stock:    RedisStock{R: rdb},
		Orders:   RedisOrders{R: rdb},
		Pub:      pub,
		PerIP:    RateLimiter{L: rl, Prefix: *ratePrefix, Limit: redis_rate.Limit{Rate: *rateIP, Burst: *rateIP, Period: time.Second}},
		PerUser:  RateLimiter{L: rl, Prefix: *ratePrefix, Limit: redis_rate.Limit{Rate: *rateUser, Burst: *rateUser, Period: time.Second}},
		IDs:      gen,
		Verifier: NewVerifier([]byte(*key), *issuer, *audience),
		Now:      time.Now,
	}
	srv := &http.Server{Addr: *listen, Handler: s.Routes(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
