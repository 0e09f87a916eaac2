package order_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Hand-written fakes of every interface the service consumes. Each mimics the semantics of
// the real adapter (apps/order/internal/daprstore, internal/clients, the inventory and payment
// apps) where the service depends on them, and records what the service did so tests can
// check the stores rather than the service's own word.

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

// fakeClock is a settable clock shared by the service and the fakes.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// fakeStore is order.Store over JSON documents with version ETags, like the Dapr state store:
// Get returns a decoded copy, Update fails with ErrConflict unless the ETag is current.
// conflicts makes the next n Updates lose to a competing writer (the document's ETag moves
// on, its content stays). transitions counts successful status-changing CAS writes.
type fakeStore struct {
	mu          sync.Mutex
	docs        map[string][]byte
	versions    map[string]int
	conflicts   int
	updates     int
	transitions map[string][]order.Status // status written by each status-changing Update
}

func newFakeStore() *fakeStore {
	return &fakeStore{docs: map[string][]byte{}, versions: map[string]int{}, transitions: map[string][]order.Status{}}
}

var _ order.Store = (*fakeStore)(nil)

func (s *fakeStore) Get(_ context.Context, id string) (order.Order, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, ok := s.docs[id]
	if !ok {
		return order.Order{}, "", fmt.Errorf("order %s: %w", id, order.ErrNotFound)
	}
	var o order.Order
	if err := json.Unmarshal(raw, &o); err != nil {
		return order.Order{}, "", err
	}
	return o, strconv.Itoa(s.versions[id]), nil
}

func (s *fakeStore) Create(_ context.Context, o order.Order) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[o.ID]; ok {
		return nil // like daprstore.Orders: a resumed placement already wrote it
	}
	return s.putLocked(o)
}

func (s *fakeStore) Update(_ context.Context, o order.Order, etag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[o.ID]; !ok || strconv.Itoa(s.versions[o.ID]) != etag {
		return fmt.Errorf("order %s: %w", o.ID, order.ErrConflict)
	}
	if s.conflicts > 0 {
		s.conflicts--
		s.versions[o.ID]++ // a competing writer got there first
		return fmt.Errorf("order %s: %w", o.ID, order.ErrConflict)
	}
	var old order.Order
	if err := json.Unmarshal(s.docs[o.ID], &old); err != nil {
		return err
	}
	if old.Status != o.Status {
		s.transitions[o.ID] = append(s.transitions[o.ID], o.Status)
	}
	s.updates++
	return s.putLocked(o)
}

func (s *fakeStore) putLocked(o order.Order) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	s.docs[o.ID] = raw
	s.versions[o.ID]++
	return nil
}

// put stores a document as another writer would (test setup).
func (s *fakeStore) put(o order.Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.putLocked(o); err != nil {
		panic(err)
	}
}

// order returns the stored document; ok is false when there is none.
func (s *fakeStore) order(id string) (order.Order, bool) {
	o, _, err := s.Get(context.Background(), id)
	return o, err == nil
}

func (s *fakeStore) transitionsOf(id string) []order.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.transitions[id])
}

func (s *fakeStore) injectConflicts(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conflicts = n
}

// fakeUsers is order.UserIndex with daprstore.Users semantics: Add checks the limit and
// appends in one atomic step, and adding an id twice is a no-op.
type fakeUsers struct {
	mu      sync.Mutex
	entries map[string][]order.IndexEntry
}

func newFakeUsers() *fakeUsers { return &fakeUsers{entries: map[string][]order.IndexEntry{}} }

var _ order.UserIndex = (*fakeUsers)(nil)

func (u *fakeUsers) Add(_ context.Context, userID string, e order.IndexEntry, limit int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	units := 0
	for _, x := range u.entries[userID] {
		if x.OrderID == e.OrderID {
			return nil
		}
		if x.DealID == e.DealID && x.Status.Active() {
			units += x.Quantity
		}
	}
	if units+e.Quantity > limit {
		return order.ErrPurchaseLimit
	}
	u.entries[userID] = append(u.entries[userID], e)
	return nil
}

