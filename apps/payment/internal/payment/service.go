package payment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Service implements the payment use cases.
type Service struct {
	repo   Repository
	faults Faults
	locks  *keyLock

	charges  metric.Int64Counter
	refunds  metric.Int64Counter
	injected metric.Int64Counter

	now   func() time.Time
	newID func() string
	roll  func() float64 // uniform in [0, 1): below FailureRate means fail
	sleep func(ctx context.Context, d time.Duration) error
}

// NewService returns a service over repo that injects faults and counts its work on meter.
func NewService(repo Repository, faults Faults, meter metric.Meter) (*Service, error) {
	if err := faults.Validate(); err != nil {
		return nil, err
	}
	charges, err := meter.Int64Counter("payment_charges_total",
		metric.WithDescription("Charge answers by status; replayed=true when an earlier charge of the order was returned"))
	if err != nil {
		return nil, fmt.Errorf("charges counter: %w", err)
	}
	refunds, err := meter.Int64Counter("payment_refunds_total",
		metric.WithDescription("Refund answers; replayed=true when an earlier refund of the order was returned"))
	if err != nil {
		return nil, fmt.Errorf("refunds counter: %w", err)
	}
	injected, err := meter.Int64Counter("payment_injected_failures_total",
		metric.WithDescription("Calls answered unavailable by fault injection (PAYMENT_FAILURE_RATE)"))
	if err != nil {
		return nil, fmt.Errorf("injected failures counter: %w", err)
	}
	return &Service{
		repo: repo, faults: faults, locks: newKeyLock(),
		charges: charges, refunds: refunds, injected: injected,
		now: time.Now, newID: rand.Text, roll: mrand.Float64, sleep: sleepCtx,
	}, nil
}

// Charge makes an attempt to charge an order. A succeeded charge is final: it is stored once
// and returned for every later attempt, whatever token or amount that attempt carries, so a
// caller retrying after a timeout learns what happened instead of causing a second charge. A
// declined attempt is not final: it is recorded (so a look-up tells "declined" from "never
// tried") and a later attempt with another token may still succeed.
func (s *Service) Charge(ctx context.Context, in ChargeRequest) (Charge, error) {
	if err := s.inject(ctx, "charge"); err != nil {
		return Charge{}, err
	}
	if err := in.Validate(); err != nil {
		return Charge{}, err
	}
	// One call per order at a time in this replica, so a replay or a concurrent call costs
	// one read and never a failing write (see keyLock).
	unlock, err := s.locks.lock(ctx, "charge:"+in.OrderID)
	if err != nil {
		return Charge{}, fmt.Errorf("charge order %s: %w", in.OrderID, err)
	}
	defer unlock()
	status := StatusSucceeded
	if in.PaymentToken == TokenDeclined {
		status = StatusDeclined
	}
	var replayed bool
	// fn runs again after a conflict: a call in another replica stored its attempt since the
	// read, and this attempt is decided against that one.
	stored, err := s.repo.UpdateCharge(ctx, in.OrderID, func(c *Charge, found bool) error {
		// A decline over a decline changes nothing the caller or a look-up could tell apart,
		// so it writes nothing and answers the recorded one.
		replayed = found && (c.Status == StatusSucceeded || status == StatusDeclined)
		if replayed {
			return ErrNoChange
		}
		*c = Charge{
			ChargeID:    "ch_" + s.newID(),
			OrderID:     in.OrderID,
			Status:      status,
			AmountCents: in.AmountCents,
			CreatedAt:   s.now().UTC().Truncate(time.Millisecond),
		}
		return nil
	})
	if err != nil {
		return Charge{}, fmt.Errorf("charge order %s: %w", in.OrderID, err)
	}
	s.countCharge(ctx, stored.Status, replayed)
	return stored, nil
}

