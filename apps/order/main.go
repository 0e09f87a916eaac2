// Command order owns orders: idempotent placement, the purchase limit, stock holds through
// inventory, payment through the payment app (guarded by Dapr resiliency), and expiry driven
// by a Dapr cron input binding; for group deals, members' orders placed by the group app and
// settled when their group succeeds or fails.
package main

import (
	"context"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/admission"
	"github.com/groupbuy/groupbuy/apps/order/internal/clients"
	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/ids"
)

type config struct {
	bootstrap.Base
	StateStore     string        `env:"STATE_STORE, default=statestore"`
	PubSub         string        `env:"PUBSUB, default=pubsub"`
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
	PendingShards  int           `env:"PENDING_SHARDS, default=16"`
	MaxQuantity    int           `env:"MAX_QUANTITY, default=100"`
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
	pending := daprstore.NewPending(state, cfg.PendingShards)
	catalog := clients.NewCatalog(rt.Invoker, cfg.CatalogAppID)
	inventory := clients.NewInventory(rt.Invoker, cfg.InventoryAppID)
	payments := clients.NewPayment(rt.Invoker, cfg.PaymentAppID)
	svc := order.NewService(order.Config{
		PayWindow:    cfg.PayWindow,
		IdemLease:    cfg.IdemLease,
		IdemWait:     cfg.IdemWait,
		PaymentGrace: cfg.PaymentGrace,
		MaxQuantity:  cfg.MaxQuantity,
		SoldOutTTL:   cfg.SoldOutTTL,
	}, order.Deps{
		Store:    orders,
		Users:    daprstore.NewUsers(state),
		Pending:  pending,
		Groups:   daprstore.NewGroups(state),
		Idem:     daprstore.NewIdempotency(state, cfg.IdemTTL),
		Gate:     gate,
		Deals:    catalog,
		Stock:    inventory,
		Levels:   inventory,
		Payments: payments,
		Pub:      clients.NewPublisher(rt.Dapr, cfg.PubSub),
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
	return rt.Serve(ctx, r)
}
