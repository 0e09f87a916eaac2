package daprstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/groupbuy/groupbuy/apps/notify/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter/deadlettertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

func TestDeadLettersContract(t *testing.T) {
	t.Parallel()
	deadlettertest.Contract(t, func(*testing.T) deadletter.Store {
		return daprstore.NewDeadLetters(daprstate.New(daprstatetest.NewClient(), "statestore"))
	})
}

func letter(id string) deadletter.Letter {
	return deadletter.Letter{Topic: "order.created.dead", ID: id, Data: `{"v":99}`, ReceivedAt: t0}
}

func add(s *daprstore.DeadLetters, l deadletter.Letter) (bool, error) {
	var added bool
	err := s.Update(context.Background(), l.Topic, func(ls *deadletter.List) error {
		if added = ls.Add(l); !added {
			return deadletter.ErrNoChange
		}
		return nil
	})
	return added, err
}

// storedRaw returns the document at key as generic JSON: the shape operators and the
// integration tests read straight from Redis.
func storedRaw(t *testing.T, f *daprstatetest.Client, key string) map[string][]map[string]any {
	t.Helper()
	raw, _ := f.Value("statestore", key)
	var doc map[string][]map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("stored %s: %v", key, err)
	}
	return doc
}

func TestDeadLettersDedupeAndShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := daprstatetest.NewClient()
	s := daprstore.NewDeadLetters(daprstate.New(fake, "statestore"))

	for i, want := range []bool{true, false, true} {
		id := "ce-1"
		if i == 2 {
			id = "ce-2"
		}
		got, err := add(s, letter(id))
		if err != nil {
			t.Fatalf("Add #%d: %v", i, err)
		}
		if got != want {
			t.Errorf("Add #%d = %v, want %v", i, got, want)
		}
	}
	if got := len(fake.Writes("statestore", "deadletters:")); got != 2 {
		t.Errorf("%d writes, want 2 (a duplicate writes nothing)", got)
	}
	doc := storedRaw(t, fake, "deadletters:order.created.dead")
	want := `{"items":[{"data":"{\"v\":99}","id":"ce-2","received_at":"2025-06-01T12:00:00Z","status":"pending","topic":"order.created.dead"},{"data":"{\"v\":99}","id":"ce-1","received_at":"2025-06-01T12:00:00Z","status":"pending","topic":"order.created.dead"}]}`
	if got, _ := json.Marshal(doc); string(got) != want {
		t.Errorf("stored document\n got %s\nwant %s", got, want)
	}
	items, err := s.List(ctx, "order.created.dead")
	if err != nil || len(items) != 2 || items[0].ID != "ce-2" {
		t.Errorf("List = %+v, %v", items, err)
	}
	if items, err := s.List(ctx, "order.paid.dead"); err != nil || len(items) != 0 {
		t.Errorf("List(other topic) = %+v, %v; want empty", items, err)
	}
}

func TestDeadLettersCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := daprstatetest.NewClient()
	s := daprstore.NewDeadLetters(daprstate.New(fake, "statestore"))
	for i := range deadletter.MaxItems + 5 {
		if _, err := add(s, letter(fmt.Sprintf("ce-%d", i))); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	items, err := s.List(ctx, "order.created.dead")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != deadletter.MaxItems {
		t.Fatalf("kept %d, want %d", len(items), deadletter.MaxItems)
	}
	if got, want := items[0].ID, fmt.Sprintf("ce-%d", deadletter.MaxItems+4); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
	if got, want := items[len(items)-1].ID, "ce-5"; got != want {
		t.Errorf("oldest kept = %s, want %s", got, want)
	}
}
