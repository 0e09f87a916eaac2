// Package deadletter keeps the messages the durable subscriptions gave up on, so operators can
// see and replay them.
//
// Why notify keeps them: with pubsub.rabbitmq, daprd publishes a dead letter to the exchange
// "<topic>.dead", and RabbitMQ discards a message sent to an exchange no queue is bound to. So
// notify subscribes to every "<topic>.dead" with its app id as consumer: durable queues
// "notify-<topic>.dead" exist as soon as notify's sidecar has started, and this package stores
// what arrives on them, per dead-letter topic, newest first, capped, deduplicated on the
// CloudEvent id (delivery is at-least-once here too).
//
// Replay: once the cause of the failures is fixed, an admin replays a letter (or every pending
// letter of a topic): its original CloudEvent is published again, as it is, to the original
// topic. Every consumer deduplicates on the CloudEvent id, so the consumers that had processed
// the event drop it and the one that had failed gets it again. A replayed letter is kept for
// audit, marked replayed with the time and a count; a topic replay skips it unless asked, and
// it becomes pending again if it is dead-lettered again.
package deadletter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
)

// MaxItems caps the list of one topic. Past it, the oldest replayed letter falls off first
// (its replay is done; it is kept only for audit), then the oldest pending one.
const MaxItems = 1000

// Letter statuses. A letter is pending from its arrival; replaying while a replay publishes
// it; replayed once that publish succeeded. A letter that arrives again while replaying or
// after a replay (the consumer failed again) is pending again. A replay whose process died
// leaves the letter replaying, which counts as not replayed: a topic replay takes it again.
const (
	StatusPending   = "pending"
	StatusReplaying = "replaying"
	StatusReplayed  = "replayed"
)

// Letter is one dead-lettered message.
type Letter struct {
	// Topic is the dead-letter topic it arrived on ("order.created.dead").
	Topic string `json:"topic"`
	// ID is the CloudEvent id of the original message; "sha256:<hex>" of the message when it
	// was not a CloudEvent.
	ID string `json:"id"`
	// Data is the original payload as the publisher sent it: the CloudEvent's data (JSON text,
	// or the decoded string / base64 bytes), or the whole message when it was no CloudEvent.
	Data string `json:"data"`
	// Event is the original CloudEvent as it was published to the original topic; a replay
	// publishes it again as it is, so its id (what consumers dedupe on) survives. Empty when
	// the message was no CloudEvent, and in letters kept before replay existed: such a letter
	// cannot be replayed.
	Event      json.RawMessage `json:"event,omitempty"`
	ReceivedAt time.Time       `json:"received_at"`
	// Status is StatusPending, StatusReplaying or StatusReplayed (empty, in letters kept
	// before replay existed, means pending).
	Status string `json:"status,omitempty"`
	// Replays counts the successful replay publishes of the letter; ReplayedAt is the time of
	// the last one. Both stay when the letter arrives again, as its audit trail.
	Replays    int        `json:"replays,omitempty"`
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
}

// Replayed reports whether the letter was replayed since it last arrived.
func (l Letter) Replayed() bool { return l.Status == StatusReplayed }

// OriginalTopic is the topic the letter's event was first published to, where a replay sends
// it: its dead-letter topic without events.DeadLetterSuffix.
func (l Letter) OriginalTopic() (string, error) {
	topic, ok := strings.CutSuffix(l.Topic, events.DeadLetterSuffix)
	if !ok || topic == "" {
		return "", fmt.Errorf("%w: %s is not a dead-letter topic", ErrNotReplayable, l.Topic)
	}
	return topic, nil
}

// List is the stored document of one topic's dead letters, newest first.
type List struct {
	Items []Letter `json:"items"`
}

// Add records the arrival of l and reports whether the list changed:
//   - a new id goes in front, pending;
//   - an id that is kept and pending is a redelivery (at-least-once): no change;
//   - an id that is kept and is being or was replayed arrived again, so the replay did not
//     cure it: the letter moves to the front, pending again with the new arrival time, and
//     keeps its replay history. (A late redelivery of the first dead letter looks the same
//     and makes the letter pending again too; replaying it again is harmless: consumers
//     dedupe.)
//
// The list is then trimmed to MaxItems.
func (ls *List) Add(l Letter) bool {
	l.Status = StatusPending
	if i := ls.index(l.ID); i >= 0 {
		old := ls.Items[i]
		if old.Status != StatusReplaying && old.Status != StatusReplayed {
			return false
		}
		l.Replays, l.ReplayedAt = old.Replays, old.ReplayedAt
		ls.Items = slices.Delete(ls.Items, i, i+1)
	}
	ls.Items = slices.Insert(ls.Items, 0, l)
	for len(ls.Items) > MaxItems {
		i := ls.evictee()
		ls.Items = slices.Delete(ls.Items, i, i+1)
	}
	return true
}

