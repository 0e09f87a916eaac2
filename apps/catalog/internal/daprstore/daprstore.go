// Package daprstore keeps products and deals in the Dapr state store. Deals never change after
// creation, so they are cached in memory once read; the deal list is an index document of ids
// updated with ETag CAS.
package daprstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

const (
	indexKey     = "deals:index"
	casAttempts  = 20
	productKeyPf = "product:"
	dealKeyPf    = "deal:"
)

// Store implements catalog.Store.
type Store struct {
	state *daprstate.Store
	deals sync.Map // id -> catalog.Deal (immutable)
}

// New returns a store over state.
func New(state *daprstate.Store) *Store { return &Store{state: state} }

// CreateProduct implements catalog.Store.
func (s *Store) CreateProduct(ctx context.Context, p catalog.Product) error {
	return s.state.Create(ctx, productKeyPf+p.ID, p)
}

// Product implements catalog.Store.
func (s *Store) Product(ctx context.Context, id string) (catalog.Product, error) {
	var p catalog.Product
	_, err := s.state.Get(ctx, productKeyPf+id, &p)
	if errors.Is(err, daprstate.ErrNotFound) {
		return catalog.Product{}, fmt.Errorf("product %s: %w", id, catalog.ErrProductNotFound)
	}
	return p, err
}

type index struct {
	IDs []string `json:"ids"`
}

// CreateDeal implements catalog.Store: the deal document first, then its id in the index.
func (s *Store) CreateDeal(ctx context.Context, d catalog.Deal) error {
	if err := s.state.Create(ctx, dealKeyPf+d.ID, d); err != nil {
		return err
	}
	_, err := daprstate.Mutate(ctx, s.state, indexKey, casAttempts, func(ix *index, _ bool) error {
		if slices.Contains(ix.IDs, d.ID) {
			return daprstate.ErrNoChange
		}
		ix.IDs = append(ix.IDs, d.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("index deal %s: %w", d.ID, err)
	}
	s.deals.Store(d.ID, d)
	return nil
}

// Deal implements catalog.Store.
func (s *Store) Deal(ctx context.Context, id string) (catalog.Deal, error) {
	if d, ok := s.deals.Load(id); ok {
		return d.(catalog.Deal), nil
	}
	var d catalog.Deal
	_, err := s.state.Get(ctx, dealKeyPf+id, &d)
	if errors.Is(err, daprstate.ErrNotFound) {
		return catalog.Deal{}, fmt.Errorf("deal %s: %w", id, catalog.ErrDealNotFound)
	}
	if err != nil {
		return catalog.Deal{}, err
	}
	s.deals.Store(id, d)
	return d, nil
}

// Deals implements catalog.Store.
func (s *Store) Deals(ctx context.Context) ([]catalog.Deal, error) {
	var ix index
	if _, err := s.state.Get(ctx, indexKey, &ix); err != nil && !errors.Is(err, daprstate.ErrNotFound) {
		return nil, err
	}
	out := make([]catalog.Deal, 0, len(ix.IDs))
	for _, id := range ix.IDs {
		d, err := s.Deal(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
