package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// SweepStats counts what one expiry pass did.
type SweepStats struct {
	Examined  int `json:"examined"`
	Cancelled int `json:"cancelled"`
	Completed int `json:"completed"`
	Cleaned   int `json:"cleaned"`
	Refunded  int `json:"refunded"`
	Failed    int `json:"failed"`
}

// Sweep is the expiry pass the cron binding triggers: pending orders past pay_by are
// cancelled and their stock released; orders whose side effects were interrupted are
// finished. It is safe to run concurrently on several replicas and with overlapping ticks:
// every transition is a CAS that only one runner wins, and every side effect is idempotent.
func (s *Service) Sweep(ctx context.Context) (SweepStats, error) {
	var st SweepStats
	now := s.now().UTC()
	due, err := s.pending.Due(ctx, now)
	if err != nil {
		return st, err
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		st.Examined++
		outcome, err := s.sweepOne(ctx, e)
		if err != nil {
			st.Failed++
			s.log.WarnContext(ctx, "sweep_order_failed", slog.String("order_id", e.OrderID), slog.String("error", err.Error()))
			continue
		}
		switch outcome {
		case "cancelled":
			st.Cancelled++
		case "completed":
			st.Completed++
		case "cleaned":
			st.Cleaned++
		case "refunded":
			st.Refunded++
		}
	}
	return st, nil
}

func (s *Service) sweepOne(ctx context.Context, e PendingEntry) (string, error) {
	now := s.now().UTC()
	o, _, err := s.store.Get(ctx, e.OrderID)
	if errors.Is(err, ErrNotFound) {
		// A placement that never finished: give back whatever it took.
		if err := s.stock.Release(ctx, e.DealID, e.OrderID); err != nil {
			return "", err
		}
		if err := s.users.Remove(ctx, e.UserID, e.OrderID); err != nil {
			return "", err
		}
		return "cleaned", s.pending.Remove(ctx, e.OrderID)
	}
	if err != nil {
		return "", err
	}
	switch o.Status {
	case StatusPending:
		if o.PaymentStartedAt != nil {
			if now.Sub(*o.PaymentStartedAt) < s.cfg.PaymentGrace {
				return "skipped", nil // a charge is in flight
			}
			// The payer vanished mid-charge: the payment app knows whether it went through.
			res, found, err := s.payments.Lookup(ctx, o.ID)
			if err != nil {
				return "", err
			}
			if found && res.Status == "succeeded" {
				_, err := s.completePayment(ctx, o.ID)
				if errors.Is(err, errChargeRefunded) {
					return "refunded", nil // cancelled meanwhile
				}
				if err != nil {
					return "", err
				}
				return "completed", nil
			}
		}
		if now.Before(o.PayBy) {
			return "skipped", nil
		}
		o, err = s.update(ctx, o.ID, func(cur *Order) error {
			if cur.Status != StatusPending {
				return errUnchanged
			}
			if cur.PaymentStartedAt != nil && now.Sub(*cur.PaymentStartedAt) < s.cfg.PaymentGrace {
				return errUnchanged
			}
			cur.Status = StatusCancelled
			cur.PaymentStartedAt = nil
			cur.Settled = false
			return nil
		})
		if errors.Is(err, errUnchanged) {
			return "skipped", nil // someone else moved it; the next pass looks again
		}
		if err != nil {
			return "", err
		}
		if err := s.finishCancel(ctx, o); err != nil {
			return "", err
		}
		return "cancelled", nil
	case StatusPaid:
		// A flash order is committed and confirmed. A group order is here because the process
		// died after its Paid CAS (order.paid is in its outbox, the relay's to publish) or
		// because its group's settlement did not finish: completePayment settles it from the
		// recorded outcome or leaves it to wait for one.
		if _, err := s.completePayment(ctx, o.ID); err != nil {
			return "", err
		}
		return "completed", nil
	case StatusCancelled:
		if !o.Settled {
			if err := s.finishCancel(ctx, o); err != nil {
				return "", err
			}
			if o.PaymentStartedAt == nil {
				return "completed", nil
			}
			o.Settled = true
		}
		if o.PaymentStartedAt != nil {
			return s.watchCharge(ctx, o)
		}
	case StatusConfirmed:
		if !o.Settled {
			return "completed", s.settle(ctx, o)
		}
	case StatusRefunded:
		if !o.Settled {
			return "completed", s.settle(ctx, o)
		}
	default:
		return "", fmt.Errorf("order %s has unknown status %q", o.ID, o.Status)
	}
	return "cleaned", s.pending.Remove(ctx, o.ID)
}

// watchCharge follows a cancelled order whose charge may still land (cancelled by its group's
// settlement while the charge was in flight, and the Pay request may have died since). Once
// PaymentGrace has passed, the payment app's record is final: a succeeded charge is refunded
// and the order ends refunded; otherwise the marker goes and the order leaves the pending set.
func (s *Service) watchCharge(ctx context.Context, o Order) (string, error) {
	marker := *o.PaymentStartedAt
	if s.now().UTC().Sub(marker) < s.cfg.PaymentGrace {
		return "skipped", nil
	}
	res, found, err := s.payments.Lookup(ctx, o.ID)
	if err != nil {
		return "", err
	}
	if found && res.Status == "succeeded" {
		if _, err := s.refundLateCharge(ctx, o); err != nil {
			return "", err
		}
		return "refunded", nil
	}
	_, err = s.update(ctx, o.ID, func(cur *Order) error {
		if cur.Status != StatusCancelled || cur.PaymentStartedAt == nil || !cur.PaymentStartedAt.Equal(marker) {
			return errUnchanged
		}
		cur.PaymentStartedAt = nil
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return "skipped", nil // someone else moved it; the next pass looks again
	}
	if err != nil {
		return "", err
	}
	return "cleaned", s.pending.Remove(ctx, o.ID)
}
