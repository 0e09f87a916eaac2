package notification_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/events"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func note(id string, at time.Time) notification.Notification {
	return notification.Notification{ID: id, Type: events.TopicOrderCreated, CreatedAt: at, Data: json.RawMessage(`{}`)}
}

func ids(in notification.Inbox) []string {
	out := []string{}
	for _, n := range in.Items {
		out = append(out, n.ID)
	}
	return out
}

func TestInboxAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		start     []notification.Notification
		add       notification.Notification
		wantAdded bool
		wantIDs   []string
	}{
		{name: "into an empty inbox", add: note("a", t0), wantAdded: true, wantIDs: []string{"a"}},
		{name: "newest goes first", start: []notification.Notification{note("a", t0)}, add: note("b", t0.Add(time.Second)), wantAdded: true, wantIDs: []string{"b", "a"}},
		{name: "late arrival sorts by time", start: []notification.Notification{note("c", t0.Add(2*time.Second)), note("a", t0)}, add: note("b", t0.Add(time.Second)), wantAdded: true, wantIDs: []string{"c", "b", "a"}},
		{name: "same time goes after the existing", start: []notification.Notification{note("a", t0)}, add: note("b", t0), wantAdded: true, wantIDs: []string{"a", "b"}},
		{name: "duplicate id is ignored", start: []notification.Notification{note("b", t0.Add(time.Second)), note("a", t0)}, add: note("a", t0.Add(time.Hour)), wantAdded: false, wantIDs: []string{"b", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := notification.Inbox{Items: tt.start}
			if got := in.Add(tt.add); got != tt.wantAdded {
				t.Errorf("Add() = %v, want %v", got, tt.wantAdded)
			}
			if diff := cmp.Diff(tt.wantIDs, ids(in)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInboxCap(t *testing.T) {
	t.Parallel()
	var in notification.Inbox
	for i := range notification.MaxItems + 50 {
		if !in.Add(note(strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second))) {
			t.Fatalf("Add(%d) = false, want true", i)
		}
	}
	if got, want := len(in.Items), notification.MaxItems; got != want {
		t.Fatalf("len = %d, want %d", got, want)
	}
	if got, want := in.Items[0].ID, strconv.Itoa(notification.MaxItems+49); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
	if got, want := in.Items[len(in.Items)-1].ID, "50"; got != want {
		t.Errorf("oldest kept = %s, want %s", got, want)
	}
	// A redelivery of a trimmed event stays out instead of coming back as new.
	if in.Add(note("3", t0.Add(3*time.Second))) {
		t.Errorf("Add(trimmed event) = true, want false")
	}
	if got, want := len(in.Items), notification.MaxItems; got != want {
		t.Errorf("len after re-adding a trimmed event = %d, want %d", got, want)
	}
}

func TestFromOrder(t *testing.T) {
	t.Parallel()
	e := events.NewOrderV1(events.TopicOrderPaid, "o1", "u1", "d1", "g1", 2, 1800, "paid", t0)
	got, err := notification.FromOrder(e)
	if err != nil {
		t.Fatalf("FromOrder: %v", err)
	}
	want := notification.Event{
		Kind: notification.KindOrder,
		Notification: notification.Notification{
			ID: "o1:order.paid", Type: events.TopicOrderPaid, CreatedAt: t0,
			Data: json.RawMessage(`{"order_id":"o1","deal_id":"d1","group_id":"g1","quantity":2,"total_cents":1800,"status":"paid"}`),
		},
		Recipients: []string{"u1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

func TestFromGroupHidesMembers(t *testing.T) {
	t.Parallel()
	e := events.GroupV1{
		V: 1, EventID: "g1:group.succeeded", Type: events.TopicGroupSucceeded, GroupID: "g1", DealID: "d1",
		Status: "succeeded", GroupSize: 2, SeatsTaken: 2, Paid: 2, UserID: "u2",
		Members:    []events.Member{{UserID: "u2", OrderID: "o2", Paid: true}, {UserID: "u1", OrderID: "o1", Paid: true}},
		ExpiresAt:  t0.Add(time.Hour),
		OccurredAt: t0,
	}
	got, err := notification.FromGroup(e)
	if err != nil {
		t.Fatalf("FromGroup: %v", err)
	}
	if diff := cmp.Diff([]string{"u1", "u2"}, got.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
	if got.GroupID != "g1" || got.Kind != notification.KindGroup {
		t.Errorf("group id, kind = %q, %q; want g1, group", got.GroupID, got.Kind)
	}
	var view map[string]any
	if err := json.Unmarshal(got.Notification.Data, &view); err != nil {
		t.Fatal(err)
	}
	for _, private := range []string{"members", "user_id", "order_id"} {
		if _, ok := view[private]; ok {
			t.Errorf("public group data has %q: %s", private, got.Notification.Data)
		}
	}
}

// Joins reach the inbox of the member who joined only; the outcome reaches every member.
func TestGroupRecipients(t *testing.T) {
	t.Parallel()
	members := []events.Member{{UserID: "u1", OrderID: "o1"}, {UserID: "u2", OrderID: "o2"}, {UserID: "u3", OrderID: "o3"}}
	tests := []struct {
		typ, user string
		want      []string
	}{
		{events.TopicGroupOpened, "u1", []string{"u1"}},
		{events.TopicGroupJoined, "u3", []string{"u3"}},
		{events.TopicGroupJoined, "", []string{"u1", "u2", "u3"}},
		{events.TopicGroupSucceeded, "", []string{"u1", "u2", "u3"}},
		{events.TopicGroupFailed, "", []string{"u1", "u2", "u3"}},
	}
	for _, tt := range tests {
		e := events.GroupV1{V: 1, EventID: "g1:" + tt.typ, Type: tt.typ, GroupID: "g1", DealID: "d1", UserID: tt.user, Members: members, OccurredAt: t0}
		got, err := notification.FromGroup(e)
		if err != nil {
			t.Fatalf("%s: %v", tt.typ, err)
		}
		if diff := cmp.Diff(tt.want, got.Recipients); diff != "" {
			t.Errorf("%s by %q: recipients (-want +got):\n%s", tt.typ, tt.user, diff)
		}
	}
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		dec  func([]byte) (notification.Event, error)
	}{
		{name: "unknown order version", data: `{"v":99}`, dec: notification.DecodeOrder},
		{name: "not json", data: `hello`, dec: notification.DecodeOrder},
		{name: "unknown order type", data: `{"v":1,"event_id":"o1:x","type":"order.shipped","order_id":"o1","user_id":"u1"}`, dec: notification.DecodeOrder},
		{name: "line break in an id", data: `{"v":1,"event_id":"o1\nevent: x","type":"order.paid","order_id":"o1","user_id":"u1"}`, dec: notification.DecodeOrder},
		{name: "unknown group version", data: `{"v":2,"event_id":"g","type":"group.opened","group_id":"g"}`, dec: notification.DecodeGroup},
		{name: "unknown group type", data: `{"v":1,"event_id":"g","type":"group.renamed","group_id":"g"}`, dec: notification.DecodeGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.dec([]byte(tt.data))
			if !errors.Is(err, events.ErrUnsupported) {
				t.Errorf("error = %v, want events.ErrUnsupported", err)
			}
		})
	}
}

// memStore is an in-memory notification.Store failing for the users in fail.
type memStore struct {
	inboxes map[string]*notification.Inbox
	fail    map[string]bool
}

func (m *memStore) Add(_ context.Context, user string, n notification.Notification) (bool, error) {
	if m.fail[user] {
		return false, fmt.Errorf("state store down")
	}
	in := m.inboxes[user]
	if in == nil {
		in = &notification.Inbox{}
		m.inboxes[user] = in
	}
	return in.Add(n), nil
}

func (m *memStore) Inbox(_ context.Context, user string) ([]notification.Notification, error) {
	if in := m.inboxes[user]; in != nil {
		return in.Items, nil
	}
	return nil, nil
}

func TestRecordTriesEveryRecipient(t *testing.T) {
	t.Parallel()
	store := &memStore{inboxes: map[string]*notification.Inbox{}, fail: map[string]bool{"u2": true}}
	svc := notification.NewService(store, nil)
	ev := notification.Event{Notification: note("g1:group.failed", t0), Recipients: []string{"u1", "u2", "u3"}}

	added, err := svc.Record(context.Background(), ev)
	if err == nil {
		t.Fatal("Record: want an error for u2")
	}
	if added != 2 {
		t.Errorf("added = %d, want 2", added)
	}

	// The redelivery after the error finds u1 and u3 done.
	store.fail = nil
	added, err = svc.Record(context.Background(), ev)
	if err != nil || added != 1 {
		t.Errorf("Record again = %d, %v; want 1, nil", added, err)
	}
	items, err := svc.Inbox(context.Background(), "nobody")
	if err != nil || items == nil || len(items) != 0 {
		t.Errorf("Inbox(unknown user) = %#v, %v; want an empty non-nil list", items, err)
	}
}
