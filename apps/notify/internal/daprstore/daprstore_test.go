package daprstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/notify/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

// stored decodes the inbox document at key.
func stored(t *testing.T, f *daprstatetest.Client, key string) notification.Inbox {
	t.Helper()
	raw, _ := f.Value("statestore", key)
	var in notification.Inbox
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatalf("stored %s: %v", key, err)
	}
	return in
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func note(id string, at time.Time) notification.Notification {
	return notification.Notification{ID: id, Type: "order.created", CreatedAt: at, Data: json.RawMessage(`{"order_id":"x"}`)}
}

func TestAddDedupes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := daprstatetest.NewClient()
	s := daprstore.New(daprstate.New(fake, "statestore"))

	for i, want := range []bool{true, false, false} {
		got, err := s.Add(ctx, "u1", note("o1:order.created", t0))
		if err != nil {
			t.Fatalf("Add #%d: %v", i, err)
		}
		if got != want {
			t.Errorf("Add #%d = %v, want %v", i, got, want)
		}
	}
	if got := len(stored(t, fake, daprstore.Key("u1")).Items); got != 1 {
		t.Errorf("stored items = %d, want 1", got)
	}
	items, err := s.Inbox(ctx, "u1")
	if err != nil || len(items) != 1 || items[0].ID != "o1:order.created" {
		t.Errorf("Inbox = %+v, %v", items, err)
	}
	if items, err := s.Inbox(ctx, "nobody"); err != nil || len(items) != 0 {
		t.Errorf("Inbox(nobody) = %+v, %v; want empty", items, err)
	}
}

func TestAddCaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := daprstatetest.NewClient()
	s := daprstore.New(daprstate.New(fake, "statestore"))
	for i := range notification.MaxItems + 10 {
		if _, err := s.Add(ctx, "u1", note(fmt.Sprintf("o%d:order.created", i), t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	in := stored(t, fake, daprstore.Key("u1"))
	if got := len(in.Items); got != notification.MaxItems {
		t.Fatalf("stored items = %d, want %d", got, notification.MaxItems)
	}
	if got, want := in.Items[0].ID, fmt.Sprintf("o%d:order.created", notification.MaxItems+9); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
}

// Two replicas adding to the same inbox at once: the ETag makes the loser re-read and re-apply,
// so both entries survive.
func TestAddUnderContention(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake := daprstatetest.NewClient()
	s := daprstore.New(daprstate.New(fake, "statestore"))
	if _, err := s.Add(ctx, "u1", note("first", t0)); err != nil {
		t.Fatal(err)
	}
	other := daprstore.New(daprstate.New(fake, "statestore"))
	var fired atomic.Bool
	fake.BeforeSave = func(context.Context, string) {
		if fired.CompareAndSwap(false, true) {
			// Runs inside the first save attempt, after its read: a competing write.
			if _, err := other.Add(ctx, "u1", note("competitor", t0.Add(time.Second))); err != nil {
				t.Errorf("competing Add: %v", err)
			}
		}
	}
	if added, err := s.Add(ctx, "u1", note("mine", t0.Add(2*time.Second))); err != nil || !added {
		t.Fatalf("Add = %v, %v; want true, nil", added, err)
	}
	got := stored(t, fake, daprstore.Key("u1"))
	var gotIDs []string
	for _, n := range got.Items {
		gotIDs = append(gotIDs, n.ID)
	}
	want := []string{"mine", "competitor", "first"}
	if fmt.Sprint(gotIDs) != fmt.Sprint(want) {
		t.Errorf("ids = %v, want %v", gotIDs, want)
	}
}

func TestAddReportsOutage(t *testing.T) {
	t.Parallel()
	fake := daprstatetest.NewClient()
	fake.SetSaveErr(daprstatetest.ErrUnavailable)
	s := daprstore.New(daprstate.New(fake, "statestore"))
	if _, err := s.Add(context.Background(), "u1", note("a", t0)); err == nil {
		t.Fatal("Add during an outage: want an error")
	}
}
