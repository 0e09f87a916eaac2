// Package daprpubsub relays events to the live streams, which the gateway replicas serve, over
// the broadcast pub/sub component (components/pubsub-broadcast.yaml), as pkg/live.EventV1.
//
// Why a relay and not a second subscription to the durable topics: with pubsub.rabbitmq a
// topic is an exchange, declared by every component that touches it with that component's
// durable/deletedWhenUnused flags; RabbitMQ refuses a redeclare whose durable, auto_delete or
// type differ (406 PRECONDITION_FAILED). The durable component declares "order.created"
// durable; a broadcast component whose per-replica queues are non-durable and auto-deleted
// must declare its exchanges the same way, so it cannot share them. The broadcast component
// therefore has exchanges of its own (live.TopicOrder, live.TopicGroup), fed by notify's
// durable consumer after it has written the inbox: a live event is never ahead of
// GET /me/notifications, which a reconnecting stream catches up from.
//
// The relay carries the notification already rendered (id, type, data as in the inbox) with
// its recipients, so the event-to-notification mapping lives in notify alone and the gateway
// only fans out.
//
// Republisher is the other way notify publishes: it sends a kept dead letter's original
// CloudEvent back to its durable topic (deadletter.Publisher), as it is.
package daprpubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/live"
)

// Client is the part of the Dapr client the relay needs.
type Client interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
}

// timeout bounds one relay publish: live streams are best effort and must not hold up the
// durable delivery (the broadcast component has no resiliency policy of its own).
const timeout = 2 * time.Second

// Relay implements notification.Announcer.
type Relay struct {
	client    Client
	component string
}

// New returns a relay publishing on the named pub/sub component.
func New(c Client, component string) *Relay { return &Relay{client: c, component: component} }

// Topic is the relay topic of an event kind.
func Topic(k notification.Kind) string {
	if k == notification.KindGroup {
		return live.TopicGroup
	}
	return live.TopicOrder
}

// Payload is the relay payload of e.
func Payload(e notification.Event) live.EventV1 {
	n := e.Notification
	users := e.Recipients
	if users == nil {
		users = []string{}
	}
	p := live.EventV1{V: 1, ID: n.ID, Type: n.Type, CreatedAt: n.CreatedAt, Data: n.Data, Users: users}
	if e.Kind == notification.KindGroup {
		p.GroupID = e.GroupID
	}
	return p
}

// Announce implements notification.Announcer. The CloudEvent id is the event id, so the
// envelope every replica receives names the same event the durable topic carried.
func (r *Relay) Announce(ctx context.Context, e notification.Event) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	topic := Topic(e.Kind)
	data, err := json.Marshal(Payload(e))
	if err != nil {
		return fmt.Errorf("encode relay of %s: %w", e.Notification.ID, err)
	}
	err = r.client.PublishEvent(ctx, r.component, topic, data,
		dapr.PublishEventWithContentType("application/json"),
		dapr.PublishEventWithMetadata(map[string]string{
			"cloudevent.id":   e.Notification.ID,
			"cloudevent.type": e.Notification.Type,
		}))
	if err != nil {
		return fmt.Errorf("relay %s to %s/%s: %w", e.Notification.ID, r.component, topic, err)
	}
	return nil
}

// ContentTypeCloudEvent makes daprd take the published data as the CloudEvent itself instead
// of wrapping it in a new envelope: it keeps the id, type, source, data and datacontenttype and
// only sets topic, pubsubname and, where absent, the trace attributes (Dapr's
// runtime/pubsub.NewCloudEvent → components-contrib pubsub.FromCloudEvent). The id is what
// consumers deduplicate on, so this is what makes a replay idempotent. (rawPayload would also
// carry the id, as untouched bytes; this is Dapr's documented way to publish one's own
// CloudEvent, and it lets daprd set the routing and trace attributes as for any publish.)
const ContentTypeCloudEvent = "application/cloudevents+json"

// Republisher implements deadletter.Publisher over a Dapr pub/sub component.
type Republisher struct {
	client    Client
	component string
}

// NewRepublisher returns a republisher publishing on the named pub/sub component (the durable
// one, events.PubSub).
func NewRepublisher(c Client, component string) *Republisher {
	return &Republisher{client: c, component: component}
}

// PublishCloudEvent implements deadletter.Publisher. Transport retries and the timeout come
// from the sidecar's outbound resiliency policy for the component.
func (r *Republisher) PublishCloudEvent(ctx context.Context, topic string, event []byte) error {
	err := r.client.PublishEvent(ctx, r.component, topic, event, dapr.PublishEventWithContentType(ContentTypeCloudEvent))
	if err != nil {
		return fmt.Errorf("publish cloud event to %s/%s: %w", r.component, topic, err)
	}
	return nil
}
