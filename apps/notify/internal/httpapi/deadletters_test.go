package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter/deadlettertest"
	"github.com/groupbuy/groupbuy/apps/notify/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// poison is the original message as daprd published it to order.created and, after the
// durable handler answered DROP, to order.created.dead.
const poison = `{"specversion":"1.0","id":"ce-poison","source":"order","type":"com.dapr.event.sent","topic":"order.created","pubsubname":"pubsub","datacontenttype":"application/json","data":{"v":99}}`

// rawDelivery is how daprd delivers msg on a rawPayload subscription to topic: a fresh
// envelope (random id) around the bytes.
func rawDelivery(topic, msg string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":"random-%d","source":"Dapr","type":"com.dapr.event.sent","topic":%q,"pubsubname":"pubsub","datacontenttype":"application/octet-stream","data_base64":%q}`,
		len(msg), topic, base64.StdEncoding.EncodeToString([]byte(msg)))
}

type storedLetter struct {
	Topic      string          `json:"topic"`
	ID         string          `json:"id"`
	Data       string          `json:"data"`
	Event      json.RawMessage `json:"event"`
	ReceivedAt string          `json:"received_at"`
	Status     string          `json:"status"`
	Replays    int             `json:"replays"`
	ReplayedAt string          `json:"replayed_at"`
}

var (
	root  = identity.User{ID: "a1", Username: "root", Role: identity.RoleAdmin}
	alice = identity.User{ID: "u1", Username: "alice", Role: identity.RoleUser}
)

// deadLetters lists the dead letters of topic ("" for all) as an admin.
func (e *env) deadLetters(t *testing.T, topic string) []storedLetter {
	t.Helper()
	path := "/admin/dead-letters"
	if topic != "" {
		path += "?topic=" + topic
	}
	rec := e.do(http.MethodGet, path, "", "", root.Header())
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body.String())
	}
	var doc struct {
		Items []storedLetter `json:"items"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc.Items
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	want := []storedLetter{{Topic: "order.created.dead", ID: "ce-poison", Data: `{"v":99}`, Event: json.RawMessage(poison),
		ReceivedAt: "2025-06-01T12:00:00Z", Status: "pending"}}
	tests := []struct {
		name  string
		body  string
		fail  bool
		want  string
		items []storedLetter
	}{
		{name: "raw delivery is kept", body: rawDelivery("order.created.dead", poison), want: "SUCCESS", items: want},
		{name: "non-raw delivery names the original topic", body: poison, want: "SUCCESS", items: want},
		{name: "store outage is retried", body: rawDelivery("order.created.dead", poison), fail: true, want: "RETRY", items: []storedLetter{}},
		{name: "not JSON cannot come from a sidecar", body: `nope`, want: "DROP", items: []storedLetter{}},
		{name: "no topic cannot come from a sidecar", body: `{"id":"x","data":{}}`, want: "DROP", items: []storedLetter{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.dead.SetFail(tt.fail)
			if got := e.deliver(t, httpapi.RouteDeadLetters, tt.body); got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
			e.dead.SetFail(false)
			if diff := cmp.Diff(tt.items, e.deadLetters(t, "order.created.dead")); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeadLetterRedeliveryKeptOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 3 {
		// Each redelivery has an envelope id of its own; the original id dedupes.
		if got := e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", poison)); got != "SUCCESS" {
			t.Fatalf("status = %q, want SUCCESS", got)
		}
	}
	notCE := rawDelivery("order.paid.dead", "\x00garbage")
	e.deliver(t, httpapi.RouteDeadLetters, notCE)
	e.deliver(t, httpapi.RouteDeadLetters, notCE)

	if got := len(e.deadLetters(t, "order.created.dead")); got != 1 {
		t.Errorf("order.created.dead keeps %d letters, want 1", got)
	}
	got := e.deadLetters(t, "order.paid.dead")
	if len(got) != 1 || got[0].Data != "\x00garbage" {
		t.Errorf("order.paid.dead = %+v, want the garbage kept once", got)
	}
}

func TestListDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", poison))
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("group.failed.dead", letterOf("g1:group.failed", "group.failed")))
	if got := ids(e.deadLetters(t, "")); !cmp.Equal(got, []string{"ce-poison", "g1:group.failed"}) && !cmp.Equal(got, []string{"g1:group.failed", "ce-poison"}) {
		t.Errorf("every topic = %v, want both letters", got)
	}
	if got := ids(e.deadLetters(t, "group.failed")); !cmp.Equal(got, []string{"g1:group.failed"}) {
		t.Errorf("group.failed (the original topic names its dead-letter topic) = %v", got)
	}
	if got := e.deadLetters(t, "order.paid.dead"); got == nil || len(got) != 0 {
		t.Errorf("unknown topic = %#v, want an empty list", got)
	}
	if rec := e.do(http.MethodGet, "/admin/dead-letters?topic=%0A", "", "", root.Header()); rec.Code != http.StatusBadRequest {
		t.Errorf("GET with a control character in the topic = %d, want 400", rec.Code)
	}
}

func ids(ls []storedLetter) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// letterOf is a well-formed event of ours as daprd published it to topic: a letter that
// failed for a reason outside itself (a consumer's dependency was down) and can be replayed.
func letterOf(id, topic string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"order","type":%q,"topic":%q,"pubsubname":"pubsub","datacontenttype":"application/json","data":{"v":1,"event_id":%q}}`,
		id, topic, topic, id)
}

