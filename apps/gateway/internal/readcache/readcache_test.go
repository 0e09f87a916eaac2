package readcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/readcache"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// catalog is a fake catalog app: documents by path, a listing, and a count of every call.
type catalog struct {
	mu      sync.Mutex
	docs    map[string]string // "products/<id>" or "deals/<id>" -> body
	listing readcache.Listing
	calls   map[string]int
	fail    error         // answered to every call while set
	gate    chan struct{} // when set, document reads wait for it
}

func newCatalog() *catalog {
	return &catalog{docs: map[string]string{}, calls: map[string]int{}}
}

func (c *catalog) Raw(ctx context.Context, app, method, path string, _ http.Header, _ []byte) (*sidecar.Response, error) {
	if app != "catalog" || method != http.MethodGet {
		return nil, fmt.Errorf("unexpected %s %s on %s", method, path, app)
	}
	c.mu.Lock()
	c.calls[path]++
	gate, fail := c.gate, c.fail
	c.mu.Unlock()
	if gate != nil && path != "internal/ids" {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if path == "internal/ids" {
		b := fmt.Sprintf(`{"products":%s,"deals":%s,"products_complete_from":%q}`,
			jsonList(c.listing.Products), jsonList(c.listing.Deals), c.listing.ProductsCompleteFrom.Format(time.RFC3339Nano))
		return &sidecar.Response{Status: http.StatusOK, Body: []byte(b)}, nil
	}
	body, ok := c.docs[path]
	if !ok {
		return nil, problem.New(problem.CodeNotFound, "not found")
	}
	return &sidecar.Response{Status: http.StatusOK, Body: []byte(body)}, nil
}

func jsonList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	return "[" + strings.Join(q, ",") + "]"
}

func (c *catalog) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path]
}

func (c *catalog) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for p, k := range c.calls {
		if p != "internal/ids" {
			n += k
		}
	}
	return n
}

func (c *catalog) set(path, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.docs[path] = body
}

// idAt is a well-formed id created at t.
func idAt(t time.Time, seq int) string {
	return strconv.FormatInt(t.Sub(ids.Epoch).Milliseconds()<<22|int64(seq), 10)
}

