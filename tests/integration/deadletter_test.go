//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/tests/harness"
)

// deadLetterDoc is the stored document of a dead-letter topic (and GET /admin/dead-letters).
type deadLetterDoc struct {
	Items []struct {
		Topic      string          `json:"topic"`
		ID         string          `json:"id"`
		Event      json.RawMessage `json:"event"`
		ReceivedAt time.Time       `json:"received_at"`
		Status     string          `json:"status"`
		Replays    int             `json:"replays"`
		ReplayedAt *time.Time      `json:"replayed_at"`
	} `json:"items"`
}

// deadLetterState reads letter id of a dead-letter topic straight from notify's store.
func deadLetterState(t *testing.T, ctx context.Context, topic, id string) (status string, replays int, ok bool) {
	t.Helper()
	var doc deadLetterDoc
	if _, err := stack.State(ctx, "notify", "deadletters:"+topic, &doc); err != nil {
		t.Fatal(err)
	}
	for _, l := range doc.Items {
		if l.ID == id {
			return l.Status, l.Replays, true
		}
	}
	return "", 0, false
}

// ingressSuccesses is how many messages of topic notify's sidecar has delivered to notify and
// seen answered SUCCESS (daprd's dapr_component_pubsub_ingress_count).
func ingressSuccesses(t *testing.T, topic string) int {
	t.Helper()
	body := get(t, &http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/metrics", stack.App("notify").MetricsPort))
	n := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "dapr_component_pubsub_ingress_count{") || !strings.Contains(line, `topic="`+topic+`"`) ||
			!strings.Contains(line, `process_status="success"`) || !strings.Contains(line, `component="pubsub"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		n += int(v)
	}
	return n
}

// TestDeadLetterReplayThroughGatewayOnce: an order.refunded event for a user sits in
// order.refunded.dead (put there the way daprd dead-letters: the original CloudEvent, raw, on
// the dead-letter topic), so the user was never told. An admin replays it through the gateway;
// the notification reaches the inbox. A replay of the topic skips it (already replayed); one
// that includes replayed letters publishes it again, notify's sidecar delivers it (seen in its
// metrics), and the inbox still holds it once: consumers deduplicate on the CloudEvent id,
// which the replay keeps.
func TestDeadLetterReplayThroughGatewayOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const topic, deadTopic = events.TopicOrderRefunded, events.TopicOrderRefunded + events.DeadLetterSuffix
	user, userID := stack.NewUser(t)
	admin := stack.Admin(t)
	orderID := strconv.FormatInt(time.Now().UnixNano(), 10)
	ev := events.NewOrderV1(topic, orderID, userID, "1", "", 1, 900, "refunded", time.Now())
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	original := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"order","type":%q,"topic":%q,"pubsubname":"pubsub","datacontenttype":"application/json","data":%s}`,
		ev.EventID, topic, topic, data)

	// daprd publishes a dead letter to the component as the bytes of the original message.
	publishThroughOrderSidecar(ctx, t, deadTopic, "metadata.rawPayload=true", original)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if status, _, ok := deadLetterState(t, ctx, deadTopic, ev.EventID); ok {
			if status != "pending" {
				t.Fatalf("kept letter status %q, want pending", status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter %s in notify||deadletters:%s after 30s", ev.EventID, deadTopic)
		}
	}
	if got := orderTypes(waitInbox(t, user, 0, func([]notificationItem) bool { return true }), orderID); len(got) != 0 {
		t.Fatalf("inbox before the replay has %v, want nothing of order %s", got, orderID)
	}

	replayPath := "/admin/dead-letters/" + ev.EventID + "/replay"
	for _, c := range []struct {
		name   string
		client *harness.Client
		want   int
	}{{"anonymous", stack.NewClient(), http.StatusUnauthorized}, {"a user", user, http.StatusForbidden}} {
		r, err := c.client.Do(ctx, http.MethodPost, replayPath, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != c.want {
			t.Errorf("replay by %s: %d %s, want %d", c.name, r.Status, r.Body, c.want)
		}
	}
	admin.MustDo(t, http.MethodPost, "/admin/dead-letters/no-such-letter/replay", nil, http.StatusNotFound, nil)

	before := ingressSuccesses(t, topic)
	var replayed struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Replays int    `json:"replays"`
	}
	admin.MustDo(t, http.MethodPost, replayPath, nil, http.StatusOK, &replayed)
	if replayed.ID != ev.EventID || replayed.Status != "replayed" || replayed.Replays != 1 {
		t.Errorf("replay answer %+v, want %s replayed once", replayed, ev.EventID)
	}
	once := func(items []notificationItem) bool { return orderTypes(items, orderID)[topic] == 1 }
	if got := orderTypes(waitInbox(t, user, 30*time.Second, once), orderID); len(got) != 1 || got[topic] != 1 {
		t.Fatalf("inbox after the replay: %v, want %s once", got, topic)
	}

	type counts struct {
		Topic           string `json:"topic"`
		Replayed        int    `json:"replayed"`
		AlreadyReplayed int    `json:"already_replayed"`
		NotReplayable   int    `json:"not_replayable"`
	}
	var c counts
	admin.MustDo(t, http.MethodPost, "/admin/dead-letters/replay?topic="+topic, nil, http.StatusOK, &c)
	if c.Topic != deadTopic || c.AlreadyReplayed < 1 {
		t.Errorf("replay of %s: %+v, want our letter counted as already replayed", topic, c)
	}
	if status, replays, _ := deadLetterState(t, ctx, deadTopic, ev.EventID); status != "replayed" || replays != 1 {
		t.Errorf("after a topic replay the letter is %s with %d replays, want replayed once (skipped)", status, replays)
	}
	admin.MustDo(t, http.MethodPost, "/admin/dead-letters/replay?include_replayed=true&topic="+deadTopic, nil, http.StatusOK, &c)
	if c.Replayed < 1 {
		t.Errorf("replay of %s with replayed letters: %+v, want ours replayed", deadTopic, c)
	}
	if status, replays, _ := deadLetterState(t, ctx, deadTopic, ev.EventID); status != "replayed" || replays != 2 {
		t.Errorf("after replaying it again the letter is %s with %d replays, want replayed twice", status, replays)
	}

	// Both replays were delivered to notify and answered SUCCESS ...
	for deadline := time.Now().Add(30 * time.Second); ingressSuccesses(t, topic) < before+2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("notify's sidecar delivered %d %s events since the first replay after 30s, want 2", ingressSuccesses(t, topic)-before, topic)
		}
	}
	// ... and the user was told once, in the API and in the store.
	if got := orderTypes(waitInbox(t, user, 0, once), orderID); len(got) != 1 || got[topic] != 1 {
		t.Errorf("inbox after replaying twice: %v, want %s once", got, topic)
	}
	var inbox struct {
		Items []notificationItem `json:"items"`
	}
	if _, err := stack.State(ctx, "notify", "inbox:"+userID, &inbox); err != nil {
		t.Fatal(err)
	}
	if got := orderTypes(inbox.Items, orderID); len(got) != 1 || got[topic] != 1 {
		t.Errorf("stored inbox: %v, want %s once", got, topic)
	}
}

