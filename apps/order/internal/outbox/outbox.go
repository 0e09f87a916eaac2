// Package outbox relays the order events that creations and transitions write into the order
// documents themselves (order.Order.Outbox), so an order and its event become durable in one
// ETag write and no HTTP answer waits for the broker.
//
// Two paths publish, and delivery is at least once (event ids are per order and topic, so
// consumers drop repeats):
//   - Live: the service hands every committed order to Relay with the events that write
//     recorded. Workers take what has queued up as one batch, publish it (Publisher spreads it
//     over several pub/sub components: Dapr 1.16's RabbitMQ publisher holds one message in
//     flight per component) and trim the published events' entries from the outbox index, in
//     one write per index document. The order documents are not written again: an event
//     stays in its document after it is published, and its index entry is what says it was
//     waiting.
//   - Recovery: before a write records an event, the event is registered in the outbox index
//     (Index.Register: one entry per order and topic, in sharded, time-bucketed documents
//     written by group commit). A pass, leased so one replica runs it at a time, walks the
//     index buckets older than Grace from a durable cursor and publishes the events whose
//     entries are still there: the events of a process that died between its write and its
//     publish, of a full queue, or of a broker outage. Live publishing trims entries within
//     milliseconds, so the pass reads a few small documents per tick and the order documents
//     only of what was not published.
//
// Worst-case document sizes (none grows with the orders of a deal, a user or the platform):
//   - order:<id>: its outbox holds at most one event per topic (five, ~150 bytes each), so
//     under 1 KB is added to the order.
//   - outbox:<bucket>:<shard>: the entries registered in one bucket and shard, ~40 bytes each:
//     recording writes per second × OUTBOX_BUCKET / OUTBOX_SHARDS; 2,000/s with the defaults
//     (1 s, 4 shards) is 500 entries, ~20 KB, even while nothing can be published. Emptied
//     documents are deleted.
//   - outbox:cursor and outbox:lease: one timestamp, one owner name.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/bulkpub"
	"github.com/groupbuy/groupbuy/pkg/events"
)

// Config tunes the relay.
type Config struct {
	// Queue bounds the orders waiting for a live publish; when full, Relay drops the order
	// and the recovery pass publishes its events after Grace.
	Queue int
	// BatchSize bounds the orders of one batch; Workers batches are in flight at once.
	BatchSize int
	Workers   int
	// Concurrency bounds the order reads (recovery) and the index trims of one batch in flight
	// at once.
	Concurrency int
	// FlushTimeout bounds one live batch (publish, clear, trim); what it leaves is recovery's.
	FlushTimeout time.Duration
	// Grace is how old an index bucket must be before recovery publishes what it lists. It
	// must exceed the index's registration timeout and the clock skew between replicas, or
	// a registration may land in a bucket the cursor has passed.
	Grace time.Duration
	// Interval spaces recovery passes; Lease bounds one (a replica that dies holding it
	// is replaced once it ends).
	Interval time.Duration
	Lease    time.Duration
	// MaxBuckets bounds the index buckets one pass walks (catching up after an outage takes
	// several passes).
	MaxBuckets int
}

func (c Config) validate() error {
	for name, v := range map[string]int{"queue": c.Queue, "batch size": c.BatchSize, "workers": c.Workers, "concurrency": c.Concurrency, "max buckets": c.MaxBuckets} {
		if v < 1 {
			return fmt.Errorf("outbox: %s %d must be positive", name, v)
		}
	}
	for name, d := range map[string]time.Duration{"flush timeout": c.FlushTimeout, "grace": c.Grace, "interval": c.Interval, "lease": c.Lease} {
		if d <= 0 {
			return fmt.Errorf("outbox: %s %s must be positive", name, d)
		}
	}
	if c.Lease <= c.Interval {
		return fmt.Errorf("outbox: lease %s must exceed the interval %s", c.Lease, c.Interval)
	}
	return nil
}

// Publisher publishes events; it returns one error per message, nil for a published one.
type Publisher interface {
	Publish(ctx context.Context, msgs []events.OrderV1) []error
}

