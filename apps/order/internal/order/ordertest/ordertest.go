// Package ordertest holds hand-written fakes of every interface order.Service consumes and an
// Env that wires the real service over them, shared by the order and httpapi tests. Each fake
// mimics the semantics of the real adapter (apps/order/internal/daprstore, internal/clients,
// the inventory and payment apps) where the service depends on them, and records what the
// service did so tests can check the stores rather than the service's own word.
package ordertest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// T0 is the time every Env starts at.
var T0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

// Clock is a settable clock shared by the service and the fakes.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Store is order.Store over JSON documents with version ETags, like the Dapr state store:
// Get returns a decoded copy, Update fails with ErrConflict unless the ETag is current.
// InjectConflicts makes the next n Updates lose to a competing writer (the document's ETag moves
// on, its content stays). TransitionsOf lists the successful status-changing CAS writes.
type Store struct {
	mu          sync.Mutex
	docs        map[string][]byte
	versions    map[string]int
	conflicts   int
	updates     int
	reads       int
	transitions map[string][]order.Status // status written by each status-changing Update
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{docs: map[string][]byte{}, versions: map[string]int{}, transitions: map[string][]order.Status{}}
}

var _ order.Store = (*Store)(nil)

func (s *Store) Get(ctx context.Context, id string) (order.Order, string, error) {
	if err := ctx.Err(); err != nil {
		return order.Order{}, "", err // like a state call whose caller gave up
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
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

func (s *Store) Create(_ context.Context, o order.Order) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[o.ID]; ok {
		return nil // like daprstore.Orders: a resumed placement already wrote it
	}
	return s.putLocked(o)
}

func (s *Store) Update(ctx context.Context, o order.Order, etag string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
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

func (s *Store) putLocked(o order.Order) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	s.docs[o.ID] = raw
	s.versions[o.ID]++
	return nil
}

// Reads returns how many times an order document was read.
func (s *Store) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Put stores a document as another writer would (test setup).
func (s *Store) Put(o order.Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.putLocked(o); err != nil {
		panic(err)
	}
}

// Order returns the stored document; ok is false when there is none.
func (s *Store) Order(id string) (order.Order, bool) {
	o, _, err := s.Get(context.Background(), id)
	return o, err == nil
}

// Delete removes a document as another writer would (test setup).
func (s *Store) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.docs, id)
}

// TransitionsOf returns the statuses written by id's status-changing Updates, in order.
func (s *Store) TransitionsOf(id string) []order.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.transitions[id])
}

// InjectConflicts makes the next n Updates lose to a competing writer.
func (s *Store) InjectConflicts(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conflicts = n
}

// Users is order.UserIndex with daprstore.Users semantics: Add checks the limit and
// appends in one atomic step, and adding an id twice is a no-op.
type Users struct {
	mu      sync.Mutex
	entries map[string][]order.IndexEntry
}

// NewUsers returns an empty index.
func NewUsers() *Users { return &Users{entries: map[string][]order.IndexEntry{}} }

var _ order.UserIndex = (*Users)(nil)

func (u *Users) Add(_ context.Context, userID string, e order.IndexEntry, limit int) error {
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

func (u *Users) SetStatus(_ context.Context, userID, orderID string, st order.Status) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, x := range u.entries[userID] {
		// Statuses only move forward: a late "paid" does not undo a refund.
		if x.OrderID == orderID && (x.Status.Active() || !st.Active()) {
			u.entries[userID][i].Status = st
		}
	}
	return nil
}

func (u *Users) Remove(_ context.Context, userID, orderID string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.entries[userID] = slices.DeleteFunc(u.entries[userID], func(x order.IndexEntry) bool { return x.OrderID == orderID })
	return nil
}

func (u *Users) List(_ context.Context, userID, before string, limit int) ([]order.IndexEntry, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := slices.DeleteFunc(slices.Clone(u.entries[userID]), func(e order.IndexEntry) bool { return !order.OlderThan(e.OrderID, before) })
	slices.Reverse(out)
	return out[:min(limit, len(out))], nil
}

