// Package stock owns the stock of each deal and the holds (reservations) on it.
//
// A deal's stock is split over a fixed number of buckets, each one state key holding its own
// counters and the holds they account for, so every change is a single ETag-checked write
// of one key: Redis MULTI does not roll back, so the invariant
// available + reserved + sold == stock can only be kept inside one key. Each bucket keeps
// the invariant on its own; the deal's levels are the sums.
//
// A bucket document never grows with the orders of its deal: it holds its counters, the
// reserved holds taken lately (at most Paging.Out; older ones move to immutable page
// documents it lists, see Paging), the records of finished paged holds (at most
// Paging.FinishedCap), one ref per page, and a recent-ops window of what finished ops leave
// behind (committed and released holds, release tombstones, passed marks), capped both by
// age (Window.Age, default one minute) and by count (Window.Ops, default 256). A finished
// hold's outcome lives with its order (the order app's document); the window only answers
// replays that come soon after, and keeps the guarantees that need a memory (release
// tombstones, passed marks) for as long as the requests they guard can still land. What it
// forgets it summarizes in Bucket.Forgot, so that a request it can no longer answer exactly
// is told so instead of being answered as a new order (see Apply). Worst case, at about 140
// bytes a hold or record (order ids of 19 digits, two timestamps) and 35 bytes a page ref,
// with the service's defaults (64 in the document, 64 finished paged, a window of 256, pages
// of at most 400 holds): 54 KB plus 35 bytes per page listed. Pages are kept full (a page-out
// tops up the last one) and those a quarter full or less merge into the next page-out, so a
// bucket lists about one page per 400 reserved holds, at worst one per 100; a page is at most
// 56 KB.
//
// The pure part (this file) applies a batch of operations to one bucket document. The
// Service (service.go) routes operations to buckets, batches them per bucket (group
// commit: one CAS per batch) and keeps the in-memory sold-out marker.
package stock

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Limits of the stock domain.
const (
	// MaxStock bounds a deal's stock.
	MaxStock = 1_000_000
	// MaxQuantity bounds the units of one reservation.
	MaxQuantity = 1000
	// MaxBuckets bounds the buckets of a deal.
	MaxBuckets = 64
)

// HoldState is where a hold is in its life: reserved, then committed (sold) or released.
// Committed and released holds stay in the bucket's recent-ops window for a short while, so
// that replays soon after find them (see Window); then only their order knows the outcome.
//
// A released hold of zero units is a release tombstone: the release of an order that held
// nothing left it (see Op.Tombstone), so that a reserve of that order still in flight on
// another replica finds the order released instead of taking a hold nobody will ever
// release.
type HoldState string

// Hold states, plus StateAbsent, the answer of a release for an order that holds nothing.
const (
	StateReserved  HoldState = "reserved"
	StateCommitted HoldState = "committed"
	StateReleased  HoldState = "released"
	StateAbsent    HoldState = "absent"
)

// Hold is the stock one order holds in one bucket (Qty 0: a release tombstone).
type Hold struct {
	Qty   int       `json:"qty"`
	Until time.Time `json:"until,omitzero"` // zero for a tombstone
	State HoldState `json:"state"`
	At    time.Time `json:"at"` // time of the last transition
	// Page names the page a finished hold was paged to (see Paging): the record overrides
	// the page's copy while the bucket lists the page.
	Page string `json:"page,omitempty"`
}

// Tombstone tells whether h is a release tombstone: released, and never held a unit.
func (h Hold) Tombstone() bool { return h.Qty == 0 && h.State == StateReleased }

// Meta is the stored description of a deal's stock, written once at creation. Its presence
// means the deal exists; Buckets is fixed for the life of the deal.
type Meta struct {
	DealID    string    `json:"deal_id"`
	Stock     int       `json:"stock"`
	Buckets   int       `json:"buckets"`
	CreatedAt time.Time `json:"created_at"`
}

// BucketCount is the number of buckets (at least one; a record without the field predates
// buckets and is one bucket).
func (m Meta) BucketCount() int { return max(m.Buckets, 1) }

