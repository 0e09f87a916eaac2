// Package deadletter keeps the messages the durable subscriptions gave up on, so operators can
// see and replay them.
//
// Why notify keeps them: with pubsub.rabbitmq, daprd publishes a dead letter to the exchange
// "<topic>.dead", and RabbitMQ discards a message sent to an exchange no queue is bound to. So
// notify subscribes to every "<topic>.dead" with its app id as consumer: durable queues
// "notify-<topic>.dead" exist as soon as notify's sidecar has started, and this package stores
// what arrives on them, per dead-letter topic, newest first, capped, deduplicated on the
// CloudEvent id (delivery is at-least-once here too).
package deadletter

import (
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
)

// MaxItems caps the list of one topic; the oldest letters fall off.
const MaxItems = 1000

// Letter is one dead-lettered message.
type Letter struct {
	// Topic is the dead-letter topic it arrived on ("order.created.dead").
	Topic string `json:"topic"`
	// ID is the CloudEvent id of the original message; "sha256:<hex>" of the message when it
	// was not a CloudEvent.
	ID string `json:"id"`
	// Data is the original payload as the publisher sent it: the CloudEvent's data (JSON text,
	// or the decoded string / base64 bytes), or the whole message when it was no CloudEvent.
	Data       string    `json:"data"`
	ReceivedAt time.Time `json:"received_at"`
}

// List is the stored document of one topic's dead letters, newest first.
type List struct {
	Items []Letter `json:"items"`
}

// Add puts l in front unless a letter with its id is already kept, then trims the list to
// MaxItems. It reports whether the list changed.
func (ls *List) Add(l Letter) bool {
	if slices.ContainsFunc(ls.Items, func(x Letter) bool { return x.ID == l.ID }) {
		return false
	}
	ls.Items = slices.Insert(ls.Items, 0, l)
	if len(ls.Items) > MaxItems {
		ls.Items = ls.Items[:MaxItems]
	}
	return true
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
	l := Letter{Topic: topic, ReceivedAt: now.UTC()}
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
	l.ID = ce.ID
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

// Store keeps the lists.
type Store interface {
	// Add puts l into the list of l.Topic (see List.Add); added is false for a duplicate.
	Add(ctx context.Context, l Letter) (added bool, err error)
	// List returns the letters of topic, newest first (empty for an unknown topic).
	List(ctx context.Context, topic string) ([]Letter, error)
}

// Keeper implements the dead-letter use cases.
type Keeper struct {
	store Store
	now   func() time.Time
}

// NewKeeper returns a keeper over store; now defaults to time.Now.
func NewKeeper(store Store, now func() time.Time) *Keeper {
	if now == nil {
		now = time.Now
	}
	return &Keeper{store: store, now: now}
}

// Keep stores msg, received on the dead-letter topic. It returns the letter and whether it
// was new.
func (k *Keeper) Keep(ctx context.Context, topic string, msg []byte) (Letter, bool, error) {
	l, err := FromMessage(topic, msg, k.now())
	if err != nil {
		return Letter{}, false, err
	}
	added, err := k.store.Add(ctx, l)
	if err != nil {
		return l, false, fmt.Errorf("keep dead letter %s on %s: %w", l.ID, topic, err)
	}
	return l, added, nil
}

// List returns the dead letters of topic, newest first.
func (k *Keeper) List(ctx context.Context, topic string) ([]Letter, error) {
	if err := CheckTopic(topic); err != nil {
		return nil, err
	}
	items, err := k.store.List(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", topic, err)
	}
	if items == nil {
		items = []Letter{}
	}
	return items, nil
}
