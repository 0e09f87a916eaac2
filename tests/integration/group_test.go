//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupbuy/groupbuy/tests/harness"
)

type groupView struct {
	ID         string    `json:"id"`
	DealID     string    `json:"deal_id"`
	Status     string    `json:"status"`
	GroupSize  int       `json:"group_size"`
	SeatsTaken int       `json:"seats_taken"`
	Paid       int       `json:"paid"`
	ExpiresAt  time.Time `json:"expires_at"`
}

type groupCreated struct {
	Group groupView `json:"group"`
	Order orderView `json:"order"`
}

// storedGroup is GroupActor's state as it sits in the state store.
type storedGroup struct {
	ID        string    `json:"id"`
	DealID    string    `json:"deal_id"`
	Status    string    `json:"status"`
	GroupSize int       `json:"group_size"`
	ExpiresAt time.Time `json:"expires_at"`
	Seats     []struct {
		UserID  string `json:"user_id"`
		OrderID string `json:"order_id"`
		State   string `json:"state"`
		Paid    bool   `json:"paid"`
	} `json:"seats"`
	Opened          bool       `json:"opened"`
	DeadlineFiredAt *time.Time `json:"deadline_fired_at"`
	ReminderSet     bool       `json:"reminder_set"`
	Outbox          []any      `json:"outbox"`
}

type storedOrder struct {
	ID      string `json:"id"`
	UserID  string `json:"user_id"`
	GroupID string `json:"group_id"`
	Status  string `json:"status"`
	Settled bool   `json:"settled"`
}

// actorState reads GroupActor's state straight from the store: the group app keeps it under
// its own key "group:<id>" (written with the ETag the actor's turn read, not through Dapr's
// actor state API, which has no ETag), so Redis holds "group||group:<id>".
func actorState(ctx context.Context, s *harness.Stack, groupID string) (storedGroup, bool, error) {
	var g storedGroup
	found, err := s.State(ctx, "group", "group:"+groupID, &g)
	return g, found, err
}

func storedOrderOf(ctx context.Context, s *harness.Stack, id string) (storedOrder, error) {
	var o storedOrder
	found, err := s.State(ctx, "order", "order:"+id, &o)
	if err == nil && !found {
		err = fmt.Errorf("order %s is not in the store", id)
	}
	return o, err
}

// hasRefund reports whether the payment app recorded a refund of the order.
func hasRefund(ctx context.Context, s *harness.Stack, orderID string) (bool, error) {
	var refund struct {
		OrderID string `json:"order_id"`
	}
	found, err := s.State(ctx, "payment", "refund:"+orderID, &refund)
	return found && refund.OrderID == orderID, err
}

func groupDealBody(productID string, stock, size, ttlSeconds int) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"product_id":        productID,
		"kind":              "group",
		"price_cents":       700,
		"stock":             stock,
		"starts_at":         now.Add(-time.Minute).Format(time.RFC3339),
		"ends_at":           now.Add(time.Hour).Format(time.RFC3339),
		"per_user_limit":    1,
		"group_size":        size,
		"group_ttl_seconds": ttlSeconds,
	}
}

func newGroupDeal(t *testing.T, s *harness.Stack, stock, size, ttlSeconds int) string {
	t.Helper()
	admin := s.Admin(t)
	p := createProduct(t, admin)
	var d createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", groupDealBody(p.ID, stock, size, ttlSeconds), http.StatusCreated, &d)
	return d.ID
}

func openGroup(ctx context.Context, c *harness.Client, dealID, key string) (*harness.Response, error) {
	return c.Do(ctx, http.MethodPost, "/deals/"+dealID+"/groups", map[string]any{}, map[string]string{"Idempotency-Key": key})
}

func joinGroup(ctx context.Context, c *harness.Client, groupID, key string) (*harness.Response, error) {
	return c.Do(ctx, http.MethodPost, "/groups/"+groupID+"/join", nil, map[string]string{"Idempotency-Key": key})
}