// Orders reads order documents.
type Orders interface {
	Get(ctx context.Context, id string) (order.Order, string, error) // order.ErrNotFound when absent
}

// Slot is one index document: the entries registered in it, and the start of its bucket.
type Slot struct {
	Key     string
	Bucket  time.Time
	Entries []string
}

// Entry is the index entry of an order's event of a topic.
func Entry(orderID, topic string) string { return orderID + "/" + topic }

// ParseEntry splits an entry. An entry without a topic (written by versions that listed
// orders, not events) stands for every event of the order recorded with its slot.
func ParseEntry(entry string) (orderID, topic string) {
	orderID, topic, _ = strings.Cut(entry, "/")
	return orderID, topic
}

// Index is the durable list of events that may be unpublished.
type Index interface {
	// Register adds an entry (Entry) before a write records its event and returns the slot.
	Register(ctx context.Context, entry string) (slot string, err error)
	// Due returns the non-empty slots of the buckets from the recovery cursor up to before
	// (at most maxBuckets), oldest first, and the end of the last bucket it read.
	Due(ctx context.Context, before time.Time, maxBuckets int) (slots []Slot, readTo time.Time, err error)
	// Trim removes entries from a slot.
	Trim(ctx context.Context, slot string, entries []string) error
	// Advance moves the recovery cursor forward to t (never back): no slot before t lists
	// anything.
	Advance(ctx context.Context, t time.Time) error
	// UpdateLease changes the recovery lease by CAS; fn returning ErrUnchanged skips the write.
	UpdateLease(ctx context.Context, fn func(l *Lease) error) error
}

// Lease is the recovery lease: the replica whose pass runs until Until.
type Lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// ErrUnchanged tells UpdateLease that nothing needs writing.
var ErrUnchanged = errors.New("outbox: unchanged")

// errLeaseHeld is a claim refused because another replica holds the lease.
var errLeaseHeld = errors.New("outbox: the recovery lease is held by another replica")

// claim takes or renews the lease for owner; a lease of another owner that has not ended is
// refused. A renewal is skipped while more than half the lease is left, so a steady owner
// writes the lease every other pass or so.
func (l *Lease) claim(owner string, now time.Time, ttl time.Duration) error {
	if l.Owner != owner && l.Owner != "" && now.Before(l.Until) {
		return errLeaseHeld
	}
	if l.Owner == owner && l.Until.Sub(now) > ttl/2 {
		return ErrUnchanged
	}
	*l = Lease{Owner: owner, Until: now.Add(ttl)}
	return nil
}

// Deps are the relay's collaborators.
type Deps struct {
	Publisher Publisher
	Orders    Orders
	Index     Index
	Owner     string // this replica's name in the lease
	Log       *slog.Logger
	Meter     metric.Meter
	Now       func() time.Time
}

// Relay implements order.Outbox.
type Relay struct {
	cfg   Config
	pub   Publisher
	ord   Orders
	idx   Index
	owner string
	log   *slog.Logger
	now   func() time.Time
	queue chan order.Order
	sent  *bulkpub.Sent

	published, failed, dropped, recovered metric.Int64Counter
}

// sentSetSize bounds the event ids a relay remembers as published or in flight.
const sentSetSize = 16384

var _ order.Outbox = (*Relay)(nil)

// New returns a relay; Run starts it.
func New(cfg Config, d Deps) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	r := &Relay{cfg: cfg, pub: d.Publisher, ord: d.Orders, idx: d.Index, owner: d.Owner, log: d.Log, now: d.Now,
		queue: make(chan order.Order, cfg.Queue), sent: bulkpub.NewSent(sentSetSize)}
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		c, cerr := d.Meter.Int64Counter(name, metric.WithDescription(desc))
		err = errors.Join(err, cerr)
		return c
	}
	r.published = counter("order.outbox.published", "Order events published by the outbox relay.")
	r.failed = counter("order.outbox.publish_failures", "Order events the relay failed to publish (left for a retry).")
	r.dropped = counter("order.outbox.dropped", "Orders not queued for a live publish (queue full); recovery publishes them.")
	r.recovered = counter("order.outbox.recovered", "Orders whose events the recovery pass found unpublished.")
	return r, err
}