func newCache(t *testing.T, cat *catalog, cfg readcache.Config) *readcache.Cache {
	t.Helper()
	c, err := readcache.New(cat, "catalog", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c *readcache.Cache, kind, id string) *readcache.Doc {
	t.Helper()
	d, err := c.Get(context.Background(), kind, id)
	if err != nil {
		t.Fatalf("Get(%s %s): %v", kind, id, err)
	}
	return d
}

func rebuild(t *testing.T, c *readcache.Cache, cat *catalog) {
	t.Helper()
	list := func(context.Context) (readcache.Listing, error) {
		cat.mu.Lock()
		defer cat.mu.Unlock()
		return cat.listing, nil
	}
	if _, err := c.Known().Rebuild(context.Background(), list); err != nil {
		t.Fatal(err)
	}
}

// A cold key read by many requests at once is loaded once; later reads are hits.
func TestColdKeyLoadedOnce(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	id := idAt(time.Now().Add(-time.Hour), 1)
	cat.set("products/"+id, `{"id":"`+id+`","name":"kettle"}`)
	cat.gate = make(chan struct{})
	c := newCache(t, cat, readcache.Config{})

	var wg sync.WaitGroup
	var found atomic.Int64
	for range 50 {
		wg.Go(func() {
			if d, err := c.Get(context.Background(), events.KindProduct, id); err == nil && !d.Missing && strings.Contains(string(d.Body), "kettle") {
				found.Add(1)
			}
		})
	}
	for cat.count("products/"+id) == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others pile up on the same load
	close(cat.gate)
	wg.Wait()
	if found.Load() != 50 {
		t.Errorf("%d of 50 requests got the product", found.Load())
	}
	for range 100 {
		get(t, c, events.KindProduct, id)
	}
	if n := cat.count("products/" + id); n != 1 {
		t.Errorf("catalog read %d times, want once", n)
	}
}

// Strings that are not ids, and ids from the future, never reach the catalog.
func TestMalformedIDsRefusedWithoutLookup(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	c := newCache(t, cat, readcache.Config{})
	future := idAt(time.Now().Add(time.Hour), 1)
	for _, id := range []string{"", "abc", "-5", "007", "12345678901234567890123456789", "1e9", future} {
		if d := get(t, c, events.KindDeal, id); !d.Missing {
			t.Errorf("Get(%q) = %+v, want not found", id, d)
		}
	}
	if n := cat.total(); n != 0 {
		t.Errorf("%d catalog reads, want none", n)
	}
}

// After a rebuild, unknown ids older than the grace are refused by the Bloom filter alone;
// younger ones are looked up (a create may be on its way), and their "not found" is kept
// only briefly.
func TestBloomFilterGuardsOldIDs(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	old := time.Now().Add(-time.Hour)
	deal := idAt(old, 1)
	cat.set("deals/"+deal, `{"id":"`+deal+`","stock":{"available":3,"as_of":"2026-01-01T00:00:00Z"}}`)
	cat.listing = readcache.Listing{Deals: []string{deal}}
	c := newCache(t, cat, readcache.Config{FreshNegativeTTL: 50 * time.Millisecond})
	rebuild(t, c, cat)

	if d := get(t, c, events.KindDeal, deal); d.Missing {
		t.Fatal("listed deal not found")
	}
	for i := range 1000 {
		if d := get(t, c, events.KindDeal, idAt(old.Add(time.Duration(i)*time.Millisecond), 7)); !d.Missing {
			t.Fatalf("unknown deal %d found", i)
		}
	}
	// A false positive of the filter (0.1 %) may cost a read: allow a few.
	if n := cat.total(); n > 1+5 {
		t.Errorf("%d catalog reads for 1 known and 1,000 unknown old ids, want about 1", n)
	}

	young := idAt(time.Now().Add(-time.Second), 9)
	for range 10 {
		if d := get(t, c, events.KindDeal, young); !d.Missing {
			t.Fatal("unknown young deal found")
		}
	}
	if n := cat.count("deals/" + young); n != 1 {
		t.Errorf("young unknown id read %d times, want once (then a negative entry)", n)
	}
	cat.set("deals/"+young, `{"id":"`+young+`","stock":{"available":1}}`)
	deadline := time.Now().Add(2 * time.Second)
	for get(t, c, events.KindDeal, young).Missing {
		if time.Now().After(deadline) {
			t.Fatal("a deal created after a young id's negative answer stayed not found past its short TTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Until the first rebuild the filter vouches for nothing: every well-formed id is looked up
// once, then answered from its negative entry.
func TestBeforeRebuildUnknownIDsAreNegativeCached(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	c := newCache(t, cat, readcache.Config{})
	id := idAt(time.Now().Add(-time.Hour), 3)
	for range 20 {
		if d := get(t, c, events.KindProduct, id); !d.Missing {
			t.Fatal("found")
		}
	}
	if n := cat.count("products/" + id); n != 1 {
		t.Errorf("read %d times, want 1", n)
	}
}

// A change event makes the id known and drops the replica's entry: a deal created on another
// replica after this one cached "not found" is readable at once.
func TestChangeDropsNegativeEntryAndTeachesTheFilter(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	c := newCache(t, cat, readcache.Config{})
	rebuild(t, c, cat) // empty listing
	id := idAt(time.Now().Add(-2*time.Second), 4)
	if d := get(t, c, events.KindDeal, id); !d.Missing {
		t.Fatal("found before it exists")
	}
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":5}}`)
	if d := get(t, c, events.KindDeal, id); !d.Missing {
		t.Fatal("negative entry not used")
	}
	if err := c.Changed(context.Background(), events.CatalogChangedV1{V: 1, Kind: events.KindDeal, ID: id}); err != nil {
		t.Fatal(err)
	}
	if d := get(t, c, events.KindDeal, id); d.Missing {
		t.Fatal("deal not readable right after its change event")
	}
	// Known now: even once old, the filter does not refuse it.
	if c.Known().Absent(events.KindDeal, id, time.Now().Add(-time.Hour)) {
		t.Error("the filter forgot an id a change event taught it")
	}
}

// Deal entries live StockTTL: the stock levels served are never older than that (plus one
// load), and a hot deal is reloaded in the background.
func TestDealStockRefreshedWithinTTL(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	id := idAt(time.Now().Add(-time.Hour), 5)
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":10}}`)
	c := newCache(t, cat, readcache.Config{StockTTL: 100 * time.Millisecond})
	if d := get(t, c, events.KindDeal, id); !strings.Contains(string(d.Body), `"available":10`) {
		t.Fatalf("body %s", d.Body)
	}
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":9}}`)
	start := time.Now()
	for !strings.Contains(string(get(t, c, events.KindDeal, id).Body), `"available":9`) {
		if time.Since(start) > time.Second {
			t.Fatal("stock not refreshed within 1 s of a 100 ms TTL")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := cat.count("deals/" + id); n < 2 {
		t.Errorf("deal read %d times", n)
	}
}

// Product ids older than the catalog's product index are not vouched for by the filter.
func TestProductsOlderThanTheIndexAreLookedUp(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	upgrade := time.Now().Add(-time.Hour)
	cat.listing = readcache.Listing{ProductsCompleteFrom: upgrade}
	legacy := idAt(upgrade.Add(-24*time.Hour), 1)
	cat.set("products/"+legacy, `{"id":"`+legacy+`"}`)
	c := newCache(t, cat, readcache.Config{})
	rebuild(t, c, cat)
	if d := get(t, c, events.KindProduct, legacy); d.Missing {
		t.Error("a product older than the product index was refused")
	}
	if d := get(t, c, events.KindProduct, idAt(upgrade.Add(time.Minute), 2)); !d.Missing {
		t.Error("unknown product found")
	}
	if n := cat.total(); n != 1 {
		t.Errorf("%d catalog reads, want 1 (the legacy product)", n)
	}
}

// A failed load is not cached: the next read tries again.
func TestFailedLoadNotCached(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	id := idAt(time.Now().Add(-time.Hour), 6)
	cat.set("products/"+id, `{"id":"`+id+`"}`)
	cat.fail = problem.New(problem.CodeUnavailable, "catalog down")
	c := newCache(t, cat, readcache.Config{})
	if _, err := c.Get(context.Background(), events.KindProduct, id); problem.CodeOf(err) != problem.CodeUnavailable {
		t.Fatalf("err = %v, want unavailable", err)
	}
	cat.mu.Lock()
	cat.fail = nil
	cat.mu.Unlock()
	if d := get(t, c, events.KindProduct, id); d.Missing {
		t.Error("not found after the catalog came back")
	}
}

// Ids taught while the listing is read survive the rebuild.
func TestRebuildKeepsIDsAddedMeanwhile(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	c := newCache(t, cat, readcache.Config{})
	id := idAt(time.Now().Add(-time.Hour), 8)
	list := func(context.Context) (readcache.Listing, error) {
		c.Known().Add(events.KindDeal, id) // a change event during the listing
		return readcache.Listing{}, nil
	}
	if _, err := c.Known().Rebuild(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	if c.Known().Absent(events.KindDeal, id, time.Now().Add(-time.Hour)) {
		t.Error("an id added during the rebuild was lost")
	}
	if !c.Known().Absent(events.KindDeal, idAt(time.Now().Add(-time.Hour), 9), time.Now().Add(-time.Hour)) {
		t.Error("an unknown old id is not absent after the rebuild")
	}
}

// Serve: validators, Cache-Control, 304, and a deal's validator blind to stock.as_of.
func TestServeHTTPCaching(t *testing.T) {
	t.Parallel()
	cat := newCatalog()
	id := idAt(time.Now().Add(-time.Hour), 10)
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":4,"as_of":"2026-12-03T10:00:00.000Z"}}`)
	c := newCache(t, cat, readcache.Config{StockTTL: 50 * time.Millisecond})
	serve := func(hdr map[string]string, kind, id string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/"+kind+"s/"+id, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		c.Serve(w, r, kind, id)
		return w
	}
	w := serve(nil, events.KindDeal, id)
	etag := w.Header().Get("ETag")
	if w.Code != http.StatusOK || !strings.HasPrefix(etag, `W/"`) || w.Header().Get("Cache-Control") != "public, max-age=0" {
		t.Fatalf("first read: %d ETag %q Cache-Control %q", w.Code, etag, w.Header().Get("Cache-Control"))
	}
	if !strings.Contains(w.Body.String(), `"as_of"`) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("body %s, content type %q", w.Body, w.Header().Get("Content-Type"))
	}
	if w := serve(map[string]string{"If-None-Match": etag}, events.KindDeal, id); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("revalidation: %d %q, want 304 without a body", w.Code, w.Body)
	}
	// Read again later with the same levels: same validator.
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":4,"as_of":"2026-12-03T10:00:01.000Z"}}`)
	time.Sleep(120 * time.Millisecond)
	for range 20 {
		serve(nil, events.KindDeal, id)
		time.Sleep(5 * time.Millisecond)
	}
	if w := serve(map[string]string{"If-None-Match": `"x", ` + etag}, events.KindDeal, id); w.Code != http.StatusNotModified {
		t.Errorf("revalidation after a reload with unchanged levels: %d, want 304", w.Code)
	}
	// Changed levels: a new validator, 200.
	cat.set("deals/"+id, `{"id":"`+id+`","stock":{"available":3,"as_of":"2026-12-03T10:00:02.000Z"}}`)
	deadline := time.Now().Add(time.Second)
	for {
		w := serve(map[string]string{"If-None-Match": etag}, events.KindDeal, id)
		if w.Code == http.StatusOK && w.Header().Get("ETag") != etag {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changed levels still answered %d with ETag %q", w.Code, w.Header().Get("ETag"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	pid := idAt(time.Now().Add(-time.Hour), 11)
	cat.set("products/"+pid, `{"id":"`+pid+`"}`)
	w = serve(nil, events.KindProduct, pid)
	if w.Code != http.StatusOK || strings.HasPrefix(w.Header().Get("ETag"), "W/") || w.Header().Get("Cache-Control") != "public, max-age=60" {
		t.Errorf("product: %d ETag %q Cache-Control %q", w.Code, w.Header().Get("ETag"), w.Header().Get("Cache-Control"))
	}
	if w := serve(map[string]string{"If-None-Match": "*"}, events.KindProduct, pid); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: * = %d, want 304", w.Code)
	}
	w = serve(nil, events.KindProduct, "nope")
	if w.Code != http.StatusNotFound || w.Header().Get("ETag") != "" || w.Header().Get("Cache-Control") != "no-cache" ||
		!strings.Contains(w.Body.String(), `"code":"not-found"`) {
		t.Errorf("unknown: %d ETag %q Cache-Control %q %s", w.Code, w.Header().Get("ETag"), w.Header().Get("Cache-Control"), w.Body)
	}
}

func TestNoneMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header, etag string
		want         bool
	}{
		{"", `"a"`, false},
		{`"a"`, `"a"`, true},
		{`W/"a"`, `"a"`, true},
		{`"a"`, `W/"a"`, true},
		{`"b", W/"a"`, `W/"a"`, true},
		{`"b"`, `"a"`, false},
		{`*`, `"a"`, true},
	} {
		if got := readcache.NoneMatch(tc.header, tc.etag); got != tc.want {
			t.Errorf("NoneMatch(%q, %q) = %v", tc.header, tc.etag, got)
		}
	}
}