func (u *fakeUsers) SetStatus(_ context.Context, userID, orderID string, st order.Status) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, x := range u.entries[userID] {
		if x.OrderID == orderID {
			u.entries[userID][i].Status = st
		}
	}
	return nil
}

func (u *fakeUsers) Remove(_ context.Context, userID, orderID string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.entries[userID] = slices.DeleteFunc(u.entries[userID], func(x order.IndexEntry) bool { return x.OrderID == orderID })
	return nil
}

func (u *fakeUsers) List(_ context.Context, userID string) ([]order.IndexEntry, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.entries[userID]), nil
}

func (u *fakeUsers) of(userID string) []order.IndexEntry {
	l, _ := u.List(context.Background(), userID)
	return l
}

// fakePending is order.Pending: a set keyed by order id; Due is strictly before t, oldest first.
type fakePending struct {
	mu      sync.Mutex
	entries map[string]order.PendingEntry
}

func newFakePending() *fakePending { return &fakePending{entries: map[string]order.PendingEntry{}} }

var _ order.Pending = (*fakePending)(nil)

func (p *fakePending) Add(_ context.Context, e order.PendingEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.entries[e.OrderID]; !ok {
		p.entries[e.OrderID] = e
	}
	return nil
}

func (p *fakePending) Remove(_ context.Context, orderID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.entries, orderID)
	return nil
}

func (p *fakePending) Due(_ context.Context, t time.Time) ([]order.PendingEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []order.PendingEntry
	for _, e := range p.entries {
		if e.Due.Before(t) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b order.PendingEntry) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.OrderID, b.OrderID))
	})
	return out, nil
}

// all returns every entry, by order id.
func (p *fakePending) all() []order.PendingEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]order.PendingEntry, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b order.PendingEntry) int { return cmp.Compare(a.OrderID, b.OrderID) })
	return out
}

// fakeIdem is order.Idempotency with daprstore.Idempotency semantics: Begin creates a
// record, or takes it over when the hash matches, it is not done and the lease has passed;
// otherwise it returns the record as stored, unclaimed. Abandon ends the lease; Finish marks
// the record done with the response.
type fakeIdem struct {
	mu    sync.Mutex
	clock *fakeClock
	recs  map[string]order.IdemRecord
}

func newFakeIdem(c *fakeClock) *fakeIdem {
	return &fakeIdem{clock: c, recs: map[string]order.IdemRecord{}}
}

var _ order.Idempotency = (*fakeIdem)(nil)

func idemID(userID, key string) string { return userID + "\x00" + key }

func (f *fakeIdem) Begin(_ context.Context, userID, key, hash string, lease time.Duration, newOrderID func() string) (order.IdemRecord, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now().UTC()
	rec, found := f.recs[idemID(userID, key)]
	switch {
	case !found:
		rec = order.IdemRecord{Hash: hash, OrderID: newOrderID(), LeaseUntil: now.Add(lease), CreatedAt: now}
	case rec.Hash != hash || rec.Done || now.Before(rec.LeaseUntil):
		return cloneRec(rec), false, nil
	default:
		rec.LeaseUntil = now.Add(lease)
	}
	f.recs[idemID(userID, key)] = rec
	return cloneRec(rec), true, nil
}

func (f *fakeIdem) Finish(_ context.Context, userID, key string, status int, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, found := f.recs[idemID(userID, key)]
	if !found {
		return fmt.Errorf("idempotency record vanished")
	}
	rec.Done, rec.Status, rec.Body = true, status, slices.Clone(body)
	f.recs[idemID(userID, key)] = rec
	return nil
}

