// Command order owns orders: idempotent placement, the purchase limit, stock holds through
// inventory, payment through the payment app (guarded by Dapr resiliency), and expiry driven
// by a Dapr cron input binding; for group deals, members' orders placed by the group app and
// settled when their group succeeds or fails.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/admission"
	"github.com/groupbuy/groupbuy/apps/order/internal/clients"
	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/outbox"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/bulkpub"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/ids"
)

type config struct {
	bootstrap.Base
	StateStore     string        `env:"STATE_STORE, default=statestore"`
	ExpiryBinding  string        `env:"EXPIRY_BINDING, default=order-expiry"`
	CatalogAppID   string        `env:"CATALOG_APP_ID, default=catalog"`
	InventoryAppID string        `env:"INVENTORY_APP_ID, default=inventory"`
	PaymentAppID   string        `env:"PAYMENT_APP_ID, default=payment"`
	NodeID         int           `env:"NODE_ID, default=2"`
	PayWindow      time.Duration `env:"PAY_WINDOW, default=15m"`
	IdemTTL        time.Duration `env:"IDEMPOTENCY_TTL, default=24h"`
	IdemLease      time.Duration `env:"IDEMPOTENCY_LEASE, default=30s"`
	IdemWait       time.Duration `env:"IDEMPOTENCY_WAIT, default=3s"` // below the sidecar's timeout for the order app
	PaymentGrace   time.Duration `env:"PAYMENT_GRACE, default=30s"`
	MaxQuantity    int           `env:"MAX_QUANTITY, default=100"`
	Pending        pendingConfig
	// UserPage is how many order ids one page of a user's index holds; ListLimit caps
	// GET /me/orders (the newest orders).
	UserPage  int `env:"USER_INDEX_PAGE, default=100"`
	ListLimit int `env:"ME_ORDERS_LIMIT, default=100"`
	// SoldOutTTL: how long inventory's sold-out answer refuses purchases of the deal from
	// memory, without a write; stock that comes back is on sale again at most this much later.
	SoldOutTTL time.Duration `env:"SOLD_OUT_TTL, default=1s"`
	// Admission: placements worked on at once per replica, how many may wait and for how long,
	// and the Retry-After of a refusal (see internal/admission).
	AdmissionLimit        int           `env:"ADMISSION_LIMIT, default=32"`
	AdmissionQueue        int           `env:"ADMISSION_QUEUE, default=64"`
	AdmissionQueueTimeout time.Duration `env:"ADMISSION_QUEUE_TIMEOUT, default=1s"`
	AdmissionRetryAfter   time.Duration `env:"ADMISSION_RETRY_AFTER, default=1s"`
	Reconcile             reconcileConfig
	Outbox                outboxConfig
}

// outboxConfig tunes the event relay (apps/order/internal/outbox) and its index
// (daprstore.Outbox).
type outboxConfig struct {
	// PubSubs are the pub/sub components the relay publishes through, all pointing at the
	// broker of the "pubsub" component subscribers use (components/pubsub-relay-*.yaml):
	// one confirm in flight each.
	PubSubs     []string `env:"OUTBOX_PUBSUBS, default=pubsub-relay-0,pubsub-relay-1,pubsub-relay-2,pubsub-relay-3,pubsub-relay-4,pubsub-relay-5,pubsub-relay-6,pubsub-relay-7"`
	Queue       int      `env:"OUTBOX_QUEUE, default=8192"`
	BatchSize   int      `env:"OUTBOX_BATCH_SIZE, default=256"`
	Workers     int      `env:"OUTBOX_WORKERS, default=2"`
	Concurrency int      `env:"OUTBOX_CONCURRENCY, default=16"`
	// FlushTimeout bounds one live batch; what it leaves is published by recovery.
	FlushTimeout time.Duration `env:"OUTBOX_FLUSH_TIMEOUT, default=10s"`
	// Recovery: buckets older than Grace are published by a pass every Interval, run by the
	// replica holding the lease.
	Grace      time.Duration `env:"OUTBOX_GRACE, default=5s"`
	Interval   time.Duration `env:"OUTBOX_RECOVERY_INTERVAL, default=1s"`
	Lease      time.Duration `env:"OUTBOX_LEASE, default=10s"`
	MaxBuckets int           `env:"OUTBOX_MAX_BUCKETS, default=120"`
	// Index: documents per bucket, bucket width, where recovery starts on a new install, and
	// the group commit of registrations.
	Shards          int           `env:"OUTBOX_SHARDS, default=4"`
	Bucket          time.Duration `env:"OUTBOX_BUCKET, default=1s"`
	Lookback        time.Duration `env:"OUTBOX_LOOKBACK, default=10m"`
	RegisterTimeout time.Duration `env:"OUTBOX_REGISTER_TIMEOUT, default=2s"`
	RegisterBatch   int           `env:"OUTBOX_REGISTER_BATCH, default=512"`
}

