package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter/deadlettertest"
	"github.com/groupbuy/groupbuy/apps/notify/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

// memStore is an in-memory notification.Store; fail makes every call fail (an outage).
type memStore struct {
	mu      sync.Mutex
	inboxes map[string]*notification.Inbox
	fail    bool
}

var errOutage = errors.New("rpc error: code = Unavailable desc = state store down")

func (m *memStore) Add(_ context.Context, user string, n notification.Notification) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return false, errOutage
	}
	in := m.inboxes[user]
	if in == nil {
		in = &notification.Inbox{}
		m.inboxes[user] = in
	}
	return in.Add(n), nil
}

func (m *memStore) Inbox(_ context.Context, user string) ([]notification.Notification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return nil, errOutage
	}
	if in := m.inboxes[user]; in != nil {
		return append([]notification.Notification(nil), in.Items...), nil
	}
	return nil, nil
}

func (m *memStore) ids(user string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	if in := m.inboxes[user]; in != nil {
		for _, n := range in.Items {
			out = append(out, n.ID)
		}
	}
	return out
}

// fakeRelay records what the durable handlers relay to the live streams.
type fakeRelay struct {
	mu  sync.Mutex
	got []string
	err error
}

func (f *fakeRelay) Announce(_ context.Context, e notification.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, e.Notification.ID)
	return f.err
}

func (f *fakeRelay) announced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

type env struct {
	router http.Handler
	store  *memStore
	relay  *fakeRelay
	dead   *deadlettertest.Fake
	pub    *deadlettertest.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		store: &memStore{inboxes: map[string]*notification.Inbox{}},
		relay: &fakeRelay{},
		dead:  deadlettertest.NewFake(),
		pub:   &deadlettertest.Publisher{},
	}
	r := server.NewRouter(slog.New(slog.DiscardHandler), func(context.Context) error { return nil })
	keeper := deadletter.NewKeeper(e.dead, e.pub, deadletter.KnownTopics(), func() time.Time { return t0 })
	httpapi.Routes(r, notification.NewService(e.store, e.relay), keeper, httpapi.Options{})
	e.router = r
	return e
}

func (e *env) do(method, path, body, contentType string, h http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	return rec
}