func (f *fakeIdem) Abandon(_ context.Context, userID, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, found := f.recs[idemID(userID, key)]
	if !found || rec.Done {
		return nil
	}
	rec.LeaseUntil = time.Time{}
	f.recs[idemID(userID, key)] = rec
	return nil
}

func (f *fakeIdem) record(userID, key string) (order.IdemRecord, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.recs[idemID(userID, key)]
	return cloneRec(rec), ok
}

func cloneRec(r order.IdemRecord) order.IdemRecord {
	r.Body = slices.Clone(r.Body)
	return r
}

// fakeGroups is order.GroupIndex with daprstore.Groups semantics: Add records an order once
// and fails with ErrGroupClosed once the group is decided; Decide marks it and returns the
// orders. decideOnAdd makes the group decided right after the next Add, as if its settlement
// ran between that Add and the order's creation.
type fakeGroups struct {
	mu          sync.Mutex
	decided     map[string]bool
	orders      map[string][]order.GroupEntry
	decideOnAdd bool
}

func newFakeGroups() *fakeGroups {
	return &fakeGroups{decided: map[string]bool{}, orders: map[string][]order.GroupEntry{}}
}

var _ order.GroupIndex = (*fakeGroups)(nil)

func (g *fakeGroups) Add(_ context.Context, groupID string, e order.GroupEntry) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if slices.ContainsFunc(g.orders[groupID], func(x order.GroupEntry) bool { return x.OrderID == e.OrderID }) {
		return nil
	}
	if g.decided[groupID] {
		return order.ErrGroupClosed
	}
	g.orders[groupID] = append(g.orders[groupID], e)
	if g.decideOnAdd {
		g.decided[groupID] = true
	}
	return nil
}

func (g *fakeGroups) Decide(_ context.Context, groupID string) ([]order.GroupEntry, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decided[groupID] = true
	return slices.Clone(g.orders[groupID]), nil
}

func (g *fakeGroups) Decided(_ context.Context, groupID string) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.decided[groupID], nil
}

func (g *fakeGroups) of(groupID string) []order.GroupEntry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.orders[groupID])
}

// fakeDeals is order.Deals over a fixed map; an unknown deal is the catalog's not-found
// problem, err (if set) an outage.
type fakeDeals struct {
	mu    sync.Mutex
	deals map[string]order.Deal
	err   error
}

var _ order.Deals = (*fakeDeals)(nil)

func (d *fakeDeals) Deal(_ context.Context, id string) (order.Deal, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return order.Deal{}, d.err
	}
	deal, ok := d.deals[id]
	if !ok {
		return order.Deal{}, problem.Errorf(problem.CodeNotFound, "deal %s not found", id)
	}
	return deal, nil
}

func (d *fakeDeals) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// stockCall is one call the service made to inventory.
type stockCall struct {
	Op      string // reserve | commit | release
	DealID  string
	OrderID string
}

// fakeStock is order.Stock with inventory's hold semantics: Reserve is idempotent per order
// (a replay reports the hold's state), Release/Commit of a released/committed hold is a
// no-op, releasing an order without a hold answers "absent" without error.
//
// soldOut answers sold out before looking for the order's hold, like inventory's per-replica
// sold-out cache does. reserveErr fails Reserve before it does anything; lostReply makes
// Reserve take the hold and then fail, as when the answer is lost on the way back.
// onReserve runs at the start of every Reserve (outside the lock).
type fakeStock struct {
	mu         sync.Mutex
	holds      map[string]string // order id → reserved | committed | released
	calls      []stockCall
	soldOut    bool
	reserveErr error
	lostReply  error
	releaseErr error
	commitErr  error
	onReserve  func()
}

func newFakeStock() *fakeStock { return &fakeStock{holds: map[string]string{}} }

var _ order.Stock = (*fakeStock)(nil)

