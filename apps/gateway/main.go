// Command gateway is the public REST edge of the platform: accounts and JWTs, per-IP and
// per-user rate limits, forwarding to the internal apps through Dapr service invocation, and
// the live streams (SSE), served from this replica's hub and fed by its sidecar over the
// broadcast pub/sub component (components/subscriptions-gateway.yaml).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/account"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/auth"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/ratelimit"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/readcache"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/soldout"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

type config struct {
	bootstrap.Base
	StateStore  string `env:"STATE_STORE, default=statestore"`
	SecretStore string `env:"SECRET_STORE, default=secretstore"`
	NodeID      int    `env:"NODE_ID, default=0"`

	// JWT settings; the HMAC key is read from the secret store.
	SigningKeySecret string        `env:"JWT_SIGNING_KEY_SECRET, default=jwt-signing-key"`
	Issuer           string        `env:"JWT_ISSUER, default=groupbuy-gateway"`
	Audience         string        `env:"JWT_AUDIENCE, default=groupbuy-api"`
	TokenTTL         time.Duration `env:"JWT_TTL, default=15m"`
	BcryptCost       int           `env:"PASSWORD_HASH_COST, default=10"`

	// Admin accounts: each name's password is the secret ADMIN_PASSWORD_SECRET_PREFIX+name.
	AdminUsers          []string `env:"ADMIN_USERS"`
	AdminPasswordPrefix string   `env:"ADMIN_PASSWORD_SECRET_PREFIX, default=admin-password-"`

	// Rate limits (redis_rate talks to Redis directly, not through Dapr).
	RedisAddr     string        `env:"REDIS_ADDR, default=127.0.0.1:6379"`
	RedisDB       int           `env:"REDIS_DB, default=0"`
	RedisPassword string        `env:"REDIS_PASSWORD"`
	RateKeyPrefix string        `env:"RATE_LIMIT_KEY_PREFIX, default=groupbuy:"`
	RatePeriod    time.Duration `env:"RATE_LIMIT_PERIOD, default=1s"`
	RatePerIP     int           `env:"RATE_LIMIT_IP, default=100"`
	RateBurstIP   int           `env:"RATE_LIMIT_IP_BURST, default=200"`
	RatePerUser   int           `env:"RATE_LIMIT_USER, default=20"`
	RateBurstUser int           `env:"RATE_LIMIT_USER_BURST, default=40"`
	// TrustedProxies lists the proxies (addresses or CIDR prefixes, comma-separated: the
	// Ingress controller's) whose X-Forwarded-For / X-Real-IP name the client for the per-IP
	// limit; empty trusts none, and the limit keys on the connection's peer.
	TrustedProxies string `env:"TRUSTED_PROXIES"`
	// Registrations per client address per period, and failed logins per username per period
	// (after that many, one more try per period/count); 0 turns a rule off.
	RateRegister            int           `env:"RATE_LIMIT_REGISTER, default=20"`
	RateRegisterPeriod      time.Duration `env:"RATE_LIMIT_REGISTER_PERIOD, default=1h"`
	RateLoginFailures       int           `env:"RATE_LIMIT_LOGIN_FAILURES, default=5"`
	RateLoginFailuresPeriod time.Duration `env:"RATE_LIMIT_LOGIN_FAILURES_PERIOD, default=15m"`
	CatalogAppID            string        `env:"CATALOG_APP_ID, default=catalog"`
	OrderAppID              string        `env:"ORDER_APP_ID, default=order"`
	NotifyAppID             string        `env:"NOTIFY_APP_ID, default=notify"`
	GroupAppID              string        `env:"GROUP_APP_ID, default=group"`
	SetupRetryWait          time.Duration `env:"SETUP_RETRY_WAIT, default=500ms"`

	// Sold out at the edge (internal/soldout): how long the order app's sold-out answer for a
	// deal is answered from memory (0 forwards every purchase), and how long the gateway
	// remembers that an Idempotency-Key was forwarded; keep that above the order app's
	// IDEMPOTENCY_TTL, or a retry of a stored order could be refused as sold out.
	SoldOutTTL       time.Duration `env:"SOLD_OUT_TTL, default=1s"`
	SoldOutPlacedTTL time.Duration `env:"SOLD_OUT_PLACED_TTL, default=25h"`

	// Read cache (internal/readcache): public product and deal reads from memory. Entries
	// (0 turns the cache off: every read is forwarded to the catalog), how long a deal's stock
	// levels and a product are served, how long "not found" is remembered, how long a create
	// may take to reach every replica, and how often the Bloom filter of existing ids is
	// rebuilt from the catalog.
	ReadCacheEntries     int           `env:"READ_CACHE_ENTRIES, default=100000"`
	ReadCacheStockTTL    time.Duration `env:"READ_CACHE_STOCK_TTL, default=1s"`
	ReadCacheProductTTL  time.Duration `env:"READ_CACHE_PRODUCT_TTL, default=1m"`
	ReadCacheNegativeTTL time.Duration `env:"READ_CACHE_NEGATIVE_TTL, default=30s"`
	ReadCacheIDGrace     time.Duration `env:"READ_CACHE_ID_GRACE, default=10s"`
	ReadCacheRebuild     time.Duration `env:"READ_CACHE_REBUILD, default=5m"`

	// Live streams: how many events a client may lag behind before it is dropped (it then
	// reconnects and catches up from its inbox), and the keep-alive comment interval.
	StreamBuffer    int           `env:"STREAM_BUFFER, default=64"`
	StreamHeartbeat time.Duration `env:"STREAM_HEARTBEAT, default=15s"`
	// Open streams per signed-in user, per client address, and per replica (429 beyond).
	StreamMaxPerUser int `env:"STREAM_MAX_PER_USER, default=5"`
	StreamMaxPerIP   int `env:"STREAM_MAX_PER_IP, default=50"`
	StreamMax        int `env:"STREAM_MAX, default=10000"`
}

