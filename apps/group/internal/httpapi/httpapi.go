// Package httpapi exposes the group app to the gateway (open, join, read and list groups,
// identity from the forwarded headers) and to its sidecar's pub/sub deliveries of order
// events. The actor protocol is mounted by package actorhost.
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

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Routes mounts the group routes on r.
func Routes(r chi.Router, svc *group.Service, log *slog.Logger) {
	r.Group(func(r chi.Router) {
		r.Use(requireUser)
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
	// order.paid and order.cancelled (components/subscriptions-group.yaml).
	r.Post("/events/order", orderEvents(svc, log))
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

func requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := identity.FromHeader(r.Header)
		if !ok {
			problem.Write(w, r, problem.New(problem.CodeUnauthorized, "authentication required"))
			return
		}
		next.ServeHTTP(w, r.WithContext(identity.WithUser(r.Context(), u)))
	})
}

// Subscriber answers, as daprd 1.16 reads them (see apps/notify/internal/httpapi/subscriber.go
// for the measured behaviour): SUCCESS acks; RETRY is redelivered under the "pubsub" inbound
// resiliency policy and dead-lettered ("<topic>.dead") once that is exhausted; DROP goes to the
// dead-letter topic at once. A 404 would be acked and lost, so these handlers never answer it.
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

func orderEvents(svc *group.Service, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		var ce cloudEvent
		var e events.OrderV1
		err := json.NewDecoder(http.MaxBytesReader(w, req.Body, httpjson.MaxBody)).Decode(&ce)
		if err == nil {
			var data []byte
			if data, err = ce.payload(); err == nil {
				e, err = events.DecodeOrder(data)
			}
		}
		if err != nil {
			log.WarnContext(ctx, "pubsub_event_dropped", slog.String("cloudevent_id", ce.ID), slog.String("topic", ce.Topic),
				slog.String("error", fmt.Sprintf("decode: %v", err)))
			answer(w, statusDrop)
			return
		}
		if err := svc.OrderEvent(ctx, e); err != nil {
			log.WarnContext(ctx, "pubsub_event_retry", slog.String("event_id", e.EventID), slog.String("error", err.Error()))
			answer(w, statusRetry)
			return
		}
		answer(w, statusSuccess)
	}
}
