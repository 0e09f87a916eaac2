package bulkpub

import (
	"context"
	"sync"
)

// Sent remembers the events a replica's relay has published or is publishing (by event id),
// so an event handed over again is not published a second time by that replica. Bounded: the
// oldest ids fall out, and a repeat past them is what consumers drop by event id anyway.
type Sent struct {
	mu    sync.Mutex
	size  int
	ids   map[string]bool // true: published; false: in flight
	order []string
}

// NewSent returns a set remembering at most size ids.
func NewSent(size int) *Sent { return &Sent{size: size, ids: map[string]bool{}} }

// Claim reserves id for publishing; false when it is published or in flight already, and
// published tells which.
func (s *Sent) Claim(id string) (ok, published bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, seen := s.ids[id]; seen {
		return false, p
	}
	s.ids[id] = false
	s.order = append(s.order, id)
	for len(s.order) > s.size {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	return true, false
}

// Settle records the outcome of a claimed id: published, or released for a later attempt.
func (s *Sent) Settle(id string, published bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; !ok {
		return
	}
	if published {
		s.ids[id] = true
	} else {
		delete(s.ids, id) // left in order; Claim appends it again
	}
}

// Published reports whether id is known published.
func (s *Sent) Published(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}

// Gather waits for one item of queue (ok false when ctx ends first), then takes whatever
// else has queued up, up to max items in all: a relay worker's next batch.
func Gather[T any](ctx context.Context, queue <-chan T, max int) (batch []T, ok bool) {
	select {
	case <-ctx.Done():
		return nil, false
	case it := <-queue:
		batch = append(batch, it)
	}
	for len(batch) < max {
		select {
		case it := <-queue:
			batch = append(batch, it)
		default:
			return batch, true
		}
	}
	return batch, true
}
