package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/outbox"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/events"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

var cfg = outbox.Config{Queue: 64, BatchSize: 32, Workers: 1, Concurrency: 4, FlushTimeout: 5 * time.Second,
	Grace: 5 * time.Second, Interval: time.Second, Lease: 10 * time.Second, MaxBuckets: 60}

// clock is a settable time shared by the relay and the index.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// publisher records what it publishes; fail makes every publish fail.
type publisher struct {
	mu    sync.Mutex
	calls [][]string // event ids per call
	fail  error
	sent  chan struct{}
}

func (p *publisher) Publish(_ context.Context, msgs []events.OrderV1) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(msgs))
	var ids []string
	for i, m := range msgs {
		if p.fail != nil {
			errs[i] = p.fail
			continue
		}
		ids = append(ids, m.EventID)
	}
	p.calls = append(p.calls, ids)
	if p.sent != nil {
		p.sent <- struct{}{}
	}
	return errs
}

func (p *publisher) setFail(err error) { p.mu.Lock(); defer p.mu.Unlock(); p.fail = err }

// published lists every event id published, in order.
func (p *publisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.calls {
		out = append(out, c...)
	}
	return out
}

type env struct {
	client *daprstatetest.Client
	state  *daprstate.Store
	orders *daprstore.Orders
	index  *daprstore.Outbox
	pub    *publisher
	clock  *clock
}

func newEnv() *env {
	c := daprstatetest.NewClient()
	st := daprstate.New(c, "statestore")
	clk := &clock{t: t0}
	return &env{client: c, state: st, orders: daprstore.NewOrders(st), pub: &publisher{}, clock: clk,
		index: daprstore.NewOutbox(st, daprstore.OutboxConfig{Shards: 2, Bucket: time.Second, Lookback: time.Minute,
			RegisterTimeout: 2 * time.Second, MaxBatch: 64}, clk.Now)}
}

