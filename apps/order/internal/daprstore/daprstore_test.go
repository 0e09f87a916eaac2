package daprstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

const component = "statestore"

func newState() (*daprstatetest.Client, *daprstate.Store) {
	f := daprstatetest.NewClient()
	return f, daprstate.New(f, component)
}

func TestOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o1 := order.Order{ID: "o1", UserID: "u1", DealID: "d1", Kind: "flash", Quantity: 2, UnitPriceCents: 100, TotalCents: 200,
		Status: order.StatusPending, PayBy: t0.Add(15 * time.Minute), CreatedAt: t0, UpdatedAt: t0}
	tests := []struct {
		name    string
		run     func(t *testing.T, f *daprstatetest.Client, r *daprstore.Orders) error
		wantErr error // nil, a sentinel, or errAny
		want    *order.Order
	}{
		{
			name:    "missing",
			run:     func(*testing.T, *daprstatetest.Client, *daprstore.Orders) error { return nil },
			wantErr: nil,
		},
		{
			name: "created",
			run: func(_ *testing.T, _ *daprstatetest.Client, r *daprstore.Orders) error {
				return r.Create(ctx, o1)
			},
			want: &o1,
		},
		{
			name: "created twice keeps the first",
			run: func(t *testing.T, _ *daprstatetest.Client, r *daprstore.Orders) error {
				if err := r.Create(ctx, o1); err != nil {
					t.Fatal(err)
				}
				again := o1
				again.Quantity = 9
				return r.Create(ctx, again)
			},
			want: &o1,
		},
		{
			name: "updated with the etag read",
			run: func(t *testing.T, _ *daprstatetest.Client, r *daprstore.Orders) error {
				if err := r.Create(ctx, o1); err != nil {
					t.Fatal(err)
				}
				_, etag, err := r.Get(ctx, "o1")
				if err != nil {
					t.Fatal(err)
				}
				paid := o1
				paid.Status = order.StatusPaid
				return r.Update(ctx, paid, etag)
			},
			want: &order.Order{ID: "o1", UserID: "u1", DealID: "d1", Kind: "flash", Quantity: 2, UnitPriceCents: 100, TotalCents: 200,
				Status: order.StatusPaid, PayBy: t0.Add(15 * time.Minute), CreatedAt: t0, UpdatedAt: t0},
		},
		{
			name: "stale etag is a domain conflict",
			run: func(t *testing.T, _ *daprstatetest.Client, r *daprstore.Orders) error {
				if err := r.Create(ctx, o1); err != nil {
					t.Fatal(err)
				}
				_, etag, err := r.Get(ctx, "o1")
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Update(ctx, o1, etag); err != nil {
					t.Fatal(err)
				}
				paid := o1
				paid.Status = order.StatusPaid
				return r.Update(ctx, paid, etag)
			},
			wantErr: order.ErrConflict,
			want:    &o1,
		},
		{
			name: "outage is not a conflict",
			run: func(t *testing.T, f *daprstatetest.Client, r *daprstore.Orders) error {
				if err := r.Create(ctx, o1); err != nil {
					t.Fatal(err)
				}
				_, etag, err := r.Get(ctx, "o1")
				if err != nil {
					t.Fatal(err)
				}
				f.SetSaveErr(daprstatetest.ErrUnavailable)
				defer f.SetSaveErr(nil)
				return r.Update(ctx, o1, etag)
			},
			wantErr: daprstatetest.ErrUnavailable,
			want:    &o1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, s := newState()
			r := daprstore.NewOrders(s)

			err := tt.run(t, f, r)

			if tt.wantErr == nil && err != nil {
				t.Fatalf("error = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == daprstatetest.ErrUnavailable && errors.Is(err, order.ErrConflict) {
				t.Errorf("error = %v, want it not to be a conflict", err)
			}
			got, _, err := r.Get(ctx, "o1")
			if tt.want == nil {
				if !errors.Is(err, order.ErrNotFound) {
					t.Errorf("Get error = %v, want %v", err, order.ErrNotFound)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(got, *tt.want); diff != "" {
				t.Errorf("stored order mismatch (-got +want):\n%s", diff)
			}
			if got := f.Keys(component, "order:"); !cmp.Equal(got, []string{"order:o1"}) {
				t.Errorf("keys = %v, want [order:o1]", got)
			}
		})
	}
}

// The order app's records go through the shared store: the order id of the first claim is
// the one every later claim resumes with, and the stored document is flat, the order id next
// to the shared fields (what the app stored before pkg/idempotency, plus the owner token); the
// mechanism itself is tested in pkg/idempotency.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const lease = 30 * time.Second
	f, s := newState()
	r := daprstore.NewIdempotency(s, 24*time.Hour)
	n := 0
	newID := func(rec *order.IdemRecord) { n++; rec.OrderID = fmt.Sprintf("o%d", n) }
	claim := func(owner string) idempotency.Claim {
		return idempotency.Claim{UserID: "u1", Key: "key", Hash: "h1", Owner: owner, Lease: lease}
	}

	first, claimed, err := r.Begin(ctx, claim("a"), newID)
	if err != nil || !claimed {
		t.Fatalf("first Begin = %t, %v; want claimed", claimed, err)
	}
	inFlight, claimed, err := r.Begin(ctx, claim("b"), newID)
	if err != nil || claimed {
		t.Fatalf("Begin in flight = %t, %v; want not claimed", claimed, err)
	}
	if err := r.Abandon(ctx, "u1", "key", "a"); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	resumed, claimed, err := r.Begin(ctx, claim("b"), newID)
	if err != nil || !claimed {
		t.Fatalf("Begin after Abandon = %t, %v; want claimed", claimed, err)
	}
	if err := r.Finish(ctx, "u1", "key", "b", 201, []byte(`{"id":"o1"}`)); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	replayed, claimed, err := r.Begin(ctx, claim("c"), newID)
	if err != nil || claimed {
		t.Fatalf("Begin after Finish = %t, %v; want not claimed", claimed, err)
	}

	for _, rec := range []order.IdemRecord{first, inFlight, resumed} {
		if rec.OrderID != "o1" || rec.Hash != "h1" || rec.Done || rec.CreatedAt.IsZero() || rec.LeaseUntil.IsZero() {
			t.Errorf("record = %+v, want hash h1, order o1, leased, not done", rec)
		}
	}
	want := order.IdemRecord{Record: idempotency.Record{Hash: "h1", Owner: "b", Done: true, Status: 201, Body: []byte(`{"id":"o1"}`),
		LeaseUntil: resumed.LeaseUntil, CreatedAt: first.CreatedAt}, OrderID: "o1"}
	if diff := cmp.Diff(replayed, want); diff != "" {
		t.Errorf("replayed record mismatch (-got +want):\n%s", diff)
	}
	keys := f.Keys(component, "idem:")
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "idem:u1:") || strings.Contains(keys[0], "key") {
		t.Fatalf("idempotency keys = %v, want one idem:u1:<hash>", keys)
	}
	raw, _ := f.Value(component, keys[0])
	var stored map[string]any
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	fields := slices.Sorted(maps.Keys(stored))
	if diff := cmp.Diff(fields, []string{"body", "created_at", "done", "hash", "lease_until", "order_id", "owner", "status"}); diff != "" {
		t.Errorf("stored fields mismatch (-got +want):\n%s", diff)
	}
	for i, w := range f.Writes(component, "idem:") {
		if got, want := w.Meta["ttlInSeconds"], "86400"; got != want {
			t.Errorf("write %d to %s: ttlInSeconds = %q, want %q", i, w.Key, got, want)
		}
	}
}

