// Package order owns orders: placement with idempotency keys, the per-user purchase limit,
// stock holds through inventory, payment through the payment app, cancellation and expiry.
//
// State machine (DESIGN.md §4):
//
//	pending_payment → paid → confirmed
//	pending_payment → cancelled          (owner cancels, or the pay window passes)
//	paid → refunded                      (the order's group fails, or it lost its seat)
//	cancelled → refunded                 (a charge that landed after the order was cancelled)
//
// Group orders (kind "group") are placed by the group app for a seat it reserved
// (PlaceGroupOrder), stay paid until their group is decided, and are then confirmed or
// refunded by SettleGroup; unpaid ones are cancelled then, or expire at pay_by, which never
// passes the group's deadline. The group's outcome is recorded with its orders and every
// order stays in the pending set until it is settled, so the sweep finishes a settlement
// whose event was dead-lettered.
//
// A cancelled order keeps its payment marker while a charge may still land (a group
// settlement cancels without waiting PaymentGrace): it stays in the pending set, and the
// sweep asks the payment app after the grace. A charge that went through is refunded and the
// order ends refunded, so every succeeded charge ends on a confirmed or refunded order.
//
// Every transition is one ETag-checked write of the order document, and that write also
// records the transition's event in the document's outbox (registered first in the outbox
// index, so a crash before the relay publishes it still gets it delivered). Other side effects
// (stock release/commit, index updates) follow the write and are idempotent, so a sweep can
// redo them after a crash. No answer waits for the broker.
package order

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Status of an order.
type Status string

// Statuses.
const (
	StatusPending   Status = "pending_payment"
	StatusPaid      Status = "paid"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
	StatusRefunded  Status = "refunded"
)

// transitions lists the legal moves of the state machine.
var transitions = map[Status][]Status{
	StatusPending: {StatusPaid, StatusCancelled},
	StatusPaid:    {StatusConfirmed, StatusRefunded},
	// Only for a charge found after the cancellation; the stock is already released.
	StatusCancelled: {StatusRefunded},
}

// CanTransition reports whether from → to is legal.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Active reports whether an order in this status holds or consumed stock (counts toward the
// per-user limit).
func (s Status) Active() bool {
	return s == StatusPending || s == StatusPaid || s == StatusConfirmed
}

// Errors of the order domain.
var (
	ErrNotFound          = problem.New(problem.CodeNotFound, "order not found")
	ErrDealNotActive     = problem.New(problem.CodeDealNotActive, "the deal is not active")
	ErrPurchaseLimit     = problem.New(problem.CodePurchaseLimit, "the purchase limit for this deal is reached")
	ErrSoldOut           = problem.New(problem.CodeSoldOut, "the deal is sold out")
	ErrInvalidState      = problem.New(problem.CodeInvalidState, "")
	ErrIdempotencyReused = idempotency.ErrReused
	ErrIdempotencyInUse  = idempotency.ErrInUse
	ErrPaymentDeclined   = problem.New(problem.CodePaymentDeclined, "the payment was declined")
	ErrPaymentDown       = problem.New(problem.CodePaymentUnavailable, "the payment provider is unavailable; try again later")
	ErrGroupClosed       = problem.New(problem.CodeGroupClosed, "the group is decided and takes no more orders")
	ErrConflict          = errors.New("order: concurrent update")
)

func invalidState(detail string) error {
	return &problem.Error{Code: problem.CodeInvalidState, Detail: detail}
}

// Order is the stored order document.
type Order struct {
	ID             string    `json:"id"`
	UserID         string    `json:"user_id"`
	DealID         string    `json:"deal_id"`
	GroupID        string    `json:"group_id,omitempty"`
	Kind           string    `json:"kind"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
	TotalCents     int64     `json:"total_cents"`
	Status         Status    `json:"status"`
	PayBy          time.Time `json:"pay_by"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// PaymentStartedAt marks a charge in flight: expiry leaves the order alone meanwhile, and
	// after PaymentGrace it asks the payment app what happened instead of guessing. A
	// cancelled order keeps it until that lookup: a charge may still land.
	PaymentStartedAt *time.Time `json:"payment_started_at,omitempty"`
	// Settled records that the side effects of the current status were all applied.
	Settled bool `json:"settled"`
	// Outbox holds the events of this order's creation and transitions, each written by the
	// same ETag write as the change it announces, so a crash cannot keep one without the
	// other. The relay (apps/order/internal/outbox) publishes them; one is waiting while the
	// outbox index entry of its Slot lists it, and stays here once published (the document is
	// not written again for it). At most one per topic (five): bounded.
	Outbox []OutboxEvent `json:"outbox,omitempty"`
}

