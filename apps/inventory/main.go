// Command inventory owns the stock of every deal and the orders' holds on it: counters and
// holds split over per-deal buckets, each one state key changed only by ETag-checked writes
// through its Dapr sidecar, with requests batched per bucket (group commit).
package main

import (
	"context"
	"time"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

type config struct {
	bootstrap.Base
	StateStore string `env:"STATE_STORE, default=statestore"`
	// StockBuckets is the bucket count of newly created deals; existing deals keep theirs.
	StockBuckets int           `env:"STOCK_BUCKETS, default=1"`
	SoldOutTTL   time.Duration `env:"SOLD_OUT_TTL, default=1s"`
	// HoldRetention is how long settled holds and passed marks are kept for idempotent
	// replays; keep it well above the order app's IDEMPOTENCY_TTL (at least 48h).
	HoldRetention time.Duration `env:"HOLD_RETENTION, default=168h"`
	// ReleaseTombstoneRetention is how long the release of an order that held nothing keeps
	// a late reserve of it from taking stock; at least twice the 5s flush timeout.
	ReleaseTombstoneRetention time.Duration `env:"RELEASE_TOMBSTONE_RETENTION, default=1m"`
	// StockBatching turns group commit off when false (for comparison only).
	StockBatching bool `env:"STOCK_BATCHING, default=true"`
}

func main() { bootstrap.Main(run) }

func run(ctx context.Context) error {
	var cfg config
	if err := bootstrap.LoadConfig(ctx, &cfg); err != nil {
		return err
	}
	rt, err := bootstrap.Start(ctx, "inventory", cfg.Base)
	if err != nil {
		return err
	}
	svc, err := stock.NewService(daprstore.New(daprstate.New(rt.Dapr, cfg.StateStore)), stock.Config{
		Buckets:            cfg.StockBuckets,
		SoldOutTTL:         cfg.SoldOutTTL,
		HoldRetention:      cfg.HoldRetention,
		TombstoneRetention: cfg.ReleaseTombstoneRetention,
		DisableBatching:    !cfg.StockBatching,
		Meter:              rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/inventory"),
	})
	if err != nil {
		return err
	}
	r := rt.Router(true)
	httpapi.Routes(r, svc)
	return rt.Serve(ctx, r)
}
