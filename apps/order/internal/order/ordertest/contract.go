package ordertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// UserIndexContract is the behaviour every order.UserIndex must show, run against Users and
// daprstore.Users: the purchase limit counts a user's active orders per deal, checked and
// counted in one step; cancelled and refunded orders stop counting for good; the list is
// newest first and bounded by its limit. Every entry's deal ends after now.
func UserIndexContract(t *testing.T, newIndex func(t *testing.T) (order.UserIndex, time.Time)) {
	ctx := context.Background()
	entry := func(now time.Time, id, deal string, qty int) order.IndexEntry {
		return order.IndexEntry{OrderID: id, DealID: deal, Quantity: qty, Status: order.StatusPending, Until: now.Add(time.Hour)}
	}
	listed := func(t *testing.T, u order.UserIndex, limit int) []string {
		t.Helper()
		l, err := u.List(ctx, "u1", "", limit)
		if err != nil {
			t.Fatalf("List = %v", err)
		}
		out := []string{}
		for _, e := range l {
			out = append(out, e.OrderID)
		}
		return out
	}

	t.Run("the limit counts active orders of the deal", func(t *testing.T) {
		u, now := newIndex(t)
		for _, e := range []order.IndexEntry{entry(now, "o1", "d1", 2), entry(now, "o2", "d1", 1), entry(now, "o3", "d2", 3)} {
			if err := u.Add(ctx, "u1", e, 3); err != nil {
				t.Fatalf("Add(%s) = %v", e.OrderID, err)
			}
		}
		if err := u.Add(ctx, "u1", entry(now, "o4", "d1", 1), 3); !errors.Is(err, order.ErrPurchaseLimit) {
			t.Errorf("Add over the limit = %v, want %v", err, order.ErrPurchaseLimit)
		}
		if err := u.Add(ctx, "u1", entry(now, "o1", "d1", 2), 3); err != nil {
			t.Errorf("adding an id twice at the limit = %v, want a no-op", err)
		}
		if err := u.Add(ctx, "u9", entry(now, "o5", "d1", 3), 3); err != nil {
			t.Errorf("another user's Add = %v", err)
		}
		if diff := cmp.Diff(listed(t, u, 10), []string{"o3", "o2", "o1"}); diff != "" {
			t.Errorf("list (-got +want):\n%s", diff)
		}
	})

	t.Run("cancelled and refunded orders stop counting, for good", func(t *testing.T) {
		u, now := newIndex(t)
		for _, e := range []order.IndexEntry{entry(now, "o1", "d1", 1), entry(now, "o2", "d1", 1)} {
			if err := u.Add(ctx, "u1", e, 2); err != nil {
				t.Fatal(err)
			}
		}
		steps := []struct {
			id string
			st order.Status
		}{{"o1", order.StatusPaid}, {"o1", order.StatusRefunded}, {"o1", order.StatusPaid}, {"o2", order.StatusConfirmed}, {"o9", order.StatusCancelled}}
		for _, s := range steps {
			if err := u.SetStatus(ctx, "u1", s.id, s.st); err != nil {
				t.Fatalf("SetStatus(%s, %s) = %v", s.id, s.st, err)
			}
		}
		if err := u.Add(ctx, "u1", entry(now, "o3", "d1", 1), 2); err != nil {
			t.Errorf("Add after a refund freed a unit = %v", err)
		}
		if err := u.Add(ctx, "u1", entry(now, "o4", "d1", 1), 2); !errors.Is(err, order.ErrPurchaseLimit) {
			t.Errorf("Add with o2 confirmed and o3 pending = %v, want %v", err, order.ErrPurchaseLimit)
		}
		if diff := cmp.Diff(listed(t, u, 10), []string{"o3", "o2", "o1"}); diff != "" {
			t.Errorf("list keeps finished orders (-got +want):\n%s", diff)
		}
	})

	t.Run("remove forgets a placement", func(t *testing.T) {
		u, now := newIndex(t)
		if err := u.Add(ctx, "u1", entry(now, "o1", "d1", 2), 2); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"o1", "o1", "o9"} {
			if err := u.Remove(ctx, "u1", id); err != nil {
				t.Fatalf("Remove(%s) = %v", id, err)
			}
		}
		if err := u.Remove(ctx, "u8", "o1"); err != nil {
			t.Fatalf("Remove of an unknown user = %v", err)
		}
		if got := listed(t, u, 10); len(got) != 0 {
			t.Errorf("list after Remove = %v, want empty", got)
		}
		if err := u.Add(ctx, "u1", entry(now, "o2", "d1", 2), 2); err != nil {
			t.Errorf("Add after the removal = %v", err)
		}
	})

	t.Run("the list is newest first up to its limit", func(t *testing.T) {
		u, now := newIndex(t)
		var want []string
		for i := range 25 {
			id := fmt.Sprintf("o%02d", i)
			if err := u.Add(ctx, "u1", entry(now, id, fmt.Sprintf("d%d", i), 1), 1); err != nil {
				t.Fatal(err)
			}
			want = append([]string{id}, want...)
		}
		if diff := cmp.Diff(listed(t, u, 100), want); diff != "" {
			t.Errorf("list (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(listed(t, u, 7), want[:7]); diff != "" {
			t.Errorf("list limited to 7 (-got +want):\n%s", diff)
		}
		l, err := u.List(ctx, "nobody", "", 10)
		if err != nil || len(l) != 0 {
			t.Errorf("List of an unknown user = %v, %v", l, err)
		}
	})

	t.Run("pages follow a cursor to the oldest entry", func(t *testing.T) {
		u, now := newIndex(t)
		var want []string // newest first; Snowflake-like decimal ids
		for i := range 25 {
			id := strconv.Itoa(254151373430460416 + i<<22)
			if err := u.Add(ctx, "u1", entry(now, id, fmt.Sprintf("d%d", i), 1), 1); err != nil {
				t.Fatal(err)
			}
			want = append([]string{id}, want...)
		}
		var got []string
		before := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("pages never end")
			}
			l, err := u.List(ctx, "u1", before, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range l {
				got = append(got, e.OrderID)
			}
			if len(l) < 7 {
				break
			}
			before = l[len(l)-1].OrderID
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("every page in turn (-got +want):\n%s", diff)
		}
	})

	t.Run("concurrent adds never exceed the limit", func(t *testing.T) {
		u, now := newIndex(t)
		const adders, limit = 16, 5
		errs := make([]error, adders)
		var wg sync.WaitGroup
		for i := range adders {
			wg.Go(func() { errs[i] = u.Add(ctx, "u1", entry(now, fmt.Sprintf("o%d", i), "d1", 1), limit) })
		}
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, order.ErrPurchaseLimit):
				t.Errorf("Add #%d = %v", i, err)
			}
		}
		if ok != limit || len(listed(t, u, 100)) != limit {
			t.Errorf("%d adds succeeded, %d listed; want %d", ok, len(listed(t, u, 100)), limit)
		}
	})
}