func TestDeadLetterAdminRoutesNeedAdmin(t *testing.T) {
	t.Parallel()
	routes := []struct{ method, path string }{
		{http.MethodGet, "/admin/dead-letters?topic=order.created.dead"},
		{http.MethodPost, "/admin/dead-letters/o1:order.created/replay"},
		{http.MethodPost, "/admin/dead-letters/replay?topic=order.created.dead"},
	}
	callers := []struct {
		name       string
		hdr        http.Header
		wantStatus int
		wantCode   problem.Code
	}{
		{name: "anonymous", wantStatus: http.StatusUnauthorized, wantCode: problem.CodeUnauthorized},
		{name: "a user", hdr: alice.Header(), wantStatus: http.StatusForbidden, wantCode: problem.CodeForbidden},
	}
	for _, rt := range routes {
		for _, c := range callers {
			t.Run(rt.method+" "+rt.path+" by "+c.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", letterOf("o1:order.created", "order.created")))
				rec := e.do(rt.method, rt.path, "{}", "application/json", c.hdr)
				if rec.Code != c.wantStatus {
					t.Fatalf("status = %d, want %d (%s)", rec.Code, c.wantStatus, rec.Body)
				}
				if got := problemCode(t, rec); got != c.wantCode {
					t.Errorf("code = %q, want %q", got, c.wantCode)
				}
				if got := e.pub.Got(); len(got) != 0 {
					t.Errorf("published %v, want nothing", got)
				}
				if l := e.deadLetters(t, "order.created.dead"); l[0].Status != "pending" {
					t.Errorf("letter %+v, want it untouched", l[0])
				}
			})
		}
	}
}

func problemCode(t *testing.T, rec *httptest.ResponseRecorder) problem.Code {
	t.Helper()
	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("decode problem %q: %v", rec.Body, err)
	}
	return doc.Code
}

// publishedIDs are the CloudEvent ids and topics of what the keeper published.
func (e *env) published(t *testing.T) []string {
	t.Helper()
	out := []string{}
	for _, p := range e.pub.Got() {
		var ce struct{ ID string }
		if err := json.Unmarshal([]byte(p.Event), &ce); err != nil {
			t.Fatalf("published %q: %v", p.Event, err)
		}
		out = append(out, p.Topic+" "+ce.ID)
	}
	return out
}