// mustSeat opens (groupID == "") or joins a group and returns the answer.
func mustSeat(t *testing.T, c *harness.Client, dealID, groupID string) groupCreated {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var resp *harness.Response
	var err error
	if groupID == "" {
		resp, err = openGroup(ctx, c, dealID, "open")
	} else {
		resp, err = joinGroup(ctx, c, groupID, "join-"+groupID)
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusCreated {
		t.Fatalf("open/join: %d %s", resp.Status, resp.Body)
	}
	var out groupCreated
	if err := resp.JSON(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pay(t *testing.T, c *harness.Client, orderID string) orderView {
	t.Helper()
	var o orderView
	c.MustDo(t, http.MethodPost, "/orders/"+orderID+"/pay", map[string]string{"payment_token": "tok_ok"}, http.StatusOK, &o)
	return o
}

// eventually polls check every 200 ms until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = check(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// ordersIn waits until every order has the wanted status in the store, settled.
func ordersIn(t *testing.T, s *harness.Stack, want map[string]string) {
	t.Helper()
	eventually(t, 45*time.Second, "orders settle", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for id, st := range want {
			o, err := storedOrderOf(ctx, s, id)
			if err != nil {
				return err
			}
			if o.Status != st || !o.Settled {
				return fmt.Errorf("order %s is %s (settled %v), want %s", id, o.Status, o.Settled, st)
			}
		}
		return nil
	})
}

func groupStatus(t *testing.T, s *harness.Stack, groupID, want string, timeout time.Duration) groupView {
	t.Helper()
	var g groupView
	eventually(t, timeout, "group "+groupID+" "+want, func() error {
		s.NewClient().MustDo(t, http.MethodGet, "/groups/"+groupID, nil, http.StatusOK, &g)
		if g.Status != want {
			return fmt.Errorf("status %s", g.Status)
		}
		return nil
	})
	return g
}

func stockIs(t *testing.T, s *harness.Stack, dealID string, available, reserved, sold int) {
	t.Helper()
	eventually(t, 30*time.Second, "stock of deal "+dealID, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := s.Stock(ctx, dealID)
		if err != nil {
			return err
		}
		if st.Available != available || st.Reserved != reserved || st.Sold != sold {
			return fmt.Errorf("available %d reserved %d sold %d, want %d %d %d", st.Available, st.Reserved, st.Sold, available, reserved, sold)
		}
		return nil
	})
}

// TestGroupSucceedsWhenAllPay: a group of 3 whose members all pay succeeds; every member's
// order is confirmed and its unit sold, checked in the stores.
func TestGroupSucceedsWhenAllPay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dealID := newGroupDeal(t, stack, 10, 3, 60)
	users := newUsers(t, stack, 3)

	lead := mustSeat(t, users[0], dealID, "")
	g := lead.Group
	if g.Status != "open" || g.GroupSize != 3 || g.SeatsTaken != 1 || g.DealID != dealID || lead.Order.GroupID != g.ID || lead.Order.Status != "pending_payment" {
		t.Fatalf("opened %+v", lead)
	}
	if !lead.Order.PayBy.After(time.Now()) || lead.Order.PayBy.After(g.ExpiresAt) {
		t.Errorf("leader's pay_by %s, group expires %s: the pay window must end by the deadline", lead.Order.PayBy, g.ExpiresAt)
	}
	seats := []groupCreated{lead, mustSeat(t, users[1], dealID, g.ID), mustSeat(t, users[2], dealID, g.ID)}
	if seats[2].Group.SeatsTaken != 3 {
		t.Errorf("after two joins: %+v", seats[2].Group)
	}
	// Replaying a join returns the same answer.
	resp, err := joinGroup(ctx, users[1], g.ID, "join-"+g.ID)
	if err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("replay: %v %v", err, resp)
	}
	var replay groupCreated
	_ = resp.JSON(&replay)
	if replay.Order.ID != seats[1].Order.ID {
		t.Errorf("replayed join gave order %s, first %s", replay.Order.ID, seats[1].Order.ID)
	}
	// One seat per user.
	if r, _ := joinGroup(ctx, users[1], g.ID, "another-key"); r.Status != http.StatusConflict || r.Problem().Code != "already-member" {
		t.Errorf("second seat: %d %s", r.Status, r.Body)
	}

	want := map[string]string{}
	for i, s := range seats {
		// Paid until the group is decided. The last payment completes the group: its
		// order.paid leaves through the outbox relay at once, and when the group app has
		// recorded the success before the pay call looks, the answer is already confirmed.
		o := pay(t, users[i], s.Order.ID)
		if o.Status != "paid" && (i < len(seats)-1 || o.Status != "confirmed") {
			t.Errorf("payment %d of %d: group order status %q, want paid until the group is decided", i+1, len(seats), o.Status)
		}
		want[s.Order.ID] = "confirmed"
	}
	final := groupStatus(t, stack, g.ID, "succeeded", 30*time.Second)
	if final.Paid != 3 || final.SeatsTaken != 3 {
		t.Errorf("succeeded group %+v", final)
	}
	ordersIn(t, stack, want)
	stockIs(t, stack, dealID, 7, 0, 3)
	eventually(t, 10*time.Second, "actor state settled", func() error {
		st, found, err := actorState(ctx, stack, g.ID)
		switch {
		case err != nil:
			return err
		case !found:
			return errors.New("no actor state")
		case st.Status != "succeeded" || len(st.Seats) != 3 || len(st.Outbox) != 0 || st.ReminderSet:
			return fmt.Errorf("actor state %+v", st)
		}
		return nil
	})
	var list struct {
		Items []groupView `json:"items"`
	}
	stack.NewClient().MustDo(t, http.MethodGet, "/deals/"+dealID+"/groups?status=succeeded", nil, http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].ID != g.ID {
		t.Errorf("succeeded groups of the deal: %+v", list.Items)
	}
}

