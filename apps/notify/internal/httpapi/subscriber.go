package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/subscriber"
)

// How daprd 1.16 treats a subscriber's answer, as measured, is recorded on subscriber.Status
// (pkg/subscriber). In short: DROP goes to the route's dead-letter topic at once; RETRY is
// retried under the inbound resiliency policy and then dead-lettered; a 404 is acked and lost.

// record handles the competing-consumer subscriptions on the durable component (wrapped in
// subscriber.Handler: an undecodable payload is dropped to the dead letters, an error retried):
// inbox first, then the relay to the live streams (every gateway replica).
func (h *handlers) record(ctx context.Context, ev notification.Event) error {
	added, err := h.svc.Record(ctx, ev)
	if err != nil {
		return fmt.Errorf("record %s: %w", ev.Notification.ID, err)
	}
	// Relay even when nothing was added: an earlier delivery may have written the inbox and
	// failed before relaying. Live streams are best effort: a failed relay is logged, not
	// retried, so a broken broadcast path can never push good events into the dead letters.
	if err := h.svc.Announce(ctx, ev); err != nil {
		h.log.WarnContext(ctx, "live_relay_failed", slog.String("event_id", ev.Notification.ID),
			slog.String("error", err.Error()))
	}
	h.log.DebugContext(ctx, "pubsub_event_recorded", slog.String("event_id", ev.Notification.ID),
		slog.String("type", ev.Notification.Type), slog.Int("inboxes_changed", added))
	return nil
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
	ce, body, err := subscriber.DecodeRaw(w, req)
	if err != nil {
		h.log.WarnContext(ctx, "dead_letter_unreadable", slog.String("error", err.Error()))
		subscriber.Answer(w, subscriber.Drop)
		return
	}
	topic, original := ce.Topic, body
	if ce.DataBase64 != "" && strings.HasSuffix(topic, events.DeadLetterSuffix) {
		// A raw delivery: the payload is the original message.
		if original, err = ce.Payload(); err != nil {
			h.log.WarnContext(ctx, "dead_letter_unreadable", slog.String("topic", topic), slog.String("error", err.Error()))
			subscriber.Answer(w, subscriber.Drop)
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
		subscriber.Answer(w, subscriber.Drop)
	case err != nil:
		h.log.WarnContext(ctx, "dead_letter_retry", slog.String("topic", topic), slog.String("error", err.Error()))
		subscriber.Answer(w, subscriber.Retry)
	default:
		// A dead letter is an incident: say so at warn level, once per message.
		if added {
			h.log.WarnContext(ctx, "dead_letter_kept", slog.String("topic", topic), slog.String("cloudevent_id", l.ID))
		}
		subscriber.Answer(w, subscriber.Success)
	}
}
