package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// GroupRoutes mounts what the group app needs: placing a member's order (service
// invocation; the gateway forwards no /internal path) and the group outcome events
// (group.succeeded and group.failed, components/subscriptions-order.yaml).
func GroupRoutes(r chi.Router, svc *order.Service, log *slog.Logger) {
	r.Post("/internal/group-orders", func(w http.ResponseWriter, req *http.Request) {
		var in order.GroupOrderRequest
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		o, err := svc.PlaceGroupOrder(req.Context(), in)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusCreated, ViewOf(o))
	})
	r.Post("/events/group", subscriber.Handler(log, events.DecodeGroup, settleGroup(svc, log)))
}

// settleGroup applies a group outcome event to the members' orders. Other group events are
// not for this app and are acked; a failed settlement is returned, so the delivery is retried
// (subscriber.Handler) and settles what is left.
func settleGroup(svc *order.Service, log *slog.Logger) func(context.Context, events.GroupV1) error {
	return func(ctx context.Context, e events.GroupV1) error {
		if e.Type != events.TopicGroupSucceeded && e.Type != events.TopicGroupFailed {
			return nil
		}
		out := order.GroupOutcome{GroupID: e.GroupID, Succeeded: e.Type == events.TopicGroupSucceeded}
		for _, m := range e.Members {
			out.Members = append(out.Members, m.OrderID)
		}
		if err := svc.SettleGroup(ctx, out); err != nil {
			return fmt.Errorf("settle group %s (%s): %w", e.GroupID, e.Type, err)
		}
		log.InfoContext(ctx, "group_settled", slog.String("group_id", e.GroupID), slog.String("outcome", e.Type),
			slog.Int("members", len(out.Members)))
		return nil
	}
}
