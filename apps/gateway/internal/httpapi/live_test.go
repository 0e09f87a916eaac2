package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/live/livetest"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

var bob = identity.User{ID: "u2", Username: "bob", Role: identity.RoleUser}

// relayed is the CloudEvent daprd delivers for a relay publish of notify (pkg/live.EventV1 as
// JSON data).
func relayed(topic string, ev live.EventV1) string {
	data, _ := json.Marshal(ev)
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"notify","type":%q,"topic":%q,"pubsubname":"pubsub-broadcast","datacontenttype":"application/json","data":%s}`,
		ev.ID, ev.Type, topic, data)
}

func orderEvent(id, user string) live.EventV1 {
	return live.EventV1{V: 1, ID: id, Type: "order.paid", Data: json.RawMessage(`{"order_id":"` + strings.Split(id, ":")[0] + `"}`), Users: []string{user}}
}

func groupEvent(id, group string, users ...string) live.EventV1 {
	return live.EventV1{V: 1, ID: id, Type: "group.joined", Data: json.RawMessage(`{"group_id":"` + group + `","seats_taken":2}`), Users: users, GroupID: group}
}

// serve runs the real router on a test server. The hub closes first at cleanup, ending open
// streams, so closing the server does not wait for them.
func (e *env) serve(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(e.router)
	t.Cleanup(srv.Close)
	t.Cleanup(e.hub.Close)
	return srv
}

// relay posts body to route as the gateway's sidecar does and returns the status asked for.
func relay(t *testing.T, ctx context.Context, srv *httptest.Server, route, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+route, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	if token != "" {
		req.Header.Set("dapr-api-token", token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", route, err)
	}
	defer resp.Body.Close()
	var out struct{ Status string }
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out.Status
}

// stream opens an SSE stream on the gateway and returns its event frames as a channel. It
// returns once the connected comment arrived, i.e. once the handler is subscribed in the hub.
func stream(t *testing.T, ctx context.Context, srv *httptest.Server, path string, hdr map[string]string) <-chan livetest.Frame {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s %s, want 200 text/event-stream", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	// The first frame is the connected comment; read it here so the caller knows the stream
	// is subscribed before it publishes.
	br := bufio.NewReader(resp.Body)
	if f, err := livetest.ReadFrame(br); err != nil || len(f.Comments) == 0 || f.Comments[0] != "connected" {
		t.Fatalf("first frame %+v, %v; want the connected comment", f, err)
	}
	return livetest.Events(ctx, br)
}

// next waits for the next event frame, bounded by a timeout.
func next(t *testing.T, frames <-chan livetest.Frame) livetest.Frame {
	t.Helper()
	select {
	case f, ok := <-frames:
		if !ok {
			t.Fatal("the stream ended")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return livetest.Frame{}
}

// none checks that no event frame arrives within a short while.
func none(t *testing.T, name string, frames <-chan livetest.Frame) {
	t.Helper()
	select {
	case f, ok := <-frames:
		if ok {
			t.Errorf("%s got %+v, want nothing", name, f)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func TestLiveRoutesNeedAppToken(t *testing.T) {
	t.Parallel()
	body := relayed(live.TopicOrder, orderEvent("o1:order.paid", "u1"))
	tests := []struct {
		name       string
		gatewayTok string
		sent       string
		wantStatus int
	}{
		{name: "no token", gatewayTok: appToken, wantStatus: http.StatusUnauthorized},
		{name: "wrong token", gatewayTok: appToken, sent: "guess", wantStatus: http.StatusUnauthorized},
		{name: "gateway without a token fails closed", gatewayTok: "", sent: "anything", wantStatus: http.StatusUnauthorized},
		{name: "the sidecar's token", gatewayTok: appToken, sent: appToken, wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		for _, route := range []string{httpapi.RouteLiveOrder, httpapi.RouteLiveGroup} {
			t.Run(tt.name+" "+route, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				e := newEnv(t, func(a *httpapi.API) { a.AppToken = tt.gatewayTok })
				srv := e.serve(t)
				sub := e.hub.Subscribe(live.UserTopic("u1"))

				status, _ := relay(t, ctx, srv, route, body, tt.sent)

				if status != tt.wantStatus {
					t.Errorf("status = %d, want %d", status, tt.wantStatus)
				}
				var got []string
				for len(sub.C()) > 0 {
					got = append(got, (<-sub.C()).ID)
				}
				if tt.wantStatus != http.StatusOK && len(got) != 0 {
					t.Errorf("refused call still published %v", got)
				}
			})
		}
	}
}

func TestLiveOrderEventReachesOnlyItsUser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	srv := e.serve(t)

	tab1 := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, alice)))
	tab2 := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, alice))) // a second tab
	other := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, bob)))

	// An order event that names a group must still not reach the group's public stream.
	ev := orderEvent("o1:order.paid", alice.ID)
	ev.GroupID = "201"
	group := stream(t, ctx, srv, "/api/v1/groups/201/events", nil)
	if _, st := relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, ev), appToken); st != "SUCCESS" {
		t.Fatalf("relay answered %q, want SUCCESS", st)
	}

	want := livetest.Frame{ID: "o1:order.paid", Event: "order.paid", Data: `{"order_id":"o1"}`}
	for name, s := range map[string]<-chan livetest.Frame{"first tab": tab1, "second tab": tab2} {
		if diff := cmp.Diff(want, next(t, s)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	none(t, "bob's stream", other)
	none(t, "the group stream", group)
	// Bob's own event reaches him: his stream was live all along.
	relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, orderEvent("o9:order.paid", bob.ID)), appToken)
	if f := next(t, other); f.ID != "o9:order.paid" {
		t.Errorf("bob got %+v, want o9:order.paid", f)
	}
}

func TestLiveGroupEventFansOut(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	srv := e.serve(t)

	g1 := stream(t, ctx, srv, "/api/v1/groups/201/events", nil) // public: no login
	g2 := stream(t, ctx, srv, "/api/v1/groups/202/events", nil)
	member := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, alice)))
	outsider := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, identity.User{ID: "u3", Username: "carol", Role: identity.RoleUser})))

	relay(t, ctx, srv, httpapi.RouteLiveGroup, relayed(live.TopicGroup, groupEvent("201:group.joined", "201", alice.ID, bob.ID)), appToken)

	want := livetest.Frame{ID: "201:group.joined", Event: "group.joined", Data: `{"group_id":"201","seats_taken":2}`}
	for name, s := range map[string]<-chan livetest.Frame{"group stream": g1, "member": member} {
		if diff := cmp.Diff(want, next(t, s)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	none(t, "another group's stream", g2)
	none(t, "a non-member", outsider)
}

func TestLiveGarbageIsDropped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	srv := e.serve(t)
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "relay event", body: relayed(live.TopicOrder, orderEvent("o1:order.paid", "u1")), want: "SUCCESS"},
		{name: "data as a JSON string", body: `{"id":"x","data":` + fmt.Sprintf("%q", mustJSON(orderEvent("o1:order.paid", "u1"))) + `}`, want: "SUCCESS"},
		{name: "not a cloud event", body: `not json`, want: "DROP"},
		{name: "no data", body: `{"id":"x"}`, want: "DROP"},
		{name: "a durable order event is not a relay event", body: `{"id":"x","data":{"v":1,"event_id":"o1:order.paid","type":"order.paid","user_id":"u1"}}`, want: "DROP"},
		{name: "unknown version", body: `{"id":"x","data":{"v":2,"id":"x","type":"t","data":{},"users":["u1"]}}`, want: "DROP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := relay(t, ctx, srv, httpapi.RouteLiveOrder, tt.body, appToken)
			if status != http.StatusOK || got != tt.want {
				t.Errorf("answer = %d %q, want 200 %q", status, got, tt.want)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestUserStreamCatchesUpFromInbox(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	srv := e.serve(t)
	e.invoker.resp = &sidecar.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"items":[
		{"id":"c:order.paid","type":"order.paid","created_at":"2025-06-01T12:00:02Z","data":{"order_id":"c"}},
		{"id":"b:order.paid","type":"order.paid","created_at":"2025-06-01T12:00:01Z","data":{"order_id":"b"}},
		{"id":"a:order.paid","type":"order.paid","created_at":"2025-06-01T12:00:00Z","data":{"order_id":"a"}}]}`)}

	hdr := bearer(e.token(t, alice))
	hdr["Last-Event-ID"] = "a:order.paid"
	s := stream(t, ctx, srv, "/api/v1/events", hdr)
	// c was in the catch-up already; d is new.
	relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, orderEvent("c:order.paid", alice.ID)), appToken)
	relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, orderEvent("d:order.paid", alice.ID)), appToken)

	var got []string
	for range 3 {
		got = append(got, next(t, s).ID)
	}
	if diff := cmp.Diff([]string{"b:order.paid", "c:order.paid", "d:order.paid"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	want := []invocation{{App: "notify", Method: http.MethodGet, Path: "me/notifications",
		Header: http.Header{"X-User-Id": {"u1"}, "X-Username": {"alice"}, "X-User-Role": {"user"}}}}
	if diff := cmp.Diff(want, e.invoker.invocations()); diff != "" {
		t.Errorf("invocations (-want +got):\n%s", diff)
	}
}

func TestUserStreamWithoutCatchUpNeedsNoInvocation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	e.invoker.err = fmt.Errorf("notify down")
	srv := e.serve(t)
	s := stream(t, ctx, srv, "/api/v1/events", bearer(e.token(t, alice)))
	relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, orderEvent("o1:order.paid", alice.ID)), appToken)
	if f := next(t, s); f.ID != "o1:order.paid" {
		t.Errorf("got %+v", f)
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Errorf("invocations = %+v, want none", got)
	}
	// A failed catch-up still gives a live stream.
	hdr := bearer(e.token(t, alice))
	hdr["Last-Event-ID"] = "o1:order.paid"
	s2 := stream(t, ctx, srv, "/api/v1/events", hdr)
	relay(t, ctx, srv, httpapi.RouteLiveOrder, relayed(live.TopicOrder, orderEvent("o2:order.paid", alice.ID)), appToken)
	if f := next(t, s2); f.ID != "o2:order.paid" {
		t.Errorf("after a failed catch-up got %+v", f)
	}
}

