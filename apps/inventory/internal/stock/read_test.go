package stock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// TestBucketsReadsHoldsAsStored: the audit read returns every bucket with its counters and
// holds, committed and released ones included, a never-written bucket as created, and writes
// nothing.
func TestBucketsReadsHoldsAsStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, stock.Config{Buckets: 2})
	if _, _, err := e.store.CreateMeta(ctx, stock.Meta{DealID: "d1", Stock: 10, Buckets: 2, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	// Three orders whose home is bucket 0, so bucket 1 stays unwritten.
	var ids []string
	for i := 0; len(ids) < 3; i++ {
		id := "o" + string(rune('a'+i))
		if stock.HomeBucket(id, 2) == 0 {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		mustReserve(t, e, "d1", id, 1)
	}
	if _, err := e.svc.Commit(ctx, "d1", ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Release(ctx, "d1", ids[2]); err != nil {
		t.Fatal(err)
	}
	before := len(e.store.Buckets("d1"))

	got, err := e.svc.Buckets(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	want := []stock.Bucket{
		{DealID: "d1", Bucket: 0, Stock: 5, Available: 3, Reserved: 1, Sold: 1, Holds: map[string]stock.Hold{
			ids[0]: {Qty: 1, Until: until, State: stock.StateReserved, At: at},
			ids[1]: {Qty: 1, Until: until, State: stock.StateCommitted, At: at},
			ids[2]: {Qty: 1, Until: until, State: stock.StateReleased, At: at},
		}},
		{DealID: "d1", Bucket: 1, Stock: 5, Available: 5, Holds: map[string]stock.Hold{}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("buckets (-got +want):\n%s", diff)
	}
	for _, b := range got {
		if err := b.Check(); err != nil {
			t.Error(err)
		}
	}
	if after := len(e.store.Buckets("d1")); after != before {
		t.Errorf("the read wrote buckets: %d stored before, %d after", before, after)
	}
}

func TestBucketsErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{})
	tests := []struct {
		name, deal string
		want       problem.Code
	}{
		{"unknown deal", "d404", problem.CodeNotFound},
		{"empty id", "", problem.CodeValidation},
		{"key separator in id", "d1:0", problem.CodeValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Buckets(context.Background(), tc.deal)
			if got := problem.CodeOf(err); got != tc.want {
				t.Errorf("Buckets(%q) error = %v (code %q), want code %q", tc.deal, err, got, tc.want)
			}
			if tc.want == problem.CodeNotFound && !errors.Is(err, stock.ErrNotFound) {
				t.Errorf("Buckets(%q) error = %v, want %v", tc.deal, err, stock.ErrNotFound)
			}
		})
	}
}