// Of returns userID's entries, oldest first.
func (u *Users) Of(userID string) []order.IndexEntry {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.entries[userID])
}

// Pending is order.Pending: a set keyed by order id, in windows of one second of due time;
// Due is strictly before t, oldest first. A lease lasts until its Release. Remove finds an
// entry by its id alone (the store needs its due time).
type Pending struct {
	mu      sync.Mutex
	entries map[string]order.PendingEntry
	leases  map[string]string // window → owner
	claims  int
}

// NewPending returns an empty set.
func NewPending() *Pending {
	return &Pending{entries: map[string]order.PendingEntry{}, leases: map[string]string{}}
}

var _ order.Pending = (*Pending)(nil)

func (p *Pending) Add(_ context.Context, e order.PendingEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.entries[e.OrderID]; !ok {
		e.Key = ""
		p.entries[e.OrderID] = e
	}
	return nil
}

func (p *Pending) Remove(_ context.Context, e order.PendingEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.entries, e.OrderID)
	return nil
}

func (p *Pending) Due(_ context.Context, t time.Time) ([]order.PendingEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dueLocked("", t), nil
}

func window(e order.PendingEntry) string { return strconv.FormatInt(e.Due.Unix(), 10) }

func (p *Pending) dueLocked(w string, t time.Time) []order.PendingEntry {
	var out []order.PendingEntry
	for _, e := range p.entries {
		if e.Due.Before(t) && (w == "" || window(e) == w) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b order.PendingEntry) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.OrderID, b.OrderID))
	})
	return out
}

func (p *Pending) Windows(_ context.Context, t time.Time) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.dueLocked("", t) {
		if w := window(e); !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}

func (p *Pending) Claim(_ context.Context, w string, t time.Time) (order.PendingClaim, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, held := p.leases[w]; held {
		return order.PendingClaim{}, false, nil
	}
	p.claims++
	owner := fmt.Sprintf("claim%d", p.claims)
	p.leases[w] = owner
	return order.PendingClaim{Window: w, Owner: owner, Entries: p.dueLocked(w, t)}, true, nil
}

func (p *Pending) Release(_ context.Context, c order.PendingClaim) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leases[c.Window] == c.Owner {
		delete(p.leases, c.Window)
	}
	return nil
}

// Leased returns the windows under a lease.
func (p *Pending) Leased() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.leases))
}

// All returns every entry, by order id.
func (p *Pending) All() []order.PendingEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]order.PendingEntry, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b order.PendingEntry) int { return cmp.Compare(a.OrderID, b.OrderID) })
	return out
}

// Idem is order.Idempotency: the real pkg/idempotency store (what daprstore.NewIdempotency
// returns) over the shared fake of the Dapr state client, on the Env's clock. State is that
// fake: inject lost replies, outages or rival replicas there. Reads tells when a key has been
// read.
type Idem struct {
	*idempotency.Store[order.IdemRecord, *order.IdemRecord]
	State *daprstatetest.Client

	mu    sync.Mutex
	reads map[string]int // state key → reads
	waits []readWait
}

type readWait struct {
	key string
	n   int
	ch  chan struct{}
}

// NewIdem returns an empty record store whose leases run on c.
func NewIdem(c *Clock) *Idem {
	f := &Idem{State: daprstatetest.NewClient(), reads: map[string]int{}}
	f.State.AfterGet = func(_ context.Context, key string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reads[key]++
		f.notifyLocked()
	}
	f.Store = idempotency.New[order.IdemRecord](daprstate.New(f.State, "statestore"), 24*time.Hour, c.Now)
	return f
}

var _ order.Idempotency = (*Idem)(nil)

// Record returns the stored record of userID's key.
func (f *Idem) Record(userID, key string) (order.IdemRecord, bool) {
	rec, found, err := f.Get(context.Background(), userID, key)
	if err != nil {
		panic(err)
	}
	return rec, found
}

