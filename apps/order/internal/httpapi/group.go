package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
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
	r.Post("/events/group", groupEvents(svc, log))
}

// Subscriber answers, as daprd 1.16 reads them (measured in apps/notify/internal/httpapi):
// SUCCESS acks; RETRY is redelivered under the "pubsub" inbound resiliency policy and
// dead-lettered ("<topic>.dead") once that is exhausted; DROP goes to the dead-letter topic at
// once. A 404 would be acked and lost, so this handler never answers it.
const (
	statusSuccess = "SUCCESS"
	statusRetry   = "RETRY"
	statusDrop    = "DROP"
)

type cloudEvent struct {
	ID         string          `json:"id"`
	Topic      string          `json:"topic"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

func (ce cloudEvent) payload() ([]byte, error) {
	switch {
	case ce.DataBase64 != "":
		return base64.StdEncoding.DecodeString(ce.DataBase64)
	case len(ce.Data) > 0 && ce.Data[0] == '"':
		var s string
		if err := json.Unmarshal(ce.Data, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	case len(bytes.TrimSpace(ce.Data)) == 0 || bytes.Equal(ce.Data, []byte("null")):
		return nil, errors.New("the cloud event has no data")
	default:
		return ce.Data, nil
	}
}

func answer(w http.ResponseWriter, status string) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": status})
}

func groupEvents(svc *order.Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		var ce cloudEvent
		var e events.GroupV1
		err := json.NewDecoder(http.MaxBytesReader(w, req.Body, httpjson.MaxBody)).Decode(&ce)
		if err == nil {
			var data []byte
			if data, err = ce.payload(); err == nil {
				e, err = events.DecodeGroup(data)
			}
		}
		if err != nil {
			log.WarnContext(ctx, "pubsub_event_dropped", slog.String("cloudevent_id", ce.ID), slog.String("topic", ce.Topic),
				slog.String("error", fmt.Sprintf("decode: %v", err)))
			answer(w, statusDrop)
			return
		}
		if e.Type != events.TopicGroupSucceeded && e.Type != events.TopicGroupFailed {
			answer(w, statusSuccess)
			return
		}
		out := order.GroupOutcome{GroupID: e.GroupID, Succeeded: e.Type == events.TopicGroupSucceeded}
		for _, m := range e.Members {
			out.Members = append(out.Members, m.OrderID)
		}
		if err := svc.SettleGroup(ctx, out); err != nil {
			log.WarnContext(ctx, "pubsub_event_retry", slog.String("event_id", e.EventID), slog.String("error", err.Error()))
			answer(w, statusRetry)
			return
		}
		log.InfoContext(ctx, "group_settled", slog.String("group_id", e.GroupID), slog.String("outcome", e.Type),
			slog.Int("members", len(out.Members)))
		answer(w, statusSuccess)
	}
}
