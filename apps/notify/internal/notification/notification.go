// Package notification owns what users are told about their orders and groups: the per-user
// inbox (newest first, capped, deduplicated on the event id) and the mapping from integration
// events (pkg/events) to notifications and their recipients.
//
// Delivery is at-least-once, so everything here is idempotent: a notification's id is the
// event's EventID ("<order_id>:<type>" for orders), and an inbox never holds the same id twice.
package notification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
)

// MaxItems caps an inbox; the oldest notifications fall off.
const MaxItems = 200

// Notification is one inbox entry, also the unit pushed to live streams.
type Notification struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Inbox is the stored document of one user's notifications, newest first.
type Inbox struct {
	Items []Notification `json:"items"`
}

// Add inserts n at its place by CreatedAt (newest first) unless an entry with its id is
// already there, then trims the inbox to MaxItems. It reports whether the inbox changed.
//
// Inserting by time rather than at the front keeps the order right when events arrive out of
// order (a retried order.created after order.paid), and makes a redelivery of an entry that
// was already trimmed away fall past the cap again instead of coming back as "new".
func (in *Inbox) Add(n Notification) bool {
	if slices.ContainsFunc(in.Items, func(x Notification) bool { return x.ID == n.ID }) {
		return false
	}
	// First entry strictly older than n: n goes before it, after entries of the same time.
	i := slices.IndexFunc(in.Items, func(x Notification) bool { return x.CreatedAt.Before(n.CreatedAt) })
	if i < 0 {
		i = len(in.Items)
	}
	if i >= MaxItems {
		return false
	}
	in.Items = slices.Insert(in.Items, i, n)
	if len(in.Items) > MaxItems {
		in.Items = in.Items[:MaxItems]
	}
	return true
}

// Kind tells order events from group events (each has its own live relay topic).
type Kind string

// Event kinds.
const (
	KindOrder Kind = "order"
	KindGroup Kind = "group"
)

// Event is an integration event as notify sees it: the notification and who gets it. The same
// is relayed to the live streams (pkg/live.EventV1).
type Event struct {
	Kind         Kind
	Notification Notification
	// Recipients are the users whose inbox and live stream get the notification.
	Recipients []string
	// GroupID is set for group events: the public stream of that group gets them too. Order
	// events never set it, even for a group's order: their data is private to the user.
	GroupID string
}

// OrderView is the data of an order notification.
type OrderView struct {
	OrderID    string `json:"order_id"`
	DealID     string `json:"deal_id"`
	GroupID    string `json:"group_id,omitempty"`
	Quantity   int    `json:"quantity"`
	TotalCents int64  `json:"total_cents"`
	Status     string `json:"status"`
}