// TestGroupFailsAtDeadline: a group of 3 where two pay fails at its deadline; exactly the two
// paid orders are refunded (payment's records), the third is cancelled, all stock is back.
func TestGroupFailsAtDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dealID := newGroupDeal(t, stack, 10, 3, 8)
	users := newUsers(t, stack, 4)
	lead := mustSeat(t, users[0], dealID, "")
	g := lead.Group
	seats := []groupCreated{lead, mustSeat(t, users[1], dealID, g.ID), mustSeat(t, users[2], dealID, g.ID)}
	pay(t, users[0], seats[0].Order.ID)
	pay(t, users[1], seats[1].Order.ID)

	var open struct {
		Items []groupView `json:"items"`
	}
	stack.NewClient().MustDo(t, http.MethodGet, "/deals/"+dealID+"/groups?status=open", nil, http.StatusOK, &open)
	if len(open.Items) != 1 || open.Items[0].ID != g.ID || open.Items[0].SeatsTaken != 3 {
		t.Errorf("open groups of the deal: %+v", open.Items)
	}

	final := groupStatus(t, stack, g.ID, "failed", 30*time.Second)
	if final.Paid != 2 {
		t.Errorf("failed group %+v, want 2 paid", final)
	}
	ordersIn(t, stack, map[string]string{seats[0].Order.ID: "refunded", seats[1].Order.ID: "refunded", seats[2].Order.ID: "cancelled"})
	refunds := 0
	for i, s := range seats {
		got, err := hasRefund(ctx, stack, s.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got {
			refunds++
		}
		if want := i < 2; got != want {
			t.Errorf("order %s (seat %d): refund recorded %v, want %v", s.Order.ID, i, got, want)
		}
	}
	if refunds != 2 {
		t.Errorf("%d refunds recorded, want exactly 2", refunds)
	}
	stockIs(t, stack, dealID, 10, 0, 0)
	st, _, err := actorState(ctx, stack, g.ID)
	if err != nil || st.DeadlineFiredAt == nil {
		t.Fatalf("actor state %+v, %v: want deadline_fired_at", st, err)
	}
	t.Logf("deadline handled %s after expires_at", st.DeadlineFiredAt.Sub(st.ExpiresAt))
	if r, _ := joinGroup(ctx, users[3], g.ID, "late"); r.Status != http.StatusConflict || r.Problem().Code != "group-closed" {
		t.Errorf("join a failed group: %d %s", r.Status, r.Body)
	}
	// Every member hears how it ended in their inbox: the group's failure and their own
	// order's refund or cancellation.
	want := []map[string]bool{
		{"group.failed": true, "order.refunded": true},
		{"group.failed": true, "order.refunded": true},
		{"group.failed": true, "order.cancelled": true},
	}
	for i, s := range seats {
		items := waitInbox(t, users[i], 30*time.Second, func(items []notificationItem) bool { return hasTypes(items, s.Order.ID, want[i]) })
		if !hasTypes(items, s.Order.ID, want[i]) {
			t.Errorf("member %d's inbox %+v lacks one of %v", i, items, want[i])
		}
	}
}

// hasTypes reports whether items hold a notification of every wanted type: order events of
// the given order, group events of any group.
func hasTypes(items []notificationItem, orderID string, want map[string]bool) bool {
	seen := map[string]bool{}
	for _, it := range items {
		if strings.HasPrefix(it.Type, "order.") && !strings.HasPrefix(it.ID, orderID+":") {
			continue
		}
		seen[it.Type] = true
	}
	for typ := range want {
		if !seen[typ] {
			return false
		}
	}
	return true
}

