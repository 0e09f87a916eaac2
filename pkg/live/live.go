// Package live serves server-sent event streams (SSE) from an in-process hub, and defines the
// relay payload that feeds it over the broadcast pub/sub component.
//
// The hub fans messages out to the clients streaming from this replica. Each client has a
// buffered channel; Publish never blocks: a client whose buffer is full is dropped (its channel
// closed), so one stalled browser cannot slow the pub/sub handler or the others. A dropped
// client reconnects and catches up from its inbox (Last-Event-ID, see Since).
//
// Why the streams live here and not behind Dapr service invocation: daprd 1.16 buffers a
// streamed (text/event-stream) HTTP invocation response until it ends, so a stream relayed
// through a sidecar delivers nothing live. The replicas that hold the browser connections (the
// gateway) therefore subscribe to the relay topics themselves and publish into their own hub.
package live

import (
	"sync"
)

// Message is one event for a stream.
type Message struct {
	ID   string
	Type string
	Data []byte // one JSON value, no line breaks
}

// UserTopic is the topic of a user's own events.
func UserTopic(userID string) string { return "user/" + userID }

// GroupTopic is the topic of a group's public events.
func GroupTopic(groupID string) string { return "group/" + groupID }

// Hub is the registry of this replica's streaming clients.
type Hub struct {
	buffer int

	mu     sync.Mutex
	subs   map[string]map[*Subscription]struct{}
	closed bool
}

// NewHub returns a hub giving each client a buffer of the given size.
func NewHub(buffer int) *Hub {
	return &Hub{buffer: max(buffer, 1), subs: map[string]map[*Subscription]struct{}{}}
}

// Subscription is one client's feed.
type Subscription struct {
	hub   *Hub
	topic string
	ch    chan Message
	gone  bool // guarded by hub.mu: removed from the hub and ch closed
}

// C delivers the messages; it is closed when the client was dropped for being slow, when the
// hub closes, or after Close.
func (s *Subscription) C() <-chan Message { return s.ch }

// Close unsubscribes; it is safe to call more than once and after a drop.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s)
}

// Subscribe registers a client for topic. On a closed hub it returns a subscription whose
// channel is already closed.
func (h *Hub) Subscribe(topic string) *Subscription {
	s := &Subscription{hub: h, topic: topic, ch: make(chan Message, h.buffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.gone = true
		close(s.ch)
		return s
	}
	set := h.subs[topic]
	if set == nil {
		set = map[*Subscription]struct{}{}
		h.subs[topic] = set
	}
	set[s] = struct{}{}
	return s
}

// Publish hands m to every client of topic without waiting; clients with a full buffer are
// dropped. It returns how many clients got m and how many were dropped.
func (h *Hub) Publish(topic string, m Message) (delivered, dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[topic] {
		select {
		case s.ch <- m:
			delivered++
		default:
			h.remove(s)
			dropped++
		}
	}
	return delivered, dropped
}

// Clients returns how many clients are subscribed to topic.
func (h *Hub) Clients(topic string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[topic])
}

// Close ends every subscription (the streams finish, so a graceful shutdown is not held up by
// open SSE connections) and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.subs {
		for s := range set {
			h.remove(s)
		}
	}
}

// remove must be called with h.mu held.
func (h *Hub) remove(s *Subscription) {
	if s.gone {
		return
	}
	s.gone = true
	close(s.ch)
	set := h.subs[s.topic]
	delete(set, s)
	if len(set) == 0 {
		delete(h.subs, s.topic)
	}
}
