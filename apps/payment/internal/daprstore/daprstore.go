// Package daprstore keeps charges and refunds in the Dapr state store, one key per record:
// "charge:<order_id>" and "refund:<order_id>" (the sidecar prefixes them with the app id, so
// Redis holds "payment||charge:<order_id>").
//
// A charge record changes only through daprstate.Mutate (read, change, write with the ETag
// read, re-read on conflict): of two concurrent writers over the same version exactly one
// succeeds and the other re-decides against the winner's record. Refunds are written once
// with daprstate.Store.Create (first-write): of two concurrent creates exactly one succeeds;
// the other gets daprstate.ErrExists, re-reads the key and reports the winner's record.
// Records are never deleted.
package daprstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Repository implements payment.Repository.
type Repository struct{ store *daprstate.Store }

var _ payment.Repository = (*Repository)(nil)

// New returns a repository over store.
func New(store *daprstate.Store) *Repository { return &Repository{store: store} }

// ChargeKey is the state key of an order's charge.
func ChargeKey(orderID string) string { return "charge:" + orderID }

// RefundKey is the state key of an order's refund.
func RefundKey(orderID string) string { return "refund:" + orderID }

// Charge implements payment.Repository.
func (r *Repository) Charge(ctx context.Context, orderID string) (payment.Charge, error) {
	var c payment.Charge
	if err := get(ctx, r.store, ChargeKey(orderID), &c, payment.ErrChargeNotFound); err != nil {
		return payment.Charge{}, err
	}
	return c, nil
}

// chargeAttempts bounds the CAS retries of one charge update. Few writes ever race on one
// order's record (a decline, then one success that ends every race), so running out means
// the store misbehaves.
const chargeAttempts = 10

// UpdateCharge implements payment.Repository.
func (r *Repository) UpdateCharge(ctx context.Context, orderID string, fn func(c *payment.Charge, found bool) error) (payment.Charge, error) {
	return daprstate.Mutate(ctx, r.store, ChargeKey(orderID), chargeAttempts, func(c *payment.Charge, found bool) error {
		read := *c
		err := fn(c, found)
		if errors.Is(err, payment.ErrNoChange) {
			*c = read // Mutate answers c: the stored charge, whatever fn did to it
			return daprstate.ErrNoChange
		}
		return err
	})
}

// Refund implements payment.Repository.
func (r *Repository) Refund(ctx context.Context, orderID string) (payment.Refund, error) {
	var rf payment.Refund
	if err := get(ctx, r.store, RefundKey(orderID), &rf, payment.ErrRefundNotFound); err != nil {
		return payment.Refund{}, err
	}
	return rf, nil
}

// CreateRefund implements payment.Repository.
func (r *Repository) CreateRefund(ctx context.Context, rf payment.Refund) (payment.Refund, bool, error) {
	return create(ctx, r.store, RefundKey(rf.OrderID), rf, payment.ErrRefundNotFound)
}

func get(ctx context.Context, s *daprstate.Store, key string, v any, notFound error) error {
	_, err := s.Get(ctx, key, v)
	if errors.Is(err, daprstate.ErrNotFound) {
		return notFound
	}
	return err
}

// create stores rec at key unless the key exists; then it returns the stored record.
func create[T any](ctx context.Context, s *daprstate.Store, key string, rec T, notFound error) (T, bool, error) {
	var zero T
	err := s.Create(ctx, key, rec)
	if err == nil {
		return rec, true, nil
	}
	if !errors.Is(err, daprstate.ErrExists) {
		return zero, false, err
	}
	var existing T
	err = get(ctx, s, key, &existing, notFound)
	switch {
	case errors.Is(err, notFound):
		// Records are never deleted, so an existing key that now reads as missing means the
		// store is not what this app expects: fail (a 500, not a 404) rather than write again.
		return zero, false, fmt.Errorf("re-read %s after losing the create: the key vanished", key)
	case err != nil:
		return zero, false, fmt.Errorf("re-read %s after losing the create: %w", key, err)
	}
	return existing, false, nil
}