func TestGroups(t *testing.T) {
	t.Parallel()
	ordertest.GroupIndexContract(t, func(*testing.T) order.GroupIndex {
		_, s := newState()
		return daprstore.NewGroups(s)
	})
}

// A group decided before outcomes were recorded takes no new orders and reads as undecided
// (the sweep leaves its orders alone) until a delivery of its event records the outcome.
func TestGroupsDecidedWithoutOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s := newState()
	f.Put(component, "grouporders:g1", []byte(`{"decided":true,"orders":[{"order_id":"o1","user_id":"u1"}]}`))
	g := daprstore.NewGroups(s)
	if err := g.Add(ctx, "g1", order.GroupEntry{OrderID: "o2", UserID: "u2"}); !errors.Is(err, order.ErrGroupClosed) {
		t.Errorf("Add = %v, want %v", err, order.ErrGroupClosed)
	}
	if _, decided, err := g.Decision(ctx, "g1"); err != nil || decided {
		t.Errorf("Decision() decided=%t err=%v, want undecided", decided, err)
	}
	out := order.GroupOutcome{GroupID: "g1", Succeeded: true, Members: []string{"o1"}}
	rec, orders, err := g.Decide(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, out); diff != "" {
		t.Errorf("recorded outcome (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(orders, []order.GroupEntry{{OrderID: "o1", UserID: "u1"}}); diff != "" {
		t.Errorf("orders (-got +want):\n%s", diff)
	}
	if got, decided, err := g.Decision(ctx, "g1"); err != nil || !decided || !got.Succeeded {
		t.Errorf("Decision() = %+v, %t, %v; want the recorded success", got, decided, err)
	}
}
