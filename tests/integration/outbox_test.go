//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestOrderEventSurvivesACrashBetweenCommitAndPublish: the order app answers a purchase
// without waiting for the broker, and dies before its relay could publish (its relay
// publishes through a component that does not exist, so nothing ever leaves). The order
// document holds order.created in its outbox; another replica's recovery pass publishes it
// (the replica started here once the dead one's lease has ended, or, on the default profile,
// the shared stack's order app, which uses the same store and broker and may hold the
// lease), and the event reaches notify's inbox exactly once. The event's outbox index entry
// is trimmed after (the event stays in the document, published).
func TestOrderEventSurvivesACrashBetweenCommitAndPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	relays := make([]string, 8)
	for i := range relays {
		relays[i] = fmt.Sprintf("pubsub-relay-%d", i)
	}
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "outbox-crash",
		Apps: []string{"gateway", "catalog", "inventory", "order", "notify"},
		AppEnv: map[string]map[string]string{"order": {
			"OUTBOX_PUBSUBS": "pubsub-relay-gone", // every publish fails: the crash comes first
		}},
	})
	dealID := newFlashDeal(t, s, 5)
	user, _ := s.NewUser(t)

	r, err := placeOrder(ctx, user, dealID, 1, "outbox-crash")
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %+v", err, r)
	}
	var o orderView
	if err := r.JSON(&o); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Status string `json:"status"`
		Outbox []struct {
			Topic string `json:"topic"`
			Slot  string `json:"slot"`
		} `json:"outbox"`
	}
	if found, err := s.State(ctx, "order", "order:"+o.ID, &doc); err != nil || !found {
		t.Fatalf("order document: found %t, %v", found, err)
	}
	if len(doc.Outbox) != 1 || doc.Outbox[0].Topic != "order.created" || !strings.HasPrefix(doc.Outbox[0].Slot, "outbox:") {
		t.Fatalf("outbox of the committed order = %+v, want order.created with its index slot", doc.Outbox)
	}

	if err := s.Sup.KillApp("order"); err != nil {
		t.Fatal(err)
	}
	var inbox struct {
		Items []notificationItem `json:"items"`
	}
	user.MustDo(t, http.MethodGet, "/me/notifications", nil, http.StatusOK, &inbox)
	if got := orderTypes(inbox.Items, o.ID); got["order.created"] != 0 {
		t.Fatalf("order.created delivered before the crash: %v (the relay was meant to fail)", got)
	}

	if _, err := s.StartReplica(ctx, "order", map[string]string{"OUTBOX_PUBSUBS": strings.Join(relays, ",")}); err != nil {
		t.Fatal(err)
	}

	if s.Profile == harness.ProfileDefault {
		items := waitInbox(t, user, time.Minute, func(items []notificationItem) bool {
			return orderTypes(items, o.ID)["order.created"] == 1
		})
		if got := orderTypes(items, o.ID); got["order.created"] != 1 {
			t.Fatalf("inbox after the restart: %v, want order.created once", got)
		}
	} else {
		// Stacks of one run share the Redis DB, so the shared stack's notify (the same
		// consumer group) may take the message and keep it in its own PostgreSQL database:
		// the event is looked for in the stream itself.
		eventually(t, time.Minute, "order.created in the stream", func() error {
			msgs, err := s.Redis.XRevRangeN(ctx, "order.created", "+", "-", 500).Result()
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if data, _ := m.Values["data"].(string); strings.Contains(data, `"`+o.ID+`:order.created"`) {
					return nil
				}
			}
			return fmt.Errorf("not among the last %d entries", len(msgs))
		})
	}
	eventually(t, 30*time.Second, "index entry trimmed", func() error {
		keys, err := s.StateKeys(ctx, "order")
		if err != nil {
			return err
		}
		for _, k := range keys {
			var slot struct {
				IDs []string `json:"ids"`
			}
			if !strings.HasPrefix(k, "outbox:1") {
				continue
			}
			if _, err := s.State(ctx, "order", k, &slot); err != nil {
				return err
			}
			for _, id := range slot.IDs {
				if strings.HasPrefix(id, o.ID) {
					return fmt.Errorf("order still listed in %s (%s)", k, id)
				}
			}
		}
		return nil
	})
}
