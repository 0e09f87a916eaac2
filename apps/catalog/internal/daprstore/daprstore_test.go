package daprstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const component = "statestore"

var now = time.Date(2026, 3, 1, 10, 30, 0, 123_456_789, time.FixedZone("UTC+2", 2*60*60))

func newStore() (*Store, *daprstatetest.Client) {
	c := daprstatetest.NewClient()
	s := New(daprstate.New(c, component))
	s.now = func() time.Time { return now }
	return s, c
}

func product(id string) catalog.Product {
	return catalog.Product{ID: id, Name: "Mug " + id, PriceCents: 1200, CreatedAt: now.UTC().Truncate(time.Millisecond)}
}

// stored decodes the document at key as the store wrote it.
func stored[T any](t *testing.T, c *daprstatetest.Client, key string) T {
	t.Helper()
	var v T
	b, ok := c.Value(component, key)
	if !ok {
		t.Fatalf("no document %s", key)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s %q: %v", key, b, err)
	}
	return v
}

func put(t *testing.T, c *daprstatetest.Client, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c.Put(component, key, b)
}

func TestCreateProductIndexesIt(t *testing.T) {
	t.Parallel()
	upgradedAt := now.UTC().Truncate(time.Millisecond)
	tests := []struct {
		name  string
		setup func(t *testing.T, c *daprstatetest.Client)
		want  productIndex
	}{
		{
			name: "fresh install: the index holds every product",
			want: productIndex{IDs: []string{"1", "2"}},
		},
		{
			name:  "fresh install with an empty deal index",
			setup: func(t *testing.T, c *daprstatetest.Client) { put(t, c, indexKey, index{IDs: []string{}}) },
			want:  productIndex{IDs: []string{"1", "2"}},
		},
		{
			name: "upgraded install: complete from the index's creation",
			setup: func(t *testing.T, c *daprstatetest.Client) {
				put(t, c, productKeyPf+"old", product("old"))
				put(t, c, indexKey, index{IDs: []string{"d-old"}})
			},
			want: productIndex{IDs: []string{"1", "2"}, CompleteFrom: upgradedAt},
		},
		{
			name: "an existing index keeps its start",
			setup: func(t *testing.T, c *daprstatetest.Client) {
				put(t, c, productIndexKey, productIndex{IDs: []string{"0"}})
				put(t, c, indexKey, index{IDs: []string{"d1"}})
			},
			want: productIndex{IDs: []string{"0", "1", "2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, c := newStore()
			if tt.setup != nil {
				tt.setup(t, c)
			}
			ctx := context.Background()

			for _, id := range []string{"1", "2"} {
				if err := s.CreateProduct(ctx, product(id)); err != nil {
					t.Fatalf("CreateProduct(%s) error = %v", id, err)
				}
			}

			got := stored[productIndex](t, c, productIndexKey)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("products index mismatch (-got +want):\n%s", diff)
			}
			for _, id := range []string{"1", "2"} {
				if diff := cmp.Diff(stored[catalog.Product](t, c, productKeyPf+id), product(id)); diff != "" {
					t.Errorf("product %s mismatch (-got +want):\n%s", id, diff)
				}
			}
			// The product document is written before the index lists it.
			var keys []string
			for _, w := range c.Writes(component, "") {
				keys = append(keys, w.Key)
			}
			if want := []string{"product:1", "products:index", "product:2", "products:index"}; !slices.Equal(keys, want) {
				t.Errorf("writes = %v, want %v", keys, want)
			}
		})
	}
}

func TestCreateProductFailures(t *testing.T) {
	t.Parallel()
	t.Run("an existing product is not indexed again", func(t *testing.T) {
		t.Parallel()
		s, c := newStore()
		ctx := context.Background()
		if err := s.CreateProduct(ctx, product("1")); err != nil {
			t.Fatal(err)
		}

		err := s.CreateProduct(ctx, product("1"))

		if !errors.Is(err, daprstate.ErrExists) {
			t.Errorf("second CreateProduct() error = %v, want %v", err, daprstate.ErrExists)
		}
		if diff := cmp.Diff(stored[productIndex](t, c, productIndexKey), productIndex{IDs: []string{"1"}}); diff != "" {
			t.Errorf("products index mismatch (-got +want):\n%s", diff)
		}
	})
	t.Run("a product that was not written is not indexed", func(t *testing.T) {
		t.Parallel()
		s, c := newStore()
		c.SetSaveErr(daprstatetest.ErrUnavailable)

		err := s.CreateProduct(context.Background(), product("1"))

		if err == nil {
			t.Fatal("CreateProduct() error = nil, want the outage")
		}
		if keys := c.Keys(component, ""); len(keys) != 0 {
			t.Errorf("keys = %v, want none", keys)
		}
	})
	t.Run("an index that cannot be created fails the create", func(t *testing.T) {
		t.Parallel()
		s, c := newStore()
		// The deal index cannot be read to decide where the products index starts.
		s.state = daprstate.New(&failingGets{Client: c, key: indexKey}, component)

		err := s.CreateProduct(context.Background(), product("1"))

		if !errors.Is(err, daprstatetest.ErrUnavailable) {
			t.Errorf("CreateProduct() error = %v, want %v", err, daprstatetest.ErrUnavailable)
		}
		if _, ok := c.Value(component, productIndexKey); ok {
			t.Error("products index was created without knowing where it starts")
		}
	})
}

