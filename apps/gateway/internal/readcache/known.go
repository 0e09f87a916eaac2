package readcache

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/groupbuy/groupbuy/pkg/events"
)

// Known is the set of product and deal ids that exist, as a Bloom filter: "absent" is
// certain, "present" may be a false positive (then the id is looked up and its negative
// answer cached).
//
// When the filter may be trusted with an id: a create lands in the catalog's store and only
// then reaches this replica, through its change event (or the rebuild after). So the filter
// vouches for the absence of an id only once the id is older than the grace (events arrive
// within it), only after the first rebuild, and, for products, only from the time the
// catalog's product index is complete (products created by an older catalog are not in it).
type Known struct {
	now   func() time.Time
	grace time.Duration

	mu     sync.RWMutex
	filter *bloom.BloomFilter // nil until the first rebuild
	// productsFrom is the catalog's products_complete_from: product ids older are not listed.
	productsFrom time.Time
	// during a rebuild, ids added meanwhile, to be added to the new filter too
	pending []string
	rebuild bool

	size metric.Int64Gauge
}

// falsePositive is the Bloom filter's target false-positive rate.
const falsePositive = 0.001

// minCapacity is the least number of ids a filter is sized for.
const minCapacity = 100_000

func newKnown(now func() time.Time, grace time.Duration) *Known {
	return &Known{now: now, grace: grace}
}

func (k *Known) instrument(m metric.Meter) error {
	var err error
	k.size, err = m.Int64Gauge("gateway_read_cache_known_ids",
		metric.WithDescription("Product and deal ids in the gateway's Bloom filter after its last rebuild"))
	return err
}

func member(kind, id string) []byte { return []byte(kind + ":" + id) }

// Add records that id exists.
func (k *Known) Add(kind, id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.filter != nil {
		k.filter.Add(member(kind, id))
	}
	if k.rebuild {
		k.pending = append(k.pending, kind+":"+id)
	}
}

// young reports whether an id created at created may still be on its way here.
func (k *Known) young(created time.Time) bool { return k.now().Sub(created) < k.grace }

// Absent reports whether id (created at created, its Snowflake time) certainly does not exist.
func (k *Known) Absent(kind, id string, created time.Time) bool {
	if k.young(created) {
		return false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.filter == nil || (kind == events.KindProduct && created.Before(k.productsFrom)) {
		return false
	}
	return !k.filter.Test(member(kind, id))
}

// Listing is the catalog's GET /internal/ids answer.
type Listing struct {
	Products             []string  `json:"products"`
	Deals                []string  `json:"deals"`
	ProductsCompleteFrom time.Time `json:"products_complete_from"`
}

// Rebuild replaces the filter with one built from list, which fetches the catalog's listing.
// Ids added while list runs go into the new filter as well.
func (k *Known) Rebuild(ctx context.Context, list func(context.Context) (Listing, error)) (int, error) {
	k.mu.Lock()
	k.rebuild, k.pending = true, nil
	k.mu.Unlock()
	l, err := list(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rebuild = false
	if err != nil {
		k.pending = nil
		return 0, err
	}
	n := len(l.Products) + len(l.Deals) + len(k.pending)
	f := bloom.NewWithEstimates(uint(max(2*n, minCapacity)), falsePositive)
	for _, id := range l.Products {
		f.Add(member(events.KindProduct, id))
	}
	for _, id := range l.Deals {
		f.Add(member(events.KindDeal, id))
	}
	for _, m := range k.pending {
		f.Add([]byte(m))
	}
	k.filter, k.productsFrom, k.pending = f, l.ProductsCompleteFrom, nil
	if k.size != nil {
		k.size.Record(ctx, int64(n))
	}
	return n, nil
}

// list fetches the catalog's id listing.
func (c *Cache) list(ctx context.Context) (Listing, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LoadTimeout)
	defer cancel()
	resp, err := c.inv.Raw(ctx, c.app, http.MethodGet, "internal/ids", nil, nil)
	if err != nil {
		return Listing{}, err
	}
	var l Listing
	if err := json.Unmarshal(resp.Body, &l); err != nil {
		return Listing{}, fmt.Errorf("catalog id listing: %w", err)
	}
	return l, nil
}

// Run rebuilds the Bloom filter from the catalog at once (retrying every few seconds until it
// succeeds) and then every Rebuild, until ctx ends. Until the first rebuild, every
// well-formed id is looked up.
func (c *Cache) Run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := c.known.Rebuild(ctx, c.list)
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		c.rebuilds.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Log.Warn("read_cache_rebuild_failed", "error", err.Error())
			}
			wait = min(2*time.Second, c.cfg.Rebuild)
			continue
		}
		c.cfg.Log.Debug("read_cache_rebuilt", "ids", n)
		wait = c.cfg.Rebuild
	}
}