// OutboxEvent is an event waiting in an order document for the relay.
type OutboxEvent struct {
	Topic  string    `json:"topic"`
	Status Status    `json:"status"` // the status the event announces
	At     time.Time `json:"at"`
	// Slot is the outbox index document the order was registered in before the write that
	// recorded the event, so the relay trims that entry once the event is out.
	Slot string `json:"slot"`
}

// Event is the integration event of e for order o.
func (o Order) Event(e OutboxEvent) events.OrderV1 {
	return events.NewOrderV1(e.Topic, o.ID, o.UserID, o.DealID, o.GroupID, o.Quantity, o.TotalCents, string(e.Status), e.At)
}

// record puts the event announcing the order's current status into its outbox; an event of
// the same topic already waiting is kept (same event id, consumers would drop the second).
func (o *Order) record(topic, slot string) {
	for _, e := range o.Outbox {
		if e.Topic == topic {
			return
		}
	}
	o.Outbox = append(o.Outbox, OutboxEvent{Topic: topic, Status: o.Status, At: o.UpdatedAt, Slot: slot})
}

// statusTopics names the event of each status an order moves to.
var statusTopics = map[Status]string{
	StatusPaid:      events.TopicOrderPaid,
	StatusConfirmed: events.TopicOrderConfirmed,
	StatusCancelled: events.TopicOrderCancelled,
	StatusRefunded:  events.TopicOrderRefunded,
}

// finished reports whether nothing is left to do for the order: a final status whose side
// effects were all applied, and no charge that may still land.
func (o Order) finished() bool {
	final := o.Status == StatusConfirmed || o.Status == StatusCancelled || o.Status == StatusRefunded
	return final && o.Settled && o.PaymentStartedAt == nil
}

// Deal is what the order app needs to know about a deal (from the catalog; immutable).
type Deal struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`
	PriceCents   int64     `json:"price_cents"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	PerUserLimit int       `json:"per_user_limit"`
}

// Store keeps order documents with ETag concurrency.
type Store interface {
	Get(ctx context.Context, id string) (Order, string, error) // ErrNotFound when absent
	Create(ctx context.Context, o Order) error                 // ok if an identical id exists
	Update(ctx context.Context, o Order, etag string) error    // ErrConflict on ETag mismatch
}

// UserIndex is the per-user list of orders (GET /me/orders) and the purchase-limit counters.
type UserIndex interface {
	// Add records order id for user if the user's active quantity on the deal plus qty stays
	// within limit; otherwise it returns ErrPurchaseLimit. Adding an id twice is a no-op.
	Add(ctx context.Context, userID string, e IndexEntry, limit int) error
	// SetStatus records the order's new status: a cancelled or refunded order stops counting
	// toward its deal's limit (for good; statuses only move forward).
	SetStatus(ctx context.Context, userID, orderID string, s Status) error
	// Remove drops an entry (a placement that did not happen).
	Remove(ctx context.Context, userID, orderID string) error
	// List returns the user's newest entries older than before (all when before is ""),
	// newest first, at most limit. Only OrderID is sure to be set: the order document has the
	// rest.
	List(ctx context.Context, userID, before string, limit int) ([]IndexEntry, error)
}

// OlderThan reports whether order id comes before the cursor before in a user's list: by
// the time in their Snowflake ids (numerically), or, for ids that are not decimal, by their
// text; an empty cursor admits every id.
func OlderThan(id, before string) bool {
	if before == "" {
		return true
	}
	a, errA := strconv.ParseInt(id, 10, 64)
	b, errB := strconv.ParseInt(before, 10, 64)
	if errA == nil && errB == nil {
		return a < b
	}
	return id < before
}

// IndexEntry is one order in a user's index.
type IndexEntry struct {
	OrderID  string `json:"order_id"`
	DealID   string `json:"deal_id"`
	Quantity int    `json:"quantity"`
	Status   Status `json:"status"`
	// Until is the deal's end: its purchase-limit counter is not needed after it.
	Until time.Time `json:"until,omitzero"`
}

