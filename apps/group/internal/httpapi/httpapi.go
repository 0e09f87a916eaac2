// Package httpapi exposes the group app to the gateway (open, join, read and list groups,
// identity from the forwarded headers) and to its sidecar's pub/sub deliveries of order
// events. The actor protocol is mounted by package actorhost.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// Routes mounts the group routes on r.
func Routes(r chi.Router, svc *group.Service, log *slog.Logger) {
	r.Group(func(r chi.Router) {
		r.Use(identity.Require)
		r.Post("/deals/{id}/groups", func(w http.ResponseWriter, req *http.Request) {
			if err := emptyBody(w, req); err != nil {
				problem.Write(w, req, err)
				return
			}
			u, _ := identity.FromContext(req.Context())
			reply, err := svc.Open(req.Context(), u, chi.URLParam(req, "id"), req.Header.Get(idempotency.Header))
			writeReply(w, req, reply, err)
		})
		r.Post("/groups/{id}/join", func(w http.ResponseWriter, req *http.Request) {
			if err := emptyBody(w, req); err != nil {
				problem.Write(w, req, err)
				return
			}
			u, _ := identity.FromContext(req.Context())
			reply, err := svc.Join(req.Context(), u, chi.URLParam(req, "id"), req.Header.Get(idempotency.Header))
			writeReply(w, req, reply, err)
		})
	})
	r.Get("/groups/{id}", func(w http.ResponseWriter, req *http.Request) {
		v, err := svc.Get(req.Context(), chi.URLParam(req, "id"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, v)
	})
	r.Get("/deals/{id}/groups", func(w http.ResponseWriter, req *http.Request) {
		items, err := svc.List(req.Context(), chi.URLParam(req, "id"), group.Status(req.URL.Query().Get("status")))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"items": items})
	})
	// order.paid and order.cancelled (components/subscriptions-group.yaml). svc.OrderEvent acks
	// what it cannot apply (no such group) and fails only on a transient error: RETRY.
	r.Post("/events/order", subscriber.Handler(log, events.DecodeOrder, svc.OrderEvent))
}

func emptyBody(w http.ResponseWriter, req *http.Request) error {
	var in struct{}
	return httpjson.Decode(w, req, &in)
}

// writeReply writes the outcome of an idempotent request: its stored reply, or the error
// that kept it from getting one.
func writeReply(w http.ResponseWriter, req *http.Request, reply group.Reply, err error) {
	if err != nil {
		problem.Write(w, req, err)
		return
	}
	idempotency.WriteReply(w, reply.Status, reply.Body)
}
