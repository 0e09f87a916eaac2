// Command inventory owns the stock of every deal: counters per deal in one state key, changed
// only by ETag-checked writes through its Dapr sidecar.
package main

import (
	"context"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

type config struct {
	bootstrap.Base
	StateStore string `env:"STATE_STORE, default=statestore"`
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
	svc := stock.NewService(daprstore.New(daprstate.New(rt.Dapr, cfg.StateStore)))
	r := rt.Router(true)
	httpapi.Routes(r, svc)
	return rt.Serve(ctx, r)
}
