// Command payment is a simulated payment provider for the other apps (reached only through
// Dapr service invocation): at most one succeeded charge and one refund per order id (a
// declined attempt may be followed by another), stored with ETag writes and first-write
// creates, plus injectable latency and failures for resiliency tests.
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/groupbuy/groupbuy/apps/payment/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/payment/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

type config struct {
	bootstrap.Base
	StateStore string `env:"STATE_STORE, default=statestore"`
	// Fault injection, off by default: latency added before every charge and refund, and the
	// fraction (0..1) of them that answer 503 "unavailable" without doing anything.
	Latency     time.Duration `env:"PAYMENT_LATENCY, default=0s"`
	FailureRate float64       `env:"PAYMENT_FAILURE_RATE, default=0"`
}

func main() { bootstrap.Main(run) }

func run(ctx context.Context) error {
	var cfg config
	if err := bootstrap.LoadConfig(ctx, &cfg); err != nil {
		return err
	}
	faults := payment.Faults{Latency: cfg.Latency, FailureRate: cfg.FailureRate}
	if err := faults.Validate(); err != nil {
		return err
	}
	rt, err := bootstrap.Start(ctx, "payment", cfg.Base)
	if err != nil {
		return err
	}
	svc, err := payment.NewService(daprstore.New(daprstate.New(rt.Dapr, cfg.StateStore)), faults, rt.Telemetry.Meter("payment"))
	if err != nil {
		return err
	}
	if faults != (payment.Faults{}) {
		rt.Log.Warn("fault_injection_enabled",
			slog.String("latency", faults.Latency.String()), slog.Float64("failure_rate", faults.FailureRate))
	}
	r := rt.Router(true)
	httpapi.Routes(r, svc)
	return rt.Serve(ctx, r)
}