func (s *fakeStock) Reserve(_ context.Context, dealID, orderID string, _ int, _ time.Time) (string, bool, error) {
	s.mu.Lock()
	hook := s.onReserve
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"reserve", dealID, orderID})
	if s.reserveErr != nil {
		return "", false, s.reserveErr
	}
	if s.soldOut {
		return "", true, nil
	}
	if st, ok := s.holds[orderID]; ok {
		return st, false, nil
	}
	s.holds[orderID] = "reserved"
	if s.lostReply != nil {
		return "", false, s.lostReply
	}
	return "reserved", false, nil
}

func (s *fakeStock) Commit(_ context.Context, dealID, orderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"commit", dealID, orderID})
	if s.commitErr != nil {
		return s.commitErr
	}
	switch s.holds[orderID] {
	case "reserved", "committed":
		s.holds[orderID] = "committed"
		return nil
	case "released":
		return problem.New(problem.CodeConflict, "the order's hold was released")
	default:
		return problem.New(problem.CodeNotFound, "no hold")
	}
}

func (s *fakeStock) Release(_ context.Context, dealID, orderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"release", dealID, orderID})
	if s.releaseErr != nil {
		return s.releaseErr
	}
	switch s.holds[orderID] {
	case "committed":
		return problem.New(problem.CodeConflict, "the order's hold was committed")
	case "":
		return nil // inventory answers "absent" and keeps nothing
	default:
		s.holds[orderID] = "released"
		return nil
	}
}

func (s *fakeStock) set(fn func(s *fakeStock)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *fakeStock) hold(orderID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holds[orderID]
}

// callsOf returns the calls of one order, "op" each.
func (s *fakeStock) callsOf(orderID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		if c.OrderID == orderID {
			out = append(out, c.Op)
		}
	}
	return out
}

// fakePayments is order.Payments with the payment app's semantics: a charge is idempotent
// per order (the first recorded result is returned again), Lookup returns the recorded charge.
// mode decides new charges: "succeeded", "declined", "unavailable" (nothing recorded, error),
// or "lost" (the charge succeeds and is recorded, but the caller gets an error).
//
// Refund is idempotent per order like the payment app's: the first refund is recorded and
// every later call returns it; refundErr fails it (an outage) until cleared. refundCalls
// counts calls per order.
type fakePayments struct {
	mu          sync.Mutex
	mode        string
	charges     map[string]order.ChargeResult
	calls       []string // order ids charged
	lookupErr   error
	refunds     map[string]bool
	refundCalls map[string]int
	refundErr   error
}

func newFakePayments() *fakePayments {
	return &fakePayments{mode: "succeeded", charges: map[string]order.ChargeResult{}, refunds: map[string]bool{}, refundCalls: map[string]int{}}
}

var _ order.Payments = (*fakePayments)(nil)

var errPaymentDown = problem.New(problem.CodePaymentUnavailable, "payment app unavailable")

func (p *fakePayments) Charge(_ context.Context, orderID string, _ int64, _ string) (order.ChargeResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, orderID)
	if res, ok := p.charges[orderID]; ok && p.mode != "unavailable" {
		return res, nil
	}
	switch p.mode {
	case "unavailable":
		return order.ChargeResult{}, errPaymentDown
	case "lost":
		p.charges[orderID] = order.ChargeResult{Status: "succeeded"}
		return order.ChargeResult{}, errPaymentDown
	}
	res := order.ChargeResult{Status: p.mode}
	p.charges[orderID] = res
	return res, nil
}

func (p *fakePayments) Lookup(_ context.Context, orderID string) (order.ChargeResult, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookupErr != nil {
		return order.ChargeResult{}, false, p.lookupErr
	}
	res, ok := p.charges[orderID]
	return res, ok, nil
}

func (p *fakePayments) Refund(_ context.Context, orderID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refundCalls[orderID]++
	if p.refundErr != nil {
		return p.refundErr
	}
	p.refunds[orderID] = true
	return nil
}

func (p *fakePayments) setRefundErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refundErr = err
}

