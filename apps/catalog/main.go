// Command catalog owns products and deals. Creating a deal creates its stock record in the
// inventory app; reading a deal adds its live stock from there. Every create is announced on
// the broadcast pub/sub component (product.changed, deal.changed) for the gateway replicas'
// read caches, which also list every id from GET /internal/ids.
package main

import (
	"context"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/apps/catalog/internal/changepub"
	"github.com/groupbuy/groupbuy/apps/catalog/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/catalog/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/catalog/internal/inventoryclient"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/ids"
)

type config struct {
	bootstrap.Base
	StateStore     string `env:"STATE_STORE, default=statestore"`
	InventoryAppID string `env:"INVENTORY_APP_ID, default=inventory"`
	// BroadcastPubSub is the component the change events go to (every gateway replica has a
	// queue of its own on it).
	BroadcastPubSub string `env:"BROADCAST_PUBSUB, default=pubsub-broadcast"`
	// NodeID makes generated ids unique across replicas (0..1023).
	NodeID int `env:"NODE_ID, default=1"`
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
	rt, err := bootstrap.Start(ctx, "catalog", cfg.Base)
	if err != nil {
		return err
	}
	svc := catalog.NewService(
		daprstore.New(daprstate.New(rt.Dapr, cfg.StateStore)),
		inventoryclient.New(rt.Invoker, cfg.InventoryAppID),
		gen,
		changepub.New(rt.Dapr, cfg.BroadcastPubSub),
		rt.Log,
	)
	r := rt.Router(true)
	httpapi.Routes(r, svc)
	return rt.Serve(ctx, r)
}