// BeginReplay marks letter id replaying, before its publish, and returns it; ok is false when
// no letter has the id. Marking first is what lets an arrival during the publish (the
// replayed event failed again at once) be seen as a new arrival rather than a redelivery.
func (ls *List) BeginReplay(id string) (l Letter, ok bool) {
	i := ls.index(id)
	if i < 0 {
		return Letter{}, false
	}
	ls.Items[i].Status = StatusReplaying
	return ls.Items[i], true
}

// FinishReplay records the outcome of the replay, begun by BeginReplay, of letter id that had
// arrived at receivedAt, and reports whether the letter is still kept. A successful publish
// (published) counts as a replay at at, and makes the letter replayed unless it arrived again
// meanwhile (then it stays pending: the replay did not cure it). A failed one returns the
// letter to pending.
func (ls *List) FinishReplay(id string, receivedAt time.Time, published bool, at time.Time) bool {
	i := ls.index(id)
	if i < 0 {
		return false
	}
	l := &ls.Items[i]
	same := l.Status == StatusReplaying && l.ReceivedAt.Equal(receivedAt)
	switch {
	case published:
		at = at.UTC()
		l.Replays, l.ReplayedAt = l.Replays+1, &at
		if same {
			l.Status = StatusReplayed
		}
	case same:
		l.Status = StatusPending
	}
	return true
}

// evictee is the index of the letter to drop when the list is full: the oldest replayed
// letter, else the oldest.
func (ls *List) evictee() int {
	for i, l := range slices.Backward(ls.Items) {
		if l.Replayed() {
			return i
		}
	}
	return len(ls.Items) - 1
}

func (ls *List) index(id string) int {
	return slices.IndexFunc(ls.Items, func(x Letter) bool { return x.ID == id })
}

// ErrInvalidTopic marks a topic that cannot name a list (empty, too long, control characters).
var ErrInvalidTopic = errors.New("deadletter: invalid topic")

// CheckTopic validates a topic used in a state key.
func CheckTopic(topic string) error {
	if topic == "" || len(topic) > 256 || strings.ContainsFunc(topic, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	}
	return nil
}

// FromMessage builds the letter for msg, the message as it was published to the original
// topic, received on the dead-letter topic at now.
func FromMessage(topic string, msg []byte, now time.Time) (Letter, error) {
	if err := CheckTopic(topic); err != nil {
		return Letter{}, err
	}
	l := Letter{Topic: topic, ReceivedAt: now.UTC(), Status: StatusPending}
	var ce struct {
		SpecVersion string          `json:"specversion"`
		ID          string          `json:"id"`
		Data        json.RawMessage `json:"data"`
		DataBase64  string          `json:"data_base64"`
	}
	if err := json.Unmarshal(msg, &ce); err != nil || ce.ID == "" || ce.SpecVersion == "" {
		// Not a CloudEvent: keep it whole, and let its content name it so that a redelivery
		// is still recognised.
		sum := sha256.Sum256(msg)
		l.ID, l.Data = "sha256:"+hex.EncodeToString(sum[:]), string(msg)
		return l, nil
	}
	l.ID, l.Event = ce.ID, json.RawMessage(bytes.Clone(msg))
	switch {
	case ce.DataBase64 != "":
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil {
			l.Data = ce.DataBase64 // keep what there is
			break
		}
		l.Data = string(b)
	case len(ce.Data) > 0 && ce.Data[0] == '"':
		var s string
		if err := json.Unmarshal(ce.Data, &s); err != nil {
			l.Data = string(ce.Data)
			break
		}
		l.Data = s
	default:
		l.Data = string(ce.Data)
	}
	return l, nil
}

// Store keeps the lists, one per dead-letter topic.
type Store interface {
	// Update applies fn to the list of topic (empty when there is none yet) and stores the
	// result in one atomic write; fn returning ErrNoChange skips the write. fn may run more
	// than once: after a conflicting write it is applied again to the fresh list.
	Update(ctx context.Context, topic string, fn func(*List) error) error
	// List returns the letters of topic, newest first (empty for an unknown topic).
	List(ctx context.Context, topic string) ([]Letter, error)
}

// Publisher publishes a CloudEvent as it is (daprpubsub.Republisher).
type Publisher interface {
	// PublishCloudEvent publishes event, a CloudEvent in JSON, to topic keeping its id and
	// its other attributes.
	PublishCloudEvent(ctx context.Context, topic string, event []byte) error
}