// pendingConfig shapes the pending set (daprstore.Pending) and the expiry sweep over it.
type pendingConfig struct {
	// Shards and Window: one document holds the orders due in one Window whose id hashes to
	// one of Shards, so its size is bounded by the registrations of that span.
	Shards int           `env:"PENDING_SHARDS, default=16"`
	Window time.Duration `env:"PENDING_WINDOW, default=2s"`
	// Lag keeps an empty window listed after it ended (above the flush timeout plus the clock
	// skew between replicas); Lease bounds a sweep's hold on one window.
	Lag          time.Duration `env:"PENDING_LAG, default=1m"`
	Lease        time.Duration `env:"PENDING_LEASE, default=1m"`
	FlushTimeout time.Duration `env:"PENDING_FLUSH_TIMEOUT, default=5s"`
	MaxBatch     int           `env:"PENDING_MAX_BATCH, default=256"`
	// SweepParallelism orders at once per replica, over all its sweeps; SweepBudget stops a
	// sweep claiming windows after it.
	SweepParallelism int           `env:"SWEEP_PARALLELISM, default=64"`
	SweepBudget      time.Duration `env:"SWEEP_BUDGET, default=20s"`
}

// reconcileConfig tunes the reconciler (apps/order/internal/reconcile); its pass is driven by
// the cron binding RECONCILE_BINDING (components/order-reconcile.yaml).
type reconcileConfig struct {
	Binding string `env:"RECONCILE_BINDING, default=order-reconcile"`
	// MinInterval spaces passes across replicas (every replica's sidecar fires the binding);
	// Lease bounds one pass.
	MinInterval time.Duration `env:"RECONCILE_MIN_INTERVAL, default=30s"`
	Lease       time.Duration `env:"RECONCILE_LEASE, default=5m"`
	// FlushTimeout is inventory's batch flush timeout (5s there); Margin pads every window.
	FlushTimeout time.Duration `env:"RECONCILE_FLUSH_TIMEOUT, default=5s"`
	Margin       time.Duration `env:"RECONCILE_MARGIN, default=1m"`
	// OrphanAge: 0 means PAY_WINDOW + IDEMPOTENCY_LEASE + RECONCILE_FLUSH_TIMEOUT + RECONCILE_MARGIN.
	OrphanAge   time.Duration `env:"RECONCILE_ORPHAN_AGE, default=0s"`
	Lookback    time.Duration `env:"RECONCILE_LOOKBACK, default=24h"`
	DealHorizon time.Duration `env:"RECONCILE_DEAL_HORIZON, default=720h"`
	MaxListed   int           `env:"RECONCILE_MAX_LISTED, default=100"`
	Concurrency int           `env:"RECONCILE_CONCURRENCY, default=4"`
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
	rt, err := bootstrap.Start(ctx, "order", cfg.Base)
	if err != nil {
		return err
	}
	state := daprstate.New(rt.Dapr, cfg.StateStore)
	gate, err := admission.New(admission.Config{
		Limit:        cfg.AdmissionLimit,
		Queue:        cfg.AdmissionQueue,
		QueueTimeout: cfg.AdmissionQueueTimeout,
		RetryAfter:   cfg.AdmissionRetryAfter,
		Meter:        rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/order"),
	})
	if err != nil {
		return err
	}
	orders := daprstore.NewOrders(state)
	oc := cfg.Outbox
	if oc.Grace <= oc.RegisterTimeout+oc.Bucket {
		return fmt.Errorf("OUTBOX_GRACE %s must exceed OUTBOX_REGISTER_TIMEOUT + OUTBOX_BUCKET (%s)", oc.Grace, oc.RegisterTimeout+oc.Bucket)
	}
	relay, err := outbox.New(outbox.Config{
		Queue:        oc.Queue,
		BatchSize:    oc.BatchSize,
		Workers:      oc.Workers,
		Concurrency:  oc.Concurrency,
		FlushTimeout: oc.FlushTimeout,
		Grace:        oc.Grace,
		Interval:     oc.Interval,
		Lease:        oc.Lease,
		MaxBuckets:   oc.MaxBuckets,
	}, outbox.Deps{
		Publisher: bulkpub.New[events.OrderV1](rt.Dapr, oc.PubSubs),
		Orders:    orders,
		Index: daprstore.NewOutbox(state, daprstore.OutboxConfig{
			Shards:          oc.Shards,
			Bucket:          oc.Bucket,
			Lookback:        oc.Lookback,
			RegisterTimeout: oc.RegisterTimeout,
			MaxBatch:        oc.RegisterBatch,
		}, nil),
		Owner: owner(),
		Log:   rt.Log,
		Meter: rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/order"),
	})
	if err != nil {
		return err
	}
	pc := cfg.Pending
	pending := daprstore.NewPending(state, daprstore.PendingConfig{
		Shards:       pc.Shards,
		Window:       pc.Window,
		Lag:          pc.Lag,
		Lease:        pc.Lease,
		FlushTimeout: pc.FlushTimeout,
		MaxBatch:     pc.MaxBatch,
	})
	catalog := clients.NewCatalog(rt.Invoker, cfg.CatalogAppID)
	inventory := clients.NewInventory(rt.Invoker, cfg.InventoryAppID)
	payments := clients.NewPayment(rt.Invoker, cfg.PaymentAppID)
	svc := order.NewService(order.Config{
		PayWindow:    cfg.PayWindow,
		IdemLease:    cfg.IdemLease,
		IdemWait:     cfg.IdemWait,
		PaymentGrace: cfg.PaymentGrace,
		MaxQuantity:  cfg.MaxQuantity,

		SweepParallelism: pc.SweepParallelism,
		SweepBudget:      pc.SweepBudget,
		ListLimit:        cfg.ListLimit,
		SoldOutTTL:       cfg.SoldOutTTL,
	}, order.Deps{
		Store:    orders,
		Users:    daprstore.NewUsers(state, cfg.UserPage, nil),
		Pending:  pending,
		Groups:   daprstore.NewGroups(state),
		Idem:     daprstore.NewIdempotency(state, cfg.IdemTTL),
		Gate:     gate,
		Deals:    catalog,
		Stock:    inventory,
		Levels:   inventory,
		Payments: payments,
		Outbox:   relay,
		IDs:      gen,
		Log:      rt.Log,
	})
	rc := cfg.Reconcile
	rec, err := reconcile.New(reconcile.Config{
		PayWindow:    cfg.PayWindow,
		IdemLease:    cfg.IdemLease,
		PaymentGrace: cfg.PaymentGrace,
		FlushTimeout: rc.FlushTimeout,
		Margin:       rc.Margin,
		OrphanAge:    rc.OrphanAge,
		Lookback:     rc.Lookback,
		DealHorizon:  rc.DealHorizon,
		Lease:        rc.Lease,
		MinInterval:  rc.MinInterval,
		MaxListed:    rc.MaxListed,
		Concurrency:  rc.Concurrency,
	}, reconcile.Deps{
		Deals:    catalog,
		Stock:    inventory,
		Payments: payments,
		Orders:   orders,
		Pending:  pending,
		State:    daprstore.NewReconcile(state),
		Log:      rt.Log,
		Meter:    rt.Telemetry.Meter("github.com/groupbuy/groupbuy/apps/order"),
	})
	if err != nil {
		return err
	}
	r := rt.Router(true)
	httpapi.Routes(r, svc, cfg.ExpiryBinding, rt.Log)
	httpapi.GroupRoutes(r, svc, rt.Log)
	httpapi.ReconcileRoutes(r, rec, rc.Binding, rt.Log)
	// The relay outlives the server's shutdown by nothing: what it has not published stays
	// in the documents and the index for the next replica's recovery.
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go relay.Run(rctx)
	return rt.Serve(ctx, r)
}

// owner names this process in the outbox recovery lease.
func owner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "order"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