func TestReplayDeadLetter(t *testing.T) {
	t.Parallel()
	const id = "o1:order.created"
	e := newEnv(t)
	original := letterOf(id, "order.created")
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", original))
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", "garbage"))

	rec := e.do(http.MethodPost, "/admin/dead-letters/"+id+"/replay", "{}", "application/json", root.Header())
	if rec.Code != http.StatusOK {
		t.Fatalf("replay = %d %s", rec.Code, rec.Body)
	}
	var got storedLetter
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := storedLetter{Topic: "order.created.dead", ID: id, Data: `{"v":1,"event_id":"o1:order.created"}`, Event: json.RawMessage(original),
		ReceivedAt: "2025-06-01T12:00:00Z", Status: "replayed", Replays: 1, ReplayedAt: "2025-06-01T12:00:00Z"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	// The original CloudEvent, byte for byte, to the original topic.
	if diff := cmp.Diff([]deadlettertest.Published{{Topic: "order.created", Event: original}}, e.pub.Got()); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]storedLetter{want}, e.deadLetters(t, "order.created.dead")[1:]); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}

	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantCode   problem.Code
	}{
		{name: "unknown id", path: "/admin/dead-letters/nope/replay", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
		{name: "known id, other topic", path: "/admin/dead-letters/" + id + "/replay?topic=order.paid.dead", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
		{name: "not a cloud event", path: "/admin/dead-letters/" + e.deadLetters(t, "order.created.dead")[0].ID + "/replay", wantStatus: http.StatusConflict, wantCode: problem.CodeInvalidState},
		{name: "bad topic", path: "/admin/dead-letters/" + id + "/replay?topic=%0A", wantStatus: http.StatusBadRequest, wantCode: problem.CodeValidation},
	}
	for _, tt := range tests {
		rec := e.do(http.MethodPost, tt.path, "{}", "application/json", root.Header())
		if rec.Code != tt.wantStatus || problemCode(t, rec) != tt.wantCode {
			t.Errorf("%s: %d %s, want %d %s", tt.name, rec.Code, rec.Body, tt.wantStatus, tt.wantCode)
		}
	}
	if got := len(e.pub.Got()); got != 1 {
		t.Errorf("published %d events after the refusals, want still 1", got)
	}

	// Asked again, by id: published again (consumers drop it by its id).
	if rec := e.do(http.MethodPost, "/admin/dead-letters/"+id+"/replay", "{}", "application/json", root.Header()); rec.Code != http.StatusOK {
		t.Fatalf("second replay = %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff([]string{"order.created " + id, "order.created " + id}, e.published(t)); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
}

func TestReplayDeadLetterPublishFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.paid.dead", letterOf("o1:order.paid", "order.paid")))
	e.pub.Err = deadlettertest.ErrOutage
	for _, path := range []string{"/admin/dead-letters/o1:order.paid/replay", "/admin/dead-letters/replay?topic=order.paid.dead"} {
		rec := e.do(http.MethodPost, path, "{}", "application/json", root.Header())
		if rec.Code != http.StatusServiceUnavailable || problemCode(t, rec) != problem.CodeUnavailable {
			t.Errorf("POST %s = %d %s, want 503 unavailable", path, rec.Code, rec.Body)
		}
	}
	if l := e.deadLetters(t, "order.paid.dead"); l[0].Status != "pending" {
		t.Errorf("letter %+v, want still pending", l[0])
	}
}

type replayCounts struct {
	Topic           string `json:"topic"`
	Replayed        int    `json:"replayed"`
	AlreadyReplayed int    `json:"already_replayed"`
	NotReplayable   int    `json:"not_replayable"`
}

func (e *env) replayTopic(t *testing.T, query string) replayCounts {
	t.Helper()
	rec := e.do(http.MethodPost, "/admin/dead-letters/replay?"+query, "{}", "application/json", root.Header())
	if rec.Code != http.StatusOK {
		t.Fatalf("replay %s = %d %s", query, rec.Code, rec.Body)
	}
	var got replayCounts
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestReplayTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, id := range []string{"o1:order.paid", "o2:order.paid"} {
		e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.paid.dead", letterOf(id, "order.paid")))
	}
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.paid.dead", "garbage"))
	e.deliver(t, httpapi.RouteDeadLetters, rawDelivery("order.created.dead", letterOf("o1:order.created", "order.created")))

	if diff := cmp.Diff(replayCounts{Topic: "order.paid.dead", Replayed: 2, NotReplayable: 1}, e.replayTopic(t, "topic=order.paid.dead")); diff != "" {
		t.Errorf("first run (-want +got):\n%s", diff)
	}
	// The original topic names the same letters; none goes out twice.
	if diff := cmp.Diff(replayCounts{Topic: "order.paid.dead", AlreadyReplayed: 2, NotReplayable: 1}, e.replayTopic(t, "topic=order.paid")); diff != "" {
		t.Errorf("second run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"order.paid o1:order.paid", "order.paid o2:order.paid"}, e.published(t)); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	// Unless asked.
	if diff := cmp.Diff(replayCounts{Topic: "order.paid.dead", Replayed: 2, NotReplayable: 1}, e.replayTopic(t, "topic=order.paid.dead&include_replayed=true")); diff != "" {
		t.Errorf("run with include_replayed (-want +got):\n%s", diff)
	}
	if got := e.deadLetters(t, "order.created.dead"); got[0].Status != "pending" {
		t.Errorf("a letter of another topic: %+v, want untouched", got[0])
	}

	for _, query := range []string{"", "topic=", "topic=order.paid.dead&include_replayed=yes", "topic=%0A"} {
		rec := e.do(http.MethodPost, "/admin/dead-letters/replay?"+query, "{}", "application/json", root.Header())
		if rec.Code != http.StatusBadRequest || problemCode(t, rec) != problem.CodeValidation {
			t.Errorf("replay ?%s = %d %s, want 400 validation", query, rec.Code, rec.Body)
		}
	}
}
