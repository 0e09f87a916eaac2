package ordertest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
)

// GroupIndexContract is the behaviour every order.GroupIndex must show, run against Groups
// and daprstore.Groups: orders are recorded once, the first recorded outcome wins, and a
// decided group takes no new orders.
func GroupIndexContract(t *testing.T, newIndex func(t *testing.T) order.GroupIndex) {
	ctx := context.Background()
	o1, o2, o3 := order.GroupEntry{OrderID: "o1", UserID: "u1"}, order.GroupEntry{OrderID: "o2", UserID: "u2"}, order.GroupEntry{OrderID: "o3", UserID: "u3"}

	t.Run("an unknown group is undecided", func(t *testing.T) {
		g := newIndex(t)
		if out, decided, err := g.Decision(ctx, "g1"); err != nil || decided {
			t.Errorf("Decision() = %+v, %t, %v; want undecided", out, decided, err)
		}
	})

	t.Run("the first outcome is recorded and wins", func(t *testing.T) {
		g := newIndex(t)
		for _, e := range []order.GroupEntry{o1, o2, o1} {
			if err := g.Add(ctx, "g1", e); err != nil {
				t.Fatalf("Add(%s) = %v", e.OrderID, err)
			}
		}
		first := order.GroupOutcome{GroupID: "g1", Members: []string{"o1"}}
		wantOrders := []order.GroupEntry{o1, o2}
		for i, out := range []order.GroupOutcome{first, first, {GroupID: "g1", Succeeded: true, Members: []string{"o1", "o2"}}} {
			rec, orders, err := g.Decide(ctx, out)
			if err != nil {
				t.Fatalf("Decide #%d = %v", i+1, err)
			}
			if diff := cmp.Diff(rec, first); diff != "" {
				t.Errorf("Decide #%d outcome (-got +want):\n%s", i+1, diff)
			}
			if diff := cmp.Diff(orders, wantOrders); diff != "" {
				t.Errorf("Decide #%d orders (-got +want):\n%s", i+1, diff)
			}
		}
		rec, decided, err := g.Decision(ctx, "g1")
		if err != nil || !decided {
			t.Fatalf("Decision() decided=%t err=%v, want decided", decided, err)
		}
		if diff := cmp.Diff(rec, first); diff != "" {
			t.Errorf("Decision() (-got +want):\n%s", diff)
		}
		if err := g.Add(ctx, "g1", o3); !errors.Is(err, order.ErrGroupClosed) {
			t.Errorf("Add after Decide = %v, want %v", err, order.ErrGroupClosed)
		}
		if err := g.Add(ctx, "g1", o2); err != nil {
			t.Errorf("re-adding a known order after Decide = %v", err)
		}
	})

	t.Run("a group without orders is decided", func(t *testing.T) {
		g := newIndex(t)
		out := order.GroupOutcome{GroupID: "g2", Succeeded: true, Members: []string{"o9"}}
		rec, orders, err := g.Decide(ctx, out)
		if err != nil || len(orders) != 0 {
			t.Fatalf("Decide() orders=%v err=%v, want none", orders, err)
		}
		if diff := cmp.Diff(rec, out); diff != "" {
			t.Errorf("Decide() (-got +want):\n%s", diff)
		}
	})

	t.Run("concurrent outcomes agree on one", func(t *testing.T) {
		g := newIndex(t)
		outs := []order.GroupOutcome{{GroupID: "g3", Succeeded: true, Members: []string{"o1"}}, {GroupID: "g3"}}
		got := make([]order.GroupOutcome, 8)
		errs := make([]error, len(got))
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() { got[i], _, errs[i] = g.Decide(ctx, outs[i%2]) })
		}
		wg.Wait()
		rec, _, err := g.Decision(ctx, "g3")
		if err != nil {
			t.Fatalf("Decision() = %v", err)
		}
		for i := range got {
			if errs[i] != nil {
				t.Errorf("Decide #%d = %v", i, errs[i])
				continue
			}
			if diff := cmp.Diff(got[i], rec); diff != "" {
				t.Errorf("Decide #%d returned another outcome than the recorded one (-got +want):\n%s", i, diff)
			}
		}
	})
}