// failingGets fails every read of key, as an outage would, and passes everything else on.
type failingGets struct {
	*daprstatetest.Client
	key string
}

func (f *failingGets) GetState(ctx context.Context, store, key string, meta map[string]string) (*dapr.StateItem, error) {
	if key == f.key {
		return nil, fmt.Errorf("error getting state: %w", daprstatetest.ErrUnavailable)
	}
	return f.Client.GetState(ctx, store, key, meta)
}

func TestConcurrentCreatesAreAllIndexed(t *testing.T) {
	t.Parallel()
	s, _ := newStore()
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() { errs[i] = s.CreateProduct(ctx, product(fmt.Sprint("p", i))) })
		wg.Go(func() {
			errs[n+i] = s.CreateDeal(ctx, catalog.Deal{ID: fmt.Sprint("d", i), ProductID: "p0"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create %d: %v", i, err)
		}
	}

	got, err := s.KnownIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wantProducts, wantDeals []string
	for i := range n {
		wantProducts = append(wantProducts, fmt.Sprint("p", i))
		wantDeals = append(wantDeals, fmt.Sprint("d", i))
	}
	slices.Sort(got.Products)
	slices.Sort(got.Deals)
	if diff := cmp.Diff(got.Products, wantProducts); diff != "" {
		t.Errorf("products mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got.Deals, wantDeals); diff != "" {
		t.Errorf("deals mismatch (-got +want):\n%s", diff)
	}
}

func TestKnownIDs(t *testing.T) {
	t.Parallel()
	upgradedAt := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		setup func(t *testing.T, c *daprstatetest.Client)
		want  catalog.KnownIDs
	}{
		{
			name: "empty store",
			want: catalog.KnownIDs{},
		},
		{
			name: "both indexes",
			setup: func(t *testing.T, c *daprstatetest.Client) {
				put(t, c, productIndexKey, productIndex{IDs: []string{"p1", "p2"}, CompleteFrom: upgradedAt.In(now.Location())})
				put(t, c, indexKey, index{IDs: []string{"d1"}})
			},
			want: catalog.KnownIDs{Products: []string{"p1", "p2"}, Deals: []string{"d1"}, ProductsCompleteFrom: upgradedAt},
		},
		{
			name: "fresh install, no deal yet",
			setup: func(t *testing.T, c *daprstatetest.Client) {
				put(t, c, productIndexKey, productIndex{IDs: []string{"p1"}})
			},
			want: catalog.KnownIDs{Products: []string{"p1"}},
		},
		{
			// Deals but no products index: an upgraded install before its first new product.
			// No product may be trusted to be listed: complete from now.
			name: "upgraded install before any new product",
			setup: func(t *testing.T, c *daprstatetest.Client) {
				put(t, c, indexKey, index{IDs: []string{"d1"}})
			},
			want: catalog.KnownIDs{Deals: []string{"d1"}, ProductsCompleteFrom: now.UTC().Truncate(time.Millisecond)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, c := newStore()
			if tt.setup != nil {
				tt.setup(t, c)
			}

			got, err := s.KnownIDs(context.Background())

			if err != nil {
				t.Fatalf("KnownIDs() error = %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ids mismatch (-got +want):\n%s", diff)
			}
			if got.ProductsCompleteFrom.Location() != time.UTC {
				t.Errorf("products_complete_from %v is not UTC", got.ProductsCompleteFrom)
			}
		})
	}
}

func TestKnownIDsOutage(t *testing.T) {
	t.Parallel()
	s, c := newStore()
	c.SetGetErr(daprstatetest.ErrUnavailable)

	_, err := s.KnownIDs(context.Background())

	if !errors.Is(err, daprstatetest.ErrUnavailable) {
		t.Errorf("KnownIDs() error = %v, want %v", err, daprstatetest.ErrUnavailable)
	}
}