// Reads returns a channel closed once userID's key has been read n times.
func (f *Idem) Reads(userID, key string, n int) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.waits = append(f.waits, readWait{idempotency.Key(userID, key), n, ch})
	f.notifyLocked()
	return ch
}

func (f *Idem) notifyLocked() {
	kept := f.waits[:0]
	for _, w := range f.waits {
		if f.reads[w.key] >= w.n {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	f.waits = kept
}

// Groups is order.GroupIndex with daprstore.Groups semantics: Add records an order once
// and fails with ErrGroupClosed once the group is decided; Decide records the first outcome
// and returns it with the orders. SetDecideOnAdd makes the group decided (failed) right after
// the next Add, as if its settlement ran between that Add and the order's creation.
type Groups struct {
	mu          sync.Mutex
	outcomes    map[string]order.GroupOutcome
	orders      map[string][]order.GroupEntry
	decideOnAdd bool
}

// NewGroups returns an empty index.
func NewGroups() *Groups {
	return &Groups{outcomes: map[string]order.GroupOutcome{}, orders: map[string][]order.GroupEntry{}}
}

var _ order.GroupIndex = (*Groups)(nil)

func (g *Groups) Add(_ context.Context, groupID string, e order.GroupEntry) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if slices.ContainsFunc(g.orders[groupID], func(x order.GroupEntry) bool { return x.OrderID == e.OrderID }) {
		return nil
	}
	if _, ok := g.outcomes[groupID]; ok {
		return order.ErrGroupClosed
	}
	g.orders[groupID] = append(g.orders[groupID], e)
	if g.decideOnAdd {
		g.outcomes[groupID] = order.GroupOutcome{GroupID: groupID}
	}
	return nil
}

func (g *Groups) Decide(_ context.Context, out order.GroupOutcome) (order.GroupOutcome, []order.GroupEntry, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec, ok := g.outcomes[out.GroupID]
	if !ok {
		rec = order.GroupOutcome{GroupID: out.GroupID, Succeeded: out.Succeeded, Members: slices.Clone(out.Members)}
		g.outcomes[out.GroupID] = rec
	}
	rec.Members = slices.Clone(rec.Members)
	return rec, slices.Clone(g.orders[out.GroupID]), nil
}

func (g *Groups) Decision(_ context.Context, groupID string) (order.GroupOutcome, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec, ok := g.outcomes[groupID]
	rec.Members = slices.Clone(rec.Members)
	return rec, ok, nil
}

// SetDecideOnAdd sets whether each Add decides its group right after recording the order.
func (g *Groups) SetDecideOnAdd(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decideOnAdd = on
}

// Of returns the orders recorded for groupID.
func (g *Groups) Of(groupID string) []order.GroupEntry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.orders[groupID])
}

// Deals is order.Deals over a fixed map; an unknown deal is the catalog's not-found
// problem, an error set by SetErr an outage.
type Deals struct {
	mu    sync.Mutex
	deals map[string]order.Deal
	err   error
}

// NewDeals returns a catalog of deals, by id.
func NewDeals(deals map[string]order.Deal) *Deals { return &Deals{deals: deals} }

var _ order.Deals = (*Deals)(nil)

