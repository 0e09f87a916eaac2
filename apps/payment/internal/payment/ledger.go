package payment

import (
	"context"
	"errors"
	"fmt"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Ledger is everything the provider recorded for one order: its charges and its refunds. It
// is what the order app's reconciler compares with the order's status (succeeded charges
// against paid, confirmed or refunded orders; at most one refund per order).
//
// Lists, not single records, so the answer keeps its shape if an order ever has several
// charge attempts or refunds on record; today there is at most one of each (see the package
// comment). An order without records has empty lists: the reconciler asks about every order
// it checks, and a 404 per unpaid order would count against the payment breaker in Dapr.
type Ledger struct {
	OrderID string   `json:"order_id"`
	Charges []Charge `json:"charges"`
	Refunds []Refund `json:"refunds"`
}

// Ledger returns the charges and refunds recorded for an order. It reads only: no fault
// injection, no locks.
func (s *Service) Ledger(ctx context.Context, orderID string) (Ledger, error) {
	if fe, ok := checkOrderID(orderID); !ok {
		return Ledger{}, problem.Invalid(fe)
	}
	l := Ledger{OrderID: orderID, Charges: []Charge{}, Refunds: []Refund{}}
	c, err := s.repo.Charge(ctx, orderID)
	switch {
	case err == nil:
		l.Charges = append(l.Charges, c)
	case !errors.Is(err, ErrChargeNotFound):
		return Ledger{}, fmt.Errorf("ledger of order %s: %w", orderID, err)
	}
	r, err := s.repo.Refund(ctx, orderID)
	switch {
	case err == nil:
		l.Refunds = append(l.Refunds, r)
	case !errors.Is(err, ErrRefundNotFound):
		return Ledger{}, fmt.Errorf("ledger of order %s: %w", orderID, err)
	}
	return l, nil
}
