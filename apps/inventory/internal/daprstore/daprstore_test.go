package daprstore_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const component = "statestore"

func newRepo() (*daprstore.Repository, *daprstatetest.Client) {
	f := daprstatetest.NewClient()
	return daprstore.New(daprstate.New(f, component)), f
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

	keys := f.Keys(component, "")
	if want := []string{"stock:42", "stock:42:0", "stock:42:1", "stock:42:2"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	raw, _ := f.Value(component, "stock:42")
	var meta map[string]any
	if err := json.Unmarshal(raw, &meta); err != nil {
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
	raw, _ = f.Value(component, home)
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if h := b.Holds["o1"]; h.Qty != 2 || h.State != "reserved" || b.Reserved != 2 || b.Available+b.Reserved+b.Sold != b.Stock {
		t.Errorf("home bucket %s = %+v, want o1's 2 units reserved", home, b)
	}
}
