// Command notify tells users what happens to their orders and groups: it consumes the order
// and group events durably into a per-user inbox (GET /me/notifications) and relays each event,
// once recorded, to the live streams the gateway replicas serve (pkg/live). It also keeps the
// dead letters of those topics (POST /dead-letters) and lets admins list and replay them
// (/admin/dead-letters...): a replay publishes the original CloudEvent, same id, to its topic
// on the durable component again.
//
// Each event must reach the inbox once: the durable topics are consumed as competing consumers
// (one queue per topic for the app id). Every gateway replica must see every event to serve
// its own streaming clients: the relay goes to a broadcast pub/sub component on which every
// gateway replica has a queue of its own (components/pubsub-broadcast.yaml).
package main

import (
	"context"

	"github.com/groupbuy/groupbuy/apps/notify/internal/daprpubsub"
	"github.com/groupbuy/groupbuy/apps/notify/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/events"
)

type config struct {
	bootstrap.Base
	StateStore      string `env:"STATE_STORE, default=statestore"`
	BroadcastPubSub string `env:"BROADCAST_PUBSUB, default=pubsub-broadcast"`
}

func main() { bootstrap.Main(run) }

func run(ctx context.Context) error {
	var cfg config
	if err := bootstrap.LoadConfig(ctx, &cfg); err != nil {
		return err
	}
	rt, err := bootstrap.Start(ctx, "notify", cfg.Base)
	if err != nil {
		return err
	}
	state := daprstate.New(rt.Dapr, cfg.StateStore)
	svc := notification.NewService(daprstore.New(state), daprpubsub.New(rt.Dapr, cfg.BroadcastPubSub))
	dead := deadletter.NewKeeper(daprstore.NewDeadLetters(state), daprpubsub.NewRepublisher(rt.Dapr, events.PubSub),
		deadletter.KnownTopics(), nil)
	r := rt.Router(true)
	httpapi.Routes(r, svc, dead, httpapi.Options{Log: rt.Log})
	return rt.Serve(ctx, r)
}