// TestGroupJoinRace: 20 users race for the 4 free seats of a group of 5: exactly 5 seats are
// taken, everyone else is told group-full.
func TestGroupJoinRace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dealID := newGroupDeal(t, stack, 50, 5, 30)
	users := newUsers(t, stack, 21)
	g := mustSeat(t, users[0], dealID, "").Group

	statuses := make([]string, 20)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range users[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := joinGroup(ctx, c, g.ID, "race")
			if err != nil {
				statuses[i] = err.Error()
				return
			}
			statuses[i] = fmt.Sprintf("%d %s", resp.Status, resp.Problem().Code)
		}()
	}
	close(start)
	wg.Wait()
	counts := map[string]int{}
	for _, s := range statuses {
		counts[s]++
	}
	t.Logf("join answers: %v", counts)
	if counts["201 "] != 4 || counts["409 group-full"] != 16 {
		t.Errorf("answers %v, want 4 × 201 and 16 × 409 group-full", counts)
	}
	st, _, err := actorState(ctx, stack, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Seats) != 5 {
		t.Errorf("stored seats %d, want 5: %+v", len(st.Seats), st.Seats)
	}
	users5 := map[string]bool{}
	for _, s := range st.Seats {
		users5[s.UserID] = true
		if s.State != "held" {
			t.Errorf("seat %+v not held", s)
		}
	}
	if len(users5) != 5 {
		t.Errorf("seats of %d distinct users, want 5", len(users5))
	}
	var view groupView
	stack.NewClient().MustDo(t, http.MethodGet, "/groups/"+g.ID, nil, http.StatusOK, &view)
	if view.SeatsTaken != 5 {
		t.Errorf("GET group: %+v", view)
	}
	stockIs(t, stack, dealID, 45, 5, 0)
}

// TestGroupShortPayWindow runs a stack with a 4 s pay window: an unpaid member's order expires
// and frees the seat; and the deadline reminder survives the group app and its sidecar being
// killed and restarted.
func TestGroupShortPayWindow(t *testing.T) {
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "group",
		Apps: []string{"gateway", "catalog", "inventory", "order", "payment", "group"},
		Env:  map[string]string{"PAY_WINDOW": "4s"},
	})

	t.Run("unpaid seat is freed when its order expires", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dealID := newGroupDeal(t, s, 10, 2, 60)
		users := newUsers(t, s, 3)
		lead := mustSeat(t, users[0], dealID, "")
		pay(t, users[0], lead.Order.ID)
		unpaid := mustSeat(t, users[1], dealID, lead.Group.ID)
		if r, _ := joinGroup(ctx, users[2], lead.Group.ID, "first-try"); r.Status != http.StatusConflict || r.Problem().Code != "group-full" {
			t.Fatalf("join a full group: %d %s", r.Status, r.Body)
		}
		ordersIn(t, s, map[string]string{unpaid.Order.ID: "cancelled"})
		eventually(t, 20*time.Second, "seat freed", func() error {
			var g groupView
			s.NewClient().MustDo(t, http.MethodGet, "/groups/"+lead.Group.ID, nil, http.StatusOK, &g)
			if g.SeatsTaken != 1 {
				return fmt.Errorf("%+v", g)
			}
			return nil
		})
		late := mustSeat(t, users[2], dealID, lead.Group.ID)
		if late.Group.SeatsTaken != 2 {
			t.Errorf("after the freed seat was taken: %+v", late.Group)
		}
		pay(t, users[2], late.Order.ID)
		groupStatus(t, s, lead.Group.ID, "succeeded", 30*time.Second)
		ordersIn(t, s, map[string]string{lead.Order.ID: "confirmed", late.Order.ID: "confirmed", unpaid.Order.ID: "cancelled"})
		stockIs(t, s, dealID, 8, 0, 2)
	})

	t.Run("deadline reminder survives a group app crash", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		failDeal := newGroupDeal(t, s, 10, 3, 25)
		winDeal := newGroupDeal(t, s, 10, 2, 40)
		users := newUsers(t, s, 4)
		// A group that will fail: two of three seats paid before the crash.
		lead := mustSeat(t, users[0], failDeal, "")
		member := mustSeat(t, users[1], failDeal, lead.Group.ID)
		pay(t, users[0], lead.Order.ID)
		pay(t, users[1], member.Order.ID)
		// A group that will succeed after the restart.
		win := mustSeat(t, users[2], winDeal, "")
		pay(t, users[2], win.Order.ID)
		eventually(t, 10*time.Second, "payments applied", func() error {
			st, _, err := actorState(ctx, s, lead.Group.ID)
			if err != nil || st.Status != "open" || len(st.Seats) != 2 || !st.Seats[0].Paid || !st.Seats[1].Paid {
				return fmt.Errorf("%+v %v", st, err)
			}
			return nil
		})

		if err := s.Sup.KillApp("group"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := s.Sup.StartApp(ctx, "group"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(lead.Group.ExpiresAt) {
			t.Fatalf("restarted after the deadline (%s); the test needs a longer group_ttl_seconds", lead.Group.ExpiresAt)
		}
		// The restarted app serves the groups from their saved state.
		var g groupView
		eventually(t, 30*time.Second, "group readable after restart", func() error {
			resp, err := s.NewClient().Do(ctx, http.MethodGet, "/groups/"+lead.Group.ID, nil, nil)
			if err != nil || resp.Status != http.StatusOK {
				return fmt.Errorf("%v %v", err, resp)
			}
			return resp.JSON(&g)
		})
		if g.Status != "open" || g.Paid != 2 {
			t.Errorf("after restart: %+v", g)
		}
		late := mustSeat(t, users[3], winDeal, win.Group.ID)
		pay(t, users[3], late.Order.ID)
		groupStatus(t, s, win.Group.ID, "succeeded", 30*time.Second)

		groupStatus(t, s, lead.Group.ID, "failed", 60*time.Second)
		ordersIn(t, s, map[string]string{lead.Order.ID: "refunded", member.Order.ID: "refunded", win.Order.ID: "confirmed", late.Order.ID: "confirmed"})
		for _, id := range []string{lead.Order.ID, member.Order.ID} {
			if ok, err := hasRefund(ctx, s, id); err != nil || !ok {
				t.Errorf("refund of %s: %v %v", id, ok, err)
			}
		}
		stockIs(t, s, failDeal, 10, 0, 0)
		stockIs(t, s, winDeal, 8, 0, 2)
		st, _, err := actorState(ctx, s, lead.Group.ID)
		if err != nil || st.DeadlineFiredAt == nil {
			t.Fatalf("actor state %+v %v", st, err)
		}
		t.Logf("deadline after restart handled %s after expires_at", st.DeadlineFiredAt.Sub(st.ExpiresAt))
	})
}

