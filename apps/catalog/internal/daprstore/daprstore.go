// Package daprstore keeps products and deals in the Dapr state store. Deals never change after
// creation, so they are cached in memory once read; the deal list and the product list are
// index documents of ids updated with ETag CAS.
//
// The index documents hold ids only (about 20 bytes each) and are rewritten whole by every
// create: fine for a catalog of tens of thousands of products and deals (a few hundred KB),
// not for millions; past that they would need pages like the order app's user index.
package daprstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

const (
	indexKey        = "deals:index"
	productIndexKey = "products:index"
	casAttempts     = 20
	productKeyPf    = "product:"
	dealKeyPf       = "deal:"
)

// Store implements catalog.Store.
type Store struct {
	state *daprstate.Store
	deals sync.Map // id -> catalog.Deal (immutable)
	now   func() time.Time
}

// New returns a store over state.
func New(state *daprstate.Store) *Store { return &Store{state: state, now: time.Now} }

// productIndex is the products:index document: the id of every product created since
// CompleteFrom (all of them when CompleteFrom is zero).
//
// Installs from before this index have products that are not in it, and the Dapr state API
// cannot list keys to find them. So when the document is first created it records where it
// starts: if deals:index already exists and is non-empty, this is an upgraded install whose
// older products are missing, and CompleteFrom is the time of creation (UTC); otherwise it is
// a fresh install whose index holds every product, and CompleteFrom stays zero. The gateway
// trusts "not in the list" only for product ids whose Snowflake time (pkg/ids.Time) is at or
// after CompleteFrom; an older id it looks up in the catalog. A product is indexed after its
// document is written, so an id in the list always exists. (The heuristic cannot tell an
// upgraded install that has products but never had a deal from a fresh one; and products
// created by replicas still running the old version during a rolling upgrade, after
// CompleteFrom, are not indexed: create products once the rollout is done.)
type productIndex struct {
	IDs          []string  `json:"ids"`
	CompleteFrom time.Time `json:"complete_from"`
}

// CreateProduct implements catalog.Store: the product document first, then its id in the
// products index.
func (s *Store) CreateProduct(ctx context.Context, p catalog.Product) error {
	if err := s.state.Create(ctx, productKeyPf+p.ID, p); err != nil {
		return err
	}
	_, err := daprstate.Mutate(ctx, s.state, productIndexKey, casAttempts, func(ix *productIndex, found bool) error {
		if slices.Contains(ix.IDs, p.ID) {
			return daprstate.ErrNoChange
		}
		if !found {
			from, err := s.productsCompleteFrom(ctx)
			if err != nil {
				return err
			}
			ix.CompleteFrom = from
		}
		ix.IDs = append(ix.IDs, p.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("index product %s: %w", p.ID, err)
	}
	return nil
}

// productsCompleteFrom is the CompleteFrom of a products index created now (see productIndex).
func (s *Store) productsCompleteFrom(ctx context.Context) (time.Time, error) {
	var deals index
	_, err := s.state.Get(ctx, indexKey, &deals)
	switch {
	case errors.Is(err, daprstate.ErrNotFound):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, err
	case len(deals.IDs) == 0:
		return time.Time{}, nil
	}
	return s.now().UTC().Truncate(time.Millisecond), nil
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

// KnownIDs implements catalog.Store. The two index documents are read one after the other,
// not as one snapshot: an id created in between may be in neither list, which the gateway
// learns from the change event. Before the first product of this version creates the products
// index, the answer is what that creation would record (an upgraded install trusts no
// product yet).
func (s *Store) KnownIDs(ctx context.Context) (catalog.KnownIDs, error) {
	var deals index
	if _, err := s.state.Get(ctx, indexKey, &deals); err != nil && !errors.Is(err, daprstate.ErrNotFound) {
		return catalog.KnownIDs{}, err
	}
	var products productIndex
	_, err := s.state.Get(ctx, productIndexKey, &products)
	switch {
	case errors.Is(err, daprstate.ErrNotFound):
		if len(deals.IDs) > 0 {
			products.CompleteFrom = s.now().UTC().Truncate(time.Millisecond)
		}
	case err != nil:
		return catalog.KnownIDs{}, err
	}
	return catalog.KnownIDs{
		Products:             products.IDs,
		Deals:                deals.IDs,
		ProductsCompleteFrom: products.CompleteFrom.UTC(),
	}, nil
}
