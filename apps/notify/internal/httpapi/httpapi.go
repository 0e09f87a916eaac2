// Package httpapi exposes notify: the user's inbox (called by the gateway through Dapr service
// invocation, the user forwarded in identity headers), the endpoints the sidecar delivers
// subscribed events and dead letters to (components/subscriptions-notify.yaml), and the
// dead-letter listing for operators.
//
// notify serves no live streams: daprd buffers a streamed invocation response until it ends,
// so the gateway replicas hold the SSE connections and are fed over the broadcast component,
// to which notify relays every event after writing the inboxes (pkg/live).
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// Routes of the subscription endpoints; components/subscriptions-notify.yaml points here and a
// test checks that every route it names is mounted (an unmounted route answers 404, which Dapr
// treats as "drop silently": the events would be lost without reaching the dead-letter topic).
const (
	RouteOrderEvents = "/events/order"
	RouteGroupEvents = "/events/group"
	RouteDeadLetters = "/dead-letters"
)

// Options tune the handlers; zero values take the defaults.
type Options struct {
	Log *slog.Logger
}

type handlers struct {
	svc  *notification.Service
	dead *deadletter.Keeper
	log  *slog.Logger
}

// Routes mounts the notify routes on r. Every route is internal: the router checks the app API
// token, so only notify's own sidecar reaches them.
func Routes(r chi.Router, svc *notification.Service, dead *deadletter.Keeper, opts Options) {
	h := &handlers{svc: svc, dead: dead, log: opts.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}

	r.With(identity.Require).Get("/me/notifications", h.inbox)

	r.Post(RouteOrderEvents, subscriber.Handler(h.log, notification.DecodeOrder, h.record))
	r.Post(RouteGroupEvents, subscriber.Handler(h.log, notification.DecodeGroup, h.record))
	r.Post(RouteDeadLetters, h.keepDeadLetter)
	// For operators (through notify's sidecar); the gateway does not route it.
	r.Get("/admin/dead-letters", h.listDeadLetters)
}

func (h *handlers) inbox(w http.ResponseWriter, req *http.Request) {
	u, _ := identity.FromContext(req.Context())
	items, err := h.svc.Inbox(req.Context(), u.ID)
	if err != nil {
		problem.Write(w, req, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"items": items})
}

// listDeadLetters answers GET /admin/dead-letters?topic=<topic>.dead with the stored document
// of that topic: {"items":[{topic,id,data,received_at}...]}, newest first.
func (h *handlers) listDeadLetters(w http.ResponseWriter, req *http.Request) {
	topic := req.URL.Query().Get("topic")
	if topic == "" {
		problem.Write(w, req, problem.New(problem.CodeValidation, `the query parameter "topic" is required (a dead-letter topic such as order.created.dead)`))
		return
	}
	items, err := h.dead.List(req.Context(), topic)
	if errors.Is(err, deadletter.ErrInvalidTopic) {
		problem.Write(w, req, problem.New(problem.CodeValidation, err.Error()))
		return
	}
	if err != nil {
		problem.Write(w, req, err)
		return
	}
	httpjson.Write(w, http.StatusOK, deadletter.List{Items: items})
}

// identity.Require admits calls that carry the user the gateway forwarded.
