// Package relay publishes the events that GroupActor turns leave in a group's outbox, off the
// turn: a seat's turn saves the group (its event in the outbox, durable with the change it
// reports), hands the event here and answers; workers publish what has queued up in bulk
// requests spread over several pub/sub components (pkg/bulkpub: Dapr 1.16's RabbitMQ
// publisher holds one message in flight per component), so no turn waits for the broker and
// the group's outbox is not written a second time to clear it.
//
// The outbox is cleared lazily: the next turn of the group drops the events this replica has
// published (Published) before it saves for its own reasons. What is not known published is
// handed over again by every turn of the group, and a group's final turn (succeeded or
// failed, which the order app settles on) publishes its whole outbox itself before it drops
// the deadline reminder. So an event survives a crash of this process in the outbox: the
// group's next turn, or at the latest its deadline reminder, publishes it. Delivery is at
// least once; consumers drop repeats by event id. A group's outbox holds at most one event per
// seat and one outcome (group_size + 2 events).
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/groupbuy/groupbuy/pkg/bulkpub"
	"github.com/groupbuy/groupbuy/pkg/events"
)

// Publisher publishes events; it returns one error per event, nil for a published one.
type Publisher interface {
	Publish(ctx context.Context, evs []events.GroupV1) []error
}

// Config tunes the relay.
type Config struct {
	// Queue bounds the events waiting; when full, Hand leaves the rest in their outboxes.
	Queue int
	// BatchSize bounds one bulk publish; Workers batches are in flight at once.
	BatchSize int
	Workers   int
	// FlushTimeout bounds one batch's publish.
	FlushTimeout time.Duration
	// Retry is the delay before a failed event is tried again; Attempts bounds the tries
	// (what is left stays in its group's outbox for the next turn or the deadline).
	Retry    time.Duration
	Attempts int
	// Remember bounds the event ids kept as published (the oldest fall out; an event handed
	// over again past them is published again, and consumers drop it).
	Remember int
}

// DefaultConfig is the relay's configuration unless the app says otherwise.
var DefaultConfig = Config{Queue: 8192, BatchSize: 100, Workers: 8, FlushTimeout: 5 * time.Second,
	Retry: time.Second, Attempts: 5, Remember: 65536}

// Relay publishes handed-over events.
type Relay struct {
	cfg   Config
	pub   Publisher
	log   *slog.Logger
	queue chan item

	sent *bulkpub.Sent

	published, failed, dropped metric.Int64Counter
}

type item struct {
	e       events.GroupV1
	attempt int
}

// New returns the relay; Run starts its workers. meter may be nil.
func New(cfg Config, pub Publisher, log *slog.Logger, meter metric.Meter) (*Relay, error) {
	if cfg.Queue < 1 || cfg.BatchSize < 1 || cfg.Workers < 1 || cfg.Attempts < 1 || cfg.Remember < 1 || cfg.FlushTimeout <= 0 || cfg.Retry <= 0 {
		return nil, fmt.Errorf("relay: invalid config %+v", cfg)
	}
	r := &Relay{cfg: cfg, pub: pub, log: log, queue: make(chan item, cfg.Queue), sent: bulkpub.NewSent(cfg.Remember)}
	if meter != nil {
		var err error
		if r.published, err = meter.Int64Counter("group_events_published", metric.WithDescription("group events published by the relay")); err != nil {
			return nil, err
		}
		if r.failed, err = meter.Int64Counter("group_events_publish_failed", metric.WithDescription("failed publish attempts of group events")); err != nil {
			return nil, err
		}
		if r.dropped, err = meter.Int64Counter("group_events_left_in_outbox", metric.WithDescription("group events the relay left in their outbox (queue full or attempts spent)")); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Published reports whether this replica has published the event.
func (r *Relay) Published(id string) bool { return r.sent.Published(id) }

// Hand queues the events that are neither published nor queued already. It never blocks:
// with the queue full, an event stays in its group's outbox for later.
func (r *Relay) Hand(ctx context.Context, evs []events.GroupV1) {
	for _, e := range evs {
		if ok, _ := r.sent.Claim(e.EventID); ok {
			r.enqueue(ctx, item{e: e})
		}
	}
}

func (r *Relay) enqueue(ctx context.Context, it item) {
	select {
	case r.queue <- it:
	default:
		r.sent.Settle(it.e.EventID, false)
		add(ctx, r.dropped, 1)
	}
}

// Run publishes until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Wait()
}

func (r *Relay) work(ctx context.Context) {
	for {
		batch, ok := bulkpub.Gather(ctx, r.queue, r.cfg.BatchSize)
		if !ok {
			return
		}
		r.flush(ctx, batch)
	}
}

func (r *Relay) flush(ctx context.Context, batch []item) {
	evs := make([]events.GroupV1, len(batch))
	for i, it := range batch {
		evs[i] = it.e
	}
	fctx, cancel := context.WithTimeout(ctx, r.cfg.FlushTimeout)
	errs := r.pub.Publish(fctx, evs)
	cancel()
	for i, it := range batch {
		if errs[i] == nil {
			r.sent.Settle(it.e.EventID, true)
			add(ctx, r.published, 1)
			continue
		}
		add(ctx, r.failed, 1)
		if it.attempt+1 >= r.cfg.Attempts || ctx.Err() != nil {
			r.log.WarnContext(ctx, "group_event_left_in_outbox", slog.String("event_id", it.e.EventID), slog.String("error", errs[i].Error()))
			r.sent.Settle(it.e.EventID, false)
			add(ctx, r.dropped, 1)
			continue
		}
		next := item{e: it.e, attempt: it.attempt + 1}
		time.AfterFunc(r.cfg.Retry, func() { r.enqueue(ctx, next) })
	}
}

func add(ctx context.Context, c metric.Int64Counter, n int64) {
	if c != nil {
		c.Add(ctx, n)
	}
}
