package daprstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// fakeDapr mimics the Dapr Redis state store as pkg/daprstate relies on it: versions as
// ETags, checked only on first-write writes (a mismatch is gRPC Aborted), a first-write
// without an ETag failing untyped on an existing key, and a missing key reading as an empty
// item.
type fakeDapr struct {
	mu    sync.Mutex
	items map[string]item
}

type item struct {
	value   []byte
	version int
}

var _ daprstate.Client = (*fakeDapr)(nil)

func (f *fakeDapr) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[key]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: slices.Clone(it.value), Etag: strconv.Itoa(it.version)}, nil
}

func (f *fakeDapr) SaveStateWithETag(_ context.Context, store, key string, data []byte, etag string, _ map[string]string, so ...dapr.StateOption) error {
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, exists := f.items[key]
	if opts.Concurrency == dapr.StateConcurrencyFirstWrite {
		switch {
		case etag != "" && (!exists || strconv.Itoa(cur.version) != etag):
			return fmt.Errorf("error saving state: %w", status.Errorf(codes.Aborted, "failed saving state in state store %s: possible etag mismatch", store))
		case etag == "" && exists:
			return fmt.Errorf("error saving state: rpc error: failed to set key %s", key)
		}
	}
	f.items[key] = item{value: slices.Clone(data), version: cur.version + 1}
	return nil
}

func (f *fakeDapr) DeleteStateWithETag(context.Context, string, string, *dapr.ETag, map[string]string, *dapr.StateOptions) error {
	return fmt.Errorf("not used")
}

func newRepo() (*daprstore.Repository, *fakeDapr) {
	f := &fakeDapr{items: map[string]item{}}
	return daprstore.New(daprstate.New(f, "statestore")), f
}

func TestContract(t *testing.T) {
	storetest.Contract(t, func(*testing.T) stock.Store { r, _ := newRepo(); return r })
}

// The keys are part of the contract with the integration tests, which read Redis directly.
func TestKeyLayout(t *testing.T) {
	ctx := context.Background()
	repo, f := newRepo()
	svc, err := stock.NewService(repo, stock.Config{Buckets: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, "42", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Reserve(ctx, "42", "o1", 2, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	var keys []string
	for k := range f.items {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"stock:42", "stock:42:0", "stock:42:1", "stock:42:2"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	var meta map[string]any
	if err := json.Unmarshal(f.items["stock:42"].value, &meta); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"deal_id", "stock", "buckets", "created_at"} {
		if _, ok := meta[field]; !ok {
			t.Errorf("meta document %v lacks %q", meta, field)
		}
	}
	home := "stock:42:" + strconv.Itoa(stock.HomeBucket("o1", 3))
	var b struct {
		Stock, Available, Reserved, Sold int
		Holds                            map[string]struct {
			Qty   int
			State string
		}
	}
	if err := json.Unmarshal(f.items[home].value, &b); err != nil {
		t.Fatal(err)
	}
	if h := b.Holds["o1"]; h.Qty != 2 || h.State != "reserved" || b.Reserved != 2 || b.Available+b.Reserved+b.Sold != b.Stock {
		t.Errorf("home bucket %s = %+v, want o1's 2 units reserved", home, b)
	}
}
