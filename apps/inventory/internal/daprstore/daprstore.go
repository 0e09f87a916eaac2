// Package daprstore keeps stock documents in the Dapr state store: per deal one meta document
// at "stock:<deal>", one document per bucket at "stock:<deal>:<i>" and the pages of reserved
// holds a bucket moved out at "stock:<deal>:<i>:<page>" (deal ids hold no ':'). Every document is
// created with first-write concurrency and afterwards only replaced with the ETag it was read
// with (pkg/daprstate), which is the optimistic concurrency the stock CAS relies on.
package daprstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Repository implements stock.Store.
type Repository struct{ store *daprstate.Store }

var _ stock.Store = (*Repository)(nil)

// New returns a repository over store.
func New(store *daprstate.Store) *Repository { return &Repository{store: store} }

// MetaKey is the state key of a deal's meta document.
func MetaKey(dealID string) string { return "stock:" + dealID }

// BucketKey is the state key of bucket i of a deal.
func BucketKey(dealID string, i int) string { return "stock:" + dealID + ":" + strconv.Itoa(i) }

// Meta implements stock.Store.
func (r *Repository) Meta(ctx context.Context, dealID string) (stock.Meta, error) {
	var m stock.Meta
	_, err := r.store.Get(ctx, MetaKey(dealID), &m)
	if errors.Is(err, daprstate.ErrNotFound) {
		return stock.Meta{}, stock.ErrNotFound
	}
	return m, err
}

// CreateMeta implements stock.Store.
func (r *Repository) CreateMeta(ctx context.Context, m stock.Meta) (stock.Meta, bool, error) {
	err := r.store.Create(ctx, MetaKey(m.DealID), m)
	if errors.Is(err, daprstate.ErrExists) {
		existing, gerr := r.Meta(ctx, m.DealID)
		return existing, false, gerr
	}
	if err != nil {
		return stock.Meta{}, false, err
	}
	return m, true, nil
}

// Bucket implements stock.Store.
func (r *Repository) Bucket(ctx context.Context, dealID string, i int) (stock.Bucket, string, error) {
	var b stock.Bucket
	etag, err := r.store.Get(ctx, BucketKey(dealID, i), &b)
	if errors.Is(err, daprstate.ErrNotFound) {
		return stock.Bucket{}, "", stock.ErrNotFound
	}
	return b, etag, err
}

// CreateBucket implements stock.Store.
func (r *Repository) CreateBucket(ctx context.Context, b stock.Bucket) error {
	return translate(r.store.Create(ctx, BucketKey(b.DealID, b.Bucket), b))
}

// UpdateBucket implements stock.Store.
func (r *Repository) UpdateBucket(ctx context.Context, b stock.Bucket, etag string) error {
	return translate(r.store.Update(ctx, BucketKey(b.DealID, b.Bucket), b, etag))
}

// PageKey is the state key of a page of bucket i of a deal.
func PageKey(dealID string, i int, page string) string { return BucketKey(dealID, i) + ":" + page }

// Page implements stock.Store.
func (r *Repository) Page(ctx context.Context, dealID string, i int, key string) (stock.Page, error) {
	var p stock.Page
	_, err := r.store.Get(ctx, PageKey(dealID, i, key), &p)
	if errors.Is(err, daprstate.ErrNotFound) {
		return stock.Page{}, stock.ErrNotFound
	}
	return p, err
}

// CreatePage implements stock.Store.
func (r *Repository) CreatePage(ctx context.Context, p stock.Page) error {
	return translate(r.store.Create(ctx, PageKey(p.DealID, p.Bucket, p.Key), p))
}

// DeletePage implements stock.Store.
func (r *Repository) DeletePage(ctx context.Context, dealID string, i int, key string) error {
	return r.store.Remove(ctx, PageKey(dealID, i, key))
}

// translate turns a lost race (the key exists, or its ETag moved) into stock.ErrStale.
func translate(err error) error {
	if errors.Is(err, daprstate.ErrExists) || errors.Is(err, daprstate.ErrConflict) {
		return fmt.Errorf("%w: %w", stock.ErrStale, err)
	}
	return err
}
