// Package readcache answers the public product and deal reads (GET /api/v1/products/{id},
// GET /api/v1/deals/{id}) from the gateway's memory, so a shopper refreshing a deal page costs
// no sidecar hop, no state read and no inventory read.
//
// Where: the gateway, by measurement. Any read that crosses a sidecar hop is bounded by the
// bare hop's rate (the bench's floor, about 0.2× the seed-style server's deal read on the
// bench machine), so a cache behind the gateway's hop could not reach the read target.
//
// What is cached, as the catalog answered it (body bytes, served verbatim):
//   - products: immutable in the API; kept ProductTTL, refreshed in the background after half
//     of it, and dropped at once by a product.changed event.
//   - deals with their stock levels: the deal is immutable, its levels are not, so an entry
//     lives StockTTL (1 s by default) and is refreshed in the background after half of it; the
//     body says when the levels were read (stock.as_of). A deal.changed event drops it.
//   - not found: a negative entry for NegativeTTL (FreshNegativeTTL for an id younger than
//     IDGrace, which a create on another replica may make real any moment).
//
// Loads are single-flight per key (otter's loader): however many requests miss one key at
// once, the catalog is asked once.
//
// Penetration guard, before any lookup: an id that is not a canonical decimal Snowflake id,
// or one whose time is in the future, is not found (ids.Parse). A well-formed id the Bloom
// filter of existing ids (ids.go) vouches is absent is not found either. The filter is
// rebuilt from the catalog's id listing at start and every Rebuild, and fed by the change
// events and by every id this replica loads or creates.
package readcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// Kind is what an id names: events.KindProduct or events.KindDeal.
type Kind = string

// Invoker reaches the catalog (sidecar.Invoker).
type Invoker interface {
	Raw(ctx context.Context, app, method, path string, hdr http.Header, body []byte) (*sidecar.Response, error)
}

// Config tunes the cache; zero values take the defaults noted.
type Config struct {
	// MaxEntries bounds the entries (documents and negative answers): default 100,000.
	MaxEntries int
	// StockTTL is the longest a deal's stock levels are served after they were read: 1 s.
	StockTTL time.Duration
	// ProductTTL is how long a product is served before it is read again: 1 min.
	ProductTTL time.Duration
	// NegativeTTL is how long "not found" is remembered for an id older than IDGrace: 30 s.
	NegativeTTL time.Duration
	// FreshNegativeTTL is the same for a younger id: 500 ms.
	FreshNegativeTTL time.Duration
	// IDGrace is how long a create may take to reach every replica (its change event): ids
	// younger than that are looked up even when the Bloom filter has not seen them: 10 s.
	IDGrace time.Duration
	// Rebuild is how often the Bloom filter is rebuilt from the catalog's id listing (a
	// safety net: the change events keep it current): 5 min.
	Rebuild time.Duration
	// LoadTimeout bounds one load from the catalog: 5 s.
	LoadTimeout time.Duration
	Now         func() time.Time
	Meter       metric.Meter
	Log         *slog.Logger
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100_000
	}
	def(&c.StockTTL, time.Second)
	def(&c.ProductTTL, time.Minute)
	def(&c.NegativeTTL, 30*time.Second)
	def(&c.FreshNegativeTTL, 500*time.Millisecond)
	def(&c.IDGrace, 10*time.Second)
	def(&c.Rebuild, 5*time.Minute)
	def(&c.LoadTimeout, 5*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Meter == nil {
		c.Meter = noop.NewMeterProvider().Meter("readcache")
	}
}

// Doc is one cached answer.
type Doc struct {
	Body    []byte // the catalog's JSON body (nil when Missing)
	ETag    string // validator of Body, quoted ("W/" prefixed when weak)
	MaxAge  time.Duration
	Missing bool // the catalog answered not found
	ttl     time.Duration
}

type key struct {
	kind Kind
	id   string
}

// Cache is the gateway's read cache. Its methods are safe for concurrent use.
type Cache struct {
	cfg    Config
	inv    Invoker
	app    string
	docs   *otter.Cache[key, *Doc]
	known  *Known
	loader otter.Loader[key, *Doc]

	refusals metric.Int64Counter
	loads    metric.Int64Counter
	rebuilds metric.Int64Counter
}

