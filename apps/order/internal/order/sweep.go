package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

func (st *SweepStats) count(outcome string) {
	st.Examined++
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

// Sweep is the expiry pass the cron binding triggers: pending orders past pay_by are
// cancelled and their stock released; orders whose side effects were interrupted are
// finished. The pass takes the due windows of the pending set one at a time, each under a
// lease, so replicas and overlapping ticks share the due work instead of repeating it. The
// replica works on SweepParallelism orders at once, over all its running passes (their stock
// releases meet in inventory's group commit); a pass claims its next window once every order
// of the last one has a worker, and claims none after SweepBudget. Every transition is a CAS
// that only one runner wins and every side effect is idempotent, so a window taken over
// after a lease ran out is merely swept twice.
func (s *Service) Sweep(ctx context.Context) (SweepStats, error) {
	var (
		st    SweepStats
		mu    sync.Mutex
		all   sync.WaitGroup
		start = s.now()
		now   = start.UTC()
	)
	windows, err := s.pending.Windows(ctx, now)
	if err != nil {
		return st, err
	}
	for _, w := range windows {
		if s.cfg.SweepBudget > 0 && s.now().Sub(start) >= s.cfg.SweepBudget {
			break
		}
		c, ok, err := s.pending.Claim(ctx, w, now)
		if err != nil {
			s.log.WarnContext(ctx, "sweep_window_failed", slog.String("window", w), slog.String("error", err.Error()))
		}
		if !ok {
			continue
		}
		var win sync.WaitGroup
		for _, e := range c.Entries {
			acquired := false
			select {
			case s.sweepSlots <- struct{}{}:
				acquired = true
			case <-ctx.Done():
			}
			if !acquired {
				break
			}
			win.Go(func() {
				defer func() { <-s.sweepSlots }()
				outcome, err := s.sweepOne(ctx, e)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					st.Examined++
					st.Failed++
					s.log.WarnContext(ctx, "sweep_order_failed", slog.String("order_id", e.OrderID), slog.String("error", err.Error()))
					return
				}
				st.count(outcome)
			})
		}
		all.Go(func() {
			win.Wait()
			if err := s.pending.Release(context.WithoutCancel(ctx), c); err != nil {
				s.log.WarnContext(ctx, "sweep_release_failed", slog.String("window", w), slog.String("error", err.Error()))
			}
		})
		if ctx.Err() != nil {
			break
		}
	}
	all.Wait()
	return st, ctx.Err()
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
		return "cleaned", s.pending.Remove(ctx, e)
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
			return s.watchCharge(ctx, e, o)
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
	return "cleaned", s.pending.Remove(ctx, e)
}

// watchCharge follows a cancelled order whose charge may still land (cancelled by its group's
// settlement while the charge was in flight, and the Pay request may have died since). Once
// PaymentGrace has passed, the payment app's record is final: a succeeded charge is refunded
// and the order ends refunded; otherwise the marker goes and the order leaves the pending set.
func (s *Service) watchCharge(ctx context.Context, e PendingEntry, o Order) (string, error) {
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
	return "cleaned", s.pending.Remove(ctx, e)
}
