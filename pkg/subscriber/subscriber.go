// Package subscriber is the app side of a Dapr pub/sub subscription: it reads the CloudEvent
// daprd delivers (application/cloudevents+json), finds the payload in it, and writes the
// answer that tells daprd what to do with the message.
package subscriber

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/groupbuy/groupbuy/pkg/httpjson"
)

// Status is a subscriber's answer to a delivery, sent as 200 {"status":"..."}.
//
// How daprd 1.16 treats the answer (pkg/runtime/subscription/postman/http.Deliver and
// pkg/runtime/subscription.New in github.com/dapr/dapr@v1.16.0):
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
//   - 404: "non-retriable", acked and NOT dead-lettered: silently lost. So subscribers never
//     answer 404, and every route the subscriptions name must be mounted.
//
// Hence: a payload we cannot understand answers DROP (straight to "<topic>.dead"); a transient
// failure (state store down, ETag contention) answers RETRY, redelivered by the sidecar until
// the inbound policy is exhausted and dead-lettered after that, never silently lost.
type Status string

// The answers daprd knows.
const (
	Success Status = "SUCCESS"
	Retry   Status = "RETRY"
	Drop    Status = "DROP"
)

// Answer writes status as the answer to a delivery: always 200, so that daprd reads the status
// and never mistakes the answer for a 404 or a failed call.
func Answer(w http.ResponseWriter, status Status) {
	httpjson.Write(w, http.StatusOK, map[string]Status{"status": status})
}

// Event is the part of the CloudEvent envelope the subscribers use. Unknown attributes
// (traceparent, datacontenttype, ...) are ignored.
type Event struct {
	ID         string          `json:"id"`
	Topic      string          `json:"topic"`
	PubSub     string          `json:"pubsubname"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

// ErrNoData is the error of Payload for an event whose data is missing, empty or null.
var ErrNoData = errors.New("subscriber: the cloud event has no data")

// Payload returns the event payload: "data" as JSON, or a JSON document a publisher sent as a
// JSON string or as binary (data_base64, also how daprd wraps a raw-payload delivery).
func (e Event) Payload() ([]byte, error) {
	switch {
	case e.DataBase64 != "":
		return base64.StdEncoding.DecodeString(e.DataBase64)
	case len(e.Data) > 0 && e.Data[0] == '"':
		var s string
		if err := json.Unmarshal(e.Data, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	case len(bytes.TrimSpace(e.Data)) == 0 || bytes.Equal(e.Data, []byte("null")):
		return nil, ErrNoData
	default:
		return e.Data, nil
	}
}

// Decode reads the envelope of the delivery r carries, at most httpjson.MaxBody bytes of it.
// Not httpjson.Decode: the envelope has more attributes than Event reads, and no content type
// needs checking.
func Decode(w http.ResponseWriter, r *http.Request) (Event, error) {
	var e Event
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, httpjson.MaxBody)).Decode(&e); err != nil {
		return Event{}, fmt.Errorf("decode cloud event: %w", err)
	}
	return e, nil
}

// DecodeRaw is Decode for a handler that needs the delivered bytes as well (a dead-letter
// handler keeps them): it returns the envelope and the whole body.
func DecodeRaw(w http.ResponseWriter, r *http.Request) (Event, []byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, httpjson.MaxBody))
	if err != nil {
		return Event{}, nil, fmt.Errorf("read cloud event: %w", err)
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, nil, fmt.Errorf("decode cloud event: %w", err)
	}
	return e, body, nil
}

// delivery is what daprd posts to a route: one CloudEvent, or, for a subscription with
// bulkSubscribe enabled, a batch of entries each holding one.
type delivery struct {
	Event
	Entries []bulkEntry `json:"entries"`
}

// bulkEntry is one message of a bulk delivery (daprd's BulkSubscribeMessageItem).
type bulkEntry struct {
	EntryID string `json:"entryId"`
	Event   Event  `json:"event"`
}

// bulkStatus is the answer for one entry (components-contrib's AppBulkResponseEntry).
type bulkStatus struct {
	EntryID string `json:"entryId"`
	Status  Status `json:"status"`
}

// payload returns the payload of e decoded with decode.
func payload[T any](e Event, decode func([]byte) (T, error)) (T, error) {
	var v T
	data, err := e.Payload()
	if err != nil {
		return v, fmt.Errorf("cloud event %s: %w", e.ID, err)
	}
	if v, err = decode(data); err != nil {
		return v, fmt.Errorf("cloud event %s: decode payload: %w", e.ID, err)
	}
	return v, nil
}

// Handler returns the handler of one subscription route. It reads the delivery, decodes its
// payload with decode and applies the result with handle, then answers:
//
//   - DROP when the envelope or the payload cannot be decoded: retrying cannot help, so the
//     message goes straight to the dead-letter topic;
//   - RETRY for any other error of handle (an outage, contention), which daprd redelivers;
//   - SUCCESS when handle returns nil. A payload handle has no use for is acked with nil.
//
// A bulk delivery (bulkSubscribe in the subscription: many messages in one call) gets the
// same answer per entry, {"statuses":[{"entryId":…,"status":…}]}, its events handled one
// after the other in the order delivered.
//
// handle returns its errors with context rather than logging them: Handler logs each DROP
// (pubsub_event_dropped) and RETRY (pubsub_event_retry) at warn level with the CloudEvent id
// and topic. A nil log discards.
func Handler[T any](log *slog.Logger, decode func([]byte) (T, error), handle func(context.Context, T) error) http.HandlerFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	one := func(ctx context.Context, e Event) Status {
		v, err := payload(e, decode)
		if err != nil {
			dropped(ctx, log, e, err)
			return Drop
		}
		if err := handle(ctx, v); err != nil {
			log.WarnContext(ctx, "pubsub_event_retry", slog.String("cloudevent_id", e.ID),
				slog.String("topic", e.Topic), slog.String("error", err.Error()))
			return Retry
		}
		return Success
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var d delivery
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, httpjson.MaxBody)).Decode(&d); err != nil {
			dropped(ctx, log, d.Event, fmt.Errorf("decode cloud event: %w", err))
			Answer(w, Drop)
			return
		}
		if d.Entries == nil {
			Answer(w, one(ctx, d.Event))
			return
		}
		out := make([]bulkStatus, len(d.Entries))
		for i, e := range d.Entries {
			if e.Event.Topic == "" {
				e.Event.Topic = d.Topic
			}
			out[i] = bulkStatus{EntryID: e.EntryID, Status: one(ctx, e.Event)}
		}
		httpjson.Write(w, http.StatusOK, map[string][]bulkStatus{"statuses": out})
	}
}

func dropped(ctx context.Context, log *slog.Logger, e Event, err error) {
	log.WarnContext(ctx, "pubsub_event_dropped", slog.String("cloudevent_id", e.ID),
		slog.String("topic", e.Topic), slog.String("error", err.Error()))
}