// refunded lists the orders with a recorded refund, sorted.
func (p *fakePayments) refunded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.refunds {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (p *fakePayments) setMode(m string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

func (p *fakePayments) record(orderID string, res order.ChargeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.charges[orderID] = res
}

func (p *fakePayments) chargeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// published is one event the service published.
type published struct {
	Topic   string
	OrderID string
	Status  order.Status
}

// fakePublisher records events; failTopic makes publishing that topic fail (transiently,
// like clients.Publisher) until cleared.
type fakePublisher struct {
	mu        sync.Mutex
	events    []published
	failTopic string
}

var _ order.Publisher = (*fakePublisher)(nil)

func (p *fakePublisher) PublishOrder(_ context.Context, topic string, o order.Order) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if topic == p.failTopic {
		return problem.New(problem.CodeUnavailable, "event publishing failed")
	}
	p.events = append(p.events, published{Topic: topic, OrderID: o.ID, Status: o.Status})
	return nil
}

func (p *fakePublisher) setFailTopic(topic string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failTopic = topic
}

// topicsOf lists the topics published for an order, in order.
func (p *fakePublisher) topicsOf(orderID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		if e.OrderID == orderID {
			out = append(out, e.Topic)
		}
	}
	return out
}

// fakeIDs issues "o1", "o2", …
type fakeIDs struct {
	mu sync.Mutex
	n  int
}

func (f *fakeIDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return "o" + strconv.Itoa(f.n)
}

// Deals every test can use (at t0).
var testDeals = map[string]order.Deal{
	"flash":   {ID: "flash", Kind: "flash", PriceCents: 1250, StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(2 * time.Hour), PerUserLimit: 5},
	"limited": {ID: "limited", Kind: "flash", PriceCents: 900, StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(2 * time.Hour), PerUserLimit: 2},
	"future":  {ID: "future", Kind: "flash", PriceCents: 500, StartsAt: t0.Add(time.Minute), EndsAt: t0.Add(time.Hour), PerUserLimit: 5},
	"ended":   {ID: "ended", Kind: "flash", PriceCents: 500, StartsAt: t0.Add(-2 * time.Hour), EndsAt: t0.Add(-time.Minute), PerUserLimit: 5},
	"ends-now": {ID: "ends-now", Kind: "flash", PriceCents: 500, StartsAt: t0.Add(-2 * time.Hour), EndsAt: t0,
		PerUserLimit: 5},
	"group": {ID: "group", Kind: "group", PriceCents: 700, StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour), PerUserLimit: 1},
}

var testConfig = order.Config{
	PayWindow:    15 * time.Minute,
	IdemLease:    30 * time.Second,
	PaymentGrace: 30 * time.Second,
	MaxQuantity:  10,
}

// env is a service over fresh fakes, at t0.
type env struct {
	svc     *order.Service
	clock   *fakeClock
	store   *fakeStore
	users   *fakeUsers
	pending *fakePending
	groups  *fakeGroups
	idem    *fakeIdem
	deals   *fakeDeals
	stock   *fakeStock
	pay     *fakePayments
	pub     *fakePublisher
}

func newEnv() *env {
	clock := &fakeClock{now: t0}
	e := &env{
		clock:   clock,
		store:   newFakeStore(),
		users:   newFakeUsers(),
		pending: newFakePending(),
		groups:  newFakeGroups(),
		idem:    newFakeIdem(clock),
		deals:   &fakeDeals{deals: testDeals},
		stock:   newFakeStock(),
		pay:     newFakePayments(),
		pub:     &fakePublisher{},
	}
	e.svc = order.NewService(testConfig, order.Deps{
		Store: e.store, Users: e.users, Pending: e.pending, Groups: e.groups, Idem: e.idem, Deals: e.deals,
		Stock: e.stock, Payments: e.pay, Pub: e.pub, IDs: &fakeIDs{},
		Log: slog.New(slog.DiscardHandler), Now: clock.Now,
	})
	return e
}