// Errors of the keeper's use cases.
var (
	// ErrNoChange tells Store.Update that fn decided nothing needs writing.
	ErrNoChange = errors.New("deadletter: no change")
	// ErrNotFound marks an id no kept letter has.
	ErrNotFound = errors.New("deadletter: no such letter")
	// ErrAmbiguous marks an id kept on more than one topic: the caller must name the topic.
	ErrAmbiguous = errors.New("deadletter: id kept on several topics")
	// ErrNotReplayable marks a letter without the original CloudEvent (the message was no
	// CloudEvent, or was kept before replay existed).
	ErrNotReplayable = errors.New("deadletter: letter cannot be replayed")
	// ErrPublish marks a replay whose publish failed (sidecar or broker unavailable).
	ErrPublish = errors.New("deadletter: publish failed")
)

// KnownTopics are the dead-letter topics notify keeps: "<topic>.dead" of every order and
// group topic (components/subscriptions-notify.yaml subscribes to each). Listing and replay by
// id look through these when no topic is named.
func KnownTopics() []string {
	var out []string
	for _, t := range slices.Concat(events.OrderTopics, events.GroupTopics) {
		out = append(out, t+events.DeadLetterSuffix)
	}
	return out
}

// finishTimeout bounds the write that records the outcome of replays (Keeper.finish).
const finishTimeout = 5 * time.Second

// Keeper implements the dead-letter use cases.
type Keeper struct {
	store  Store
	pub    Publisher
	topics []string
	now    func() time.Time
}

// NewKeeper returns a keeper over store that replays through pub. topics are the dead-letter
// topics searched when a call names none (KnownTopics); now defaults to time.Now.
func NewKeeper(store Store, pub Publisher, topics []string, now func() time.Time) *Keeper {
	if now == nil {
		now = time.Now
	}
	return &Keeper{store: store, pub: pub, topics: slices.Clone(topics), now: now}
}

// Keep stores msg, received on the dead-letter topic. It returns the letter and whether the
// list changed (a new letter, or one that arrived again after a replay).
func (k *Keeper) Keep(ctx context.Context, topic string, msg []byte) (Letter, bool, error) {
	l, err := FromMessage(topic, msg, k.now())
	if err != nil {
		return Letter{}, false, err
	}
	var added bool
	err = k.store.Update(ctx, topic, func(ls *List) error {
		if added = ls.Add(l); !added {
			return ErrNoChange
		}
		return nil
	})
	if err != nil {
		return l, false, fmt.Errorf("keep dead letter %s on %s: %w", l.ID, topic, err)
	}
	return l, added, nil
}

// List returns the dead letters of topic, newest first; with topic "", those of every known
// topic, newest first.
func (k *Keeper) List(ctx context.Context, topic string) ([]Letter, error) {
	topics, err := k.topicsFor(topic)
	if err != nil {
		return nil, err
	}
	items := []Letter{}
	for _, t := range topics {
		ls, err := k.store.List(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("dead letters of %s: %w", t, err)
		}
		items = append(items, ls...)
	}
	if len(topics) > 1 {
		slices.SortStableFunc(items, func(a, b Letter) int { return b.ReceivedAt.Compare(a.ReceivedAt) })
	}
	return items, nil
}

// NormalizeTopic turns a topic named by an operator into its dead-letter topic: an original
// topic ("order.created") gets events.DeadLetterSuffix, a dead-letter topic stays as it is.
func NormalizeTopic(topic string) string {
	if topic == "" || strings.HasSuffix(topic, events.DeadLetterSuffix) {
		return topic
	}
	return topic + events.DeadLetterSuffix
}

func (k *Keeper) topicsFor(topic string) ([]string, error) {
	if topic == "" {
		return k.topics, nil
	}
	topic = NormalizeTopic(topic)
	if err := CheckTopic(topic); err != nil {
		return nil, err
	}
	return []string{topic}, nil
}

