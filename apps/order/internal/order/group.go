package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// GroupOrderRequest is the group app's request for a member's order. The group app chose the
// order id (it is stored with the member's seat and Idempotency-Key), so the request is
// idempotent by it.
type GroupOrderRequest struct {
	OrderID string    `json:"order_id"`
	UserID  string    `json:"user_id"`
	DealID  string    `json:"deal_id"`
	GroupID string    `json:"group_id"`
	PayBy   time.Time `json:"pay_by"` // the group's deadline: the pay window never passes it
}

func (r GroupOrderRequest) validate() error {
	var f []problem.FieldError
	for _, x := range []struct{ name, v string }{{"order_id", r.OrderID}, {"user_id", r.UserID}, {"deal_id", r.DealID}, {"group_id", r.GroupID}} {
		if x.v == "" || len(x.v) > 100 {
			f = append(f, problem.FieldError{Field: x.name, Reason: "is required (1-100 characters)"})
		}
	}
	if r.PayBy.IsZero() {
		f = append(f, problem.FieldError{Field: "pay_by", Reason: "is required (RFC 3339)"})
	}
	if len(f) > 0 {
		return problem.Invalid(f...)
	}
	return nil
}

// PlaceGroupOrder places a member's order (one unit) for a seat of a group, exactly once per
// order id: the same internals as Place (purchase limit, pending set, stock hold, event), with
// the group recorded on the order and the pay window cut at the group's deadline. A replay
// returns the order as it is now.
func (s *Service) PlaceGroupOrder(ctx context.Context, req GroupOrderRequest) (Order, error) {
	if err := req.validate(); err != nil {
		return Order{}, err
	}
	if o, _, err := s.store.Get(ctx, req.OrderID); err == nil {
		if o.UserID != req.UserID || o.GroupID != req.GroupID || o.DealID != req.DealID {
			return Order{}, problem.New(problem.CodeConflict, "the order id belongs to another order")
		}
		// The attempt that made it may have died before its event was relayed (see place).
		s.relay(o)
		return o, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Order{}, err
	}
	deal, err := s.deals.Deal(ctx, req.DealID)
	if err != nil {
		return Order{}, err
	}
	if deal.Kind != "group" {
		return Order{}, invalidState("flash deals are bought with orders, not groups")
	}
	now := s.now().UTC()
	if now.Before(deal.StartsAt) || !now.Before(deal.EndsAt) {
		return Order{}, ErrDealNotActive
	}
	payBy := now.Add(s.cfg.PayWindow)
	if req.PayBy.Before(payBy) {
		payBy = req.PayBy
	}
	payBy = payBy.UTC().Truncate(time.Millisecond)
	if !now.Before(payBy) {
		return Order{}, ErrGroupClosed
	}
	o := Order{
		ID:             req.OrderID,
		UserID:         req.UserID,
		DealID:         deal.ID,
		GroupID:        req.GroupID,
		Kind:           deal.Kind,
		Quantity:       1,
		UnitPriceCents: deal.PriceCents,
		TotalCents:     deal.PriceCents,
		Status:         StatusPending,
		PayBy:          payBy,
		CreatedAt:      now.Truncate(time.Millisecond),
	}
	o.UpdatedAt = o.CreatedAt
	// Recorded before anything is taken, so the group's settlement finds the order.
	if err := s.groups.Add(ctx, o.GroupID, GroupEntry{OrderID: o.ID, UserID: o.UserID}); err != nil {
		return Order{}, err
	}
	o, err = s.admit(ctx, o, deal, nil)
	if err != nil {
		return Order{}, err
	}
	// The group may have been decided between the index entry above and the order's
	// creation: its settlement then looked for this order before it existed. Settlement
	// marks the group decided before reading its orders, so checking after creating closes
	// the gap: either settlement saw the order, or this check sees the mark.
	_, decided, err := s.groups.Decision(ctx, o.GroupID)
	if err != nil {
		return Order{}, err
	}
	if decided {
		if err := s.settleGroupOrder(ctx, o.ID, o.GroupID, false); err != nil {
			return Order{}, err
		}
		return Order{}, ErrGroupClosed
	}
	return o, nil
}

