// Package storetest holds what tests of the stock domain share: Fake, an in-memory
// stock.Store with ETag semantics, simulated latency and injectable conflicts, and Contract,
// the behaviour every stock.Store must show, run against the fake and the Dapr adapter.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
)

// Fake is an in-memory stock.Store. Documents are kept as JSON, so callers never share
// memory with it, and each carries a version that serves as its ETag, as in Dapr's Redis
// store. Every call sleeps Latency first (outside the lock, so calls overlap as they do over
// a network).
type Fake struct {
	// Latency is slept at the start of every call.
	Latency time.Duration

	mu        sync.Mutex
	conflict  func(dealID string, bucket int) bool
	err       error
	docs      map[string]doc
	reads     int
	writes    int
	conflicts int
	pages     int
}

type doc struct {
	data    []byte
	version int
}

var _ stock.Store = (*Fake)(nil)

// NewFake returns an empty fake store.
func NewFake() *Fake { return &Fake{docs: map[string]doc{}} }

func metaKey(dealID string) string { return "meta/" + dealID }

func bucketKey(dealID string, i int) string { return "bucket/" + dealID + "/" + strconv.Itoa(i) }

// SetConflict sets a function asked before every bucket write that would succeed; true makes
// the write lose as if another replica had written the bucket first (its ETag moves on). Nil
// stops the injection. Safe while calls are in flight: a batch the service gave up on may
// still be writing.
func (f *Fake) SetConflict(conflict func(dealID string, bucket int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conflict = conflict
}

// SetErr makes every call fail with err (a state store outage); nil ends the outage.
func (f *Fake) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *Fake) enter() error {
	if f.Latency > 0 {
		time.Sleep(f.Latency)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Meta implements stock.Store.
func (f *Fake) Meta(_ context.Context, dealID string) (stock.Meta, error) {
	if err := f.enter(); err != nil {
		return stock.Meta{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	var m stock.Meta
	if _, err := f.get(metaKey(dealID), &m); err != nil {
		return stock.Meta{}, err
	}
	return m, nil
}

// CreateMeta implements stock.Store.
func (f *Fake) CreateMeta(_ context.Context, m stock.Meta) (stock.Meta, bool, error) {
	if err := f.enter(); err != nil {
		return stock.Meta{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := metaKey(m.DealID)
	if _, ok := f.docs[k]; ok {
		var existing stock.Meta
		_, err := f.get(k, &existing)
		return existing, false, err
	}
	f.put(k, m)
	return m, true, nil
}

// Bucket implements stock.Store.
func (f *Fake) Bucket(_ context.Context, dealID string, i int) (stock.Bucket, string, error) {
	if err := f.enter(); err != nil {
		return stock.Bucket{}, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	var b stock.Bucket
	v, err := f.get(bucketKey(dealID, i), &b)
	if err != nil {
		return stock.Bucket{}, "", err
	}
	return b, strconv.Itoa(v), nil
}

// CreateBucket implements stock.Store.
func (f *Fake) CreateBucket(_ context.Context, b stock.Bucket) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := bucketKey(b.DealID, b.Bucket)
	if _, ok := f.docs[k]; ok {
		return fmt.Errorf("create %s: %w", k, stock.ErrStale)
	}
	f.put(k, b)
	return nil
}

// UpdateBucket implements stock.Store.
func (f *Fake) UpdateBucket(_ context.Context, b stock.Bucket, etag string) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := bucketKey(b.DealID, b.Bucket)
	cur, ok := f.docs[k]
	if !ok || strconv.Itoa(cur.version) != etag {
		f.conflicts++
		return fmt.Errorf("update %s: %w", k, stock.ErrStale)
	}
	if f.conflict != nil && f.conflict(b.DealID, b.Bucket) {
		// Another replica wrote first: same content, new version.
		f.docs[k] = doc{data: cur.data, version: cur.version + 1}
		f.conflicts++
		return fmt.Errorf("update %s: %w", k, stock.ErrStale)
	}
	f.put(k, b)
	return nil
}

func pageKey(dealID string, i int, page string) string { return bucketKey(dealID, i) + "/" + page }

// Page implements stock.Store.
func (f *Fake) Page(_ context.Context, dealID string, i int, key string) (stock.Page, error) {
	if err := f.enter(); err != nil {
		return stock.Page{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	var p stock.Page
	if _, err := f.get(pageKey(dealID, i, key), &p); err != nil {
		return stock.Page{}, err
	}
	return p, nil
}

// CreatePage implements stock.Store.
func (f *Fake) CreatePage(_ context.Context, p stock.Page) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := pageKey(p.DealID, p.Bucket, p.Key)
	if _, ok := f.docs[k]; ok {
		return fmt.Errorf("create %s: %w", k, stock.ErrStale)
	}
	f.put(k, p)
	f.pages++
	return nil
}

// DeletePage implements stock.Store.
func (f *Fake) DeletePage(_ context.Context, dealID string, i int, key string) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.docs, pageKey(dealID, i, key))
	return nil
}

// Pages returns the keys of a bucket's stored pages, listed or not.
func (f *Fake) Pages(dealID string, i int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := pageKey(dealID, i, "")
	var out []string
	for k := range f.docs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, strings.TrimPrefix(k, prefix))
		}
	}
	slices.Sort(out)
	return out
}

func (f *Fake) get(k string, v any) (int, error) {
	d, ok := f.docs[k]
	if !ok {
		return 0, fmt.Errorf("%s: %w", k, stock.ErrNotFound)
	}
	if err := json.Unmarshal(d.data, v); err != nil {
		return 0, err
	}
	return d.version, nil
}

func (f *Fake) put(k string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	f.docs[k] = doc{data: data, version: f.docs[k].version + 1}
	f.writes++
}

// Stats are the fake's counters.
type Stats struct {
	Reads     int // Meta and Bucket calls
	Writes    int // successful creates and updates
	Conflicts int // bucket updates refused for a stale ETag, injected ones included
	Pages     int // pages created
}

// Stats returns the counters so far.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Reads: f.reads, Writes: f.writes, Conflicts: f.conflicts, Pages: f.pages}
}

