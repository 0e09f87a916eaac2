package payment

import (
	"context"
	"sync"
)

// keyLock serializes work per key inside this process.
//
// Why: a losing first-write is not free. The sidecar's resiliency policy retries every failed
// state write (a create on an existing key included) and counts each attempt against the state
// store's circuit breaker, so twenty concurrent calls for one order could open the breaker for
// every other order. Serialized, the later calls read the first call's record and never write.
// Callers in other replicas can still race; the first-write create settles that.
type keyLock struct {
	mu    sync.Mutex
	locks map[string]*keyEntry
}

type keyEntry struct {
	sem  chan struct{} // holds one token while locked
	refs int           // holders and waiters; the entry is dropped at zero
}

func newKeyLock() *keyLock { return &keyLock{locks: map[string]*keyEntry{}} }

// lock waits until key is free or ctx ends, and returns the function that frees it.
func (k *keyLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	e, ok := k.locks[key]
	if !ok {
		e = &keyEntry{sem: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
		return func() {
			<-e.sem
			k.release(key, e)
		}, nil
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
}

func (k *keyLock) release(key string, e *keyEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(k.locks, key)
	}
}

// size returns the number of keys held or waited for (for tests).
func (k *keyLock) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
