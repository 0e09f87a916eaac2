package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/httpapi"
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
	Topic      string `json:"topic"`
	ID         string `json:"id"`
	Data       string `json:"data"`
	ReceivedAt string `json:"received_at"`
}

func (e *env) deadLetters(t *testing.T, topic string) []storedLetter {
	t.Helper()
	rec := e.do(http.MethodGet, "/admin/dead-letters?topic="+topic, "", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /admin/dead-letters = %d %s", rec.Code, rec.Body.String())
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
	want := []storedLetter{{Topic: "order.created.dead", ID: "ce-poison", Data: `{"v":99}`, ReceivedAt: "2025-06-01T12:00:00Z"}}
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
			e.dead.fail = tt.fail
			if got := e.deliver(t, httpapi.RouteDeadLetters, tt.body); got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
			e.dead.fail = false
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

func TestListDeadLettersNeedsTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/admin/dead-letters", "/admin/dead-letters?topic=%0A"} {
		if rec := e.do(http.MethodGet, path, "", "", nil); rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", path, rec.Code)
		}
	}
	if got := e.deadLetters(t, "group.failed.dead"); got == nil || len(got) != 0 {
		t.Errorf("unknown topic = %#v, want an empty list", got)
	}
}
