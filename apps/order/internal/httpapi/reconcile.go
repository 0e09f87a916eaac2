package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Reconciler is what the reconciliation routes need.
type Reconciler interface {
	Tick(ctx context.Context) (reconcile.TickResult, error)
	Report(ctx context.Context) (reconcile.Report, error)
}

// ReconcileRoutes mounts the reconciliation cron binding (Dapr POSTs to /<binding> on every
// replica; the reconciler's lease makes one of them run the pass) and the admin report
// GET /admin/reconciliation, which the gateway forwards as /api/v1/admin/reconciliation.
func ReconcileRoutes(r chi.Router, rec Reconciler, binding string, log *slog.Logger) {
	r.Post("/"+binding, func(w http.ResponseWriter, req *http.Request) {
		res, err := rec.Tick(req.Context())
		if err != nil {
			log.ErrorContext(req.Context(), "reconcile_tick_failed", slog.String("error", err.Error()))
			problem.Write(w, req, err)
			return
		}
		if res.Ran {
			// A clean pass is the common case; say it only at debug level.
			level := slog.LevelInfo
			if res.Findings+res.Repaired+res.Errors == 0 {
				level = slog.LevelDebug
			}
			log.Log(req.Context(), level, "reconcile_pass", slog.Int("findings", res.Findings), slog.Int("repaired", res.Repaired),
				slog.Int("errors", res.Errors))
		}
		httpjson.Write(w, http.StatusOK, res)
	})
	r.With(identity.RequireAdmin).Get("/admin/reconciliation", func(w http.ResponseWriter, req *http.Request) {
		rep, err := rec.Report(req.Context())
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, rep)
	})
}