// GetCharge returns the charge of an order.
func (s *Service) GetCharge(ctx context.Context, orderID string) (Charge, error) {
	if _, ok := checkOrderID(orderID); !ok {
		return Charge{}, fmt.Errorf("order %q: %w", orderID, ErrChargeNotFound)
	}
	c, err := s.repo.Charge(ctx, orderID)
	if err != nil {
		return Charge{}, fmt.Errorf("order %s: %w", orderID, err)
	}
	return c, nil
}

// Refund refunds an order's succeeded charge in full, once: there is at most one refund per
// order, ever, and every later call returns it.
func (s *Service) Refund(ctx context.Context, in RefundRequest) (Refund, error) {
	if err := s.inject(ctx, "refund"); err != nil {
		return Refund{}, err
	}
	if err := in.Validate(); err != nil {
		return Refund{}, err
	}
	unlock, err := s.locks.lock(ctx, "refund:"+in.OrderID)
	if err != nil {
		return Refund{}, fmt.Errorf("refund order %s: %w", in.OrderID, err)
	}
	defer unlock()
	existing, err := s.repo.Refund(ctx, in.OrderID)
	switch {
	case err == nil:
		s.countRefund(ctx, true)
		return existing, nil
	case !errors.Is(err, ErrRefundNotFound):
		return Refund{}, fmt.Errorf("refund order %s: %w", in.OrderID, err)
	}
	// A succeeded charge is final (Charge never replaces it), so a succeeded charge read here
	// is still the order's charge when the refund is stored.
	charge, err := s.repo.Charge(ctx, in.OrderID)
	switch {
	case errors.Is(err, ErrChargeNotFound):
		return Refund{}, fmt.Errorf("refund order %s: %w", in.OrderID, ErrNotRefundable)
	case err != nil:
		return Refund{}, fmt.Errorf("refund order %s: %w", in.OrderID, err)
	case charge.Status != StatusSucceeded:
		return Refund{}, fmt.Errorf("refund order %s (charge %s): %w", in.OrderID, charge.Status, ErrNotRefundable)
	}
	r := Refund{
		RefundID:    "re_" + s.newID(),
		OrderID:     in.OrderID,
		Status:      StatusRefunded,
		AmountCents: charge.AmountCents,
		CreatedAt:   s.now().UTC().Truncate(time.Millisecond),
	}
	stored, created, err := s.repo.CreateRefund(ctx, r)
	if err != nil {
		return Refund{}, fmt.Errorf("refund order %s: %w", in.OrderID, err)
	}
	s.countRefund(ctx, !created)
	return stored, nil
}

// GetRefund returns the refund of an order.
func (s *Service) GetRefund(ctx context.Context, orderID string) (Refund, error) {
	if _, ok := checkOrderID(orderID); !ok {
		return Refund{}, fmt.Errorf("order %q: %w", orderID, ErrRefundNotFound)
	}
	r, err := s.repo.Refund(ctx, orderID)
	if err != nil {
		return Refund{}, fmt.Errorf("order %s: %w", orderID, err)
	}
	return r, nil
}

// inject applies the configured latency, then fails the call with the configured probability.
// It runs before anything else, so an injected failure has read and written nothing.
func (s *Service) inject(ctx context.Context, op string) error {
	if s.faults.Latency > 0 {
		if err := s.sleep(ctx, s.faults.Latency); err != nil {
			return fmt.Errorf("%s: injected latency: %w", op, err)
		}
	}
	if s.faults.FailureRate > 0 && s.roll() < s.faults.FailureRate {
		s.injected.Add(ctx, 1, metric.WithAttributes(attribute.String("operation", op)))
		return fmt.Errorf("%s: injected failure: %w", op, ErrUnavailable)
	}
	return nil
}

func (s *Service) countCharge(ctx context.Context, status string, replayed bool) {
	s.charges.Add(ctx, 1, metric.WithAttributes(attribute.String("status", status), attribute.Bool("replayed", replayed)))
}

func (s *Service) countRefund(ctx context.Context, replayed bool) {
	s.refunds.Add(ctx, 1, metric.WithAttributes(attribute.Bool("replayed", replayed)))
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
