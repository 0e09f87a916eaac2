//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// sseFrame is one server-sent event as a browser would see it.
type sseFrame struct {
	ID, Event, Data string
}

// openStream opens GET path on the gateway with the client's token and reads it in a goroutine
// with a bufio.Scanner, sending every event frame on the returned channel (closed when the
// stream ends). It returns once the gateway sent its "connected" comment, i.e. once the stream
// is subscribed, so events published afterwards reach it.
func openStream(t *testing.T, ctx context.Context, c *harness.Client, path string) <-chan sseFrame {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := (&http.Client{}).Do(req) // no client timeout: the context bounds the stream
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	connected := make(chan struct{})
	frames := make(chan sseFrame, 64)
	go func() {
		defer close(frames)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		seenConnected := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if f.Event != "" {
					select {
					case frames <- f:
					case <-ctx.Done():
						return
					}
				}
				f = sseFrame{}
			case strings.HasPrefix(line, ": connected") && !seenConnected:
				seenConnected = true
				close(connected)
			case strings.HasPrefix(line, "id: "):
				f.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				f.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				f.Data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatalf("GET %s: no connected comment within 10s", path)
	}
	return frames
}

// notificationItem is an entry of GET /me/notifications (and of the stored inbox).
type notificationItem struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// orderTypes counts the notifications of one order by type.
func orderTypes(items []notificationItem, orderID string) map[string]int {
	got := map[string]int{}
	for _, it := range items {
		if strings.HasPrefix(it.ID, orderID+":") {
			got[it.Type]++
		}
	}
	return got
}

// waitInbox polls GET /me/notifications until done says the items are complete or the
// timeout passes, and returns the last items seen.
func waitInbox(t *testing.T, c *harness.Client, timeout time.Duration, done func([]notificationItem) bool) []notificationItem {
	t.Helper()
	var doc struct {
		Items []notificationItem `json:"items"`
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		c.MustDo(t, http.MethodGet, "/me/notifications", nil, http.StatusOK, &doc)
		if done(doc.Items) || time.Now().After(deadline) {
			return doc.Items
		}
	}
}

var flashOrderTypes = []string{"order.created", "order.paid", "order.confirmed"}

func exactlyOnce(got map[string]int) bool {
	for _, typ := range flashOrderTypes {
		if got[typ] != 1 {
			return false
		}
	}
	return len(got) == len(flashOrderTypes)
}

// placeAndPay places a flash order of one unit and pays it; it ends confirmed.
func placeAndPay(t *testing.T, ctx context.Context, c *harness.Client, dealID, key string) orderView {
	t.Helper()
	r, err := placeOrder(ctx, c, dealID, 1, key)
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %+v", err, r)
	}
	var o orderView
	if err := r.JSON(&o); err != nil {
		t.Fatal(err)
	}
	var paid orderView
	c.MustDo(t, http.MethodPost, "/orders/"+o.ID+"/pay", map[string]string{"payment_token": "tok_ok"}, http.StatusOK, &paid)
	if paid.Status != "confirmed" {
		t.Fatalf("paid order %+v, want confirmed", paid)
	}
	return o
}

