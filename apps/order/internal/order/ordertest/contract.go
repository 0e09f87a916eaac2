package ordertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

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

// PendingContract is the behaviour every order.Pending must show, run against Pending and
// daprstore.Pending (over the fake state client and over a real daprd). newSet returns an
// empty set and the time its clock reads; every due time is later than that, so no entry is
// moved into the current window.
func PendingContract(t *testing.T, newSet func(t *testing.T) (order.Pending, time.Time)) {
	ctx := context.Background()
	ids := func(es []order.PendingEntry) []string {
		out := make([]string, 0, len(es))
		for _, e := range es {
			out = append(out, e.OrderID)
		}
		return out
	}
	entry := func(id string, due time.Time) order.PendingEntry {
		return order.PendingEntry{OrderID: id, UserID: "u-" + id, DealID: "d1", Due: due}
	}

	t.Run("entries are due strictly before t, oldest first, added once", func(t *testing.T) {
		p, now := newSet(t)
		es := []order.PendingEntry{entry("o3", now.Add(3*time.Minute)), entry("o1", now.Add(time.Minute)), entry("o2", now.Add(2*time.Minute))}
		for _, e := range es {
			if err := p.Add(ctx, e); err != nil {
				t.Fatalf("Add(%s) = %v", e.OrderID, err)
			}
		}
		// A second Add keeps the first due time.
		if err := p.Add(ctx, entry("o1", now.Add(time.Hour))); err != nil {
			t.Fatalf("Add again = %v", err)
		}
		for _, tt := range []struct {
			at   time.Time
			want []string
		}{
			{now.Add(time.Minute), []string{}},
			{now.Add(2*time.Minute + time.Millisecond), []string{"o1", "o2"}},
			{now.Add(time.Hour), []string{"o1", "o2", "o3"}},
		} {
			got, err := p.Due(ctx, tt.at)
			if err != nil {
				t.Fatalf("Due(%v) = %v", tt.at, err)
			}
			if diff := cmp.Diff(ids(got), tt.want); diff != "" {
				t.Errorf("Due(now+%v) ids (-got +want):\n%s", tt.at.Sub(now), diff)
			}
			for _, e := range got {
				if want := entry(e.OrderID, e.Due); e.UserID != want.UserID || e.DealID != "d1" {
					t.Errorf("Due returned %+v, want user %s and deal d1", e, want.UserID)
				}
			}
		}
	})

	t.Run("remove by due time or by the key a read returned", func(t *testing.T) {
		p, now := newSet(t)
		for i := range 4 {
			if err := p.Add(ctx, entry(fmt.Sprintf("o%d", i), now.Add(time.Minute+time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Remove(ctx, entry("o1", now.Add(time.Minute+time.Second))); err != nil {
			t.Fatalf("Remove by due time = %v", err)
		}
		due, err := p.Due(ctx, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range due {
			if e.OrderID == "o2" {
				if err := p.Remove(ctx, e); err != nil {
					t.Fatalf("Remove by key = %v", err)
				}
			}
		}
		for _, e := range []order.PendingEntry{entry("o1", now.Add(time.Minute+time.Second)), entry("missing", now.Add(time.Minute))} {
			if err := p.Remove(ctx, e); err != nil {
				t.Errorf("Remove(%s) of an absent entry = %v", e.OrderID, err)
			}
		}
		got, err := p.Due(ctx, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(got), []string{"o0", "o3"}); diff != "" {
			t.Errorf("left (-got +want):\n%s", diff)
		}
	})

	t.Run("the due windows hold every due entry once, each leased to one claim", func(t *testing.T) {
		p, now := newSet(t)
		const n = 30
		for i := range n {
			if err := p.Add(ctx, entry(fmt.Sprintf("o%02d", i), now.Add(time.Minute+time.Duration(i)*300*time.Millisecond))); err != nil {
				t.Fatal(err)
			}
		}
		at := now.Add(time.Minute + 6*time.Second) // o00..o19 are due
		ws, err := p.Windows(ctx, at)
		if err != nil {
			t.Fatalf("Windows = %v", err)
		}
		var claimed []string
		var claims []order.PendingClaim
		for _, w := range ws {
			c, ok, err := p.Claim(ctx, w, at)
			if err != nil || !ok {
				t.Fatalf("Claim(%s) = %t, %v; want the lease", w, ok, err)
			}
			claims = append(claims, c)
			claimed = append(claimed, ids(c.Entries)...)
			if _, ok, err := p.Claim(ctx, w, at); err != nil || ok {
				t.Errorf("second Claim(%s) = %t, %v; want refused while leased", w, ok, err)
			}
		}
		slices.Sort(claimed)
		var want []string
		for i := range 20 {
			want = append(want, fmt.Sprintf("o%02d", i))
		}
		if diff := cmp.Diff(claimed, want); diff != "" {
			t.Errorf("claimed entries (-got +want):\n%s", diff)
		}
		for _, c := range claims {
			if err := p.Release(ctx, c); err != nil {
				t.Fatalf("Release(%s) = %v", c.Window, err)
			}
			if _, ok, err := p.Claim(ctx, c.Window, at); err != nil || !ok {
				t.Errorf("Claim(%s) after Release = %t, %v; want the lease", c.Window, ok, err)
			}
		}
		// A stale claim's Release does not end the lease another claim took since.
		if len(claims) > 0 {
			if err := p.Release(ctx, claims[0]); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := p.Claim(ctx, claims[0].Window, at); ok {
				t.Errorf("Claim(%s) succeeded after a stale Release", claims[0].Window)
			}
		}
	})

	t.Run("concurrent adds and removes all land", func(t *testing.T) {
		p, now := newSet(t)
		const n = 64
		due := now.Add(time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				e := entry(fmt.Sprintf("o%02d", i), due)
				if errs[i] = p.Add(ctx, e); errs[i] == nil && i%2 == 1 {
					errs[i] = p.Remove(ctx, e)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		got, err := p.Due(ctx, due.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := 0; i < n; i += 2 {
			want = append(want, fmt.Sprintf("o%02d", i))
		}
		if diff := cmp.Diff(ids(got), want); diff != "" {
			t.Errorf("left (-got +want):\n%s", diff)
		}
	})
}