// Replay publishes the original event of letter id again, to its original topic with its
// CloudEvent id, and returns the letter as it stands after. topic, when not empty, names the
// dead-letter topic to look in (required when the id is kept on several). An explicit replay
// always publishes, also a letter replayed before.
//
// Three writes: replaying before the publish, then replayed (or back to pending if the
// publish failed). A failure after the publish leaves the letter replaying, which a topic
// replay takes again: a second publish at worst, which consumers drop by the event id.
func (k *Keeper) Replay(ctx context.Context, id, topic string) (Letter, error) {
	topics, err := k.topicsFor(topic)
	if err != nil {
		return Letter{}, err
	}
	var found []Letter
	for _, t := range topics {
		ls, err := k.store.List(ctx, t)
		if err != nil {
			return Letter{}, fmt.Errorf("dead letters of %s: %w", t, err)
		}
		if i := slices.IndexFunc(ls, func(l Letter) bool { return l.ID == id }); i >= 0 {
			found = append(found, ls[i])
		}
	}
	switch len(found) {
	case 0:
		return Letter{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	case 1:
	default:
		return Letter{}, fmt.Errorf("%w: %s", ErrAmbiguous, id)
	}
	l := found[0]
	to, err := replayTarget(l)
	if err != nil {
		return Letter{}, err
	}
	dead := l.Topic
	err = k.store.Update(ctx, dead, func(ls *List) error {
		var ok bool
		if l, ok = ls.BeginReplay(id); !ok {
			return fmt.Errorf("%w: %s (dropped from %s meanwhile)", ErrNotFound, id, dead)
		}
		return nil
	})
	if err != nil {
		return Letter{}, fmt.Errorf("begin replay of %s: %w", id, err)
	}
	pubErr := k.publish(ctx, to, l)
	done, err := k.finish(ctx, dead, []Letter{l}, pubErr == nil)
	if pubErr != nil {
		return Letter{}, errors.Join(pubErr, err)
	}
	if err != nil {
		return Letter{}, err
	}
	if len(done) == 1 {
		l = done[0]
	}
	return l, nil
}

// ReplayResult counts what a replay of a topic did.
type ReplayResult struct {
	// Topic is the dead-letter topic replayed.
	Topic string `json:"topic"`
	// Replayed letters were published again (and marked replayed).
	Replayed int `json:"replayed"`
	// AlreadyReplayed letters were skipped: replayed before and not dead-lettered since.
	AlreadyReplayed int `json:"already_replayed"`
	// NotReplayable letters were skipped: they hold no original CloudEvent.
	NotReplayable int `json:"not_replayable"`
}

// ReplayTopic replays every letter of a dead-letter topic that is not replayed, oldest
// first, and with includeReplayed also those replayed before. It stops at the first failed
// publish: what was published up to then is marked replayed and the rest is back to pending,
// so running it again continues where it stopped. Two replays of a topic at once (two
// operators, two replicas) may publish a letter twice; consumers deduplicate on the event id.
func (k *Keeper) ReplayTopic(ctx context.Context, topic string, includeReplayed bool) (ReplayResult, error) {
	topic = NormalizeTopic(topic)
	if err := CheckTopic(topic); err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{Topic: topic}
	to, err := Letter{Topic: topic}.OriginalTopic()
	if err != nil {
		return res, err
	}
	var todo []Letter
	err = k.store.Update(ctx, topic, func(ls *List) error {
		res, todo = ReplayResult{Topic: topic}, nil
		for i, l := range slices.Backward(ls.Items) {
			switch {
			case l.Replayed() && !includeReplayed:
				res.AlreadyReplayed++
			case len(l.Event) == 0:
				res.NotReplayable++
			default:
				ls.Items[i].Status = StatusReplaying // BeginReplay, without the lookup
				todo = append(todo, ls.Items[i])
			}
		}
		if len(todo) == 0 {
			return ErrNoChange
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("begin replay of %s: %w", topic, err)
	}
	var pubErr error
	n := 0
	for _, l := range todo {
		if pubErr = k.publish(ctx, to, l); pubErr != nil {
			break
		}
		n++
	}
	res.Replayed = n
	_, err = k.finish(ctx, topic, todo[:n], true)
	_, err2 := k.finish(ctx, topic, todo[n:], false)
	if err := errors.Join(err, err2); err != nil {
		return res, errors.Join(pubErr, err)
	}
	if pubErr != nil {
		return res, fmt.Errorf("replayed %d letters of %s, then: %w", res.Replayed, topic, pubErr)
	}
	return res, nil
}

// replayTarget is where letter l is replayed to, or why it cannot be.
func replayTarget(l Letter) (string, error) {
	if len(l.Event) == 0 {
		return "", fmt.Errorf("%w: %s on %s holds no CloudEvent", ErrNotReplayable, l.ID, l.Topic)
	}
	return l.OriginalTopic()
}

func (k *Keeper) publish(ctx context.Context, to string, l Letter) error {
	if err := k.pub.PublishCloudEvent(ctx, to, l.Event); err != nil {
		return fmt.Errorf("%w: replay %s to %s: %w", ErrPublish, l.ID, to, err)
	}
	return nil
}

// finish records the outcome of the replays of letters (of topic; begun with BeginReplay) in
// one write and returns the letters as they stand after it (those still kept). The write is
// detached from the request: a caller that went away must not leave the audit wrong.
func (k *Keeper) finish(ctx context.Context, topic string, letters []Letter, published bool) ([]Letter, error) {
	if len(letters) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	at := k.now()
	var out []Letter
	err := k.store.Update(ctx, topic, func(ls *List) error {
		out = out[:0]
		for _, l := range letters {
			if ls.FinishReplay(l.ID, l.ReceivedAt, published, at) {
				out = append(out, ls.Items[ls.index(l.ID)])
			}
		}
		if len(out) == 0 {
			return ErrNoChange
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record the replay of %d letters of %s: %w", len(letters), topic, err)
	}
	return out, nil
}
