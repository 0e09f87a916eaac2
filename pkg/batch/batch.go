// Package batch implements group commit: requests for the same key that arrive while a flush
// of that key is in flight are queued and handed to the next flush together, so one
// expensive round trip (a read-modify-CAS of one state key) serves many requests.
//
// There is one flusher goroutine per active key; it starts with the first request for an
// idle key and exits as soon as the key's queue is empty. Requests never spin on the store
// themselves: they wait for their flusher's answer.
//
// Every request has a deadline: its context's, and at most the batcher's timeout after it
// was queued. A flush runs until the latest deadline of its requests and no longer, so a
// request whose caller has gone does not keep a write going past the time it was allowed.
package batch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrTimeout is what Do returns when its request outlived the batcher's timeout. The request
// was skipped if its batch had not started, and may have been applied if it had.
var ErrTimeout = errors.New("batch: request not answered within the batcher's timeout")

// Flush applies ops (in arrival order) for key and returns one result per op. It runs on the
// key's flusher goroutine with a context that ends at the latest deadline of the ops' requests.
type Flush[K comparable, Op, Res any] func(ctx context.Context, key K, ops []Op) []Res

// Batcher queues requests per key and flushes them in batches.
type Batcher[K comparable, Op, Res any] struct {
	flush    Flush[K, Op, Res]
	maxBatch int
	timeout  time.Duration

	mu     sync.Mutex
	queues map[K]*queue[Op, Res]
}

type queue[Op, Res any] struct {
	pending []*waiter[Op, Res]
}

type waiter[Op, Res any] struct {
	op       Op
	gone     <-chan struct{} // ends with the request's deadline: a gone request is not applied
	deadline time.Time
	done     chan Res // buffered: the flusher never blocks on a caller
}

// New returns a batcher calling flush with at most maxBatch ops at a time (0: no limit),
// each request bounded by timeout from the moment it is queued (0: 10s).
func New[K comparable, Op, Res any](flush Flush[K, Op, Res], maxBatch int, timeout time.Duration) *Batcher[K, Op, Res] {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Batcher[K, Op, Res]{flush: flush, maxBatch: maxBatch, timeout: timeout, queues: map[K]*queue[Op, Res]{}}
}

// Do queues op for key and waits for its result. If ctx ends first, Do returns ctx's error,
// and ErrTimeout when the batcher's timeout ends it; the op is then skipped if its batch has
// not started, and may be applied (its result dropped) if it has.
func (b *Batcher[K, Op, Res]) Do(ctx context.Context, key K, op Op) (Res, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	w := &waiter[Op, Res]{op: op, gone: ctx.Done(), deadline: deadline, done: make(chan Res, 1)}
	b.mu.Lock()
	q, active := b.queues[key]
	if !active {
		q = &queue[Op, Res]{}
		b.queues[key] = q
	}
	q.pending = append(q.pending, w)
	b.mu.Unlock()
	if !active {
		go b.run(key, q)
	}
	select {
	case r := <-w.done:
		return r, nil
	case <-ctx.Done():
		var zero Res
		if parent.Err() == nil {
			return zero, ErrTimeout
		}
		return zero, parent.Err()
	}
}

// Active returns the number of keys with a running flusher.
func (b *Batcher[K, Op, Res]) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queues)
}

// Queued returns the number of requests waiting for key's next flush.
func (b *Batcher[K, Op, Res]) Queued(key K) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q, ok := b.queues[key]; ok {
		return len(q.pending)
	}
	return 0
}

// run is the flusher of one key: it takes everything queued so far, flushes it, and repeats
// until the queue is empty, then removes the queue so the next request starts a new flusher.
func (b *Batcher[K, Op, Res]) run(key K, q *queue[Op, Res]) {
	for {
		b.mu.Lock()
		if len(q.pending) == 0 {
			delete(b.queues, key)
			b.mu.Unlock()
			return
		}
		n := len(q.pending)
		if b.maxBatch > 0 {
			n = min(n, b.maxBatch)
		}
		taken := q.pending[:n:n]
		q.pending = append([]*waiter[Op, Res](nil), q.pending[n:]...)
		b.mu.Unlock()

		live := taken[:0:0]
		for _, w := range taken {
			select {
			case <-w.gone:
			default:
				live = append(live, w)
			}
		}
		if len(live) == 0 {
			continue
		}
		ops := make([]Op, len(live))
		deadline := live[0].deadline
		for i, w := range live {
			ops[i] = w.op
			if w.deadline.After(deadline) {
				deadline = w.deadline
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		res := b.flush(ctx, key, ops)
		cancel()
		for i, w := range live {
			w.done <- res[i]
		}
	}
}