// InitialBucket is bucket i as created: its even share of the stock, all available. The
// first Stock % n buckets carry one unit more.
func (m Meta) InitialBucket(i int) Bucket {
	n := m.BucketCount()
	share := m.Stock / n
	if i < m.Stock%n {
		share++
	}
	return Bucket{DealID: m.DealID, Bucket: i, Stock: share, Available: share, Holds: map[string]Hold{}}
}

// Bucket is one stored slice of a deal's stock: counters, the reserved holds they account
// for, and the recent-ops window (finished holds, release tombstones, passed marks).
type Bucket struct {
	DealID    string `json:"deal_id"`
	Bucket    int    `json:"bucket"`
	Stock     int    `json:"stock"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
	// Archived is the part of Sold whose committed holds left the window: Sold counts the
	// units of the committed holds still here plus Archived, so the counter stays exact.
	Archived int             `json:"archived,omitempty"`
	Holds    map[string]Hold `json:"holds"`
	// Passed marks orders that found no room here and moved on along their probe sequence
	// (see HomeBucket), so every attempt of the same order, on any replica, skips this bucket
	// the same way and the order can never get a second hold here. Marks are part of the
	// window. A spent bucket (see spent) never gets one: no order can hold there again.
	Passed map[string]time.Time `json:"passed,omitempty"`
	// Forgot is the last change of the newest released hold, release tombstone or passed
	// mark the window dropped (committed holds leave without moving it: see Window). What
	// the bucket remembers of an order is complete for the orders that started after it.
	Forgot time.Time `json:"forgot,omitzero"`
	// Pages lists the pages holding reserved holds moved out of this document (see Paging).
	Pages []PageRef `json:"pages,omitempty"`
}

// Check verifies the bucket's invariants: counters non-negative and summing to the stock,
// the reserved counter equal to the units of the reserved holds, and the sold counter equal
// to the units of the committed holds plus the archived units of pruned ones.
func (b Bucket) Check() error {
	if b.Available < 0 || b.Reserved < 0 || b.Sold < 0 || b.Archived < 0 {
		return fmt.Errorf("stock %s/%d: negative counter in %s", b.DealID, b.Bucket, b.counters())
	}
	if b.Available+b.Reserved+b.Sold != b.Stock {
		return fmt.Errorf("stock %s/%d: available+reserved+sold != stock in %s", b.DealID, b.Bucket, b.counters())
	}
	reserved, sold := b.pagesUnits(), 0
	for _, r := range b.Pages {
		if r.Holds < 0 || r.Units < r.Holds {
			return fmt.Errorf("stock %s/%d: page %s lists %d holds of %d units", b.DealID, b.Bucket, r.Key, r.Holds, r.Units)
		}
	}
	for id, h := range b.Holds {
		if h.Page != "" && (h.State == StateReserved || b.ref(h.Page) == nil) {
			return fmt.Errorf("stock %s/%d: order %s's %s record names page %s, which the bucket does not list for it", b.DealID, b.Bucket, id, h.State, h.Page)
		}
		if _, ok := b.Passed[id]; ok {
			return fmt.Errorf("stock %s/%d: order %s both holds and passed", b.DealID, b.Bucket, id)
		}
		if h.Qty < 0 || (h.Qty == 0 && !h.Tombstone()) {
			return fmt.Errorf("stock %s/%d: order %s holds %d units %s", b.DealID, b.Bucket, id, h.Qty, h.State)
		}
		switch h.State {
		case StateReserved:
			reserved += h.Qty
		case StateCommitted:
			sold += h.Qty
		case StateReleased:
		default:
			return fmt.Errorf("stock %s/%d: order %s in unknown state %q", b.DealID, b.Bucket, id, h.State)
		}
	}
	if reserved != b.Reserved || sold+b.Archived != b.Sold {
		return fmt.Errorf("stock %s/%d: holds and pages account for reserved %d sold %d (+%d archived), counters say %s",
			b.DealID, b.Bucket, reserved, sold, b.Archived, b.counters())
	}
	return nil
}

// spent tells whether every unit of b is sold for good: nothing available, nothing reserved
// that a release could give back (sold units never return), so no reserve can ever take a
// hold here again.
func (b Bucket) spent() bool { return b.Available+b.Reserved == 0 }

func (b Bucket) counters() string {
	return fmt.Sprintf("{stock:%d available:%d reserved:%d sold:%d archived:%d}", b.Stock, b.Available, b.Reserved, b.Sold, b.Archived)
}

// Levels are a deal's stock counters summed over its buckets.
type Levels struct {
	DealID    string
	Stock     int
	Available int
	Reserved  int
	Sold      int
}

func (l *Levels) add(b Bucket) {
	l.Stock += b.Stock
	l.Available += b.Available
	l.Reserved += b.Reserved
	l.Sold += b.Sold
}

// HomeBucket is where an order's probe sequence starts: hash(order id) % n. The sequence
// then visits home+1, home+2, … (mod n), each bucket once.
func HomeBucket(orderID string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(orderID))
	return int(h.Sum32() % uint32(max(n, 1)))
}

// OpKind says what an Op does.
type OpKind uint8

// Operation kinds.
const (
	// OpReserve places a hold for the order if it has none (and is not passed) here.
	OpReserve OpKind = iota + 1
	// OpProbe only looks: the order's hold or mark here, or whether Qty units would fit.
	OpProbe
	// OpCommit turns the order's reserved hold into sold units.
	OpCommit
	// OpRelease returns the order's reserved units to available (see also Op.Tombstone).
	OpRelease
)

// Op is one request against one bucket.
type Op struct {
	Kind    OpKind
	OrderID string
	Qty     int       // OpReserve, OpProbe
	Until   time.Time // OpReserve
	// Mark (OpReserve) records the order as passed when the bucket cannot cover Qty, so the
	// walk may go on to the next bucket. Without it the bucket answers NoRoom and stays as is.
	// A spent bucket answers Next without a mark.
	Mark bool
	// Since (OpReserve) is when the request began. A reserve that would take a hold for an
	// order the bucket has no record of answers Forgotten instead when the window dropped
	// a record made since then: that record may be this order's release tombstone or passed
	// mark, written while this request was in flight.
	Since time.Time
	// Born (OpReserve), when set, is when the order came to be (its id's time). A reserve
	// that would take a hold for an order the bucket has no record of answers Unsure when the
	// window dropped a record made since then: it may have been this order's passed mark,
	// and the order may hold further along its sequence (Service.reserve then looks).
	Born time.Time
	// Tombstone (OpRelease) makes the release of an order unknown here leave a release
	// tombstone (and answer Absent), unless the bucket is spent: no reserve can ever hold
	// there, so the answer is Next and the tombstone belongs further along the sequence.
	Tombstone bool
	// NotAfter, when set, is the op's deadline: an op applied later fails with ErrBusy and
	// changes nothing, so a batch retrying its CAS never applies a request past the time
	// its caller (and the release tombstones written meanwhile) could still account for it.
	NotAfter time.Time
}

// Status is how an Op ended in one bucket.
type Status uint8

// Statuses.
const (
	// Done: the order's hold is here; Result.State is its state (after the op).
	Done Status = iota + 1
	// Next: the order is passed here; look in the next bucket of its probe sequence.
	Next
	// NoRoom (reserve, probe): no hold, no mark, and fewer than Qty units available.
	NoRoom
	// Room (probe): no hold, no mark, and Qty units would fit.
	Room
	// Absent (commit, release): the bucket has no record of the order: it never held here,
	// or its hold finished and left the window. A release tombstone answers a release
	// Absent too.
	Absent
	// Forgotten (reserve): no record of the order, but the window dropped records made since
	// Op.Since; nothing changed.
	Forgotten
	// Unsure (reserve): no record of the order, but the window dropped records made since
	// Op.Born; nothing changed.
	Unsure
)

// Result is the answer to one Op. Err carries a refused transition (ErrHoldReleased,
// ErrHoldCommitted) or a failure of the whole batch.
type Result struct {
	Status Status
	State  HoldState
	Err    error
}

// Errors of the hold transitions.
var (
	ErrHoldNotFound  = problem.New(problem.CodeNotFound, "the order holds no stock of this deal")
	ErrHoldReleased  = problem.New(problem.CodeConflict, "the order's hold was released")
	ErrHoldCommitted = problem.New(problem.CodeConflict, "the order's hold was committed")
)

// Window bounds a bucket's recent-ops window: committed and released holds, release
// tombstones and passed marks, counted from their last change. Reserved holds are never
// part of it.
//
// Age must outlast every request a record guards: a reserve in flight when a release left
// its tombstone or when a walk left its mark is applied by its NotAfter, so Age must exceed
// the ops' deadline window plus the clock skew between replicas and the time a write
// already sent takes to land. Ops caps the records by count whatever their age, so the
// document has a fixed worst case: when more records are made within Age than Ops allows,
// the oldest go early, committed holds first (nothing depends on them: a replayed commit of
// a pruned hold answers Absent, which its caller takes for done). Dropping any other record
// moves Bucket.Forgot, and the reserves it could have guarded answer Forgotten or Unsure
// instead of taking a hold, so an early drop costs a retry, never a second hold.
type Window struct {
	Age time.Duration
	Ops int
}

// Apply applies ops to b in order, each seeing the effect of the ones before it, and returns
// one result per op and whether b changed (and so needs writing). It is pure: it touches
// nothing but b, so the batch engine can re-run it on a fresh copy after an ETag conflict.
// Apply keeps b's invariants (Check) whenever they held before. An op past its NotAfter
// fails with ErrBusy and changes nothing, so re-running a batch after its ops' deadlines
// writes nothing.
//
// When the ops changed b, Apply also prunes its window (after the ops, which see every
// record): records Age old or more go, then the oldest beyond Ops (see Window), the units of
// committed holds moving to Archived. Pruning rides on a write that happens anyway and never
// causes one, so an idle bucket keeps its records. A pruned mark no longer sends the order
// on, so finding a hold must not stop at the first bucket without the order (Service.find
// looks on).
func Apply(b *Bucket, ops []Op, now time.Time, w Window) (results []Result, changed bool) {
	results, changed, _ = ApplyPaged(b, ops, now, w, nil)
	return results, changed
}

// ApplyPaged is Apply for a bucket whose reserved holds are paged (see Paging); pg nil pages
// nothing. The ops find the holds of the pages b lists through pg. When b changed, the
// returned changes name the pages to create before writing b and those to delete after.
func ApplyPaged(b *Bucket, ops []Op, now time.Time, w Window, pg *Paging) (results []Result, changed bool, ch PageChanges) {
	if b.Holds == nil {
		b.Holds = map[string]Hold{}
	}
	results = make([]Result, len(ops))
	for i, op := range ops {
		if !op.NotAfter.IsZero() && now.After(op.NotAfter) {
			results[i] = Result{Err: fmt.Errorf("order %s: not applied by its deadline %s: %w",
				op.OrderID, op.NotAfter.Format(time.RFC3339Nano), ErrBusy)}
			continue
		}
		var c bool
		results[i], c = apply(b, op, now, pg)
		changed = changed || c
	}
	if changed {
		if pg != nil {
			ch = pg.maintain(b)
		}
		prune(b, now, w)
	}
	return results, changed, ch
}

// record is one entry of the window.
type record struct {
	id        string
	at        time.Time
	committed bool
	mark      bool
}

// prune drops the records of b's window that are too old or beyond its cap.
func prune(b *Bucket, now time.Time, w Window) {
	var recs []record
	for id, h := range b.Holds {
		if h.Page == "" && (h.State == StateCommitted || h.State == StateReleased) {
			recs = append(recs, record{id: id, at: h.At, committed: h.State == StateCommitted})
		}
	}
	for id, at := range b.Passed {
		recs = append(recs, record{id: id, at: at, mark: true})
	}
	drop := func(r record) {
		switch {
		case r.committed:
			b.Archived += b.Holds[r.id].Qty
		case r.at.After(b.Forgot):
			b.Forgot = r.at
		}
		if r.mark {
			delete(b.Passed, r.id)
		} else {
			delete(b.Holds, r.id)
		}
	}
	kept := recs[:0]
	for _, r := range recs {
		if w.Age > 0 && !r.at.After(now.Add(-w.Age)) {
			drop(r)
			continue
		}
		kept = append(kept, r)
	}
	if w.Ops > 0 && len(kept) > w.Ops {
		// Committed holds first, then the oldest; the id breaks ties so replicas agree.
		slices.SortFunc(kept, func(x, y record) int {
			if x.committed != y.committed {
				if x.committed {
					return -1
				}
				return 1
			}
			return cmp.Or(x.at.Compare(y.at), cmp.Compare(x.id, y.id))
		})
		for _, r := range kept[:len(kept)-w.Ops] {
			drop(r)
		}
	}
	if len(b.Passed) == 0 {
		b.Passed = nil
	}
}

// unknown is the answer of a reserve about to take a hold for an order the bucket has no
// record of, when the window may have forgotten one (see Op.Since, Op.Born); zero when the
// bucket's memory covers the order.
func unknown(b *Bucket, op Op) Status {
	switch {
	case b.Forgot.IsZero():
		return 0
	case !op.Since.IsZero() && !op.Since.After(b.Forgot):
		return Forgotten
	case !op.Born.IsZero() && !op.Born.After(b.Forgot):
		return Unsure
	}
	return 0
}

func apply(b *Bucket, op Op, now time.Time, pg *Paging) (Result, bool) {
	h, held := b.Holds[op.OrderID]
	_, passed := b.Passed[op.OrderID]
	page := ""
	if !held && !passed {
		h, page, held = pg.find(b, op.OrderID)
	}
	switch op.Kind {
	case OpReserve, OpProbe:
		reserve := op.Kind == OpReserve
		switch {
		case held:
			// A replay: the order already holds stock here, whatever its state.
			return Result{Status: Done, State: h.State}, false
		case passed:
			return Result{Status: Next}, false
		case op.Qty < 1:
			return Result{Err: problem.Errorf(problem.CodeValidation, "quantity %d must be positive", op.Qty)}, false
		case b.Available < op.Qty && reserve && op.Mark && b.spent():
			// Nothing can ever be held here again: the walk goes on without a mark.
			return Result{Status: Next}, false
		case b.Available < op.Qty && reserve && op.Mark:
			if b.Passed == nil {
				b.Passed = map[string]time.Time{}
			}
			b.Passed[op.OrderID] = now
			return Result{Status: Next}, true
		case b.Available < op.Qty:
			return Result{Status: NoRoom}, false
		case !reserve:
			return Result{Status: Room}, false
		}
		if st := unknown(b, op); st != 0 {
			return Result{Status: st}, false
		}
		b.Available -= op.Qty
		b.Reserved += op.Qty
		b.Holds[op.OrderID] = Hold{Qty: op.Qty, Until: op.Until, State: StateReserved, At: now}
		return Result{Status: Done, State: StateReserved}, true

	case OpCommit, OpRelease:
		switch {
		case passed:
			return Result{Status: Next}, false
		case held && h.Tombstone() && op.Kind == OpRelease:
			// The order never held stock here; the tombstone already guards this bucket.
			return Result{Status: Absent}, false
		case !held && op.Tombstone && b.spent():
			return Result{Status: Next}, false
		case !held && op.Tombstone:
			// Where a reserve of this order would hold next: a reserve still in flight
			// (another replica's batch re-applying after its CAS lost to this write) now
			// finds the order released.
			b.Holds[op.OrderID] = Hold{State: StateReleased, At: now}
			return Result{Status: Absent}, true
		case !held:
			return Result{Status: Absent}, false
		}
		want := StateCommitted
		if op.Kind == OpRelease {
			want = StateReleased
		}
		switch h.State {
		case want:
			return Result{Status: Done, State: h.State}, false
		case StateReleased:
			return Result{Status: Done, State: h.State, Err: ErrHoldReleased}, false
		case StateCommitted:
			return Result{Status: Done, State: h.State, Err: ErrHoldCommitted}, false
		}
		b.Reserved -= h.Qty
		if op.Kind == OpCommit {
			b.Sold += h.Qty
		} else {
			b.Available += h.Qty
		}
		h.State, h.At = want, now // the hold joins the window
		if page != "" {
			// A paged hold: its record here overrides the page's copy.
			h.Page = page
			r := b.ref(page)
			r.Holds--
			r.Units -= h.Qty
		}
		b.Holds[op.OrderID] = h
		return Result{Status: Done, State: want}, true
	}
	return Result{Err: fmt.Errorf("stock: unknown op kind %d", op.Kind)}, false
}
