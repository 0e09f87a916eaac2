//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestGroupEventSurvivesACrashBeforeItsPublish: a seat's turn saves the group with its event
// in the outbox and answers; the group app's relay publishes after. Here the relay publishes
// through a component that does not exist, so the group.opened of a new group never leaves,
// and the app dies with it. The event is in the group's saved outbox; the restarted app's next
// turn of the group (a join) hands it over again, so the leader hears of the group once, and
// the joiner of the join.
func TestGroupEventSurvivesACrashBeforeItsPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name:   "group-outbox",
		Apps:   []string{"gateway", "catalog", "inventory", "order", "payment", "group", "notify"},
		AppEnv: map[string]map[string]string{"group": {"OUTBOX_PUBSUBS": "pubsub-relay-gone"}},
	})
	dealID := newGroupDeal(t, s, 10, 3, 240)
	users := newUsers(t, s, 3)
	lead := mustSeat(t, users[0], dealID, "")
	opened := lead.Group.ID + ":group.opened"

	var st struct {
		Status string `json:"status"`
		Outbox []struct {
			EventID string `json:"event_id"`
		} `json:"outbox"`
	}
	if found, err := s.State(ctx, "group", "group:"+lead.Group.ID, &st); err != nil || !found {
		t.Fatalf("group document: found %t, %v", found, err)
	}
	if len(st.Outbox) != 1 || st.Outbox[0].EventID != opened {
		t.Fatalf("outbox of the saved group = %+v, want %s", st.Outbox, opened)
	}
	items := waitInbox(t, users[0], 2*time.Second, func([]notificationItem) bool { return false })
	if n := count(items, opened); n != 0 {
		t.Fatalf("%s delivered %d times before the crash (the relay was meant to fail)", opened, n)
	}

	relays := make([]string, 8)
	for i := range relays {
		relays[i] = fmt.Sprintf("pubsub-relay-%d", i)
	}
	if err := s.RestartApp(ctx, "group", map[string]string{"OUTBOX_PUBSUBS": strings.Join(relays, ",")}); err != nil {
		t.Fatal(err)
	}
	joined := mustSeat(t, users[1], dealID, lead.Group.ID)
	joinedID := lead.Group.ID + ":group.joined:" + joined.Order.ID

	items = waitInbox(t, users[0], time.Minute, func(items []notificationItem) bool { return count(items, opened) > 0 })
	if n := count(items, opened); n != 1 {
		t.Errorf("leader's inbox holds %s %d times, want once: %+v", opened, n, items)
	}
	items = waitInbox(t, users[1], time.Minute, func(items []notificationItem) bool { return count(items, joinedID) > 0 })
	if n := count(items, joinedID); n != 1 {
		t.Errorf("joiner's inbox holds %s %d times, want once: %+v", joinedID, n, items)
	}
	// The published events leave the outbox with the group's next save (a join: the order
	// events of this stack may be consumed by another stack of the run, which shares the
	// broker, so a payment's turn could run there).
	mustSeat(t, users[2], dealID, lead.Group.ID)
	eventually(t, 30*time.Second, "published events cleared from the outbox", func() error {
		if _, err := s.State(ctx, "group", "group:"+lead.Group.ID, &st); err != nil {
			return err
		}
		for _, e := range st.Outbox {
			if e.EventID == opened || e.EventID == joinedID {
				return fmt.Errorf("outbox %+v", st.Outbox)
			}
		}
		return nil
	})
}

// count counts the notifications with the given id.
func count(items []notificationItem, id string) int {
	n := 0
	for _, it := range items {
		if it.ID == id {
			n++
		}
	}
	return n
}