func main() { bootstrap.Main(run) }

func run(ctx context.Context) error {
	var cfg config
	if err := bootstrap.LoadConfig(ctx, &cfg); err != nil {
		return err
	}
	gen, err := ids.New(cfg.NodeID)
	if err != nil {
		return err
	}
	rt, err := bootstrap.Start(ctx, "gateway", cfg.Base)
	if err != nil {
		return err
	}
	accounts, err := account.NewService(daprstore.NewAccounts(daprstate.New(rt.Dapr, cfg.StateStore)), gen, cfg.BcryptCost)
	if err != nil {
		return err
	}
	accounts.Reserve(cfg.AdminUsers...) // only setup creates them
	rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, DB: cfg.RedisDB, Password: cfg.RedisPassword})
	defer rdb.Close()
	limiter := ratelimit.New(redis_rate.NewLimiter(rdb), cfg.RateKeyPrefix+"rate:",
		ratelimit.Rule{Rate: cfg.RatePerIP, Burst: cfg.RateBurstIP, Period: cfg.RatePeriod},
		ratelimit.Rule{Rate: cfg.RatePerUser, Burst: cfg.RateBurstUser, Period: cfg.RatePeriod},
		rt.Log, rt.Telemetry.Meter("gateway"))
	proxies, err := ratelimit.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	limiter.TrustProxies(proxies)
	limiter.SetAccountRules(ratelimit.AccountRules{
		Register:      ratelimit.Rule{Rate: cfg.RateRegister, Burst: cfg.RateRegister, Period: cfg.RateRegisterPeriod},
		LoginFailures: ratelimit.Rule{Rate: cfg.RateLoginFailures, Burst: cfg.RateLoginFailures, Period: cfg.RateLoginFailuresPeriod},
	})

	// The signing key and admin accounts need the sidecar, which may start after this app:
	// set them up in the background and report not-ready until done.
	var tokens atomic.Pointer[auth.Tokens]
	go func() {
		for {
			err := setup(ctx, cfg, rt, accounts, &tokens)
			if err == nil {
				rt.Log.Info("setup_done", slog.Int("admins", len(cfg.AdminUsers)))
				return
			}
			rt.Log.Warn("setup_retry", slog.String("error", err.Error()))
			select {
			case <-ctx.Done():
				return
			case <-time.After(cfg.SetupRetryWait):
			}
		}
	}()
	tokenSource := func() (*auth.Tokens, error) {
		if t := tokens.Load(); t != nil {
			return t, nil
		}
		return nil, problem.New(problem.CodeUnavailable, "the gateway is starting")
	}
	hub := live.NewHub(cfg.StreamBuffer)
	// Open streams never go idle, so the server's graceful shutdown would wait on them until
	// its timeout: closing the hub when shutdown starts ends every stream.
	stop := context.AfterFunc(ctx, hub.Close)
	defer stop()
	if rt.Base.Dapr.AppAPIToken == "" {
		rt.Log.Warn("live_relay_disabled", slog.String("reason", "no APP_API_TOKEN: the public gateway refuses relayed events it cannot authenticate"))
	}
	var edge *soldout.Edge
	if cfg.SoldOutTTL > 0 {
		edge = soldout.NewEdge(soldout.NewMarks(cfg.SoldOutTTL, time.Now),
			soldout.NewRedisPlaced(rdb, cfg.RateKeyPrefix, cfg.SoldOutPlacedTTL))
	}
	var reads *readcache.Cache
	if cfg.ReadCacheEntries > 0 {
		reads, err = readcache.New(rt.Invoker, cfg.CatalogAppID, readcache.Config{
			MaxEntries: cfg.ReadCacheEntries, StockTTL: cfg.ReadCacheStockTTL, ProductTTL: cfg.ReadCacheProductTTL,
			NegativeTTL: cfg.ReadCacheNegativeTTL, IDGrace: cfg.ReadCacheIDGrace, Rebuild: cfg.ReadCacheRebuild,
			Meter: rt.Telemetry.Meter("gateway"), Log: rt.Log,
		})
		if err != nil {
			return err
		}
		go reads.Run(ctx)
	}
	api := &httpapi.API{
		Accounts: accounts,
		Tokens:   tokenSource,
		Invoker:  rt.Invoker,
		Limiter:  limiter,
		Apps:     httpapi.Apps{Catalog: cfg.CatalogAppID, Order: cfg.OrderAppID, Notify: cfg.NotifyAppID, Group: cfg.GroupAppID},
		Hub:      hub,
		SSE:      live.SSE{Heartbeat: cfg.StreamHeartbeat},
		Streams:  httpapi.StreamLimits{PerUser: cfg.StreamMaxPerUser, PerIP: cfg.StreamMaxPerIP, Total: cfg.StreamMax},
		ClientIP: limiter.ClientIP,
		AppToken: rt.Base.Dapr.AppAPIToken,
		SoldOut:  edge,
		Reads:    reads,
		Log:      rt.Log,
	}
	r := rt.Router(false,
		func(context.Context) error {
			if tokens.Load() == nil {
				return errors.New("signing key and admin accounts not set up yet")
			}
			return nil
		},
		func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	)
	api.Routes(r)
	return rt.Serve(ctx, r)
}

// setup loads the signing key and provisions the configured admin accounts.
func setup(ctx context.Context, cfg config, rt *bootstrap.Runtime, accounts *account.Service, out *atomic.Pointer[auth.Tokens]) error {
	key, err := secret(ctx, rt, cfg.SecretStore, cfg.SigningKeySecret)
	if err != nil {
		return err
	}
	t, err := auth.NewTokens([]byte(key), cfg.Issuer, cfg.Audience, cfg.TokenTTL)
	if err != nil {
		return err
	}
	for _, name := range cfg.AdminUsers {
		pw, err := secret(ctx, rt, cfg.SecretStore, cfg.AdminPasswordPrefix+name)
		if err != nil {
			return err
		}
		if err := accounts.EnsureAdmin(ctx, name, pw); err != nil {
			return err
		}
	}
	out.Store(t)
	return nil
}

func secret(ctx context.Context, rt *bootstrap.Runtime, store, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := rt.Dapr.GetSecret(ctx, store, name, nil)
	if err != nil {
		return "", fmt.Errorf("secret %s/%s: %w", store, name, err)
	}
	v, ok := m[name]
	if !ok || v == "" {
		return "", fmt.Errorf("secret %s/%s is empty", store, name)
	}
	return v, nil
}