// TestGroupDeadlineLateness opens 200 groups whose deadlines fall a few seconds apart and
// waits until every one is decided; it reports how late the deadline reminders were handled
// (deadline_fired_at - expires_at, from the actor state in the store).
func TestGroupDeadlineLateness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const groups = 200
	ttls := []int{5, 7, 9, 11}
	deals := make([]string, len(ttls))
	for i, ttl := range ttls {
		deals[i] = newGroupDeal(t, stack, groups/len(ttls), 3, ttl)
	}
	users := newUsers(t, stack, groups)

	ids := make([]string, groups)
	errs := make(chan error, groups)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	began := time.Now()
	for i, c := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// Refusals under load (503 with Retry-After) are retried with the same key.
			resp, _, err := asAClientWould(ctx, func() (*harness.Response, error) {
				return openGroup(ctx, c, deals[i%len(deals)], "lateness")
			})
			if err != nil || resp.Status != http.StatusCreated {
				errs <- fmt.Errorf("open %d: %v %v", i, err, resp)
				return
			}
			var out groupCreated
			if err := resp.JSON(&out); err != nil {
				errs <- err
				return
			}
			ids[i] = out.Group.ID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("opened %d groups in %s", groups, time.Since(began).Round(time.Millisecond))

	late := make([]time.Duration, 0, groups)
	eventually(t, 90*time.Second, "every group decided", func() error {
		late = late[:0]
		pending := 0
		for _, id := range ids {
			st, found, err := actorState(ctx, stack, id)
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if !found || st.Status != "failed" || st.DeadlineFiredAt == nil {
				pending++
				continue
			}
			late = append(late, st.DeadlineFiredAt.Sub(st.ExpiresAt))
		}
		if pending > 0 {
			return fmt.Errorf("%d of %d groups undecided", pending, groups)
		}
		return nil
	})
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	pct := func(p float64) time.Duration { return late[min(len(late)-1, int(p*float64(len(late))))] }
	t.Logf("deadline lateness over %d groups: p50 %s, p99 %s, max %s, min %s",
		len(late), pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond),
		late[len(late)-1].Round(time.Millisecond), late[0].Round(time.Millisecond))
	if slices.ContainsFunc(late, func(d time.Duration) bool { return d < 0 }) {
		t.Errorf("a deadline was handled before expires_at")
	}
	// Every leader's order is cancelled and its stock back.
	for _, d := range deals {
		stockIs(t, stack, d, groups/len(deals), 0, 0)
	}
}