// Register implements order.Outbox.
func (r *Relay) Register(ctx context.Context, orderID, topic string) (string, error) {
	return r.idx.Register(ctx, Entry(orderID, topic))
}

// Relay implements order.Outbox: it queues the order without blocking. The events to publish
// are those in o.Outbox (the caller hands what its write recorded).
func (r *Relay) Relay(o order.Order) {
	if len(o.Outbox) == 0 {
		return
	}
	select {
	case r.queue <- o:
	default:
		r.dropped.Add(context.Background(), 1)
	}
}

// Run publishes until ctx ends: the live workers and the recovery passes.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Go(func() { r.recoverLoop(ctx) })
	wg.Wait()
}

// work is one live worker: it takes whatever has queued up (at least one order, at most a
// batch) and publishes it. While a batch is out, the next one gathers.
func (r *Relay) work(ctx context.Context) {
	for {
		orders, ok := bulkpub.Gather(ctx, r.queue, r.cfg.BatchSize)
		if !ok {
			return
		}
		batch := make([]item, len(orders))
		for i, o := range orders {
			batch[i] = item{o: o}
		}
		fctx, cancel := context.WithTimeout(ctx, r.cfg.FlushTimeout)
		if err := r.flush(fctx, batch); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox_flush_failed", slog.Int("orders", len(batch)), slog.String("error", err.Error()))
		}
		cancel()
	}
}

// item is an order with the events to publish. A live item's events are trimmed from the
// slots they name; a recovered one (entry found in slot found) has its entry trimmed once
// every event it stands for is out.
type item struct {
	o            order.Order
	found, entry string
}

// flush publishes the events of the batch and trims the index entries of what went out. It
// returns an error when anything is left for later (the index keeps what is not trimmed).
func (r *Relay) flush(ctx context.Context, batch []item) error {
	type ref struct{ item, event int }
	var msgs []events.OrderV1
	var refs []ref
	trims := map[string][]string{}
	pending := make([]int, len(batch)) // events of an item not (yet) known to be out
	out := func(i, j int) {
		it := batch[i]
		if it.found == "" {
			e := it.o.Outbox[j]
			if e.Slot != "" {
				trims[e.Slot] = append(trims[e.Slot], Entry(it.o.ID, e.Topic))
			}
			return
		}
		if pending[i]--; pending[i] == 0 {
			trims[it.found] = append(trims[it.found], it.entry)
		}
	}
	for i, it := range batch {
		pending[i] = len(it.o.Outbox)
		if len(it.o.Outbox) == 0 && it.found != "" {
			trims[it.found] = append(trims[it.found], it.entry)
		}
	}
	for i, it := range batch {
		for j, e := range it.o.Outbox {
			m := it.o.Event(e)
			ok, published := r.sent.Claim(m.EventID)
			switch {
			case ok:
				msgs = append(msgs, m)
				refs = append(refs, ref{i, j})
			case published:
				out(i, j) // published before: only its entry is left
			default: // out with another batch, which trims it
			}
		}
	}
	errs := r.pub.Publish(ctx, msgs)
	var failed int
	var firstErr error
	for k, err := range errs {
		r.sent.Settle(msgs[k].EventID, err == nil)
		if err != nil {
			failed++
			firstErr = cmpErr(firstErr, err)
			continue
		}
		out(refs[k].item, refs[k].event)
	}
	r.published.Add(ctx, int64(len(msgs)-failed))
	r.failed.Add(ctx, int64(failed))

	keys := make([]string, 0, len(trims))
	for k := range trims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	trimErr := r.each(ctx, len(keys), func(i int) error {
		if err := r.idx.Trim(ctx, keys[i], trims[keys[i]]); err != nil {
			return fmt.Errorf("trim outbox slot %s: %w", keys[i], err)
		}
		return nil
	})
	if failed > 0 {
		return errors.Join(fmt.Errorf("publish %d of %d events: %w", failed, len(msgs), firstErr), trimErr)
	}
	return trimErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// each runs fn(0..n-1) with at most Concurrency in flight and joins their errors.
func (r *Relay) each(ctx context.Context, n int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// recoverLoop runs a recovery pass every Interval until ctx ends.
func (r *Relay) recoverLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Recover(ctx); err != nil && !errors.Is(err, errLeaseHeld) && ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox_recovery_failed", slog.String("error", err.Error()))
		}
	}
}

