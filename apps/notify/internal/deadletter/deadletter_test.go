package deadletter_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter/deadlettertest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func pending(l deadletter.Letter) deadletter.Letter {
	l.Status = deadletter.StatusPending
	return l
}

func TestFromMessage(t *testing.T) {
	t.Parallel()
	const topic = "order.created.dead"
	tests := []struct {
		name    string
		msg     string
		want    deadletter.Letter
		wantErr error
	}{
		{
			name: "cloud event with JSON data",
			msg:  `{"specversion":"1.0","id":"ce-1","topic":"order.created","data":{"v":99}}`,
			want: pending(deadletter.Letter{Topic: topic, ID: "ce-1", Data: `{"v":99}`, Event: raw(`{"specversion":"1.0","id":"ce-1","topic":"order.created","data":{"v":99}}`), ReceivedAt: t0}),
		},
		{
			name: "cloud event with string data",
			msg:  `{"specversion":"1.0","id":"ce-2","data":"hello"}`,
			want: pending(deadletter.Letter{Topic: topic, ID: "ce-2", Data: "hello", Event: raw(`{"specversion":"1.0","id":"ce-2","data":"hello"}`), ReceivedAt: t0}),
		},
		{
			name: "cloud event with binary data",
			msg:  `{"specversion":"1.0","id":"ce-3","data_base64":"AAE="}`,
			want: pending(deadletter.Letter{Topic: topic, ID: "ce-3", Data: "\x00\x01", Event: raw(`{"specversion":"1.0","id":"ce-3","data_base64":"AAE="}`), ReceivedAt: t0}),
		},
		{
			name: "cloud event without data",
			msg:  `{"specversion":"1.0","id":"ce-4"}`,
			want: pending(deadletter.Letter{Topic: topic, ID: "ce-4", Event: raw(`{"specversion":"1.0","id":"ce-4"}`), ReceivedAt: t0}),
		},
		{
			name: "not a cloud event is kept whole, named by its hash, without an event to replay",
			msg:  `garbage`,
			want: pending(deadletter.Letter{Topic: topic, ID: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("garbage"))), Data: "garbage", ReceivedAt: t0}),
		},
		{name: "topic with a line break", msg: `{}`, wantErr: deadletter.ErrInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			top := topic
			if tt.wantErr != nil {
				top = "x\ny"
			}
			got, err := deadletter.FromMessage(top, []byte(tt.msg), t0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("letter (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListAddDedupesAndCaps(t *testing.T) {
	t.Parallel()
	var ls deadletter.List
	for i := range deadletter.MaxItems + 3 {
		if !ls.Add(deadletter.Letter{ID: fmt.Sprint(i)}) {
			t.Fatalf("Add(%d) = false, want true", i)
		}
	}
	if ls.Add(deadletter.Letter{ID: fmt.Sprint(deadletter.MaxItems + 2)}) {
		t.Error("Add(duplicate) = true, want false")
	}
	if got := len(ls.Items); got != deadletter.MaxItems {
		t.Fatalf("len = %d, want %d", got, deadletter.MaxItems)
	}
	if got, want := ls.Items[0].ID, fmt.Sprint(deadletter.MaxItems+2); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
	if got, want := ls.Items[deadletter.MaxItems-1].ID, "3"; got != want {
		t.Errorf("oldest = %s, want %s", got, want)
	}
}

// replayed runs a successful replay of id (arrived at receivedAt) on ls at at.
func replayed(t *testing.T, ls *deadletter.List, id string, receivedAt, at time.Time) {
	t.Helper()
	if _, ok := ls.BeginReplay(id); !ok {
		t.Fatalf("BeginReplay(%s): not kept", id)
	}
	if !ls.FinishReplay(id, receivedAt, true, at) {
		t.Fatalf("FinishReplay(%s): not kept", id)
	}
}

func TestListAddAfterReplay(t *testing.T) {
	t.Parallel()
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	var ls deadletter.List
	ls.Add(deadletter.Letter{ID: "a", ReceivedAt: t0})
	ls.Add(deadletter.Letter{ID: "b", ReceivedAt: t0})
	if ls.Add(deadletter.Letter{ID: "a", ReceivedAt: t1}) {
		t.Error("Add(a again, still pending) = true, want false: a redelivery")
	}
	replayed(t, &ls, "a", t0, t1)
	if !ls.Add(deadletter.Letter{ID: "a", ReceivedAt: t2}) {
		t.Fatal("Add(a after its replay) = false, want true: it failed again")
	}
	want := []deadletter.Letter{
		{ID: "a", ReceivedAt: t2, Status: deadletter.StatusPending, Replays: 1, ReplayedAt: &t1},
		{ID: "b", ReceivedAt: t0, Status: deadletter.StatusPending},
	}
	if diff := cmp.Diff(want, ls.Items); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
	// While replaying, an arrival is the replayed event failing again, not a redelivery.
	if _, ok := ls.BeginReplay("b"); !ok {
		t.Fatal("BeginReplay(b): not kept")
	}
	if !ls.Add(deadletter.Letter{ID: "b", ReceivedAt: t2}) {
		t.Error("Add(b while replaying) = false, want true")
	}
	if got := ls.Items[0]; got.ID != "b" || got.Status != deadletter.StatusPending || !got.ReceivedAt.Equal(t2) {
		t.Errorf("front = %+v, want b pending, received at %v", got, t2)
	}
}

func TestFinishReplay(t *testing.T) {
	t.Parallel()
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	tests := []struct {
		name         string
		id           string
		arrivesAgain bool // the letter arrives again between BeginReplay and FinishReplay
		published    bool
		wantKept     bool
		wantStatus   string
		wantReplays  int
		wantReplayed bool
		wantReceived time.Time
	}{
		{name: "published", id: "a", published: true, wantKept: true,
			wantStatus: deadletter.StatusReplayed, wantReplays: 1, wantReplayed: true, wantReceived: t0},
		{name: "published, but it failed again meanwhile", id: "a", arrivesAgain: true, published: true, wantKept: true,
			wantStatus: deadletter.StatusPending, wantReplays: 1, wantReplayed: true, wantReceived: t2},
		{name: "publish failed", id: "a", wantKept: true,
			wantStatus: deadletter.StatusPending, wantReceived: t0},
		{name: "gone", id: "zz", published: true, wantStatus: deadletter.StatusReplaying, wantReceived: t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ls deadletter.List
			ls.Add(deadletter.Letter{ID: "a", ReceivedAt: t0})
			ls.BeginReplay("a")
			if tt.arrivesAgain {
				ls.Add(deadletter.Letter{ID: "a", ReceivedAt: t2})
			}
			if got := ls.FinishReplay(tt.id, t0, tt.published, t1); got != tt.wantKept {
				t.Fatalf("FinishReplay = %v, want %v", got, tt.wantKept)
			}
			want := deadletter.Letter{ID: "a", ReceivedAt: tt.wantReceived, Status: tt.wantStatus, Replays: tt.wantReplays}
			if tt.wantReplayed {
				want.ReplayedAt = &t1
			}
			if diff := cmp.Diff(want, ls.Items[0]); diff != "" {
				t.Errorf("letter (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapEvictsReplayedFirst(t *testing.T) {
	t.Parallel()
	var ls deadletter.List
	for i := range deadletter.MaxItems {
		ls.Add(deadletter.Letter{ID: fmt.Sprint(i), ReceivedAt: t0})
	}
	// The oldest letter (0) is pending; 500 was replayed.
	replayed(t, &ls, "500", t0, t0)
	ls.Add(deadletter.Letter{ID: "new", ReceivedAt: t0})
	ls.Add(deadletter.Letter{ID: "newer", ReceivedAt: t0})
	kept := map[string]bool{}
	for _, l := range ls.Items {
		kept[l.ID] = true
	}
	if len(ls.Items) != deadletter.MaxItems || kept["500"] || kept["0"] || !kept["1"] || !kept["newer"] {
		t.Errorf("kept %d letters, 500:%v 0:%v 1:%v newer:%v; want %d, the replayed 500 and then the oldest pending 0 evicted",
			len(ls.Items), kept["500"], kept["0"], kept["1"], kept["newer"], deadletter.MaxItems)
	}
}

// ce is a CloudEvent as daprd publishes one of ours to topic: what lands on topic+".dead".
func ce(id, topic string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"order","type":"com.dapr.event.sent","topic":%q,"pubsubname":"pubsub","datacontenttype":"application/json","data":{"v":1,"event_id":%q}}`, id, topic, id)
}

type keeperEnv struct {
	store *deadlettertest.Fake
	pub   *deadlettertest.Publisher
	k     *deadletter.Keeper
	now   time.Time
}

func newKeeper(t *testing.T) *keeperEnv {
	t.Helper()
	e := &keeperEnv{store: deadlettertest.NewFake(), pub: &deadlettertest.Publisher{}, now: t0}
	e.k = deadletter.NewKeeper(e.store, e.pub, deadletter.KnownTopics(), func() time.Time { return e.now })
	return e
}

// keep delivers the dead letter of event id, first published to topic, at the env's now.
func (e *keeperEnv) keep(t *testing.T, id, topic string) {
	t.Helper()
	if _, _, err := e.k.Keep(context.Background(), topic+".dead", []byte(ce(id, topic))); err != nil {
		t.Fatalf("Keep %s: %v", id, err)
	}
}

func (e *keeperEnv) letter(t *testing.T, topic, id string) deadletter.Letter {
	t.Helper()
	ls, err := e.store.List(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no letter %s on %s", id, topic)
	return deadletter.Letter{}
}

func TestKeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	msg := []byte(`{"specversion":"1.0","id":"ce-1","data":{"v":99}}`)
	for i, want := range []bool{true, false} {
		if _, added, err := e.k.Keep(ctx, "order.created.dead", msg); err != nil || added != want {
			t.Errorf("Keep #%d = %v, %v; want %v, nil", i, added, err, want)
		}
	}
	got, err := e.k.List(ctx, "order.created.dead")
	if err != nil {
		t.Fatal(err)
	}
	want := []deadletter.Letter{pending(deadletter.Letter{Topic: "order.created.dead", ID: "ce-1", Data: `{"v":99}`, Event: raw(string(msg)), ReceivedAt: t0})}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if got, err := e.k.List(ctx, "group.failed.dead"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("List(empty topic) = %#v, %v; want an empty, non-nil list", got, err)
	}
	e.store.SetFail(true)
	if _, _, err := e.k.Keep(ctx, "order.created.dead", msg); !errors.Is(err, deadlettertest.ErrOutage) {
		t.Errorf("Keep during an outage = %v, want the outage", err)
	}
}

func TestListEveryKnownTopic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	e.keep(t, "o1:order.created", "order.created")
	e.now = t0.Add(time.Minute)
	e.keep(t, "g1:group.failed", "group.failed")
	e.now = t0.Add(2 * time.Minute)
	e.keep(t, "o1:order.paid", "order.paid")
	got, err := e.k.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"o1:order.paid", "g1:group.failed", "o1:order.created"}, ids(got)); diff != "" {
		t.Errorf("every topic, newest first (-want +got):\n%s", diff)
	}
	// The original topic names its dead-letter topic.
	if got, err := e.k.List(ctx, "order.paid"); err != nil || !cmp.Equal(ids(got), []string{"o1:order.paid"}) {
		t.Errorf("List(order.paid) = %v, %v", ids(got), err)
	}
	if _, err := e.k.List(ctx, "x\ny"); !errors.Is(err, deadletter.ErrInvalidTopic) {
		t.Errorf("List(bad topic) = %v, want ErrInvalidTopic", err)
	}
}

func ids(ls []deadletter.Letter) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

func TestReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	e := newKeeper(t)
	e.keep(t, "o1:order.created", "order.created")
	e.now = t1

	got, err := e.k.Replay(ctx, "o1:order.created", "")
	if err != nil {
		t.Fatal(err)
	}
	// The very CloudEvent that was dead-lettered goes back to the topic it was published to:
	// same id, so consumers that processed it already drop it.
	wantPub := []deadlettertest.Published{{Topic: "order.created", Event: ce("o1:order.created", "order.created")}}
	if diff := cmp.Diff(wantPub, e.pub.Got()); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	stored := e.letter(t, "order.created.dead", "o1:order.created")
	if diff := cmp.Diff(stored, got); diff != "" {
		t.Errorf("answer differs from the stored letter (-stored +answer):\n%s", diff)
	}
	if stored.Status != deadletter.StatusReplayed || stored.Replays != 1 || stored.ReplayedAt == nil || !stored.ReplayedAt.Equal(t1) || !stored.ReceivedAt.Equal(t0) {
		t.Errorf("stored %+v, want replayed once at %v, received at %v (kept for audit)", stored, t1, t0)
	}

	// Asked explicitly, a replayed letter is published again.
	e.now = t2
	if _, err := e.k.Replay(ctx, "o1:order.created", "order.created.dead"); err != nil {
		t.Fatal(err)
	}
	if got := len(e.pub.Got()); got != 2 {
		t.Errorf("published %d times, want 2", got)
	}
	if l := e.letter(t, "order.created.dead", "o1:order.created"); l.Replays != 2 || !l.ReplayedAt.Equal(t2) {
		t.Errorf("after the second replay: %+v", l)
	}
}

func TestReplayRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		id      string
		topic   string
		pubErr  error
		wantErr error
	}{
		{name: "unknown id", id: "nope", wantErr: deadletter.ErrNotFound},
		{name: "known id on another topic", id: "o1:order.created", topic: "order.paid.dead", wantErr: deadletter.ErrNotFound},
		{name: "not a cloud event", id: "sha256:", wantErr: deadletter.ErrNotReplayable},
		{name: "same id on two topics", id: "twice", wantErr: deadletter.ErrAmbiguous},
		{name: "bad topic", id: "twice", topic: "a\nb", wantErr: deadletter.ErrInvalidTopic},
		{name: "publish fails", id: "o1:order.created", pubErr: deadlettertest.ErrOutage, wantErr: deadlettertest.ErrOutage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newKeeper(t)
			e.pub.Err = tt.pubErr
			e.keep(t, "o1:order.created", "order.created")
			e.keep(t, "twice", "order.created")
			e.keep(t, "twice", "order.paid")
			garbage, _, err := e.k.Keep(ctx, "order.created.dead", []byte("garbage"))
			if err != nil {
				t.Fatal(err)
			}
			id := tt.id
			if id == "sha256:" {
				id = garbage.ID
			}
			if _, err := e.k.Replay(ctx, id, tt.topic); !errors.Is(err, tt.wantErr) {
				t.Errorf("Replay = %v, want %v", err, tt.wantErr)
			}
			if got := e.pub.Got(); len(got) != 0 {
				t.Errorf("published %v, want nothing", got)
			}
			for _, l := range mustList(t, e.k, "") {
				if l.Replayed() {
					t.Errorf("letter %s on %s marked replayed", l.ID, l.Topic)
				}
			}
		})
	}
	t.Run("same id on two topics, topic named", func(t *testing.T) {
		t.Parallel()
		e := newKeeper(t)
		e.keep(t, "twice", "order.created")
		e.keep(t, "twice", "order.paid")
		if _, err := e.k.Replay(ctx, "twice", "order.paid"); err != nil {
			t.Fatal(err)
		}
		if got := e.pub.Got(); len(got) != 1 || got[0].Topic != "order.paid" {
			t.Errorf("published %v, want once to order.paid", got)
		}
	})
}

func mustList(t *testing.T, k *deadletter.Keeper, topic string) []deadletter.Letter {
	t.Helper()
	ls, err := k.List(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// TestReplayArrivingAgainStaysPending: the replayed event fails again at once and is
// dead-lettered again before the replay records itself; the letter must be pending (the next
// topic replay takes it), with the replay counted, not marked replayed over its new arrival.
func TestReplayArrivingAgainStaysPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	e.keep(t, "o1:order.created", "order.created")
	e.pub.During = func(string, []byte) {
		e.now = t0.Add(time.Minute)
		e.keep(t, "o1:order.created", "order.created")
	}
	got, err := e.k.Replay(ctx, "o1:order.created", "")
	if err != nil {
		t.Fatal(err)
	}
	l := e.letter(t, "order.created.dead", "o1:order.created")
	if l.Status != deadletter.StatusPending || !l.ReceivedAt.Equal(t0.Add(time.Minute)) || l.Replays != 1 {
		t.Errorf("letter %+v, want pending, received again at +1m, the replay counted", l)
	}
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("answer differs from the stored letter (-stored +answer):\n%s", diff)
	}
	e.pub.During = nil
	res, err := e.k.ReplayTopic(ctx, "order.created", false)
	if err != nil || res.Replayed != 1 {
		t.Errorf("topic replay = %+v, %v; want the letter replayed again", res, err)
	}
}

// TestReplayTopicTakesInterruptedReplays: a replay whose process died after BeginReplay left
// its letter replaying; a topic replay takes it without being asked for replayed letters.
func TestReplayTopicTakesInterruptedReplays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	e.keep(t, "o1:order.created", "order.created")
	err := e.store.Update(ctx, "order.created.dead", func(ls *deadletter.List) error {
		ls.BeginReplay("o1:order.created")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.k.ReplayTopic(ctx, "order.created.dead", false)
	if err != nil || res.Replayed != 1 {
		t.Errorf("topic replay = %+v, %v; want the interrupted letter replayed", res, err)
	}
	if l := e.letter(t, "order.created.dead", "o1:order.created"); l.Status != deadletter.StatusReplayed || l.Replays != 1 {
		t.Errorf("letter %+v, want replayed once", l)
	}
}

func TestReplayTopic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	for i, id := range []string{"o1:order.created", "o2:order.created", "o3:order.created"} {
		e.now = t0.Add(time.Duration(i) * time.Second)
		e.keep(t, id, "order.created")
	}
	if _, _, err := e.k.Keep(ctx, "order.created.dead", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	e.keep(t, "o1:order.paid", "order.paid") // another topic: untouched
	if _, err := e.k.Replay(ctx, "o2:order.created", ""); err != nil {
		t.Fatal(err)
	}
	e.now = t0.Add(time.Hour)

	got, err := e.k.ReplayTopic(ctx, "order.created", false)
	if err != nil {
		t.Fatal(err)
	}
	want := deadletter.ReplayResult{Topic: "order.created.dead", Replayed: 2, AlreadyReplayed: 1, NotReplayable: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	// o2 once by id, then o1 and o3 oldest first; never o2 twice.
	wantIDs := []string{"o2:order.created", "o1:order.created", "o3:order.created"}
	if diff := cmp.Diff(wantIDs, publishedIDs(e.pub.Got())); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}

	// Again: everything is replayed, nothing goes out twice.
	got, err = e.k.ReplayTopic(ctx, "order.created.dead", false)
	if err != nil {
		t.Fatal(err)
	}
	want = deadletter.ReplayResult{Topic: "order.created.dead", AlreadyReplayed: 3, NotReplayable: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("second run (-want +got):\n%s", diff)
	}
	if n := len(e.pub.Got()); n != 3 {
		t.Errorf("published %d after the second run, want still 3", n)
	}

	// Unless asked.
	got, err = e.k.ReplayTopic(ctx, "order.created.dead", true)
	if err != nil {
		t.Fatal(err)
	}
	want = deadletter.ReplayResult{Topic: "order.created.dead", Replayed: 3, NotReplayable: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("with replayed ones (-want +got):\n%s", diff)
	}
	if l := e.letter(t, "order.paid.dead", "o1:order.paid"); l.Replayed() {
		t.Errorf("a letter of another topic was replayed: %+v", l)
	}
}

func publishedIDs(ps []deadlettertest.Published) []string {
	out := []string{}
	for _, p := range ps {
		var ev struct{ ID string }
		if err := json.Unmarshal([]byte(p.Event), &ev); err != nil {
			out = append(out, "?"+p.Event)
			continue
		}
		out = append(out, ev.ID)
	}
	return out
}

// TestReplayTopicStopsAtFailure: a publish fails halfway; what went out is marked, the rest
// stays pending, and a second run continues where the first stopped.
func TestReplayTopicStopsAtFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newKeeper(t)
	for i, id := range []string{"a", "b", "c"} {
		e.now = t0.Add(time.Duration(i) * time.Second)
		e.keep(t, id, "order.paid")
	}
	e.pub.Err, e.pub.FailAfter = deadlettertest.ErrOutage, 1

	got, err := e.k.ReplayTopic(ctx, "order.paid.dead", false)
	if !errors.Is(err, deadlettertest.ErrOutage) {
		t.Fatalf("err = %v, want the outage", err)
	}
	if want := (deadletter.ReplayResult{Topic: "order.paid.dead", Replayed: 1}); got != want {
		t.Errorf("result = %+v, want %+v", got, want)
	}
	status := map[string]string{}
	for _, l := range mustList(t, e.k, "order.paid.dead") {
		status[l.ID] = l.Status
	}
	if diff := cmp.Diff(map[string]string{"a": "replayed", "b": "pending", "c": "pending"}, status); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}

	e.pub.Err = nil
	got, err = e.k.ReplayTopic(ctx, "order.paid.dead", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := (deadletter.ReplayResult{Topic: "order.paid.dead", Replayed: 2, AlreadyReplayed: 1}); got != want {
		t.Errorf("second run = %+v, want %+v", got, want)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, publishedIDs(e.pub.Got())); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
}

func TestReplayTopicRefusesBadTopic(t *testing.T) {
	t.Parallel()
	e := newKeeper(t)
	for _, topic := range []string{"", "a\nb"} {
		if _, err := e.k.ReplayTopic(context.Background(), topic, false); !errors.Is(err, deadletter.ErrInvalidTopic) {
			t.Errorf("ReplayTopic(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
}
