package live

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// PubSub is the broadcast pub/sub component (components/pubsub-broadcast.yaml): every
// subscriber replica has a non-durable queue of its own, so every replica sees every message.
const PubSub = "pubsub-broadcast"

// Relay topics on the broadcast component. notify publishes each order or group event there
// once it is in the inboxes; the gateway replicas subscribe
// (components/subscriptions-gateway.yaml) and publish into their hub.
const (
	TopicOrder = "notify.live.order"
	TopicGroup = "notify.live.group"
)

// EventV1 is version 1 of the relay payload: a notification already rendered for the streams
// (the same id, type and data as the inbox entry, so a catch-up from the inbox and the live
// stream show identical frames) and who gets it.
type EventV1 struct {
	V         int             `json:"v"`
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
	// Users are the recipients: each user's own stream gets the event.
	Users []string `json:"users"`
	// GroupID is set for group events: that group's public stream gets the event too. It is
	// never set for order events, whose data is private to the user.
	GroupID string `json:"group_id,omitempty"`
}

// ErrInvalidEvent marks a relay payload this build cannot use.
var ErrInvalidEvent = errors.New("live: invalid relay event")

// DecodeEvent parses and checks a relay payload. Ids end up in SSE "id:" lines and hub topics,
// so control characters are refused rather than trusted to the frame writer alone.
func DecodeEvent(b []byte) (EventV1, error) {
	var e EventV1
	if err := json.Unmarshal(b, &e); err != nil {
		return EventV1{}, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if e.V != 1 {
		return EventV1{}, fmt.Errorf("%w: version %d", ErrInvalidEvent, e.V)
	}
	for _, s := range append([]string{e.ID, e.Type}, e.Users...) {
		if !cleanID(s) {
			return EventV1{}, fmt.Errorf("%w: empty id or control characters in %q", ErrInvalidEvent, s)
		}
	}
	if e.GroupID != "" && !cleanID(e.GroupID) {
		return EventV1{}, fmt.Errorf("%w: control characters in group id %q", ErrInvalidEvent, e.GroupID)
	}
	var data bytes.Buffer
	if err := json.Compact(&data, e.Data); err != nil || data.Len() == 0 || data.String() == "null" {
		return EventV1{}, fmt.Errorf("%w: data of %s is not a JSON value", ErrInvalidEvent, e.ID)
	}
	e.Data = data.Bytes()
	return e, nil
}

func cleanID(s string) bool {
	return s != "" && len(s) <= 512 && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Message is the frame the streams show.
func (e EventV1) Message() Message { return Message{ID: e.ID, Type: e.Type, Data: e.Data} }

// Fanout publishes e into h: to every recipient's own stream and, when withGroup is set, to
// the group's public stream. It returns how many slow clients were dropped on the way.
func Fanout(h *Hub, e EventV1, withGroup bool) (dropped int) {
	m := e.Message()
	done := make(map[string]bool, len(e.Users))
	for _, u := range e.Users {
		if done[u] {
			continue // one frame per stream, even if the list names a user twice
		}
		done[u] = true
		_, d := h.Publish(UserTopic(u), m)
		dropped += d
	}
	if withGroup && e.GroupID != "" {
		_, d := h.Publish(GroupTopic(e.GroupID), m)
		dropped += d
	}
	return dropped
}