// GroupView is the data of a group notification. It is public (the group stream needs no
// login), so it carries counts, never the members' user or order ids.
type GroupView struct {
	GroupID    string    `json:"group_id"`
	DealID     string    `json:"deal_id"`
	Status     string    `json:"status"`
	GroupSize  int       `json:"group_size"`
	SeatsTaken int       `json:"seats_taken"`
	Paid       int       `json:"paid"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// GroupTopics lists the group event topics notify understands.
var GroupTopics = []string{events.TopicGroupOpened, events.TopicGroupJoined, events.TopicGroupSucceeded, events.TopicGroupFailed}

// DecodeOrder parses an order event payload into an Event. Payloads no version of this build
// understands fail with an error matching events.ErrUnsupported: they belong in the
// dead-letter topic, retrying cannot help.
func DecodeOrder(data []byte) (Event, error) {
	e, err := events.DecodeOrder(data)
	if err != nil {
		return Event{}, err
	}
	return FromOrder(e)
}

// DecodeGroup parses a group event payload into an Event (see DecodeOrder).
func DecodeGroup(data []byte) (Event, error) {
	e, err := events.DecodeGroup(data)
	if err != nil {
		return Event{}, err
	}
	return FromGroup(e)
}

// FromOrder maps an order event: its user is told.
func FromOrder(e events.OrderV1) (Event, error) {
	if err := checkIDs(e.Type, events.OrderTopics, e.EventID, e.UserID); err != nil {
		return Event{}, err
	}
	return build(KindOrder, e.EventID, e.Type, e.OccurredAt, OrderView{
		OrderID: e.OrderID, DealID: e.DealID, GroupID: e.GroupID,
		Quantity: e.Quantity, TotalCents: e.TotalCents, Status: e.Status,
	}, []string{e.UserID}, "")
}

// FromGroup maps a group event; the group's public stream gets every one. Whose inbox it goes
// to: group.opened and group.joined to the user who opened or joined only (the other members
// follow the group's live stream: telling every member of every join would cost a group of n
// seats n²/2 inbox writes); the outcome (succeeded, failed) to every member. An opened or
// joined event without its user (none is produced so) goes to the members.
func FromGroup(e events.GroupV1) (Event, error) {
	var users []string
	if e.UserID != "" {
		users = append(users, e.UserID)
	}
	if e.UserID == "" || (e.Type != events.TopicGroupOpened && e.Type != events.TopicGroupJoined) {
		for _, m := range e.Members {
			users = append(users, m.UserID)
		}
	}
	users = slices.DeleteFunc(users, func(u string) bool { return u == "" })
	slices.Sort(users)
	users = slices.Compact(users)
	if err := checkIDs(e.Type, GroupTopics, e.EventID, users...); err != nil {
		return Event{}, err
	}
	return build(KindGroup, e.EventID, e.Type, e.OccurredAt, GroupView{
		GroupID: e.GroupID, DealID: e.DealID, Status: e.Status, GroupSize: e.GroupSize,
		SeatsTaken: e.SeatsTaken, Paid: e.Paid, ExpiresAt: e.ExpiresAt,
	}, users, e.GroupID)
}

func build(kind Kind, id, typ string, at time.Time, view any, to []string, groupID string) (Event, error) {
	data, err := json.Marshal(view)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s view: %w", typ, err)
	}
	return Event{
		Kind:         kind,
		Notification: Notification{ID: id, Type: typ, CreatedAt: at.UTC(), Data: data},
		Recipients:   to,
		GroupID:      groupID,
	}, nil
}

// checkIDs rejects an unknown type and ids that could not be used as they are: ids end up in
// state keys and in SSE "id:" lines, where a line break would forge a frame.
func checkIDs(typ string, known []string, id string, users ...string) error {
	if !slices.Contains(known, typ) {
		return fmt.Errorf("%w: unknown event type %q", events.ErrUnsupported, typ)
	}
	for _, s := range append([]string{id}, users...) {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%w: empty id or control characters in id %q", events.ErrUnsupported, s)
		}
	}
	return nil
}

// Store keeps inboxes.
type Store interface {
	// Add puts n into userID's inbox (see Inbox.Add); added is false for a duplicate.
	Add(ctx context.Context, userID string, n Notification) (added bool, err error)
	// Inbox returns userID's notifications, newest first (empty for an unknown user).
	Inbox(ctx context.Context, userID string) ([]Notification, error)
}

// Announcer relays an event to the live streams (every gateway replica).
type Announcer interface {
	Announce(ctx context.Context, e Event) error
}

// Service implements the notify use cases.
type Service struct {
	store    Store
	announce Announcer
}

// NewService returns a service over store that relays through announce.
func NewService(store Store, announce Announcer) *Service {
	return &Service{store: store, announce: announce}
}

// Record adds the event's notification to every recipient's inbox and returns how many inboxes
// changed. It tries every recipient even when one fails, so a redelivery (after an error) only
// has the failed ones left to do; the others see a duplicate and skip it.
func (s *Service) Record(ctx context.Context, e Event) (added int, err error) {
	var errs []error
	for _, u := range e.Recipients {
		ok, err := s.store.Add(ctx, u, e.Notification)
		if err != nil {
			errs = append(errs, fmt.Errorf("inbox of %s: %w", u, err))
			continue
		}
		if ok {
			added++
		}
	}
	return added, errors.Join(errs...)
}

// Announce relays the event to the live streams.
func (s *Service) Announce(ctx context.Context, e Event) error {
	return s.announce.Announce(ctx, e)
}

// Inbox returns a user's notifications, newest first.
func (s *Service) Inbox(ctx context.Context, userID string) ([]Notification, error) {
	items, err := s.store.Inbox(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("inbox of %s: %w", userID, err)
	}
	if items == nil {
		items = []Notification{}
	}
	return items, nil
}
