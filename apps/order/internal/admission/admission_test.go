package admission_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/admission"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

func newLimiter(t *testing.T, cfg admission.Config) *admission.Limiter {
	t.Helper()
	l, err := admission.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkRefused fails unless err is 503 unavailable with the configured Retry-After.
func checkRefused(t *testing.T, err error, retryAfter time.Duration) {
	t.Helper()
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.CodeUnavailable || pe.RetryAfter != retryAfter {
		t.Errorf("error = %#v, want unavailable with Retry-After %s", err, retryAfter)
		return
	}
	if got := pe.Code.Status(); got != 503 {
		t.Errorf("status = %d, want 503", got)
	}
}

// With every slot taken and no queue, a placement is refused at once; a released slot is
// taken by the next.
func TestLimiterRefusesWhenFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLimiter(t, admission.Config{Limit: 2, Queue: 0, QueueTimeout: time.Hour, RetryAfter: 3 * time.Second})
	r1, err1 := l.Admit(ctx)
	_, err2 := l.Admit(ctx)
	if err1 != nil || err2 != nil {
		t.Fatalf("first two = %v, %v; want both admitted", err1, err2)
	}

	_, err := l.Admit(ctx)
	checkRefused(t, err, 3*time.Second)

	r1()
	if _, err := l.Admit(ctx); err != nil {
		t.Errorf("after a release: %v, want admitted", err)
	}
}

// A queued placement takes the first slot released.
func TestLimiterQueueTakesAReleasedSlot(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := newLimiter(t, admission.Config{Limit: 1, Queue: 1, QueueTimeout: time.Hour})
	release, err := l.Admit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() {
		_, err := l.Admit(ctx)
		queued <- err
	}()
	for l.Queued() != 1 {
		if ctx.Err() != nil {
			t.Fatal("the second placement never queued")
		}
		runtime.Gosched()
	}
	// The queue holds one: a third is refused at once.
	_, err = l.Admit(ctx)
	checkRefused(t, err, time.Second)

	release()
	select {
	case err := <-queued:
		if err != nil {
			t.Errorf("queued placement: %v, want admitted", err)
		}
	case <-ctx.Done():
		t.Fatal("the queued placement never got the released slot")
	}
}

// A placement that would wait longer than QueueTimeout is refused; one whose caller leaves
// gets the caller's error.
func TestLimiterWaitIsBounded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := newLimiter(t, admission.Config{Limit: 1, Queue: 4, QueueTimeout: 20 * time.Millisecond})
	if _, err := l.Admit(ctx); err != nil {
		t.Fatal(err)
	}

	_, err := l.Admit(ctx)
	checkRefused(t, err, time.Second)

	gone, leave := context.WithCancel(ctx)
	leave()
	if _, err := l.Admit(gone); !errors.Is(err, context.Canceled) {
		t.Errorf("caller gone: %v, want %v", err, context.Canceled)
	}
}
