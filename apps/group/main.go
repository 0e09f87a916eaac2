// Command group owns group buying: it hosts GroupActor (one Dapr actor per group, with a
// durable deadline reminder), serves open/join/read/list to the gateway, places members'
// orders through the order app, and follows their payment and cancellation over pub/sub.
package main

import (
	"context"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/clients"
	"github.com/groupbuy/groupbuy/apps/group/internal/dapractor"
	"github.com/groupbuy/groupbuy/apps/group/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/apps/group/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/group/internal/relay"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/ids"
)

type config struct {
	bootstrap.Base
	StateStore string `env:"STATE_STORE, default=statestore"`
	// PubSubs are the pub/sub components group events are published through, all pointing
	// at the broker of the "pubsub" component subscribers use (components/pubsub-relay.yaml:
	// Dapr 1.16's RabbitMQ publisher holds one message in flight per component).
	PubSubs      []string `env:"OUTBOX_PUBSUBS, default=pubsub-relay-0,pubsub-relay-1,pubsub-relay-2,pubsub-relay-3,pubsub-relay-4,pubsub-relay-5,pubsub-relay-6,pubsub-relay-7"`
	CatalogAppID string   `env:"CATALOG_APP_ID, default=catalog"`
	OrderAppID   string   `env:"ORDER_APP_ID, default=order"`
	// NodeID must differ from every other id-generating replica: the group app allocates
	// group ids and its members' order ids.
	NodeID         int           `env:"NODE_ID, default=4"`
	IdemTTL        time.Duration `env:"IDEMPOTENCY_TTL, default=24h"`
	IdemLease      time.Duration `env:"IDEMPOTENCY_LEASE, default=30s"`
	IdemWait       time.Duration `env:"IDEMPOTENCY_WAIT, default=3s"` // below the sidecar's timeout for the group app
	ReserveTimeout time.Duration `env:"SEAT_RESERVE_TIMEOUT, default=30s"`
	// SeatOrderTimeout bounds the member's order call inside a seat's actor turn (below the
	// sidecar's 5s timeout for actor calls).
	SeatOrderTimeout time.Duration `env:"SEAT_ORDER_TIMEOUT, default=4s"`
	ReminderPeriod   time.Duration `env:"DEADLINE_RETRY_PERIOD, default=30s"`
	IndexRetention   time.Duration `env:"GROUP_LIST_RETENTION, default=1h"`
	// IndexShards splits each deal's group list over this many documents; keep it fixed once
	// groups are listed (daprstore.IndexConfig.Shards). IndexPruneMargin is how late after
	// its deadline a group may still be decided (daprstore.IndexConfig.PruneMargin).
	IndexShards      int           `env:"GROUP_INDEX_SHARDS, default=16"`
	IndexPruneMargin time.Duration `env:"GROUP_INDEX_PRUNE_MARGIN, default=10m"`
	ActorIdle        time.Duration `env:"ACTOR_IDLE_TIMEOUT, default=1h"`
	ActorDrain       time.Duration `env:"ACTOR_DRAIN_TIMEOUT, default=30s"`
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
	rt, err := bootstrap.Start(ctx, "group", cfg.Base)
	if err != nil {
		return err
	}
	state := daprstate.New(rt.Dapr, cfg.StateStore)
	actors := dapractor.New(cfg.Dapr)
	groups := daprstore.NewGroups(state, actors)
	pub := clients.NewPublisher(rt.Dapr, cfg.PubSubs)
	events, err := relay.New(relay.DefaultConfig, pub, rt.Log, rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/group"))
	if err != nil {
		return err
	}
	host := actorhost.New(actorhost.Config{
		ReserveTimeout: cfg.ReserveTimeout,
		ReminderPeriod: cfg.ReminderPeriod,
		OrderTimeout:   cfg.SeatOrderTimeout,
		IdleTimeout:    cfg.ActorIdle,
		DrainTimeout:   cfg.ActorDrain,
	}, actorhost.Deps{
		State:     groups,
		Reminders: actors,
		Pub:       pub,
		Relay:     events,
		Orders:    clients.NewOrders(rt.Invoker, cfg.OrderAppID),
		Log:       rt.Log,
	})
	svc := group.NewService(group.Config{IdemLease: cfg.IdemLease, IdemWait: cfg.IdemWait, IndexRetention: cfg.IndexRetention}, group.Deps{
		Actors: actors,
		States: groups,
		Deals:  clients.NewCatalog(rt.Invoker, cfg.CatalogAppID),
		Idem:   daprstore.NewIdempotency(state, cfg.IdemTTL),
		Index: daprstore.NewIndex(state, daprstore.IndexConfig{
			Shards: cfg.IndexShards, Retention: cfg.IndexRetention, PruneMargin: cfg.IndexPruneMargin,
		}),
		IDs: gen,
		Log: rt.Log,
	})
	// The app API token check covers the actor routes too: only the sidecar calls them.
	// /healthz stays open (daprd's app health probe sends no token).
	r := rt.Router(true)
	host.Routes(r)
	httpapi.Routes(r, svc, rt.Log)
	// What the relay has not published when the app stops stays in the groups' outboxes
	// for their next turns (or deadlines), on whichever replica hosts them then.
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go events.Run(rctx)
	return rt.Serve(ctx, r)
}