// New returns a cache that loads from the catalog app (app id) through inv.
func New(inv Invoker, app string, cfg Config) (*Cache, error) {
	cfg.defaults()
	c := &Cache{cfg: cfg, inv: inv, app: app, known: newKnown(cfg.Now, cfg.IDGrace)}
	c.loader = otter.LoaderFunc[key, *Doc](c.load)
	var err error
	c.docs, err = otter.New(&otter.Options[key, *Doc]{
		MaximumSize:   cfg.MaxEntries,
		StatsRecorder: stats.NewCounter(),
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[key, *Doc]) time.Duration {
			return e.Value.ttl
		}),
		// Hot entries are reloaded in the background after half their life, so a popular deal
		// never makes a request wait for the catalog.
		RefreshCalculator: otter.RefreshWritingFunc(func(e otter.Entry[key, *Doc]) time.Duration {
			return e.Value.ttl / 2
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	if err := c.instrument(cfg.Meter); err != nil {
		return nil, fmt.Errorf("read cache metrics: %w", err)
	}
	return c, nil
}

// instrument registers the cache's metrics: otter's own statistics (hits, misses, evictions,
// failed loads), what was refused before any lookup, the catalog reads, the Bloom filter.
func (c *Cache) instrument(m metric.Meter) error {
	var err error
	c.refusals, err = m.Int64Counter("gateway_read_cache_refusals",
		metric.WithDescription("Product and deal reads answered not found (reason: malformed and bloom_absent without any lookup, negative from a negative entry or the load that made it)"))
	if err != nil {
		return err
	}
	c.loads, err = m.Int64Counter("gateway_read_cache_loads",
		metric.WithDescription("Catalog reads by the read cache (outcome: found, not_found, error)"))
	if err != nil {
		return err
	}
	c.rebuilds, err = m.Int64Counter("gateway_read_cache_rebuilds",
		metric.WithDescription("Bloom filter rebuilds from the catalog's id listing (outcome: ok, error); each listing reads the catalog's two index documents"))
	if err != nil {
		return err
	}
	hits, err1 := m.Int64ObservableCounter("gateway_read_cache_hits", metric.WithDescription("Reads answered from the read cache, negative entries included"))
	misses, err2 := m.Int64ObservableCounter("gateway_read_cache_misses", metric.WithDescription("Reads that had to wait for a load"))
	evictions, err3 := m.Int64ObservableCounter("gateway_read_cache_evictions", metric.WithDescription("Entries evicted by size or expiry"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := c.docs.Stats()
		o.ObserveInt64(hits, int64(st.Hits))
		o.ObserveInt64(misses, int64(st.Misses))
		o.ObserveInt64(evictions, int64(st.Evictions))
		return nil
	}, hits, misses, evictions)
	if err != nil {
		return err
	}
	return c.known.instrument(m)
}

// Known is the cache's set of existing ids (Bloom filter).
func (c *Cache) Known() *Known { return c.known }

// Get returns the answer to a read of the product or deal id: a Doc (Missing when it does
// not exist) or the error of a failed load (nothing is cached then).
func (c *Cache) Get(ctx context.Context, kind Kind, id string) (*Doc, error) {
	_, created, ok := ids.Parse(id)
	if !ok || created.After(c.cfg.Now().Add(c.cfg.IDGrace)) {
		c.refuse(ctx, kind, "malformed")
		return missing, nil
	}
	if c.known.Absent(kind, id, created) {
		c.refuse(ctx, kind, "bloom_absent")
		return missing, nil
	}
	d, err := c.docs.Get(ctx, key{kind, id}, c.loader)
	if err == nil && d.Missing {
		c.refuse(ctx, kind, "negative")
	}
	return d, err
}

// missing is the answer for ids refused before any lookup.
var missing = &Doc{Missing: true}

func (c *Cache) refuse(ctx context.Context, kind, reason string) {
	c.refusals.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("reason", reason)))
}

// load reads one product or deal from the catalog. It runs detached from the request that
// started it (others may be waiting on it) and bounded by LoadTimeout.
func (c *Cache) load(ctx context.Context, k key) (*Doc, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LoadTimeout)
	defer cancel()
	path := "products/"
	if k.kind == events.KindDeal {
		path = "deals/"
	}
	resp, err := c.inv.Raw(ctx, c.app, http.MethodGet, path+url.PathEscape(k.id), nil, nil)
	if problem.CodeOf(err) == problem.CodeNotFound {
		c.loads.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", k.kind), attribute.String("outcome", "not_found")))
		ttl := c.cfg.NegativeTTL
		if _, created, _ := ids.Parse(k.id); c.known.young(created) {
			ttl = c.cfg.FreshNegativeTTL
		}
		return &Doc{Missing: true, ttl: ttl}, nil
	}
	if err != nil {
		c.loads.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", k.kind), attribute.String("outcome", "error")))
		return nil, err
	}
	c.loads.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", k.kind), attribute.String("outcome", "found")))
	c.known.Add(k.kind, k.id)
	d := &Doc{Body: resp.Body, ttl: c.cfg.ProductTTL, MaxAge: c.cfg.ProductTTL}
	if k.kind == events.KindDeal {
		d.ttl, d.MaxAge = c.cfg.StockTTL, c.cfg.StockTTL
		d.ETag, err = dealETag(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("deal %s from the catalog: %w", k.id, err)
		}
	} else {
		d.ETag = strongETag(resp.Body)
	}
	return d, nil
}

// Changed applies a catalog change (its event, or a create answered through this replica):
// the id exists, and whatever this replica holds for it is dropped.
func (c *Cache) Changed(_ context.Context, e events.CatalogChangedV1) error {
	c.known.Add(e.Kind, e.ID)
	c.docs.Invalidate(key{e.Kind, e.ID})
	return nil
}

// strongETag is the validator of a body served byte for byte.
func strongETag(body []byte) string {
	h := fnv.New64a()
	_, _ = h.Write(body)
	return `"` + strconv.FormatUint(h.Sum64(), 36) + `"`
}

// errBadDeal marks a deal body the cache cannot take apart.
var errBadDeal = errors.New("not a deal document")

// dealETag is the validator of a deal body: weak, and blind to stock.as_of, so a client
// revalidating gets 304 while the deal and its levels are unchanged, however often they were
// read again.
func dealETag(body []byte) (string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("%w: %v", errBadDeal, err)
	}
	if raw, ok := doc["stock"]; ok {
		var stock map[string]json.RawMessage
		if err := json.Unmarshal(raw, &stock); err != nil {
			return "", fmt.Errorf("%w: stock: %v", errBadDeal, err)
		}
		delete(stock, "as_of")
		b, err := json.Marshal(stock) // map keys sorted: canonical
		if err != nil {
			return "", err
		}
		doc["stock"] = b
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	return "W/" + strongETag(b), nil
}