func TestStreamsAreGuarded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		limiter    fakeLimiter
		path       string
		hdr        func(e *env) map[string]string
		wantStatus int
	}{
		{name: "user stream needs a login", path: "/api/v1/events", hdr: func(*env) map[string]string { return nil }, wantStatus: http.StatusUnauthorized},
		{name: "identity headers are not a login", path: "/api/v1/events", hdr: func(*env) map[string]string { return map[string]string{identity.HeaderUserID: "u1"} }, wantStatus: http.StatusUnauthorized},
		{name: "group stream is rate limited per IP", limiter: fakeLimiter{refuseIP: true}, path: "/api/v1/groups/201/events", hdr: func(*env) map[string]string { return nil }, wantStatus: http.StatusTooManyRequests},
		{name: "user stream is rate limited per user", limiter: fakeLimiter{refuseUser: true}, path: "/api/v1/events", hdr: func(e *env) map[string]string { return bearer(e.token(t, alice)) }, wantStatus: http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(a *httpapi.API) { a.Limiter = tt.limiter })
			rec := e.do(http.MethodGet, tt.path, "", tt.hdr(e))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if n := e.hub.Clients(live.UserTopic("u1")) + e.hub.Clients(live.GroupTopic("201")); n != 0 {
				t.Errorf("%d clients subscribed, want 0", n)
			}
		})
	}
}

