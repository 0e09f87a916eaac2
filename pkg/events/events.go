// Package events defines the integration events the apps exchange over Dapr pub/sub, one
// versioned payload type per family. Publishers set the CloudEvent id to EventID, which is
// derived from the business key (order id + event type), so a redelivered or re-published
// event has the same id and consumers deduplicate on it.
//
// Versioning: a payload carries "v". Consumers accept the versions they know and reject
// others (they land in the dead-letter topic); a new version is added beside the old one.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// PubSub is the Dapr pub/sub component name for durable events.
const PubSub = "pubsub"

// Order event topics.
const (
	TopicOrderCreated   = "order.created"
	TopicOrderPaid      = "order.paid"
	TopicOrderConfirmed = "order.confirmed"
	TopicOrderCancelled = "order.cancelled"
	TopicOrderRefunded  = "order.refunded"
)

// OrderTopics lists every order topic.
var OrderTopics = []string{TopicOrderCreated, TopicOrderPaid, TopicOrderConfirmed, TopicOrderCancelled, TopicOrderRefunded}

// Group event topics.
const (
	TopicGroupOpened    = "group.opened"
	TopicGroupJoined    = "group.joined"
	TopicGroupSucceeded = "group.succeeded"
	TopicGroupFailed    = "group.failed"
)

// GroupTopics lists every group topic.
var GroupTopics = []string{TopicGroupOpened, TopicGroupJoined, TopicGroupSucceeded, TopicGroupFailed}

// GroupEventID is the event id of a group event: "<group>:<type>", and for group.joined,
// which happens once per seat, "<group>:group.joined:<order>". A re-publish (an outbox flushed
// again after a crash) carries the same id, so consumers drop the duplicate; a user who left
// and joined again holds a new order, so that join is a new event.
func GroupEventID(groupID, typ, orderID string) string {
	if typ == TopicGroupJoined {
		return groupID + ":" + typ + ":" + orderID
	}
	return groupID + ":" + typ
}

// DeadLetterSuffix names a subscription's dead-letter topic: "<topic>.dead".
const DeadLetterSuffix = ".dead"

// OrderV1 is version 1 of the order event payload.
type OrderV1 struct {
	V          int       `json:"v"`
	EventID    string    `json:"event_id"`
	Type       string    `json:"type"` // one of the order topics
	OrderID    string    `json:"order_id"`
	UserID     string    `json:"user_id"`
	DealID     string    `json:"deal_id"`
	GroupID    string    `json:"group_id,omitempty"`
	Quantity   int       `json:"quantity"`
	TotalCents int64     `json:"total_cents"`
	Status     string    `json:"status"`
	OccurredAt time.Time `json:"occurred_at"`
}

// NewOrderV1 builds an order event of the given type; the event id is "<order>:<type>".
func NewOrderV1(typ, orderID, userID, dealID, groupID string, qty int, total int64, status string, at time.Time) OrderV1 {
	return OrderV1{
		V: 1, EventID: orderID + ":" + typ, Type: typ,
		OrderID: orderID, UserID: userID, DealID: dealID, GroupID: groupID,
		Quantity: qty, TotalCents: total, Status: status, OccurredAt: at.UTC(),
	}
}

// ErrUnsupported marks a payload no consumer version understands.
var ErrUnsupported = errors.New("events: unsupported payload")

// DecodeOrder parses an order event payload, accepting the versions this build knows.
func DecodeOrder(data []byte) (OrderV1, error) {
	var probe struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return OrderV1{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if probe.V != 1 {
		return OrderV1{}, fmt.Errorf("%w: order event version %d", ErrUnsupported, probe.V)
	}
	var e OrderV1
	if err := json.Unmarshal(data, &e); err != nil {
		return OrderV1{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if e.EventID == "" || e.OrderID == "" || e.UserID == "" || e.Type == "" {
		return OrderV1{}, fmt.Errorf("%w: order event lacks ids or type", ErrUnsupported)
	}
	return e, nil
}

// Route names the order (whose events share a publishing channel), the event id and the
// topic (pkg/bulkpub).
func (e OrderV1) Route() (key, id, topic string) { return e.OrderID, e.EventID, e.Type }

// GroupV1 is version 1 of the group event payload.
type GroupV1 struct {
	V          int       `json:"v"`
	EventID    string    `json:"event_id"`
	Type       string    `json:"type"` // one of the group topics
	GroupID    string    `json:"group_id"`
	DealID     string    `json:"deal_id"`
	Status     string    `json:"status"`
	GroupSize  int       `json:"group_size"`
	SeatsTaken int       `json:"seats_taken"`
	Paid       int       `json:"paid"`
	Members    []Member  `json:"members"`
	UserID     string    `json:"user_id,omitempty"` // who joined/opened, for joined/opened
	ExpiresAt  time.Time `json:"expires_at"`
	OccurredAt time.Time `json:"occurred_at"`
}

// Route names the group (whose events share a publishing channel), the event id and the
// topic (pkg/bulkpub).
func (e GroupV1) Route() (key, id, topic string) { return e.GroupID, e.EventID, e.Type }

// Member is a seat of a group.
type Member struct {
	UserID  string `json:"user_id"`
	OrderID string `json:"order_id"`
	Paid    bool   `json:"paid"`
}

// DecodeGroup parses a group event payload.
func DecodeGroup(data []byte) (GroupV1, error) {
	var e GroupV1
	if err := json.Unmarshal(data, &e); err != nil {
		return GroupV1{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if e.V != 1 {
		return GroupV1{}, fmt.Errorf("%w: group event version %d", ErrUnsupported, e.V)
	}
	if e.EventID == "" || e.GroupID == "" || e.Type == "" {
		return GroupV1{}, fmt.Errorf("%w: group event lacks ids or type", ErrUnsupported)
	}
	return e, nil
}

// Catalog change topics. The catalog publishes them on the broadcast pub/sub component
// (BroadcastPubSub, components/pubsub-broadcast.yaml) after every create or change of a
// product or deal, so that every gateway replica (each with a queue of its own) drops or
// refreshes its cached copy and learns the id exists (apps/gateway/internal/readcache).
const (
	TopicProductChanged = "product.changed"
	TopicDealChanged    = "deal.changed"
)

// BroadcastPubSub is the pub/sub component whose every subscriber replica gets every event.
const BroadcastPubSub = "pubsub-broadcast"

// Catalog entity kinds of CatalogChangedV1.
const (
	KindProduct = "product"
	KindDeal    = "deal"
)

// CatalogChangedV1 is version 1 of the catalog change payload: which product or deal was
// created or changed, and when.
type CatalogChangedV1 struct {
	V          int       `json:"v"`
	Kind       string    `json:"kind"` // KindProduct or KindDeal
	ID         string    `json:"id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// DecodeCatalogChanged parses a catalog change payload.
func DecodeCatalogChanged(data []byte) (CatalogChangedV1, error) {
	var e CatalogChangedV1
	if err := json.Unmarshal(data, &e); err != nil {
		return CatalogChangedV1{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if e.V != 1 {
		return CatalogChangedV1{}, fmt.Errorf("%w: catalog event version %d", ErrUnsupported, e.V)
	}
	if e.ID == "" || (e.Kind != KindProduct && e.Kind != KindDeal) {
		return CatalogChangedV1{}, fmt.Errorf("%w: catalog event lacks id or kind", ErrUnsupported)
	}
	return e, nil
}
