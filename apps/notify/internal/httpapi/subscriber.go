package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
)

// How daprd 1.16 treats a subscriber's answer (pkg/runtime/subscription/postman/http.Deliver
// and pkg/runtime/subscription.New in github.com/dapr/dapr@v1.16.0):
//
//   - 2xx with {"status":"SUCCESS"}, an empty status or no JSON body: acked.
//   - 2xx with {"status":"DROP"}: Deliver returns pubsub.ErrMessageDropped; the subscription
//     publishes the original message to the route's deadLetterTopic at once (no resiliency
//     retries) and acks it. Without a deadLetterTopic the message is just acked: gone.
//   - 2xx with {"status":"RETRY"} or an unknown status, any other status but 404, or the app
//     unreachable: a retriable error. The sidecar retries in process under the component's
//     inbound resiliency policy (dapr/resiliency.yaml: pubsubInbound on "pubsub"); when the
//     policy gives up, the message ALSO goes to the deadLetterTopic and is acked. Only without a
//     deadLetterTopic (or when publishing to it fails) does the error reach the RabbitMQ
//     component, which nacks with requeue (requeueInFailure) so the broker redelivers.
//     Measured against daprd 1.16.0 with dapr/resiliency.yaml: 11 deliveries (1 + 10 retries)
//     over about 45 s, then one message on "<topic>.dead"; the same for a 500 answer.
//   - 404: "non-retriable", acked and NOT dead-lettered: silently lost. So these handlers never
//     answer 404, and every route the subscriptions name must be mounted.
//
// Hence: a payload we cannot understand answers DROP (straight to "<topic>.dead"); a transient
// failure (state store down, ETag contention) answers RETRY, redelivered by the sidecar until
// the inbound policy is exhausted and dead-lettered after that, never silently lost.
const (
	statusSuccess = "SUCCESS"
	statusRetry   = "RETRY"
	statusDrop    = "DROP"
)

// cloudEvent is the part of the envelope Dapr delivers (application/cloudevents+json) we use.
type cloudEvent struct {
	ID         string          `json:"id"`
	Topic      string          `json:"topic"`
	PubSub     string          `json:"pubsubname"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

// payload returns the event payload: "data" as JSON, or a JSON document a publisher sent as a
// string or as binary (data_base64).
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

func readCloudEvent(w http.ResponseWriter, req *http.Request) (cloudEvent, []byte, error) {
	var ce cloudEvent
	// Not httpjson.Decode: the envelope has more attributes than we read (traceparent, ...).
	if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, httpjson.MaxBody)).Decode(&ce); err != nil {
		return ce, nil, fmt.Errorf("decode cloud event: %w", err)
	}
	data, err := ce.payload()
	if err != nil {
		return ce, nil, fmt.Errorf("cloud event %s: %w", ce.ID, err)
	}
	return ce, data, nil
}

func answer(w http.ResponseWriter, status string) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": status})
}

// durable handles the competing-consumer subscriptions on the durable component: inbox first,
// then the relay to the live streams (every gateway replica).
func (h *handlers) durable(decode func([]byte) (notification.Event, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		ce, data, err := readCloudEvent(w, req)
		if err == nil {
			var ev notification.Event
			if ev, err = decode(data); err == nil {
				h.deliver(w, req, ce, ev)
				return
			}
		}
		// Undecodable: a poison or unknown-version payload. Retrying cannot help.
		h.log.WarnContext(ctx, "pubsub_event_dropped", slog.String("cloudevent_id", ce.ID),
			slog.String("topic", ce.Topic), slog.String("error", err.Error()))
		answer(w, statusDrop)
	}
}

func (h *handlers) deliver(w http.ResponseWriter, req *http.Request, ce cloudEvent, ev notification.Event) {
	ctx := req.Context()
	added, err := h.svc.Record(ctx, ev)
	if err != nil {
		h.log.WarnContext(ctx, "pubsub_event_retry", slog.String("event_id", ev.Notification.ID),
			slog.String("topic", ce.Topic), slog.String("error", err.Error()))
		answer(w, statusRetry)
		return
	}
	// Relay even when nothing was added: an earlier delivery may have written the inbox and
	// failed before relaying. Live streams are best effort: a failed relay is logged, not
	// retried, so a broken broadcast path can never push good events into the dead letters.
	if err := h.svc.Announce(ctx, ev); err != nil {
		h.log.WarnContext(ctx, "live_relay_failed", slog.String("event_id", ev.Notification.ID),
			slog.String("error", err.Error()))
	}
	h.log.DebugContext(ctx, "pubsub_event_recorded", slog.String("event_id", ev.Notification.ID),
		slog.String("topic", ce.Topic), slog.Int("inboxes_changed", added))
	answer(w, statusSuccess)
}

// keepDeadLetter handles the subscriptions to the dead-letter topics ("<topic>.dead"). They
// are raw-payload subscriptions (metadata rawPayload: "true"): daprd hands over the message
// exactly as it sits on the dead-letter topic, i.e. the original CloudEvent as published to
// "<topic>", wrapped in an envelope of its own whose "topic" is the dead-letter topic and
// whose data_base64 holds the original bytes. Raw, because daprd re-parses a non-raw delivery
// as a CloudEvent: the envelope would then name the original topic, and a message that is not
// JSON at all would fail to parse, be nacked and requeued forever on a subscription that has no
// dead-letter topic of its own.
//
// Answers: SUCCESS once stored (or already stored: dedupe on the original CloudEvent id);
// RETRY when the store fails (these subscriptions have no deadLetterTopic, so the message is
// retried under the inbound resiliency policy and then requeued by RabbitMQ, never lost); DROP
// only for a body no sidecar produces.
func (h *handlers) keepDeadLetter(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, httpjson.MaxBody))
	var ce cloudEvent
	if err == nil {
		err = json.Unmarshal(body, &ce)
	}
	if err != nil {
		h.log.WarnContext(ctx, "dead_letter_unreadable", slog.String("error", err.Error()))
		answer(w, statusDrop)
		return
	}
	topic, original := ce.Topic, body
	if ce.DataBase64 != "" && strings.HasSuffix(topic, events.DeadLetterSuffix) {
		if original, err = base64.StdEncoding.DecodeString(ce.DataBase64); err != nil {
			h.log.WarnContext(ctx, "dead_letter_unreadable", slog.String("topic", topic), slog.String("error", err.Error()))
			answer(w, statusDrop)
			return
		}
	} else if topic != "" && !strings.HasSuffix(topic, events.DeadLetterSuffix) {
		// A non-raw delivery (rawPayload switched off): the body is the original CloudEvent,
		// which names the topic it was first published to.
		topic += events.DeadLetterSuffix
	}
	l, added, err := h.dead.Keep(ctx, topic, original)
	switch {
	case errors.Is(err, deadletter.ErrInvalidTopic):
		h.log.WarnContext(ctx, "dead_letter_unreadable", slog.String("error", err.Error()))
		answer(w, statusDrop)
	case err != nil:
		h.log.WarnContext(ctx, "dead_letter_retry", slog.String("topic", topic), slog.String("error", err.Error()))
		answer(w, statusRetry)
	default:
		// A dead letter is an incident: say so at warn level, once per message.
		if added {
			h.log.WarnContext(ctx, "dead_letter_kept", slog.String("topic", topic), slog.String("cloudevent_id", l.ID))
		}
		answer(w, statusSuccess)
	}
}
