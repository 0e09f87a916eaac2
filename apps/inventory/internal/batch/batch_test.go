package batch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/batch"
)

// recorder is a flush that records its batches and can be held in flight.
type recorder struct {
	mu      sync.Mutex
	batches map[string][][]int
	active  map[string]int
	overlap bool          // two flushes of one key ran at once
	gate    chan struct{} // when non-nil, each flush waits for a token
}

func newRecorder() *recorder {
	return &recorder{batches: map[string][][]int{}, active: map[string]int{}}
}

func (r *recorder) flush(_ context.Context, key string, ops []int) []string {
	r.mu.Lock()
	r.active[key]++
	if r.active[key] > 1 {
		r.overlap = true
	}
	r.batches[key] = append(r.batches[key], slices.Clone(ops))
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = fmt.Sprintf("%s:%d", key, op)
	}
	r.mu.Lock()
	r.active[key]--
	r.mu.Unlock()
	return out
}

func TestRequestsArrivingDuringAFlushShareTheNext(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := batch.New(rec.flush, 0, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	results := make([]string, 6)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	wg.Go(func() { results[0], errs[0] = b.Do(ctx, "k", 0) })
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.batches["k"]) == 1 })
	// The first flush is in flight: these five queue up for the next one.
	for i := 1; i < 6; i++ {
		wg.Go(func() { results[i], errs[i] = b.Do(ctx, "k", i) })
	}
	waitFor(t, func() bool { return queued(b, "k") == 5 })
	rec.gate <- struct{}{}
	rec.gate <- struct{}{}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if want := fmt.Sprintf("k:%d", i); results[i] != want {
			t.Errorf("request %d got %q, want %q", i, results[i], want)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.batches["k"]) != 2 || len(rec.batches["k"][1]) != 5 {
		t.Errorf("batches %v, want [[0] [five queued ops]]", rec.batches["k"])
	}
}

func queued(b *batch.Batcher[string, int, string], key string) int { return b.Queued(key) }

func TestMaxBatchSplitsAndKeysAreIndependent(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	b := batch.New(rec.flush, 3, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for i := range 200 {
		key := fmt.Sprintf("k%d", i%4)
		wg.Go(func() {
			got, err := b.Do(ctx, key, i)
			if err != nil || got != fmt.Sprintf("%s:%d", key, i) {
				t.Errorf("Do(%s, %d) = %q, %v", key, i, got, err)
			}
		})
	}
	wg.Wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlap {
		t.Error("two flushes of one key ran at once")
	}
	total := 0
	for key, bs := range rec.batches {
		for _, ops := range bs {
			if len(ops) > 3 {
				t.Errorf("%s: batch of %d, want at most 3", key, len(ops))
			}
			total += len(ops)
		}
	}
	if total != 200 {
		t.Errorf("%d ops flushed, want 200", total)
	}
	waitFor(t, func() bool { return b.Active() == 0 })
}

func TestGoneRequestsAreSkipped(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := batch.New(rec.flush, 0, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = b.Do(ctx, "k", 0) })
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.batches["k"]) == 1 })
	gone, give := context.WithCancel(ctx)
	goneErr := make(chan error, 1)
	wg.Go(func() { _, err := b.Do(gone, "k", 1); goneErr <- err })
	waitFor(t, func() bool { return queued(b, "k") == 1 })
	wg.Go(func() { _, _ = b.Do(ctx, "k", 2) })
	waitFor(t, func() bool { return queued(b, "k") == 2 })
	give()
	if err := <-goneErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Do() error = %v", err)
	}
	rec.gate <- struct{}{}
	rec.gate <- struct{}{}
	wg.Wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.batches["k"]; len(got) != 2 || !slices.Equal(got[1], []int{2}) {
		t.Errorf("batches %v, want [[0] [2]]", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
