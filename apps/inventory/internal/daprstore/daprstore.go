// Package daprstore keeps stock records in the Dapr state store, one key per deal.
package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Repository implements stock.Repository.
type Repository struct{ store *daprstate.Store }

// New returns a repository over store.
func New(store *daprstate.Store) *Repository { return &Repository{store: store} }

// Key is the state key of a deal's stock record.
func Key(dealID string) string { return "stock:" + dealID }

// Get implements stock.Repository.
func (r *Repository) Get(ctx context.Context, dealID string) (stock.Record, error) {
	var rec stock.Record
	_, err := r.store.Get(ctx, Key(dealID), &rec)
	if errors.Is(err, daprstate.ErrNotFound) {
		return stock.Record{}, stock.ErrNotFound
	}
	return rec, err
}

// Create implements stock.Repository.
func (r *Repository) Create(ctx context.Context, rec stock.Record) (stock.Record, bool, error) {
	err := r.store.Create(ctx, Key(rec.DealID), rec)
	if errors.Is(err, daprstate.ErrExists) {
		existing, gerr := r.Get(ctx, rec.DealID)
		return existing, false, gerr
	}
	if err != nil {
		return stock.Record{}, false, err
	}
	return rec, true, nil
}
