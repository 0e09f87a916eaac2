package daprstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

func usersAt(pageSize int) (*daprstatetest.Client, *daprstore.Users, *ordertest.Clock) {
	f, s := newState()
	clock := ordertest.NewClock(t0)
	return f, daprstore.NewUsers(s, pageSize, clock.Now), clock
}

func TestUsersContract(t *testing.T) {
	t.Parallel()
	ordertest.UserIndexContract(t, func(*testing.T) (order.UserIndex, time.Time) {
		_, u, _ := usersAt(4) // small pages: the list crosses several
		return u, t0
	})
}

type headDoc struct {
	Recent []string `json:"recent"`
	Pages  int      `json:"pages"`
	Deals  map[string]struct {
		Orders map[string]int `json:"orders"`
	} `json:"deals"`
}

func head(t *testing.T, f *daprstatetest.Client, user string) (headDoc, int) {
	t.Helper()
	raw, ok := f.Value(component, "userorders:"+user)
	if !ok {
		t.Fatalf("no head for %s", user)
	}
	var h headDoc
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h, len(raw)
}

// However many orders a user places, the head keeps PageSize ids and the counters of deals
// still on sale; older ids go to pages written once.
func TestUsersDocumentsStayBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, u, clock := usersAt(10)
	largest := 0
	for i := range 200 {
		e := order.IndexEntry{OrderID: fmt.Sprintf("%019d", i), DealID: fmt.Sprintf("deal%d", i), Quantity: 1,
			Status: order.StatusPending, Until: clock.Now().Add(time.Minute)}
		if err := u.Add(ctx, "u1", e, 1); err != nil {
			t.Fatal(err)
		}
		if err := u.SetStatus(ctx, "u1", e.OrderID, order.StatusConfirmed); err != nil {
			t.Fatal(err)
		}
		_, size := head(t, f, "u1")
		largest = max(largest, size)
		clock.Advance(10 * time.Second) // deals end a minute after their order
	}
	h, _ := head(t, f, "u1")
	if len(h.Recent) > 10 || h.Pages != 19 || len(h.Deals) > 7 {
		t.Errorf("head holds %d ids, %d pages, %d deals; want ≤ 10 ids, 19 pages, the ≤ 7 deals still on sale", len(h.Recent), h.Pages, len(h.Deals))
	}
	if largest > 1500 {
		t.Errorf("largest head = %d bytes, want it bounded (≤ 1500)", largest)
	}
	if got := len(f.Keys(component, "userorders:u1:")); got != 19 {
		t.Errorf("pages stored = %d, want 19", got)
	}
	l, err := u.List(ctx, "u1", "", 1000)
	if err != nil || len(l) != 200 || l[0].OrderID != fmt.Sprintf("%019d", 199) || l[199].OrderID != fmt.Sprintf("%019d", 0) {
		t.Errorf("List = %d entries (%v), want all 200 newest first", len(l), err)
	}
}

// The index an earlier version wrote (every entry with its status in "entries") keeps
// working: read as it is, counted toward the limit, and moved into pages and counters by the
// first write.
func TestUsersLegacyIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, u, _ := usersAt(3)
	legacy := `{"entries":[` +
		`{"order_id":"o1","deal_id":"d1","quantity":1,"status":"confirmed"},` +
		`{"order_id":"o2","deal_id":"d1","quantity":1,"status":"cancelled"},` +
		`{"order_id":"o3","deal_id":"d2","quantity":2,"status":"pending_payment"},` +
		`{"order_id":"o4","deal_id":"d1","quantity":1,"status":"pending_payment"},` +
		`{"order_id":"o5","deal_id":"d3","quantity":1,"status":"refunded"}]}`
	f.Put(component, "userorders:u1", []byte(legacy))
	ids := func() []string {
		l, err := u.List(ctx, "u1", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l {
			out = append(out, e.OrderID)
		}
		return out
	}
	if diff := cmp.Diff(ids(), []string{"o5", "o4", "o3", "o2", "o1"}); diff != "" {
		t.Errorf("legacy list (-got +want):\n%s", diff)
	}
	until := t0.Add(time.Hour)
	if err := u.Add(ctx, "u1", order.IndexEntry{OrderID: "o6", DealID: "d1", Quantity: 1, Status: order.StatusPending, Until: until}, 2); err == nil {
		t.Error("Add over a limit the legacy entries fill succeeded")
	}
	if err := u.SetStatus(ctx, "u1", "o4", order.StatusCancelled); err != nil {
		t.Fatal(err)
	}
	if err := u.Add(ctx, "u1", order.IndexEntry{OrderID: "o6", DealID: "d1", Quantity: 1, Status: order.StatusPending, Until: until}, 2); err != nil {
		t.Errorf("Add after the legacy order was cancelled = %v", err)
	}
	h, _ := head(t, f, "u1")
	counted := map[string][]string{}
	for d, x := range h.Deals {
		counted[d] = slices.Sorted(maps.Keys(x.Orders))
	}
	if want := map[string][]string{"d1": {"o1", "o6"}, "d2": {"o3"}}; !cmp.Equal(counted, want) {
		t.Errorf("counted orders = %v, want %v", counted, want)
	}
	if len(h.Recent) > 3 || h.Pages < 1 {
		t.Errorf("head = %+v, want the legacy ids sealed into pages", h)
	}
	if diff := cmp.Diff(ids(), []string{"o6", "o5", "o4", "o3", "o2", "o1"}); diff != "" {
		t.Errorf("list after the move (-got +want):\n%s", diff)
	}
}

// A deal's counter goes once the deal has ended: it cannot be bought any more.
func TestUsersEndedDealsForgotten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, u, clock := usersAt(10)
	for i, d := range []string{"d1", "d2"} {
		e := order.IndexEntry{OrderID: fmt.Sprintf("o%d", i), DealID: d, Quantity: 1, Status: order.StatusPending, Until: t0.Add(time.Duration(i+1) * time.Hour)}
		if err := u.Add(ctx, "u1", e, 1); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(t0.Add(90 * time.Minute))
	if err := u.Add(ctx, "u1", order.IndexEntry{OrderID: "o9", DealID: "d3", Quantity: 1, Status: order.StatusPending, Until: t0.Add(3 * time.Hour)}, 1); err != nil {
		t.Fatal(err)
	}
	h, _ := head(t, f, "u1")
	var deals []string
	for d := range h.Deals {
		deals = append(deals, d)
	}
	if len(deals) != 2 || h.Deals["d1"].Orders != nil {
		t.Errorf("counted deals = %v, want d2 and d3 (d1 ended)", deals)
	}
	if err := u.SetStatus(ctx, "u9", "o1", order.StatusCancelled); err != nil {
		t.Fatal(err)
	}
	if err := u.Remove(ctx, "u9", "o1"); err != nil {
		t.Fatal(err)
	}
	if got := f.Keys(component, "userorders:u9"); len(got) != 0 {
		t.Errorf("documents created for an unknown user: %v", got)
	}
}
