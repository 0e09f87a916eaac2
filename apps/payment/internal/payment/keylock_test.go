package payment

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestKeyLockExcludesPerKey(t *testing.T) {
	t.Parallel()
	k := newKeyLock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	var mu sync.Mutex
	inside, maxInside := map[string]int{}, 0
	var wg sync.WaitGroup
	for i := range 40 {
		key := []string{"a", "b"}[i%2]
		wg.Go(func() {
			unlock, err := k.lock(ctx, key)
			if err != nil {
				t.Errorf("lock(%s): %v", key, err)
				return
			}
			mu.Lock()
			inside[key]++
			maxInside = max(maxInside, inside[key])
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside[key]--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()

	if maxInside != 1 {
		t.Errorf("holders of one key at once = %d, want 1", maxInside)
	}
	if got := k.size(); got != 0 {
		t.Errorf("keys left = %d, want 0", got)
	}
}

func TestKeyLockOtherKeysDoNotWait(t *testing.T) {
	t.Parallel()
	k := newKeyLock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	unlockA, err := k.lock(ctx, "a")
	if err != nil {
		t.Fatalf("lock(a): %v", err)
	}
	defer unlockA()

	unlockB, err := k.lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock(b) while a is held: %v", err)
	}
	unlockB()
}

func TestKeyLockWaitEndsWithTheContext(t *testing.T) {
	t.Parallel()
	k := newKeyLock()
	unlock, err := k.lock(t.Context(), "a")
	if err != nil {
		t.Fatalf("lock(a): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()

	_, err = k.lock(ctx, "a")

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock(a) error = %v, want %v", err, context.DeadlineExceeded)
	}
	unlock()
	if got := k.size(); got != 0 {
		t.Errorf("keys left = %d, want 0", got)
	}
}