// Buckets returns the stored buckets of a deal, in bucket order (without touching the
// counters).
func (f *Fake) Buckets(dealID string) []stock.Bucket {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []stock.Bucket
	for i := 0; ; i++ {
		var b stock.Bucket
		if _, err := f.get(bucketKey(dealID, i), &b); err != nil {
			return out
		}
		out = append(out, b)
	}
}

// PutBucket stores b as another writer would, bumping its version.
func (f *Fake) PutBucket(b stock.Bucket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.put(bucketKey(b.DealID, b.Bucket), b)
}

// Contract checks the behaviour the stock domain needs from a Store. newStore returns an
// empty store; deal ids are unique per run so a shared real store works too.
func Contract(t *testing.T, newStore func(t *testing.T) stock.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seq := 0
	deal := func() string {
		seq++
		return fmt.Sprintf("contract-%d-%d", time.Now().UnixNano(), seq)
	}

	t.Run("missing meta and bucket are not found", func(t *testing.T) {
		s, d := newStore(t), deal()
		if _, err := s.Meta(ctx, d); !errors.Is(err, stock.ErrNotFound) {
			t.Errorf("Meta() error = %v, want %v", err, stock.ErrNotFound)
		}
		if _, _, err := s.Bucket(ctx, d, 0); !errors.Is(err, stock.ErrNotFound) {
			t.Errorf("Bucket() error = %v, want %v", err, stock.ErrNotFound)
		}
	})

	t.Run("meta is created once", func(t *testing.T) {
		s, d := newStore(t), deal()
		first := stock.Meta{DealID: d, Stock: 10, Buckets: 2, CreatedAt: at}
		got, created, err := s.CreateMeta(ctx, first)
		if err != nil || !created {
			t.Fatalf("CreateMeta() = %+v, %t, %v; want created", got, created, err)
		}
		got, created, err = s.CreateMeta(ctx, stock.Meta{DealID: d, Stock: 99, Buckets: 1, CreatedAt: at.Add(time.Hour)})
		if err != nil || created {
			t.Fatalf("second CreateMeta() created=%t err=%v, want the existing one", created, err)
		}
		if diff := cmp.Diff(got, first); diff != "" {
			t.Errorf("existing meta (-got +want):\n%s", diff)
		}
		read, err := s.Meta(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(read, first); diff != "" {
			t.Errorf("stored meta (-got +want):\n%s", diff)
		}
	})

	t.Run("bucket CAS", func(t *testing.T) {
		s, d := newStore(t), deal()
		b := stock.Meta{DealID: d, Stock: 5, Buckets: 1}.InitialBucket(0)
		if err := s.CreateBucket(ctx, b); err != nil {
			t.Fatalf("CreateBucket() error = %v", err)
		}
		if err := s.CreateBucket(ctx, b); !errors.Is(err, stock.ErrStale) {
			t.Fatalf("second CreateBucket() error = %v, want %v", err, stock.ErrStale)
		}
		got, etag, err := s.Bucket(ctx, d, 0)
		if err != nil || etag == "" {
			t.Fatalf("Bucket() etag %q error %v", etag, err)
		}
		got.Available, got.Reserved = 3, 2
		got.Holds["o1"] = stock.Hold{Qty: 2, Until: at, State: stock.StateReserved, At: at}
		// A release tombstone has no Until: it must read back as the zero time.
		got.Holds["o3"] = stock.Hold{State: stock.StateReleased, At: at}
		got.Passed = map[string]time.Time{"o2": at}
		if err := s.UpdateBucket(ctx, got, etag); err != nil {
			t.Fatalf("UpdateBucket() error = %v", err)
		}
		stale := got
		stale.Available, stale.Reserved = 5, 0
		if err := s.UpdateBucket(ctx, stale, etag); !errors.Is(err, stock.ErrStale) {
			t.Fatalf("UpdateBucket() with a used etag: error = %v, want %v", err, stock.ErrStale)
		}
		read, etag2, err := s.Bucket(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		if etag2 == etag {
			t.Errorf("etag did not change with the update: %q", etag2)
		}
		if diff := cmp.Diff(read, got); diff != "" {
			t.Errorf("stored bucket (-got +want):\n%s", diff)
		}
		if err := s.UpdateBucket(ctx, stock.Meta{DealID: d, Stock: 1}.InitialBucket(1), "1"); !errors.Is(err, stock.ErrStale) {
			t.Errorf("UpdateBucket() of a missing bucket: error = %v, want %v", err, stock.ErrStale)
		}
	})

	t.Run("buckets are separate keys", func(t *testing.T) {
		s, d := newStore(t), deal()
		m := stock.Meta{DealID: d, Stock: 7, Buckets: 3}
		for i := range 3 {
			if err := s.CreateBucket(ctx, m.InitialBucket(i)); err != nil {
				t.Fatal(err)
			}
		}
		var stocks []int
		for i := range 3 {
			b, _, err := s.Bucket(ctx, d, i)
			if err != nil {
				t.Fatal(err)
			}
			stocks = append(stocks, b.Stock)
		}
		if !slices.Equal(stocks, []int{3, 2, 2}) {
			t.Errorf("bucket stocks %v, want [3 2 2]", stocks)
		}
	})

	t.Run("pages are created once, read and deleted", func(t *testing.T) {
		s, d := newStore(t), deal()
		p := stock.Page{DealID: d, Bucket: 1, Key: "pabc", Holds: map[string]stock.Hold{
			"o1": {Qty: 2, Until: at.Add(time.Hour), State: stock.StateReserved, At: at}}}
		if _, err := s.Page(ctx, d, 1, p.Key); !errors.Is(err, stock.ErrNotFound) {
			t.Fatalf("Page() of a missing page: error = %v, want %v", err, stock.ErrNotFound)
		}
		if err := s.CreatePage(ctx, p); err != nil {
			t.Fatalf("CreatePage() error = %v", err)
		}
		if err := s.CreatePage(ctx, p); !errors.Is(err, stock.ErrStale) {
			t.Fatalf("second CreatePage() error = %v, want %v", err, stock.ErrStale)
		}
		read, err := s.Page(ctx, d, 1, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(read, p); diff != "" {
			t.Errorf("stored page (-got +want):\n%s", diff)
		}
		if _, _, err := s.Bucket(ctx, d, 1); !errors.Is(err, stock.ErrNotFound) {
			t.Errorf("a page reads as its bucket: error = %v", err)
		}
		for range 2 { // deleting a missing page is no error
			if err := s.DeletePage(ctx, d, 1, p.Key); err != nil {
				t.Fatalf("DeletePage() error = %v", err)
			}
		}
		if _, err := s.Page(ctx, d, 1, p.Key); !errors.Is(err, stock.ErrNotFound) {
			t.Errorf("Page() after DeletePage: error = %v, want %v", err, stock.ErrNotFound)
		}
	})
}