// TestNotificationsInboxAndLiveStream: a user's flash order goes created → paid → confirmed.
// The inbox (API and store) has each event exactly once; a stream opened before placing, held
// by the gateway, gets them live; another user's stream gets none of them.
func TestNotificationsInboxAndLiveStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dealID := newFlashDeal(t, stack, 5)
	user, userID := stack.NewUser(t)
	other, _ := stack.NewUser(t)

	frames := openStream(t, ctx, user, "/events")
	otherFrames := openStream(t, ctx, other, "/events")

	o := placeAndPay(t, ctx, user, dealID, "notify-live")

	// Live: every event of the order, in any order (three topics, three queues).
	live := map[string]int{}
	deadline := time.After(30 * time.Second)
	for !exactlyOnce(live) {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("the stream ended; got %v", live)
			}
			if f.ID != o.ID+":"+f.Event {
				t.Errorf("frame id %q for event %q, want %q", f.ID, f.Event, o.ID+":"+f.Event)
			}
			var data struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal([]byte(f.Data), &data); err != nil || data.OrderID != o.ID {
				t.Errorf("frame data %s: %v, want the order view of %s", f.Data, err, o.ID)
			}
			live[f.Event]++
			if live[f.Event] > 1 {
				t.Errorf("%s streamed %d times", f.Event, live[f.Event])
			}
		case <-deadline:
			t.Fatalf("live events within 30s: %v, want each of %v once", live, flashOrderTypes)
		}
	}

	items := waitInbox(t, user, 30*time.Second, func(items []notificationItem) bool { return exactlyOnce(orderTypes(items, o.ID)) })
	if got := orderTypes(items, o.ID); !exactlyOnce(got) {
		t.Errorf("GET /me/notifications: %v, want each of %v exactly once", got, flashOrderTypes)
	}
	// The store says the same (notify's key, read from Redis, not through the app).
	var inbox struct {
		Items []notificationItem `json:"items"`
	}
	if found, err := stack.State(ctx, "notify", "inbox:"+userID, &inbox); err != nil || !found {
		t.Fatalf("inbox in the store: found=%v err=%v", found, err)
	}
	if got := orderTypes(inbox.Items, o.ID); !exactlyOnce(got) {
		t.Errorf("stored inbox: %v, want each of %v exactly once", got, flashOrderTypes)
	}

	select {
	case f, ok := <-otherFrames:
		if ok {
			t.Errorf("another user's stream got %+v", f)
		}
	case <-time.After(time.Second):
	}
}

// TestNotificationOfCancelledOrder: a cancelled order's order.cancelled reaches the owner's
// open stream and inbox once.
func TestNotificationOfCancelledOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dealID := newFlashDeal(t, stack, 5)
	user, _ := stack.NewUser(t)
	frames := openStream(t, ctx, user, "/events")
	r, err := placeOrder(ctx, user, dealID, 1, "notify-cancel")
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("place: %v %+v", err, r)
	}
	var o orderView
	_ = r.JSON(&o)
	user.MustDo(t, http.MethodPost, "/orders/"+o.ID+"/cancel", nil, http.StatusOK, nil)

	want := map[string]int{"order.created": 1, "order.cancelled": 1}
	live := map[string]int{}
	for deadline := time.After(30 * time.Second); live["order.cancelled"] == 0; {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("the stream ended; got %v", live)
			}
			live[f.Event]++
		case <-deadline:
			t.Fatalf("live events within 30s: %v, want order.cancelled", live)
		}
	}
	items := waitInbox(t, user, 30*time.Second, func(items []notificationItem) bool {
		got := orderTypes(items, o.ID)
		return got["order.created"] == 1 && got["order.cancelled"] == 1
	})
	if got := orderTypes(items, o.ID); got["order.created"] != want["order.created"] || got["order.cancelled"] != want["order.cancelled"] || len(got) != 2 {
		t.Errorf("inbox %v, want %v", got, want)
	}
}

