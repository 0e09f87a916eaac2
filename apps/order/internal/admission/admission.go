// Package admission bounds the placements one order replica works on at once, so that what it
// admits finishes well inside the caller's timeout and what it cannot take is refused early
// and cheaply: before any state is written, with 503 unavailable and a Retry-After.
//
// Under overload (a CPU-starved machine, a burst of buyers) every admitted placement shares the
// same sidecars and CPU: letting all of them in makes each take seconds, the caller's sidecar
// times out halfway through and retries, and the retries meet the first attempts' keys. A
// fixed number of slots keeps each placement's latency near its unloaded value; a bounded
// queue absorbs a burst; a request that would wait longer than QueueTimeout, or finds the
// queue full, is refused at once.
package admission

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Config sizes a Limiter.
type Config struct {
	Limit        int           // placements worked on at once (at least 1)
	Queue        int           // placements that may wait for a slot; more are refused at once
	QueueTimeout time.Duration // longest wait for a slot
	RetryAfter   time.Duration // suggested to refused clients (default 1s)
	Meter        metric.Meter  // optional
}

// Limiter admits placements into a fixed number of slots.
type Limiter struct {
	cfg     Config
	slots   chan struct{} // one token per placement at work
	queue   chan struct{} // one token per placement waiting
	refused metric.Int64Counter
}

// New returns a limiter.
func New(cfg Config) (*Limiter, error) {
	cfg.Limit = max(cfg.Limit, 1)
	cfg.Queue = max(cfg.Queue, 0)
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	refused, err := cfg.Meter.Int64Counter("order_admission_refused_total",
		metric.WithDescription("Placements refused with 503 unavailable before any write (reason: queue_full or queue_timeout)"))
	if err != nil {
		return nil, err
	}
	return &Limiter{cfg: cfg, slots: make(chan struct{}, cfg.Limit), queue: make(chan struct{}, cfg.Queue), refused: refused}, nil
}

// Admit takes a slot, waiting for one at most QueueTimeout, and returns its release. It
// returns a *problem.Error with code unavailable and a Retry-After when the queue is full or
// the wait runs out, and ctx's error when the caller leaves first. Waiters take free slots in
// arrival order (Go queues blocked channel senders first in, first out).
func (l *Limiter) Admit(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	select {
	case l.queue <- struct{}{}:
	default:
		return nil, l.refuse(ctx, "queue_full")
	}
	defer func() { <-l.queue }()
	t := time.NewTimer(l.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, l.refuse(ctx, "queue_timeout")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Limiter) release() { <-l.slots }

// Queued returns how many placements wait for a slot now.
func (l *Limiter) Queued() int { return len(l.queue) }

func (l *Limiter) refuse(ctx context.Context, reason string) error {
	l.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	return &problem.Error{Code: problem.CodeUnavailable, RetryAfter: l.cfg.RetryAfter,
		Detail: "the order service is at capacity; retry after the Retry-After delay with the same Idempotency-Key"}
}
