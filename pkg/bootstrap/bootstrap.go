// Package bootstrap assembles what every app's run(ctx) needs before its own wiring: base
// configuration from the environment, the JSON logger, telemetry, the Dapr client and invoker,
// and at the end serving the router plus the admin listener until shutdown.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/go-chi/chi/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/groupbuy/groupbuy/pkg/logging"
	"github.com/groupbuy/groupbuy/pkg/server"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
	"github.com/groupbuy/groupbuy/pkg/telemetry"
)

// Base is the configuration every app shares.
type Base struct {
	AppID    string `env:"APP_ID"`
	LogLevel string `env:"LOG_LEVEL, default=info"`
	// AllowNoAppToken lets the app start without APP_API_TOKEN, i.e. serve its routes to
	// whoever reaches its port: only for a local run whose sidecars have no token.
	AllowNoAppToken bool `env:"ALLOW_NO_APP_TOKEN, default=false"`
	Server          server.Config
	Dapr            sidecar.Config
}

// Runtime is an app's assembled foundation.
type Runtime struct {
	Base      Base
	Log       *slog.Logger
	Telemetry *telemetry.Telemetry
	Dapr      dapr.Client
	Invoker   *sidecar.Invoker
	probe     *http.Client
}

// LoadConfig fills cfg (a struct embedding or containing Base) from the environment.
func LoadConfig(ctx context.Context, cfg any) error {
	if err := envconfig.Process(ctx, cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Start builds the runtime for the app named name (APP_ID overrides it when set).
func Start(ctx context.Context, name string, base Base) (*Runtime, error) {
	if base.AppID == "" {
		base.AppID = name
	}
	if err := CheckAppToken(base); err != nil {
		return nil, err
	}
	tel, err := telemetry.Setup(ctx, base.AppID)
	if err != nil {
		return nil, err
	}
	client, err := sidecar.NewClient(base.Dapr)
	if err != nil {
		return nil, err
	}
	return &Runtime{
		Base:      base,
		Log:       logging.New(os.Stdout, base.LogLevel, base.AppID),
		Telemetry: tel,
		Dapr:      client,
		Invoker:   sidecar.NewInvoker(base.Dapr),
		probe:     &http.Client{Timeout: 2 * time.Second},
	}, nil
}

// ErrNoAppToken refuses a start without APP_API_TOKEN (see Base.AllowNoAppToken).
var ErrNoAppToken = errors.New("APP_API_TOKEN is empty: anyone who reaches this app's port could call its routes as its sidecar; " +
	"set it to the token the sidecar sends (Dapr's app API token), or ALLOW_NO_APP_TOKEN=true for a local run without tokens")

// CheckAppToken returns ErrNoAppToken when base has no app token and does not allow that.
func CheckAppToken(base Base) error {
	if base.Dapr.AppAPIToken == "" && !base.AllowNoAppToken {
		return ErrNoAppToken
	}
	return nil
}

// SidecarReady is a server.ReadyCheck for the app's sidecar.
func (rt *Runtime) SidecarReady(ctx context.Context) error {
	return sidecar.Healthy(ctx, rt.Base.Dapr, rt.probe)
}

// Router returns the app's router with the common middleware, health endpoints and, for
// internal apps, the app API token check. Extra readiness checks are added to the sidecar's.
func (rt *Runtime) Router(checkToken bool, extra ...server.ReadyCheck) chi.Router {
	ready := func(ctx context.Context) error {
		errs := []error{rt.SidecarReady(ctx)}
		for _, c := range extra {
			errs = append(errs, c(ctx))
		}
		return errors.Join(errs...)
	}
	if checkToken {
		return server.NewRouter(rt.Log, ready, sidecar.RequireAppToken(rt.Base.Dapr.AppAPIToken))
	}
	return server.NewRouter(rt.Log, ready)
}

// Serve runs the API and admin listeners until ctx ends, then flushes telemetry and closes the
// Dapr client.
func (rt *Runtime) Serve(ctx context.Context, api http.Handler) error {
	err := server.Run(ctx, rt.Base.Server, rt.Log, api, server.AdminHandler(rt.Telemetry.MetricsHandler(), rt.Base.Server.Pprof))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rt.Dapr.Close()
	return errors.Join(err, rt.Telemetry.Shutdown(sctx))
}

// Main runs run with a context cancelled on SIGINT/SIGTERM and exits non-zero on error.
func Main(run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		stop()
		os.Exit(1)
	}
}