// TestRoutesOutsideAPI pins what the public port serves besides /api/v1: health, and the two
// token-guarded relay routes. Nothing reaches notify's event, broadcast or dead-letter
// delivery endpoints; admin operations exist only under /api/v1/admin/ (admin role, see
// TestAdminRoutesRefuseOthers).
func TestRoutesOutsideAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var got []string
	err := chi.Walk(e.router.(chi.Router), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/api/v1/") {
			got = append(got, method+" "+route)
		}
		if strings.HasPrefix(route, "/api/v1/admin/") {
			return nil
		}
		for _, banned := range []string{"/broadcast", "/dead-letters", "/admin", "/events/"} {
			if strings.Contains(route, banned) {
				t.Errorf("route %s %s looks like an internal notify endpoint", method, route)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"GET /healthz", "GET /readyz", "POST /cache/catalog", "POST /live/group", "POST /live/order"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes outside /api/v1 (-want +got):\n%s", diff)
	}
	for _, path := range []string{"/api/v1/events/order", "/api/v1/broadcast/order", "/events/order", "/dead-letters"} {
		rec := e.do(http.MethodPost, path, `{}`, bearer(e.token(t, root)))
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 404 or 405", path, rec.Code)
		}
	}
	if got := e.invoker.invocations(); len(got) != 0 {
		t.Errorf("invocations = %+v, want none", got)
	}
}

// Open streams are bounded per user and per client address (429 beyond, with Retry-After),
// and a closed stream gives its slot back.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(a *httpapi.API) { a.Streams = httpapi.StreamLimits{PerUser: 2, PerIP: 3, Total: 100} })
	srv := e.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status := func(path string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	aliceTok := bearer(e.token(t, alice))
	actx, closeAlice := context.WithCancel(ctx)
	stream(t, actx, srv, "/api/v1/events", aliceTok)
	stream(t, ctx, srv, "/api/v1/events", aliceTok)
	if code, retry := status("/api/v1/events", aliceTok); code != http.StatusTooManyRequests || retry == "" {
		t.Errorf("alice's third stream = %d (Retry-After %q), want 429 with Retry-After", code, retry)
	}
	stream(t, ctx, srv, "/api/v1/groups/201/events", nil) // the address's third
	if code, _ := status("/api/v1/groups/202/events", nil); code != http.StatusTooManyRequests {
		t.Errorf("the address's fourth stream = %d, want 429", code)
	}
	closeAlice()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := status("/api/v1/groups/202/events?probe=1", map[string]string{"X-Probe": "1"})
		if code == http.StatusTooManyRequests && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if code == http.StatusTooManyRequests {
			t.Fatal("a closed stream never gave its slot back")
		}
		break
	}
}