// GroupOutcome is a decided group (group.succeeded or group.failed).
type GroupOutcome struct {
	GroupID   string
	Succeeded bool
	// Members are the order ids of the group's seats: in a succeeded group, all paid.
	Members []string
}

// SettleGroup applies a group's outcome to every order of the group, once however often it
// is delivered: in a succeeded group the members' paid orders are confirmed (stock
// committed); every other order of the group (all of a failed group's, and orders that lost
// their seat) is refunded through payment and its stock released when paid, or cancelled when
// unpaid. Each step is idempotent and each status change one CAS, so redelivery, the expiry
// sweep and a concurrent payment cannot double an effect: the payment app refunds an order at
// most once, inventory releases a hold once.
//
// The outcome is recorded with the group's orders first, and each order is put back into the
// pending set before it is touched: if payment or inventory stays down until the broker
// dead-letters the event, the sweep finishes every order from the recorded outcome. The first
// recorded outcome wins, so a replayed or stale event settles nothing differently.
func (s *Service) SettleGroup(ctx context.Context, out GroupOutcome) error {
	rec, entries, err := s.groups.Decide(ctx, out)
	if err != nil {
		return err
	}
	if rec.Succeeded != out.Succeeded {
		s.log.WarnContext(ctx, "group_outcome_conflict", slog.String("group_id", out.GroupID),
			slog.Bool("recorded_succeeded", rec.Succeeded), slog.Bool("event_succeeded", out.Succeeded))
	}
	ids := slices.Clone(rec.Members)
	for _, e := range entries {
		ids = append(ids, e.OrderID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var errs []error
	for _, id := range ids {
		if err := s.settleGroupOrder(ctx, id, out.GroupID, rec.keeps(id)); err != nil {
			errs = append(errs, fmt.Errorf("settle order %s of group %s: %w", id, out.GroupID, err))
		}
	}
	return errors.Join(errs...)
}

// keeps reports whether the order is confirmed by the outcome: a member of a succeeded group.
func (out GroupOutcome) keeps(orderID string) bool {
	return out.Succeeded && slices.Contains(out.Members, orderID)
}

// settleGroupOrder brings one order of a decided group to its end: confirmed when keep (a
// paid member of a succeeded group), otherwise refunded or cancelled.
func (s *Service) settleGroupOrder(ctx context.Context, id, groupID string, keep bool) error {
	var added *PendingEntry // what this call put into the pending set
	// An order can move under us at most twice (pending → paid → final), and is read once
	// more after it is put into the pending set.
	for range 4 {
		o, _, err := s.store.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil // a placement that never completed: the expiry sweep gives back its hold
		}
		if err != nil {
			return err
		}
		if o.GroupID != groupID {
			s.log.WarnContext(ctx, "group_settle_foreign_order", slog.String("order_id", id), slog.String("group_id", groupID))
			return nil
		}
		if o.finished() {
			if added != nil {
				// Finished by another runner, whose settle may have removed the entry
				// before we added it.
				return s.pending.Remove(ctx, *added)
			}
			return nil
		}
		if added == nil {
			// Written before any effect, so a settlement that fails here, or whose process
			// dies, is finished by the sweep (a paid group order is out of the set until now).
			// settle removes the entry once the order is done. Read again after: an order
			// another runner finished before the Add is then seen finished, above.
			e := PendingEntry{OrderID: o.ID, UserID: o.UserID, DealID: o.DealID, Due: s.now().UTC()}
			if err := s.pending.Add(ctx, e); err != nil {
				return err
			}
			added = &e
			continue
		}
		switch o.Status {
		case StatusPending:
			// A charge was started: the payment app knows whether it went through (its answer
			// may have been lost). A paid order is refunded or confirmed like any other. A
			// charge started less than PaymentGrace ago may still land after we looked: the
			// order is cancelled with its marker kept, and stays watched (see watchCharge).
			var looked *time.Time // a marker the payment app answered for after the grace
			if o.PaymentStartedAt != nil {
				askedAt := s.now().UTC()
				res, found, err := s.payments.Lookup(ctx, id)
				if err != nil {
					return err
				}
				if found && res.Status == "succeeded" {
					if _, err := s.completePayment(ctx, id); err != nil && !errors.Is(err, errChargeRefunded) {
						return err
					}
					continue
				}
				if askedAt.Sub(*o.PaymentStartedAt) >= s.cfg.PaymentGrace {
					looked = o.PaymentStartedAt
				}
			}
			o, err = s.update(ctx, id, func(cur *Order) error {
				if cur.Status != StatusPending {
					return errUnchanged
				}
				cur.Status = StatusCancelled
				if cur.PaymentStartedAt != nil && looked != nil && cur.PaymentStartedAt.Equal(*looked) {
					cur.PaymentStartedAt = nil
				}
				cur.Settled = false
				return nil
			})
			if errors.Is(err, errUnchanged) {
				continue // paid meanwhile: look again
			}
			if err != nil {
				return err
			}
			return s.finishCancel(ctx, o)
		case StatusPaid:
			if keep {
				return s.confirmGroupOrder(ctx, o)
			}
			return s.refundGroupOrder(ctx, o)
		case StatusConfirmed:
			if !o.Settled {
				return s.settle(ctx, o)
			}
			return nil
		case StatusRefunded:
			if !o.Settled {
				return s.settle(ctx, o)
			}
			return nil
		case StatusCancelled:
			// A marker kept on it is the sweep's to resolve once the grace has passed.
			if !o.Settled {
				return s.finishCancel(ctx, o)
			}
			return nil
		default:
			return fmt.Errorf("order %s has unknown status %q", o.ID, o.Status)
		}
	}
	return fmt.Errorf("order %s: %w", id, ErrConflict)
}

// awaitGroup is the end of a group order's payment: the order waits for its group's outcome
// out of the pending set, or is settled at once when the outcome is recorded (the group was
// decided while the charge was in flight, or the sweep finishes a settlement whose event was
// dead-lettered).
func (s *Service) awaitGroup(ctx context.Context, o Order) (Order, error) {
	out, decided, err := s.groups.Decision(ctx, o.GroupID)
	if err != nil {
		return Order{}, err
	}
	if !decided {
		if err := s.pending.Remove(ctx, pendingOf(o)); err != nil {
			return Order{}, err
		}
		// SettleGroup records the outcome, then re-adds each order; had it re-added this one
		// between our look and the Remove, the look below sees the outcome.
		if out, decided, err = s.groups.Decision(ctx, o.GroupID); err != nil {
			return Order{}, err
		}
		if !decided {
			return o, nil
		}
	}
	if err := s.settleGroupOrder(ctx, o.ID, o.GroupID, out.keeps(o.ID)); err != nil {
		return Order{}, err
	}
	o, _, err = s.store.Get(ctx, o.ID)
	return o, err
}

// confirmGroupOrder commits a paid member's stock, then confirms the order.
func (s *Service) confirmGroupOrder(ctx context.Context, o Order) error {
	if err := s.stock.Commit(ctx, o.DealID, o.ID); err != nil {
		return err
	}
	o, err := s.update(ctx, o.ID, func(cur *Order) error {
		if cur.Status != StatusPaid {
			return errUnchanged
		}
		cur.Status = StatusConfirmed
		cur.Settled = false
		return nil
	})
	if errors.Is(err, errUnchanged) {
		if o.Status == StatusConfirmed && !o.Settled {
			return s.settle(ctx, o)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return s.settle(ctx, o)
}

// refundGroupOrder gives a paid order's money and stock back, then marks it refunded. The
// money goes first: the document says "refunded" only once the payment app has the refund,
// and a retry after a crash repeats the idempotent calls.
func (s *Service) refundGroupOrder(ctx context.Context, o Order) error {
	if err := s.payments.Refund(ctx, o.ID); err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	if err := s.stock.Release(ctx, o.DealID, o.ID); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	o, err := s.update(ctx, o.ID, func(cur *Order) error {
		if cur.Status != StatusPaid {
			return errUnchanged
		}
		cur.Status = StatusRefunded
		cur.Settled = false
		return nil
	})
	if errors.Is(err, errUnchanged) {
		if o.Status == StatusRefunded && !o.Settled {
			return s.settle(ctx, o)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return s.settle(ctx, o)
}