// RecoverStats counts one recovery pass.
type RecoverStats struct {
	Slots     int // index documents read with entries
	Published int // entries whose events the pass published
	Trimmed   int // entries with nothing to publish (no order, or the event has another entry)
}

// Recover is one recovery pass: under the lease, it publishes the waiting events of every
// order listed in the index buckets older than Grace, trims them, and advances the cursor
// past the buckets it emptied. Another replica holding the lease makes it a no-op.
func (r *Relay) Recover(ctx context.Context) (RecoverStats, error) {
	now := r.now()
	if err := r.idx.UpdateLease(ctx, func(l *Lease) error { return l.claim(r.owner, now, r.cfg.Lease) }); err != nil {
		return RecoverStats{}, err
	}
	ctx, cancel := context.WithDeadline(ctx, now.Add(r.cfg.Lease-r.cfg.Lease/10))
	defer cancel()
	slots, readTo, err := r.idx.Due(ctx, now.Add(-r.cfg.Grace), r.cfg.MaxBuckets)
	if err != nil {
		return RecoverStats{}, err
	}
	st := RecoverStats{Slots: len(slots)}
	var batch []item
	var mu sync.Mutex
	trims := make([][]string, len(slots))
	var items []struct{ slot, entry int }
	for s, sl := range slots {
		for k := range sl.Entries {
			items = append(items, struct{ slot, entry int }{s, k})
		}
	}
	readErr := r.each(ctx, len(items), func(i int) error {
		sl := slots[items[i].slot]
		entry := sl.Entries[items[i].entry]
		id, topic := ParseEntry(entry)
		o, _, err := r.ord.Get(ctx, id)
		if err != nil && !errors.Is(err, order.ErrNotFound) {
			return fmt.Errorf("read order %s: %w", id, err)
		}
		// The events the entry stands for: its topic's, when it was recorded with this
		// slot (one recorded with another slot has that entry).
		var waiting []order.OutboxEvent
		for _, e := range o.Outbox {
			if e.Slot == sl.Key && (topic == "" || e.Topic == topic) {
				waiting = append(waiting, e)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(waiting) == 0 {
			// Registered for an order that was never written (sold out, or a crash before
			// the write), or for an event recorded with another slot.
			trims[items[i].slot] = append(trims[items[i].slot], entry)
			return nil
		}
		o.Outbox = waiting
		batch = append(batch, item{o: o, found: sl.Key, entry: entry})
		return nil
	})
	trimErr := r.each(ctx, len(slots), func(i int) error {
		if len(trims[i]) == 0 {
			return nil
		}
		if err := r.idx.Trim(ctx, slots[i].Key, trims[i]); err != nil {
			return fmt.Errorf("trim outbox slot %s: %w", slots[i].Key, err)
		}
		return nil
	})
	for _, t := range trims {
		st.Trimmed += len(t)
	}
	var flushErr error
	for start := 0; start < len(batch); start += r.cfg.BatchSize {
		part := batch[start:min(start+r.cfg.BatchSize, len(batch))]
		flushErr = errors.Join(flushErr, r.flush(ctx, part))
	}
	st.Published = len(batch)
	r.recovered.Add(ctx, int64(len(batch)))
	if err := errors.Join(readErr, trimErr, flushErr); err != nil {
		// The cursor stays where it is: the next pass reads these buckets again.
		return st, err
	}
	if err := r.idx.Advance(ctx, readTo); err != nil {
		return st, err
	}
	if st.Published > 0 {
		r.log.InfoContext(ctx, "outbox_recovered", slog.Int("orders", st.Published), slog.Int("slots", st.Slots))
	}
	return st, nil
}