func (d *Deals) Deal(_ context.Context, id string) (order.Deal, error) {
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

// SetErr makes every lookup fail with err (nil heals it).
func (d *Deals) SetErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// SetDeals replaces the catalog.
func (d *Deals) SetDeals(deals map[string]order.Deal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deals = deals
}

// stockCall is one call the service made to inventory.
type stockCall struct {
	Op      string // reserve | commit | release
	DealID  string
	OrderID string
}

// Stock is order.Stock with inventory's hold semantics: Reserve is idempotent per order
// (a replay reports the hold's state), Release/Commit of a released/committed hold is a
// no-op, releasing an order without a hold answers "absent" without error and leaves a
// release tombstone: a later Reserve of that order answers "released" (inventory prunes the
// tombstone after STOCK_RECENT_WINDOW; this fake keeps it).
//
// SoldOut answers sold out before looking for the order's hold, like inventory's per-replica
// sold-out cache does. ReserveErr fails Reserve before it does anything; LostReply makes
// Reserve take the hold and then fail, as when the answer is lost on the way back.
// OnReserve runs at the start of every Reserve (outside the lock). These knobs are guarded by
// the Stock's lock: change them through Set.
type Stock struct {
	mu         sync.Mutex
	holds      map[string]string // order id → reserved | committed | released
	calls      []stockCall
	SoldOut    bool
	ReserveErr error
	LostReply  error
	ReleaseErr error
	CommitErr  error
	OnReserve  func()
}

// NewStock returns a stock without holds that answers every Reserve.
func NewStock() *Stock { return &Stock{holds: map[string]string{}} }

var _ order.Stock = (*Stock)(nil)

func (s *Stock) Reserve(_ context.Context, dealID, orderID string, _ int, _ time.Time) (string, bool, error) {
	s.mu.Lock()
	hook := s.OnReserve
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"reserve", dealID, orderID})
	if s.ReserveErr != nil {
		return "", false, s.ReserveErr
	}
	if s.SoldOut {
		return "", true, nil
	}
	if st, ok := s.holds[orderID]; ok {
		return st, false, nil
	}
	s.holds[orderID] = "reserved"
	if s.LostReply != nil {
		return "", false, s.LostReply
	}
	return "reserved", false, nil
}

func (s *Stock) Commit(ctx context.Context, dealID, orderID string) error {
	if err := ctx.Err(); err != nil {
		return err // like an invocation whose caller gave up
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"commit", dealID, orderID})
	if s.CommitErr != nil {
		return s.CommitErr
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

func (s *Stock) Release(_ context.Context, dealID, orderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stockCall{"release", dealID, orderID})
	if s.ReleaseErr != nil {
		return s.ReleaseErr
	}
	switch s.holds[orderID] {
	case "committed":
		return problem.New(problem.CodeConflict, "the order's hold was committed")
	case "":
		s.holds[orderID] = "released" // inventory answers "absent" and leaves a tombstone
		return nil
	default:
		s.holds[orderID] = "released"
		return nil
	}
}