// Pending is the set of orders the expiry sweep must look at: placed, not settled. It is
// kept in windows of due time, so a sweep reads only what is due, and runners share the due
// windows under a lease per window instead of each walking all of them.
type Pending interface {
	// Add registers e (a no-op for an order already in the set); it returns once the entry is
	// durable.
	Add(ctx context.Context, e PendingEntry) error
	// Remove drops e, found by its order id and the due time it was added with (or the Key a
	// read returned). An entry it misses stays until the sweep finds its order finished.
	Remove(ctx context.Context, e PendingEntry) error
	// Due returns every entry due before t.
	Due(ctx context.Context, t time.Time) ([]PendingEntry, error)
	// Windows lists the windows that may hold entries due before t, oldest first.
	Windows(ctx context.Context, t time.Time) ([]string, error)
	// Claim leases window w to this call and returns its entries due before t; ok is false
	// while another claim holds the lease.
	Claim(ctx context.Context, w string, t time.Time) (c PendingClaim, ok bool, err error)
	// Release ends a claim's lease early (it also ends by itself).
	Release(ctx context.Context, c PendingClaim) error
}

// PendingEntry is an order awaiting settlement.
type PendingEntry struct {
	OrderID string
	UserID  string
	DealID  string
	Due     time.Time
	// Key is where a read found the entry (opaque to the domain); Remove uses it before Due.
	Key string
}

// PendingClaim is one window leased to one sweep.
type PendingClaim struct {
	Window  string
	Owner   string
	Entries []PendingEntry
}

// Idempotency stores one record per (user, Idempotency-Key) (pkg/idempotency runs Place over
// it).
type Idempotency = idempotency.Keys[IdemRecord]

// IdemRecord is a stored idempotency record: the shared part and the order id, allocated
// when the key is first used so a retry resumes the same order.
type IdemRecord struct {
	idempotency.Record
	OrderID string `json:"order_id"`
}

// Admission decides whether the app takes on a placement now. Admit waits (briefly) for room
// and returns a release to call when the placement is over, or a *problem.Error with code
// unavailable and a Retry-After when the placement could not be finished in time.
type Admission interface {
	Admit(ctx context.Context) (release func(), err error)
}

// GroupIndex lists the orders of each group, so that when the group is decided every one of
// them is settled: the members the group event names, and orders that lost their seat. The
// outcome is recorded with them, so the sweep can settle an order whose event was lost.
type GroupIndex interface {
	// Add records an order of the group (a no-op when present). Once the group is decided it
	// fails with ErrGroupClosed.
	Add(ctx context.Context, groupID string, e GroupEntry) error
	// Decide records the group's outcome unless one is recorded already (the first wins: a
	// replayed or stale event cannot turn confirmations into refunds), and returns the
	// recorded outcome and the group's orders.
	Decide(ctx context.Context, out GroupOutcome) (GroupOutcome, []GroupEntry, error)
	// Decision returns the recorded outcome; decided is false while there is none.
	Decision(ctx context.Context, groupID string) (out GroupOutcome, decided bool, err error)
}

// GroupEntry is one order of a group.
type GroupEntry struct {
	OrderID string `json:"order_id"`
	UserID  string `json:"user_id"`
}

// Deals reads deals from the catalog.
type Deals interface {
	Deal(ctx context.Context, id string) (Deal, error)
}

// Stock is the inventory app.
type Stock interface {
	// Reserve holds qty units for orderID until the given time. It is idempotent per order:
	// a replay reports the hold's current state ("reserved", "committed", "released");
	// soldOut reports a refusal.
	Reserve(ctx context.Context, dealID, orderID string, qty int, until time.Time) (state string, soldOut bool, err error)
	Commit(ctx context.Context, dealID, orderID string) error
	Release(ctx context.Context, dealID, orderID string) error
}

// ChargeResult is the payment app's answer.
type ChargeResult struct {
	Status string `json:"status"` // succeeded | declined
}

// Payments is the payment app.
type Payments interface {
	Charge(ctx context.Context, orderID string, amount int64, token string) (ChargeResult, error)
	// Lookup returns the recorded charge of an order; found=false when there is none.
	Lookup(ctx context.Context, orderID string) (res ChargeResult, found bool, err error)
	Refund(ctx context.Context, orderID string) error
}

// Outbox relays the events that creations and transitions record in order documents
// (Order.Outbox), off the request path (apps/order/internal/outbox).
type Outbox interface {
	// Register makes the order's event of a topic findable by the relay's recovery (a crash
	// before the event is published) and must succeed before a write records the event; it
	// returns the index slot to record with the event.
	Register(ctx context.Context, orderID, topic string) (slot string, err error)
	// Relay hands a committed order to the relay with the events to publish in its Outbox
	// (what the write recorded). It never waits for the broker; an event it cannot take is
	// published by the recovery pass instead.
	Relay(o Order)
}

// IDs issues order ids.
type IDs interface{ NextString() string }

// Caller is the authenticated user.
type Caller = identity.User
