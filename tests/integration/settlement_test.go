//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPaidGroupOrderSettledAfterDeadLetteredOutcome (issue 8, loss window 3): payment is down
// when a group fails, for longer than the order app's subscription redelivers group.failed,
// so the event is dead-lettered (notify keeps it). When payment is back, the expiry sweep
// settles every member from the outcome recorded with the group's orders: both paid members
// are refunded exactly once, the unpaid one is cancelled and all stock is back, as the
// stores say.
func TestPaidGroupOrderSettledAfterDeadLetteredOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// The shared stack, not one of its own: stacks of one run share the broker's vhost, so
	// another stack's order app would take (and settle) a share of this group's events.
	s := stack
	dealID := newGroupDeal(t, s, 10, 3, 8)
	users := newUsers(t, s, 3)
	lead := mustSeat(t, users[0], dealID, "")
	g := lead.Group
	seats := []groupCreated{lead, mustSeat(t, users[1], dealID, g.ID), mustSeat(t, users[2], dealID, g.ID)}
	pay(t, users[0], seats[0].Order.ID)
	pay(t, users[1], seats[1].Order.ID)

	if err := s.Sup.StopApp("payment"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted { // leave the shared stack whole for the tests after this one
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer scancel()
			if err := s.Sup.StartApp(sctx, "payment"); err != nil {
				t.Errorf("restart payment: %v", err)
			}
		}
	})
	groupStatus(t, s, g.ID, "failed", 60*time.Second)

	// The order app's subscription gives up on group.failed: notify stores the dead letter.
	eventID := g.ID + ":group.failed"
	eventually(t, 3*time.Minute, "group.failed dead-lettered", func() error {
		var list struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if _, err := s.State(ctx, "notify", "deadletters:group.failed.dead", &list); err != nil {
			return err
		}
		for _, it := range list.Items {
			if it.ID == eventID {
				return nil
			}
		}
		return fmt.Errorf("no dead letter %s among %d", eventID, len(list.Items))
	})
	for _, seat := range seats[:2] {
		o, err := storedOrderOf(ctx, s, seat.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != "paid" {
			t.Fatalf("order %s is %s before payment is back, want paid (the outage must outlast the redelivery)", o.ID, o.Status)
		}
	}

	if err := s.Sup.StartApp(ctx, "payment"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	ordersIn(t, s, map[string]string{seats[0].Order.ID: "refunded", seats[1].Order.ID: "refunded", seats[2].Order.ID: "cancelled"})
	keys, err := s.StateKeys(ctx, "payment")
	if err != nil {
		t.Fatal(err)
	}
	for i, seat := range seats {
		refunded, err := hasRefund(ctx, s, seat.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; refunded != want {
			t.Errorf("order %s (seat %d): refund recorded %t, want %t", seat.Order.ID, i, refunded, want)
		}
		var records []string
		for _, k := range keys {
			if strings.Contains(k, seat.Order.ID) {
				records = append(records, k)
			}
		}
		slices.Sort(records)
		want := []string(nil)
		if i < 2 {
			want = []string{"charge:" + seat.Order.ID, "refund:" + seat.Order.ID}
		}
		if !slices.Equal(records, want) {
			t.Errorf("payment records of order %s: %v, want %v", seat.Order.ID, records, want)
		}
	}
	stockIs(t, s, dealID, 10, 0, 0)
	// The member's view agrees with the store.
	var o orderView
	users[0].MustDo(t, http.MethodGet, "/orders/"+seats[0].Order.ID, nil, http.StatusOK, &o)
	if o.Status != "refunded" {
		t.Errorf("GET /orders/%s status %q, want refunded", o.ID, o.Status)
	}
}
