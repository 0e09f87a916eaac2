package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/apps/group/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

// fakeActors records the member calls the subscription makes; err fails them.
type fakeActors struct {
	group.Actors // unused methods panic
	mu           sync.Mutex
	calls        []string
	err          error
	groups       map[string]group.Group
}

func (f *fakeActors) MemberPaid(_ context.Context, id string, a group.PaidArgs) (group.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "paid "+id+" "+a.OrderID+" "+a.UserID)
	return group.Group{}, f.err
}

func (f *fakeActors) MemberLeft(_ context.Context, id string, a group.LeftArgs) (group.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "left "+id+" "+a.OrderID)
	return group.Group{}, f.err
}

func (f *fakeActors) Get(_ context.Context, id string) (group.Group, error) {
	g, ok := f.groups[id]
	if !ok {
		return group.Group{}, group.ErrNotFound
	}
	return g, nil
}

// Load is the saved state (group.States).
func (f *fakeActors) Load(_ context.Context, id string) (group.Group, bool, error) {
	g, ok := f.groups[id]
	return g, ok, nil
}

func newServer(a *fakeActors) http.Handler {
	svc := group.NewService(group.Config{IdemLease: time.Second}, group.Deps{Actors: a, States: a, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return t0 }})
	r := chi.NewRouter()
	httpapi.Routes(r, svc, slog.New(slog.DiscardHandler))
	return r
}

func deliver(t *testing.T, h http.Handler, body string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events/order", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: daprd must always get a 200 with a status", rec.Code)
	}
	var out struct{ Status string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out.Status
}

func envelope(t *testing.T, e events.OrderV1) string {
	t.Helper()
	data, _ := json.Marshal(e)
	b, _ := json.Marshal(map[string]any{"id": e.EventID, "topic": e.Type, "pubsubname": "pubsub", "data": json.RawMessage(data)})
	return string(b)
}

func TestOrderEvents(t *testing.T) {
	t.Parallel()
	paid := events.NewOrderV1(events.TopicOrderPaid, "o1", "u1", "d1", "g1", 1, 700, "paid", t0)
	cancelled := events.NewOrderV1(events.TopicOrderCancelled, "o2", "u2", "d1", "g1", 1, 700, "cancelled", t0)
	flash := events.NewOrderV1(events.TopicOrderPaid, "f1", "u1", "d2", "", 1, 700, "paid", t0)
	rawPaid, _ := json.Marshal(paid)
	tests := []struct {
		name      string
		body      string
		err       error
		want      string
		wantCalls []string
	}{
		{name: "paid", body: envelope(t, paid), want: "SUCCESS", wantCalls: []string{"paid g1 o1 u1"}},
		{name: "cancelled", body: envelope(t, cancelled), want: "SUCCESS", wantCalls: []string{"left g1 o2"}},
		{name: "binary payload", body: `{"id":"x","data_base64":"` + base64.StdEncoding.EncodeToString(rawPaid) + `"}`, want: "SUCCESS", wantCalls: []string{"paid g1 o1 u1"}},
		{name: "flash order ignored", body: envelope(t, flash), want: "SUCCESS"},
		{name: "unknown group acked", body: envelope(t, paid), err: group.ErrNotFound, want: "SUCCESS", wantCalls: []string{"paid g1 o1 u1"}},
		{name: "outage retried", body: envelope(t, paid), err: problem.New(problem.CodeUnavailable, "sidecar down"), want: "RETRY", wantCalls: []string{"paid g1 o1 u1"}},
		{name: "poison dropped", body: `{"id":"x","data":{"v":9}}`, want: "DROP"},
		{name: "not json dropped", body: `nope`, want: "DROP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &fakeActors{err: tt.err}
			if got := deliver(t, newServer(a), tt.body); got != tt.want {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
			if diff := cmp.Diff(a.calls, tt.wantCalls); diff != "" {
				t.Errorf("actor calls (-got +want):\n%s", diff)
			}
		})
	}
}

func TestGetGroup(t *testing.T) {
	t.Parallel()
	a := &fakeActors{groups: map[string]group.Group{
		"g1": {ID: "g1", DealID: "d1", Status: group.StatusOpen, GroupSize: 3, ExpiresAt: t0, Opened: true,
			Seats: []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatHeld, Paid: true}}},
		"hidden": {ID: "hidden", Status: group.StatusOpen},
	}}
	h := newServer(a)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/groups/g1", nil))
	want := `{"id":"g1","deal_id":"d1","status":"open","group_size":3,"seats_taken":1,"paid":1,"expires_at":"2030-01-02T10:00:00Z"}` + "\n"
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Errorf("GET g1: %d %s, want %s", rec.Code, rec.Body, want)
	}
	for _, id := range []string{"hidden", "nope"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/groups/"+id, nil))
		if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("GET %s: %d %s", id, rec.Code, rec.Body)
		}
	}
	// Writes need the forwarded user.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/groups/g1/join", strings.NewReader(`{}`)))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("anonymous join: %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodPost, "/groups/g1/join", strings.NewReader(`{"extra":1}`))
	req.Header.Set("X-User-Id", "u2")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("join with an unknown field: %d %s", rec.Code, rec.Body)
	}
}