// TestReplayedPoisonComesBackUnderItsID replays a letter no consumer can process (a payload
// version nobody knows): notify drops it again, daprd dead-letters it again, and the keeper
// sees it arrive under the same CloudEvent id, so the very letter turns pending again with its
// replay counted, and no second letter appears. That the id comes back unchanged is what the
// consumers' dedupe relies on; here it survives two trips through the sidecars.
func TestReplayedPoisonComesBackUnderItsID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const topic, deadTopic = events.TopicOrderRefunded, events.TopicOrderRefunded + events.DeadLetterSuffix
	ceID := harness.UniqueName("poison-")
	original := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"order","type":%q,"topic":%q,"pubsubname":"pubsub","datacontenttype":"application/json","data":{"v":99,"marker":%q}}`,
		ceID, topic, topic, ceID)
	publishThroughOrderSidecar(ctx, t, deadTopic, "metadata.rawPayload=true", original)
	var first time.Time
	for deadline := time.Now().Add(30 * time.Second); first.IsZero(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter %s in notify||deadletters:%s after 30s", ceID, deadTopic)
		}
		var doc deadLetterDoc
		if _, err := stack.State(ctx, "notify", "deadletters:"+deadTopic, &doc); err != nil {
			t.Fatal(err)
		}
		for _, l := range doc.Items {
			if l.ID == ceID {
				first = l.ReceivedAt
			}
		}
	}

	stack.Admin(t).MustDo(t, http.MethodPost, "/admin/dead-letters/"+ceID+"/replay", nil, http.StatusOK, nil)

	var doc deadLetterDoc
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		doc = deadLetterDoc{}
		if _, err := stack.State(ctx, "notify", "deadletters:"+deadTopic, &doc); err != nil {
			t.Fatal(err)
		}
		back := false
		for _, l := range doc.Items {
			back = back || (l.ID == ceID && l.Status == "pending" && l.Replays == 1 && l.ReceivedAt.After(first))
		}
		if back {
			break
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, l := range doc.Items {
				seen = append(seen, fmt.Sprintf("%s %s replays=%d received=%s", l.ID, l.Status, l.Replays, l.ReceivedAt.Format(time.RFC3339Nano)))
			}
			t.Fatalf("letter %s did not come back pending under its id within 30s; letters: %q", ceID, seen)
		}
	}
	var mine []string
	for _, l := range doc.Items {
		if strings.Contains(string(l.Event), ceID) {
			mine = append(mine, l.ID)
		}
	}
	if len(mine) != 1 || mine[0] != ceID {
		t.Errorf("letters carrying the poison: %v, want only %s", mine, ceID)
	}
}

// publishThroughOrderSidecar publishes body to the pubsub component through the order app's
// sidecar, as the order app would; query carries publish metadata (e.g. rawPayload).
func publishThroughOrderSidecar(ctx context.Context, t *testing.T, topic, query, body string) {
	t.Helper()
	_, daprToken := stack.Sup.Tokens()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		stack.App("order").DaprHTTPURL()+"/v1.0/publish/pubsub/"+topic+"?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("dapr-api-token", daprToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish to %s: %d %s", topic, resp.StatusCode, b)
	}
}