// TestDeadLetterKeptForPoison publishes a payload no consumer understands to order.created:
// notify answers DROP, daprd publishes it to order.created.dead, and notify's dead-letter
// subscription keeps it in the state store (read straight from Redis).
func TestDeadLetterKeptForPoison(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ceID := harness.UniqueName("poison-")
	publishThroughOrderSidecar(ctx, t, "order.created", "metadata.cloudevent.id="+url.QueryEscape(ceID), `{"v":99}`)

	type letter struct {
		Topic      string    `json:"topic"`
		ID         string    `json:"id"`
		Data       string    `json:"data"`
		ReceivedAt time.Time `json:"received_at"`
	}
	var doc struct {
		Items []letter `json:"items"`
	}
	var mine *letter
	for deadline := time.Now().Add(30 * time.Second); mine == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter %s in notify||deadletters:order.created.dead after 30s; have %+v", ceID, doc.Items)
		}
		if _, err := stack.State(ctx, "notify", "deadletters:order.created.dead", &doc); err != nil {
			t.Fatal(err)
		}
		for i := range doc.Items {
			if doc.Items[i].ID == ceID {
				mine = &doc.Items[i]
			}
		}
	}
	if mine.Topic != "order.created.dead" || mine.Data != `{"v":99}` || time.Since(mine.ReceivedAt) > time.Minute {
		t.Errorf("dead letter %+v, want topic order.created.dead, data {\"v\":99}, received just now", *mine)
	}
	n := 0
	for _, l := range doc.Items {
		if l.ID == ceID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("dead letter %s kept %d times, want once", ceID, n)
	}

	// Admins read it through the gateway. notify checks the role again: a call through its
	// sidecar without the forwarded admin is refused.
	admin := stack.Admin(t)
	r, err := admin.Do(ctx, http.MethodGet, "/admin/dead-letters?topic=order.created.dead", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(ceID)) {
		t.Errorf("gateway GET /admin/dead-letters as admin: %d %s", r.Status, r.Body)
	}
	_, daprToken := stack.Sup.Tokens()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		stack.App("notify").DaprHTTPURL()+"/v1.0/invoke/notify/method/admin/dead-letters?topic=order.created.dead", nil)
	req.Header.Set("dapr-api-token", daprToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /admin/dead-letters via notify's sidecar without a user: %d %s, want 401", resp.StatusCode, b)
	}
	// The delivery endpoint stays internal.
	r, err = admin.Do(ctx, http.MethodPost, "/dead-letters", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
		t.Errorf("gateway POST /dead-letters: %d %s, want 404/405", r.Status, r.Body)
	}
}

// TestRedeliveryAfterNotifyRestart stops notify (the supervisor stops an app with its sidecar),
// places and pays an order meanwhile, and starts notify again: the durable queues kept the
// events, and the inbox gets each exactly once.
func TestRedeliveryAfterNotifyRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dealID := newFlashDeal(t, stack, 5)
	user, userID := stack.NewUser(t)

	if err := stack.Sup.StopApp("notify"); err != nil {
		t.Fatalf("stop notify: %v", err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted { // leave the shared stack whole for the tests after this one
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer scancel()
			if err := stack.Sup.StartApp(sctx, "notify"); err != nil {
				t.Errorf("restart notify: %v", err)
			}
		}
	})

	o := placeAndPay(t, ctx, user, dealID, "notify-down")
	// Settled means every event of the order was published (settle publishes before it marks
	// the order), so they wait in notify's queues now.
	ordersIn(t, stack, map[string]string{o.ID: "confirmed"})
	var inbox struct {
		Items []notificationItem `json:"items"`
	}
	if found, err := stack.State(ctx, "notify", "inbox:"+userID, &inbox); err != nil || found {
		t.Fatalf("inbox written while notify was down: found=%v err=%v %+v", found, err, inbox.Items)
	}

	if err := stack.Sup.StartApp(ctx, "notify"); err != nil {
		t.Fatalf("start notify: %v", err)
	}
	restarted = true

	items := waitInbox(t, user, time.Minute, func(items []notificationItem) bool { return exactlyOnce(orderTypes(items, o.ID)) })
	if got := orderTypes(items, o.ID); !exactlyOnce(got) {
		t.Fatalf("inbox after restart: %v, want each of %v exactly once", got, flashOrderTypes)
	}
	// Redeliveries that are still in flight must not add anything: look again a bit later, in
	// the store itself.
	time.Sleep(3 * time.Second)
	if _, err := stack.State(ctx, "notify", "inbox:"+userID, &inbox); err != nil {
		t.Fatal(err)
	}
	got := orderTypes(inbox.Items, o.ID)
	if !exactlyOnce(got) {
		t.Errorf("stored inbox: %v, want each of %v exactly once", got, flashOrderTypes)
	}
	ids := make([]string, 0, len(inbox.Items))
	for _, it := range inbox.Items {
		ids = append(ids, it.ID)
	}
	sort.Strings(ids)
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("duplicate ids in the inbox: %v", ids)
	}
	t.Logf("inbox after restart: %s", fmt.Sprint(ids))
}