func (e *env) relay(t *testing.T, owner string) *outbox.Relay {
	t.Helper()
	r, err := outbox.New(cfg, outbox.Deps{Publisher: e.pub, Orders: e.orders, Index: e.index, Owner: owner,
		Log: slog.New(slog.DiscardHandler), Meter: noop.NewMeterProvider().Meter("test"), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// commit writes an order as the service does: registered first, then stored with its
// order.created event.
func (e *env) commit(t *testing.T, r *outbox.Relay, id string) order.Order {
	t.Helper()
	ctx := context.Background()
	slot, err := r.Register(ctx, id, events.TopicOrderCreated)
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	o := order.Order{ID: id, UserID: "u1", DealID: "d1", Kind: "flash", Quantity: 1, Status: order.StatusPending,
		CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	o.Outbox = []order.OutboxEvent{{Topic: events.TopicOrderCreated, Status: order.StatusPending, At: o.CreatedAt, Slot: slot}}
	if err := e.orders.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) outboxOf(t *testing.T, id string) []string {
	t.Helper()
	o, _, err := e.orders.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range o.Outbox {
		out = append(out, ev.Topic)
	}
	return out
}

func (e *env) indexed() []string {
	var out []string
	for _, k := range e.client.Keys("statestore", "outbox:") {
		if k == daprstore.OutboxCursorKey || k == daprstore.OutboxLeaseKey {
			continue
		}
		v, _ := e.client.Value("statestore", k)
		var d struct{ IDs []string }
		_ = json.Unmarshal(v, &d)
		out = append(out, d.IDs...)
	}
	slices.Sort(out)
	return out
}

// Orders queued while the relay is busy go out together: one publish for the batch and
// their index entries trimmed (the documents deleted). The order documents are not written
// again: a published event stays in its document, its entry gone.
func TestRelayPublishesBatchesAndTrims(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.pub.sent = make(chan struct{}, 8)
	r := e.relay(t, "a")
	for _, id := range []string{"o1", "o2", "o3"} {
		r.Relay(e.commit(t, r, id))
	}
	if got, want := e.indexed(), []string{"o1/order.created", "o2/order.created", "o3/order.created"}; !slices.Equal(got, want) {
		t.Fatalf("indexed before the relay = %v, want %v", got, want)
	}
	orderWrites := len(e.client.Writes("statestore", "order:"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()

	select {
	case <-e.pub.sent:
	case <-ctx.Done():
		t.Fatal("nothing published")
	}
	waitFor(t, ctx, func() bool { return len(e.indexed()) == 0 })
	cancel()
	<-done

	if diff := cmp.Diff(e.pub.calls, [][]string{{"o1:order.created", "o2:order.created", "o3:order.created"}}); diff != "" {
		t.Errorf("publish calls (-got +want):\n%s", diff)
	}
	if n := len(e.client.Writes("statestore", "order:")); n != orderWrites {
		t.Errorf("%d order document writes by the relay, want none", n-orderWrites)
	}
	if keys := e.client.Keys("statestore", "outbox:1"); len(keys) != 0 {
		t.Errorf("index documents left: %v, want deleted once empty", keys)
	}
}

// Two events of one order registered in the same index document (created, then paid within
// one bucket): publishing the first trims only its own entry, so the second stays findable by
// recovery until it is out too.
func TestTrimKeepsTheEntriesOfOtherEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	e.pub.sent = make(chan struct{}, 8)
	r := e.relay(t, "a")
	o := e.commit(t, r, "o1")
	paidSlot, err := r.Register(ctx, "o1", events.TopicOrderPaid)
	if err != nil {
		t.Fatal(err)
	}
	if paidSlot != o.Outbox[0].Slot {
		t.Fatalf("paid registered in %s, created in %s: want one document", paidSlot, o.Outbox[0].Slot)
	}
	r.Relay(o) // created only: the payment's write has not landed, and its publish never comes
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	<-e.pub.sent
	waitFor(t, rctx, func() bool { return len(e.indexed()) == 1 })
	cancel()
	<-done

	if diff := cmp.Diff(e.indexed(), []string{"o1/order.paid"}); diff != "" {
		t.Errorf("indexed (-got +want):\n%s", diff)
	}
	// The payment's write lands (its event recorded with that slot) and its process dies
	// before relaying: recovery publishes it.
	paid, etag, err := e.orders.Get(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	paid.Status = order.StatusPaid
	paid.Outbox = append(paid.Outbox, order.OutboxEvent{Topic: events.TopicOrderPaid, Status: order.StatusPaid, At: e.clock.Now(), Slot: paidSlot})
	if err := e.orders.Update(ctx, paid, etag); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(t0.Add(cfg.Grace + time.Second))
	if _, err := e.relay(t, "b").Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if diff := cmp.Diff(e.pub.published(), []string{"o1:order.created", "o1:order.paid"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
	if got := e.indexed(); len(got) != 0 {
		t.Errorf("indexed = %v, want trimmed", got)
	}
}

// An event handed over again (a resumed placement hands the order's whole outbox) is
// published once by a replica that published it already: the second hand-over only trims.
func TestEventHandedOverTwicePublishedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.pub.sent = make(chan struct{}, 8)
	r := e.relay(t, "a")
	o := e.commit(t, r, "o1")
	r.Relay(o)
	paidSlot, err := r.Register(context.Background(), "o1", events.TopicOrderPaid)
	if err != nil {
		t.Fatal(err)
	}
	paid := o
	paid.Status = order.StatusPaid
	paid.Outbox = append(slices.Clone(o.Outbox), order.OutboxEvent{Topic: events.TopicOrderPaid, Status: order.StatusPaid, At: e.clock.Now(), Slot: paidSlot})
	_, etag, err := e.orders.Get(context.Background(), "o1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.orders.Update(context.Background(), paid, etag); err != nil {
		t.Fatal(err)
	}
	r.Relay(paid)
	r.Relay(paid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, ctx, func() bool { return len(e.indexed()) == 0 })
	cancel()
	<-done

	var got []string
	for _, c := range e.pub.calls {
		got = append(got, c...)
	}
	slices.Sort(got)
	if diff := cmp.Diff(got, []string{"o1:order.created", "o1:order.paid"}); diff != "" {
		t.Errorf("published events (-got +want):\n%s", diff)
	}
}

// A process that died between its write and its publish leaves the event in the document and
// its entry in the index: the recovery pass publishes it once the bucket is older than the
// grace, trims it, and moves the cursor past the emptied buckets.
func TestRecoveryPublishesWhatACrashLeft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	dead := e.relay(t, "dead")
	// o1 is committed and never relayed: the process died. o2 was registered, then sold out:
	// no order was written.
	e.commit(t, dead, "o1")
	if _, err := dead.Register(ctx, "o2", events.TopicOrderCreated); err != nil {
		t.Fatal(err)
	}
	r := e.relay(t, "b")

	st, err := r.Recover(ctx)
	if err != nil {
		t.Fatalf("Recover within the grace: %v", err)
	}
	if st != (outbox.RecoverStats{}) || len(e.pub.published()) != 0 {
		t.Errorf("within the grace: stats %+v, published %v; want nothing", st, e.pub.published())
	}

	e.clock.Set(t0.Add(cfg.Grace + time.Second))
	st, err = r.Recover(ctx)

	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if st.Published != 1 || st.Trimmed != 1 {
		t.Errorf("stats = %+v, want o1 published and o2 (no order) trimmed", st)
	}
	if diff := cmp.Diff(e.pub.published(), []string{"o1:order.created"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
	if got := e.indexed(); len(got) != 0 {
		t.Errorf("indexed = %v, want trimmed", got)
	}
	var cur struct{ Bucket time.Time }
	if _, err := e.state.Get(ctx, daprstore.OutboxCursorKey, &cur); err != nil || !cur.Bucket.After(t0) {
		t.Errorf("cursor = %v (%v), want past the emptied bucket of %v", cur.Bucket, err, t0)
	}

	st, err = r.Recover(ctx)
	if err != nil || st != (outbox.RecoverStats{}) {
		t.Errorf("second pass: %+v, %v; want nothing to do", st, err)
	}
}

// While the broker refuses, recovery leaves everything where it is and keeps the cursor, so
// the next pass after the outage publishes it.
func TestRecoveryRetriesAfterAnOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	r := e.relay(t, "a")
	e.commit(t, r, "o1")
	e.clock.Set(t0.Add(cfg.Grace + time.Second))
	e.pub.setFail(errors.New("broker down"))

	if _, err := r.Recover(ctx); err == nil {
		t.Fatal("Recover during the outage: error = nil")
	}
	if got := e.outboxOf(t, "o1"); len(got) != 1 {
		t.Errorf("outbox = %v, want the event kept", got)
	}
	if got := e.indexed(); len(got) != 1 {
		t.Errorf("indexed = %v, want the entry kept", got)
	}

	e.pub.setFail(nil)
	e.clock.Set(t0.Add(cfg.Grace + 2*time.Second))
	if _, err := r.Recover(ctx); err != nil {
		t.Fatalf("Recover after the outage: %v", err)
	}
	if got := e.pub.published(); !slices.Equal(got, []string{"o1:order.created"}) {
		t.Errorf("published = %v, want o1's event", got)
	}
	if got := e.indexed(); len(got) != 0 {
		t.Errorf("indexed = %v, want trimmed", got)
	}
}

// One replica at a time runs recovery: another's pass is refused while the lease runs, and
// takes over once the holder stopped renewing it (it died).
func TestRecoveryLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv()
	a, b := e.relay(t, "a"), e.relay(t, "b")
	e.commit(t, a, "o1")
	e.clock.Set(t0.Add(cfg.Grace + time.Second))
	e.pub.setFail(errors.New("broker down")) // a's pass leaves the order for the next

	if _, err := a.Recover(ctx); err == nil {
		t.Fatal("a's pass: error = nil, want the outage")
	}
	e.pub.setFail(nil)
	if _, err := b.Recover(ctx); err == nil {
		t.Fatal("b's pass while a holds the lease: error = nil, want refused")
	}
	if got := e.pub.published(); len(got) != 0 {
		t.Errorf("published %v while a held the lease", got)
	}

	e.clock.Set(t0.Add(cfg.Grace + time.Second + cfg.Lease)) // a died: its lease ended
	if _, err := b.Recover(ctx); err != nil {
		t.Fatalf("b's pass after a's lease: %v", err)
	}
	if got := e.pub.published(); !slices.Equal(got, []string{"o1:order.created"}) {
		t.Errorf("published = %v, want o1's event", got)
	}
}

// waitFor polls cond until it holds or ctx ends (the relay works on its own goroutines).
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the deadline")
		case <-tick.C:
		}
	}
}
