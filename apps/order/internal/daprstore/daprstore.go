// Package daprstore keeps the order app's documents in the Dapr state store:
//
//	order:<id>                 the order (ETag CAS on every transition)
//	userorders:<user>[:<page>] the user's orders, newest in the head with the per-deal counters
//	                           of the purchase limit, older ones in sealed pages (see Users)
//	pendingwin:<start>:<shard> orders awaiting settlement, by due-time window and shard, with
//	                           their directory and sweep leases (see Pending)
//	idem:<user>:<sha256(key)>  Idempotency-Key records, expiring after 24 h (pkg/idempotency)
//	grouporders:<group>        the orders of a group and whether it was decided
package daprstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
)

const casAttempts = 50

// Orders implements order.Store.
type Orders struct{ s *daprstate.Store }

// NewOrders returns the order store.
func NewOrders(s *daprstate.Store) *Orders { return &Orders{s: s} }

// OrderKey is the state key of an order.
func OrderKey(id string) string { return "order:" + id }

// Get implements order.Store.
func (r *Orders) Get(ctx context.Context, id string) (order.Order, string, error) {
	var o order.Order
	etag, err := r.s.Get(ctx, OrderKey(id), &o)
	if errors.Is(err, daprstate.ErrNotFound) {
		return order.Order{}, "", fmt.Errorf("order %s: %w", id, order.ErrNotFound)
	}
	return o, etag, err
}

// Create implements order.Store.
func (r *Orders) Create(ctx context.Context, o order.Order) error {
	err := r.s.Create(ctx, OrderKey(o.ID), o)
	if errors.Is(err, daprstate.ErrExists) {
		return nil // a resumed placement already wrote it
	}
	return err
}

// Update implements order.Store.
func (r *Orders) Update(ctx context.Context, o order.Order, etag string) error {
	err := r.s.Update(ctx, OrderKey(o.ID), o, etag)
	if errors.Is(err, daprstate.ErrConflict) {
		return order.ErrConflict
	}
	return err
}

// NewIdempotency returns the Idempotency-Key store (order.Idempotency); records expire after
// ttl. An order.IdemRecord is stored as one flat document, the order id next to the shared
// fields.
func NewIdempotency(s *daprstate.Store, ttl time.Duration) *idempotency.Store[order.IdemRecord, *order.IdemRecord] {
	return idempotency.New[order.IdemRecord](s, ttl, time.Now)
}

// Groups implements order.GroupIndex: one document per group, changed by ETag CAS, so adding
// an order and deciding the group are ordered, and the outcome is recorded once.
type Groups struct{ s *daprstate.Store }

// NewGroups returns the group index.
func NewGroups(s *daprstate.Store) *Groups { return &Groups{s: s} }

// groupDoc is bounded by the group's size (its seats and the orders that lost one).
type groupDoc struct {
	Decided bool               `json:"decided"`
	Orders  []order.GroupEntry `json:"orders"`
	// Outcome is "succeeded" or "failed" once decided, and Members the order ids of the seats
	// the group event named. A document decided before outcomes were recorded has none; the
	// next delivery or replay of its event records it.
	Outcome string   `json:"outcome,omitempty"`
	Members []string `json:"members,omitempty"`
}

const (
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
)

func (d groupDoc) outcome(groupID string) (order.GroupOutcome, bool) {
	if !d.Decided || d.Outcome == "" {
		return order.GroupOutcome{}, false
	}
	return order.GroupOutcome{GroupID: groupID, Succeeded: d.Outcome == outcomeSucceeded, Members: d.Members}, true
}

func groupKey(id string) string { return "grouporders:" + id }

// Add implements order.GroupIndex.
func (r *Groups) Add(ctx context.Context, groupID string, e order.GroupEntry) error {
	_, err := daprstate.Mutate(ctx, r.s, groupKey(groupID), casAttempts, func(d *groupDoc, _ bool) error {
		if slices.ContainsFunc(d.Orders, func(x order.GroupEntry) bool { return x.OrderID == e.OrderID }) {
			return daprstate.ErrNoChange
		}
		if d.Decided {
			return order.ErrGroupClosed
		}
		d.Orders = append(d.Orders, e)
		return nil
	})
	return err
}

// Decide implements order.GroupIndex.
func (r *Groups) Decide(ctx context.Context, out order.GroupOutcome) (order.GroupOutcome, []order.GroupEntry, error) {
	d, err := daprstate.Mutate(ctx, r.s, groupKey(out.GroupID), casAttempts, func(d *groupDoc, _ bool) error {
		if d.Decided && d.Outcome != "" {
			return daprstate.ErrNoChange
		}
		d.Decided = true
		d.Outcome = outcomeFailed
		if out.Succeeded {
			d.Outcome = outcomeSucceeded
		}
		d.Members = out.Members
		return nil
	})
	if err != nil {
		return order.GroupOutcome{}, nil, err
	}
	rec, _ := d.outcome(out.GroupID)
	return rec, d.Orders, nil
}

// Decision implements order.GroupIndex. A group decided before outcomes were recorded reads
// as undecided: the sweep leaves its orders to the event (Add refuses new ones all the same).
func (r *Groups) Decision(ctx context.Context, groupID string) (order.GroupOutcome, bool, error) {
	var d groupDoc
	_, err := r.s.Get(ctx, groupKey(groupID), &d)
	if errors.Is(err, daprstate.ErrNotFound) {
		return order.GroupOutcome{}, false, nil
	}
	if err != nil {
		return order.GroupOutcome{}, false, err
	}
	rec, ok := d.outcome(groupID)
	return rec, ok, nil
}
