package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// Routes the gateway's sidecar delivers the live relay to (components/subscriptions-gateway.yaml).
// They are outside /api/v1 and need Dapr's app API token: the gateway is the public edge, and
// without the check anyone could push fake events into other users' streams.
const (
	RouteLiveOrder = "/live/order"
	RouteLiveGroup = "/live/group"
	// RouteCatalogChanged takes product.changed and deal.changed (the read cache's
	// invalidation; every replica has a queue of its own on the broadcast component).
	RouteCatalogChanged = "/cache/catalog"
)

// catchUpTimeout bounds the inbox read of a reconnecting stream; the stream is useful without.
const catchUpTimeout = 5 * time.Second

func (a *API) liveRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(a.requireAppToken)
		r.Post(RouteLiveOrder, subscriber.Handler(a.log(), live.DecodeEvent, a.fanout(false)))
		r.Post(RouteLiveGroup, subscriber.Handler(a.log(), live.DecodeEvent, a.fanout(true)))
		r.Post(RouteCatalogChanged, subscriber.Handler(a.log(), events.DecodeCatalogChanged, func(ctx context.Context, e events.CatalogChangedV1) error {
			if a.Reads == nil {
				return nil // nothing cached
			}
			return a.Reads.Changed(ctx, e)
		}))
	})
}

// requireAppToken admits only the gateway's own sidecar (sidecar.RequireAppToken). Unlike the
// internal apps, the gateway fails closed when it has no token: its port is public, so an open
// relay route would let anyone forge events.
func (a *API) requireAppToken(next http.Handler) http.Handler {
	if a.AppToken == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			problem.Write(w, r, problem.New(problem.CodeUnauthorized, "the live relay is disabled: the gateway has no APP_API_TOKEN"))
		})
	}
	return sidecar.RequireAppToken(a.AppToken)(next)
}

// userStream streams the caller's own events. A client that reconnects with Last-Event-ID
// first gets what it missed, read from its inbox in notify (a normal, non-streaming
// invocation; the inbox holds exactly the events of this stream).
func (a *API) userStream(w http.ResponseWriter, r *http.Request) {
	u, _ := identity.FromContext(r.Context())
	release, ok := a.openStream(w, r, u.ID)
	if !ok {
		return
	}
	defer release()
	// Subscribe before reading the inbox: an event arriving meanwhile waits in the buffer, and
	// SSE.Serve skips it if the catch-up had it already.
	sub := a.Hub.Subscribe(live.UserTopic(u.ID))
	defer sub.Close()
	var missed []live.Message
	if last := live.LastEventID(r); last != "" {
		items, err := a.inbox(r.Context(), u)
		if err != nil {
			a.log().WarnContext(r.Context(), "stream_catch_up_failed", slog.String("error", err.Error()))
		}
		missed = live.Since(items, last)
	}
	a.SSE.Serve(w, r, sub, missed)
}

// groupStream streams a group's public progress; no login needed.
func (a *API) groupStream(w http.ResponseWriter, r *http.Request) {
	release, ok := a.openStream(w, r, "")
	if !ok {
		return
	}
	defer release()
	sub := a.Hub.Subscribe(live.GroupTopic(chi.URLParam(r, "id")))
	defer sub.Close()
	a.SSE.Serve(w, r, sub, nil)
}

// inbox reads u's notifications from notify, newest first.
func (a *API) inbox(ctx context.Context, u identity.User) ([]live.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	resp, err := a.Invoker.Raw(ctx, a.Apps.Notify, http.MethodGet, "me/notifications", u.Header(), nil)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Items []struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal(resp.Body, &doc); err != nil {
		return nil, fmt.Errorf("decode inbox: %w", err)
	}
	out := make([]live.Message, 0, len(doc.Items))
	for _, it := range doc.Items {
		out = append(out, live.Message{ID: it.ID, Type: it.Type, Data: it.Data})
	}
	return out, nil
}

// fanout publishes one relayed event (pkg/live.EventV1 in the CloudEvent's data) to every
// recipient's stream and, for group events, to the group's public stream. Order events never
// reach a group stream, whatever the payload says.
//
// It never fails: live events are best effort and the broadcast component has no dead-letter
// topic, so the relay routes never ask for a retry (subscriber.Handler answers SUCCESS for
// anything decodable and DROP, i.e. acked and gone, for garbage).
func (a *API) fanout(withGroup bool) func(context.Context, live.EventV1) error {
	return func(ctx context.Context, ev live.EventV1) error {
		if dropped := live.Fanout(a.Hub, ev, withGroup); dropped > 0 {
			a.log().InfoContext(ctx, "slow_stream_clients_dropped", slog.String("event_id", ev.ID), slog.Int("clients", dropped))
		}
		return nil
	}
}

func (a *API) log() *slog.Logger {
	if a.Log == nil {
		return discard
	}
	return a.Log
}

var discard = slog.New(slog.DiscardHandler)
