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
	// StockRecentWindow is how long a bucket remembers finished ops (committed and released
	// holds, release tombstones, passed marks) for replays and for reserves still in flight;
	// at least twice the 5s flush timeout.
	StockRecentWindow time.Duration `env:"STOCK_RECENT_WINDOW, default=1m"`
	// StockRecentOps caps those records per bucket: a bucket's worst-case size.
	StockRecentOps int `env:"STOCK_RECENT_OPS, default=256"`
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
		Buckets:         cfg.StockBuckets,
		SoldOutTTL:      cfg.SoldOutTTL,
		RecentWindow:    cfg.StockRecentWindow,
		RecentOps:       cfg.StockRecentOps,
		DisableBatching: !cfg.StockBatching,
		Meter:           rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/inventory"),
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	r := rt.Router(true)
	httpapi.Routes(r, svc)
	return rt.Serve(ctx, r)
}