// deliver posts body to route the way the sidecar delivers a subscribed event and returns the
// status the handler asked for.
func (e *env) deliver(t *testing.T, route, body string) string {
	t.Helper()
	rec := e.do(http.MethodPost, route, body, "application/cloudevents+json", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST %s = %d, want 200 (body %q)", route, rec.Code, rec.Body.String())
	}
	var out struct{ Status string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return out.Status
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func orderJSON(typ, orderID, userID string, at time.Time) string {
	b, _ := json.Marshal(events.NewOrderV1(typ, orderID, userID, "d1", "", 1, 900, "x", at))
	return string(b)
}

func groupJSON(typ, groupID string, at time.Time, members ...string) string {
	e := events.GroupV1{V: 1, EventID: groupID + ":" + typ, Type: typ, GroupID: groupID, DealID: "d1",
		Status: "open", GroupSize: 3, SeatsTaken: len(members), OccurredAt: at}
	for _, m := range members {
		e.Members = append(e.Members, events.Member{UserID: m, OrderID: "o-" + m})
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// envelope wraps data the way daprd delivers it (application/cloudevents+json).
func envelope(topic, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":"ce-1","source":"order","type":"com.dapr.event.sent","topic":%q,"pubsubname":"pubsub","datacontenttype":"application/json","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":%s}`, topic, data)
}

func userHeader(id string) http.Header {
	return identity.User{ID: id, Username: id, Role: identity.RoleUser}.Header()
}

func TestDurableOrderEvents(t *testing.T) {
	t.Parallel()
	created := orderJSON(events.TopicOrderCreated, "o1", "u1", t0)
	tests := []struct {
		name      string
		body      string
		fail      bool
		relayErr  error
		want      string
		wantInbox []string
		wantRelay []string
	}{
		{name: "recorded and relayed", body: envelope("order.created", created), want: "SUCCESS", wantInbox: []string{"o1:order.created"}, wantRelay: []string{"o1:order.created"}},
		{name: "data as a JSON string", body: envelope("order.created", fmt.Sprintf("%q", created)), want: "SUCCESS", wantInbox: []string{"o1:order.created"}, wantRelay: []string{"o1:order.created"}},
		{name: "unknown version is dropped to the dead letters", body: envelope("order.created", `{"v":99}`), want: "DROP"},
		{name: "no data is dropped", body: `{"id":"x","topic":"order.created"}`, want: "DROP"},
		{name: "not a cloud event is dropped", body: `not json`, want: "DROP"},
		{name: "state store outage is retried", body: envelope("order.created", created), fail: true, want: "RETRY"},
		{name: "relay failure does not fail the delivery", body: envelope("order.created", created), relayErr: errors.New("broker down"), want: "SUCCESS", wantInbox: []string{"o1:order.created"}, wantRelay: []string{"o1:order.created"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.store.fail = tt.fail
			e.relay.err = tt.relayErr

			if got := e.deliver(t, httpapi.RouteOrderEvents, tt.body); got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
			e.store.fail = false
			if diff := cmp.Diff(tt.wantInbox, e.store.ids("u1")); diff != "" {
				t.Errorf("inbox (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRelay, e.relay.announced()); diff != "" {
				t.Errorf("relayed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedeliveryAddsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := envelope("order.paid", orderJSON(events.TopicOrderPaid, "o1", "u1", t0))
	for range 3 {
		if got := e.deliver(t, httpapi.RouteOrderEvents, body); got != "SUCCESS" {
			t.Fatalf("status = %q, want SUCCESS", got)
		}
	}
	if diff := cmp.Diff([]string{"o1:order.paid"}, e.store.ids("u1")); diff != "" {
		t.Errorf("inbox (-want +got):\n%s", diff)
	}
}

func TestGroupOutcomeReachesEveryMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := envelope("group.failed", groupJSON(events.TopicGroupFailed, "g1", t0, "u1", "u2"))
	if got := e.deliver(t, httpapi.RouteGroupEvents, body); got != "SUCCESS" {
		t.Fatalf("status = %q, want SUCCESS", got)
	}
	for _, u := range []string{"u1", "u2"} {
		if diff := cmp.Diff([]string{"g1:group.failed"}, e.store.ids(u)); diff != "" {
			t.Errorf("inbox of %s (-want +got):\n%s", u, diff)
		}
	}
	// An order payload on a group route is a poison message.
	if got := e.deliver(t, httpapi.RouteGroupEvents, envelope("group.joined", orderJSON(events.TopicOrderPaid, "o1", "u1", t0))); got != "DROP" {
		t.Errorf("order payload on the group route: status = %q, want DROP", got)
	}
}

func TestInbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, typ := range []string{events.TopicOrderCreated, events.TopicOrderPaid, events.TopicOrderConfirmed} {
		e.deliver(t, httpapi.RouteOrderEvents, envelope(typ, orderJSON(typ, "o1", "u1", t0.Add(time.Duration(i)*time.Minute))))
	}
	e.deliver(t, httpapi.RouteOrderEvents, envelope("order.created", orderJSON(events.TopicOrderCreated, "o2", "u2", t0)))

	rec := e.do(http.MethodGet, "/me/notifications", "", "", nil)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("without a user: status = %d, want 401", rec.Code)
	}
	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.Code != problem.CodeUnauthorized {
		t.Errorf("without a user: problem = %+v, %v", doc, err)
	}

	rec = e.do(http.MethodGet, "/me/notifications", "", "", userHeader("u1"))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", rec.Code, rec.Body.String())
	}
	var got struct {
		Items []struct {
			ID        string          `json:"id"`
			Type      string          `json:"type"`
			CreatedAt time.Time       `json:"created_at"`
			Data      json.RawMessage `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, it := range got.Items {
		gotIDs = append(gotIDs, it.ID+" "+it.Type+" "+it.CreatedAt.Format(time.TimeOnly))
	}
	want := []string{"o1:order.confirmed order.confirmed 12:02:00", "o1:order.paid order.paid 12:01:00", "o1:order.created order.created 12:00:00"}
	if diff := cmp.Diff(want, gotIDs); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
	if len(got.Items) > 0 && !strings.Contains(string(got.Items[0].Data), `"order_id":"o1"`) {
		t.Errorf("data = %s, want the order view", got.Items[0].Data)
	}

	rec = e.do(http.MethodGet, "/me/notifications", "", "", userHeader("u3"))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"items":[]}` {
		t.Errorf("empty inbox = %d %s, want 200 {\"items\":[]}", rec.Code, rec.Body.String())
	}
}