// Set runs fn under the Stock's lock, to change its knobs.
func (s *Stock) Set(fn func(s *Stock)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// SetHold sets the state of orderID's hold as inventory would have it.
func (s *Stock) SetHold(orderID, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds[orderID] = state
}

// Hold returns the state of orderID's hold ("" for none).
func (s *Stock) Hold(orderID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holds[orderID]
}

// CallsOf returns the calls of one order, "op" each.
func (s *Stock) CallsOf(orderID string) []string {
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

// Payments is order.Payments with the payment app's semantics: the token decides a charge
// ("tok_declined" is declined, any other token succeeds); a succeeded charge is final and
// returned again for every later call, whatever its token, while a decline is not and a later
// call may succeed; Lookup returns the order's recorded charge (the latest attempt).
// SetMode injects what the payment app cannot be asked for with a token: "succeeded" (the
// default: the token decides), "declined" (every card is declined), "unavailable" (nothing
// recorded, error), or "lost" (the charge succeeds and is recorded, but the caller gets an
// error).
//
// Refund is idempotent per order like the payment app's: the first refund is recorded and
// every later call returns it; SetRefundErr fails it (an outage) until cleared. refundCalls
// counts calls per order. SetOnCharge runs a function at the start of every Charge, before
// anything is recorded: what happens elsewhere while a charge is in flight.
type Payments struct {
	mu          sync.Mutex
	onCharge    func(orderID string)
	mode        string
	charges     map[string]order.ChargeResult
	calls       []string // order ids charged
	lookupErr   error
	refunds     map[string]bool
	refundCalls map[string]int
	refundErr   error
}

// NewPayments returns a payment app whose charges succeed.
func NewPayments() *Payments {
	return &Payments{mode: "succeeded", charges: map[string]order.ChargeResult{}, refunds: map[string]bool{}, refundCalls: map[string]int{}}
}

var _ order.Payments = (*Payments)(nil)

// ErrPaymentDown is the payment app's outage, as its client reports it.
var ErrPaymentDown = problem.New(problem.CodePaymentUnavailable, "payment app unavailable")

func (p *Payments) Charge(_ context.Context, orderID string, _ int64, token string) (order.ChargeResult, error) {
	p.mu.Lock()
	hook := p.onCharge
	p.mu.Unlock()
	if hook != nil {
		hook(orderID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, orderID)
	if p.mode == "unavailable" {
		return order.ChargeResult{}, ErrPaymentDown
	}
	if res, ok := p.charges[orderID]; ok && res.Status == "succeeded" {
		return res, nil
	}
	res := order.ChargeResult{Status: "succeeded"}
	if p.mode == "declined" || token == "tok_declined" {
		res.Status = "declined"
	}
	p.charges[orderID] = res
	if p.mode == "lost" {
		return order.ChargeResult{}, ErrPaymentDown
	}
	return res, nil
}

func (p *Payments) Lookup(_ context.Context, orderID string) (order.ChargeResult, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookupErr != nil {
		return order.ChargeResult{}, false, p.lookupErr
	}
	res, ok := p.charges[orderID]
	return res, ok, nil
}

func (p *Payments) Refund(_ context.Context, orderID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refundCalls[orderID]++
	if p.refundErr != nil {
		return p.refundErr
	}
	p.refunds[orderID] = true
	return nil
}

// SetOnCharge sets the function every Charge runs first, outside the fake's lock (nil
// removes it).
func (p *Payments) SetOnCharge(fn func(orderID string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onCharge = fn
}

// RefundCalls returns the number of Refund calls for an order, failed ones included.
func (p *Payments) RefundCalls(orderID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refundCalls[orderID]
}

// SetRefundErr makes every Refund fail with err (nil heals it).
func (p *Payments) SetRefundErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refundErr = err
}

// Refunded lists the orders with a recorded refund, sorted.
func (p *Payments) Refunded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.refunds {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// SetMode sets how new charges end (see Payments).
func (p *Payments) SetMode(m string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

// SetLookupErr makes every Lookup fail with err (nil heals it).
func (p *Payments) SetLookupErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lookupErr = err
}

// Record records a charge as if the payment app had made it.
func (p *Payments) Record(orderID string, res order.ChargeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.charges[orderID] = res
}

// ChargeCount returns the number of Charge calls.
func (p *Payments) ChargeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// relayed is one event the service handed to the relay.
type relayed struct {
	Topic   string
	OrderID string
	Status  order.Status
}

// Outbox stands in for the relay: it records the events of every order handed to it, once
// per order and topic (the event id consumers deduplicate on), as if published at once.
// SetRegisterErr makes registration fail; SetLose makes it drop what it is handed, as a
// process that died between the write and the publish.
type Outbox struct {
	mu          sync.Mutex
	events      []relayed
	registered  []string
	registerErr error
	lose        bool
}

var _ order.Outbox = (*Outbox)(nil)

// Register implements order.Outbox.
func (p *Outbox) Register(_ context.Context, orderID, _ string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.registerErr != nil {
		return "", p.registerErr
	}
	p.registered = append(p.registered, orderID)
	return "slot-" + strconv.Itoa(len(p.registered)), nil
}

// Relay implements order.Outbox.
func (p *Outbox) Relay(o order.Order) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lose {
		return
	}
	for _, e := range o.Outbox {
		if !slices.ContainsFunc(p.events, func(x relayed) bool { return x.OrderID == o.ID && x.Topic == e.Topic }) {
			p.events = append(p.events, relayed{Topic: e.Topic, OrderID: o.ID, Status: e.Status})
		}
	}
}

// SetRegisterErr makes Register fail with err (nil heals it).
func (p *Outbox) SetRegisterErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.registerErr = err
}

// SetLose makes Relay drop what it is handed (false heals it).
func (p *Outbox) SetLose(lose bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lose = lose
}

// Registered counts the registrations of an order.
func (p *Outbox) Registered(orderID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, id := range p.registered {
		if id == orderID {
			n++
		}
	}
	return n
}

// TopicsOf lists the topics relayed for an order, in order.
func (p *Outbox) TopicsOf(orderID string) []string {
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

// IDs issues "o1", "o2", …
type IDs struct {
	mu sync.Mutex
	n  int
}

func (f *IDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return "o" + strconv.Itoa(f.n)
}

// TestDeals are the deals every Env's catalog holds (at T0).
var TestDeals = map[string]order.Deal{
	"flash":   {ID: "flash", Kind: "flash", PriceCents: 1250, StartsAt: T0.Add(-time.Hour), EndsAt: T0.Add(2 * time.Hour), PerUserLimit: 5},
	"limited": {ID: "limited", Kind: "flash", PriceCents: 900, StartsAt: T0.Add(-time.Hour), EndsAt: T0.Add(2 * time.Hour), PerUserLimit: 2},
	"future":  {ID: "future", Kind: "flash", PriceCents: 500, StartsAt: T0.Add(time.Minute), EndsAt: T0.Add(time.Hour), PerUserLimit: 5},
	"ended":   {ID: "ended", Kind: "flash", PriceCents: 500, StartsAt: T0.Add(-2 * time.Hour), EndsAt: T0.Add(-time.Minute), PerUserLimit: 5},
	"ends-now": {ID: "ends-now", Kind: "flash", PriceCents: 500, StartsAt: T0.Add(-2 * time.Hour), EndsAt: T0,
		PerUserLimit: 5},
	"group": {ID: "group", Kind: "group", PriceCents: 700, StartsAt: T0.Add(-time.Hour), EndsAt: T0.Add(time.Hour), PerUserLimit: 1},
}

// TestConfig is the configuration of every Env's service.
var TestConfig = order.Config{
	PayWindow:    15 * time.Minute,
	IdemLease:    30 * time.Second,
	IdemWait:     10 * time.Second,
	PaymentGrace: 30 * time.Second,
	MaxQuantity:  10,
}

// Env is the real service over fresh fakes, at T0.
type Env struct {
	Svc     *order.Service
	Clock   *Clock
	Store   *Store
	Users   *Users
	Pending *Pending
	Groups  *Groups
	Idem    *Idem
	Deals   *Deals
	Stock   *Stock
	Pay     *Payments
	Outbox  *Outbox
}

// NewEnv returns a service over fresh fakes, at T0, with TestDeals and TestConfig, admitting
// every placement.
func NewEnv() *Env { return NewEnvWith(Options{Config: TestConfig}) }

// Options change what NewEnvWith builds.
type Options struct {
	Config order.Config
	Gate   order.Admission // nil admits every placement
}

// NewEnvWith is NewEnv with other options.
func NewEnvWith(o Options) *Env {
	clock := NewClock(T0)
	e := &Env{
		Clock:   clock,
		Store:   NewStore(),
		Users:   NewUsers(),
		Pending: NewPending(),
		Groups:  NewGroups(),
		Idem:    NewIdem(clock),
		Deals:   NewDeals(TestDeals),
		Stock:   NewStock(),
		Pay:     NewPayments(),
		Outbox:  &Outbox{},
	}
	e.Svc = order.NewService(o.Config, order.Deps{
		Store: e.Store, Users: e.Users, Pending: e.Pending, Groups: e.Groups, Idem: e.Idem, Gate: o.Gate, Deals: e.Deals,
		Stock: e.Stock, Payments: e.Pay, Outbox: e.Outbox, IDs: &IDs{},
		Log: slog.New(slog.DiscardHandler), Now: clock.Now,
	})
	return e
}
