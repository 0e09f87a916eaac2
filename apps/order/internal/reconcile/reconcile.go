// Package reconcile is the order app's reconciler (DESIGN.md §3, invariant 6): a periodic
// pass, driven by a cron binding, that compares inventory's stock counters and holds, the
// order documents and the payment app's charges and refunds, repairs the differences that
// are provably safe to repair, and reports the rest.
//
// It checks, per deal and per order:
//   - each bucket's counters against its holds: none negative, available+reserved+sold ==
//     stock, reserved == the units of reserved holds, sold == the units of committed holds
//     plus the archived units of pruned ones;
//   - reserved holds against pending orders (and paid group orders awaiting their group),
//     committed holds against confirmed orders, released holds against final orders or none;
//   - succeeded charges against paid, confirmed or refunded orders; at most one refund per
//     order, and only of a succeeded charge.
//
// It repairs, each repair idempotent so that overlapping passes cannot double one:
//   - a reserved hold whose order is final (cancelled, refunded), or missing and older than
//     every window an in-flight placement could still be inside (OrphanAge): released;
//   - a succeeded, unrefunded charge of an order cancelled more than PaymentGrace ago:
//     refunded (a cancelled order never becomes paid, so the money is owed back);
//   - an order the expiry sweep should be finishing but cannot see (pending past pay_by,
//     a paid flash order never confirmed, a final order whose side effects never completed)
//     and that is missing from the pending set: put back into it, for the sweep to finish.
//
// Everything else is reported: the latest pass's findings in one state document
// (GET /admin/reconciliation) and Prometheus counters per finding kind and per repair.
//
// No document lists a deal's orders (invariant 5), so a pass finds orders through what
// refers to them: inventory's holds (reserved holds stay until settled, settled ones only for
// inventory's short recent-ops window, STOCK_RECENT_WINDOW, so a finished order is mostly seen
// without its hold) and the order app's pending set.
// Settled holds older than Lookback were seen by earlier passes and are not read again.
//
// Cron bindings fire on every replica and ticks may overlap: a pass runs under a lease (one
// state key changed by ETag CAS), so one replica runs one pass at a time and passes start at
// least MinInterval apart; a pass stops before its lease ends.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
)

// Errors of the reconciler.
var (
	// ErrSkipped: a pass is running on another replica, or one started less than
	// MinInterval ago.
	ErrSkipped = errors.New("reconcile: another pass is running or ran recently")
	// ErrUnchanged tells State that an update closure decided nothing needs writing.
	ErrUnchanged = errors.New("reconcile: unchanged")
)

// Config tunes the reconciler. The windows decide when something is old enough that no
// flow still in progress can explain it.
type Config struct {
	// PayWindow, IdemLease and PaymentGrace are the order app's own settings.
	PayWindow, IdemLease, PaymentGrace time.Duration
	// FlushTimeout is inventory's batch flush timeout: how long a reservation's CAS may
	// still land after its caller gave up.
	FlushTimeout time.Duration
	// Margin is added to every window (clock skew between replicas, a sweep tick).
	Margin time.Duration
	// OrphanAge is how old a reserved hold without an order must be before it is released;
	// zero means PayWindow + IdemLease + FlushTimeout + Margin.
	OrphanAge time.Duration
	// Lookback: committed and released holds whose last change is older than this are not
	// checked again (zero: all of them).
	Lookback time.Duration
	// DealHorizon: deals that ended longer ago than this are not checked (zero: all).
	DealHorizon time.Duration
	// Lease bounds one pass: the lease expires after it, and the pass stops before.
	Lease time.Duration
	// MinInterval is the least time between the starts of two passes, across replicas.
	MinInterval time.Duration
	// MaxListed caps the findings, repairs and errors listed in the report (the rest are
	// counted); Concurrency is how many orders are looked up at once.
	MaxListed, Concurrency int
}

func (c Config) validate() error {
	switch {
	case c.Lease <= 0:
		return fmt.Errorf("reconcile: lease %s must be positive", c.Lease)
	case c.MaxListed < 1:
		return fmt.Errorf("reconcile: max listed %d must be positive", c.MaxListed)
	case c.Concurrency < 1:
		return fmt.Errorf("reconcile: concurrency %d must be positive", c.Concurrency)
	}
	for _, d := range []time.Duration{c.PayWindow, c.IdemLease, c.PaymentGrace, c.FlushTimeout, c.Margin, c.OrphanAge, c.Lookback, c.DealHorizon, c.MinInterval} {
		if d < 0 {
			return fmt.Errorf("reconcile: negative window %s", d)
		}
	}
	return nil
}

// windows are the derived ages the checks compare with.
type windows struct {
	// quiet: an order whose document has not changed for this long is not in the middle of
	// a transition (its side effects follow the write within a request's lifetime).
	quiet time.Duration
	// orphan: a reserved hold without an order this old belongs to no placement in flight.
	orphan time.Duration
	// grace: a charge started before a cancel has landed, and been refunded by the live
	// path if it was going to be, PaymentGrace after the cancel.
	grace time.Duration
}

func (c Config) windows() windows {
	w := windows{quiet: c.IdemLease + c.FlushTimeout + c.Margin, orphan: c.OrphanAge, grace: c.PaymentGrace}
	if w.orphan == 0 {
		w.orphan = c.PayWindow + w.quiet
	}
	return w
}

// Deal is what the reconciler needs to know of a catalog deal.
type Deal struct {
	ID              string    `json:"id"`
	Kind            string    `json:"kind"`
	EndsAt          time.Time `json:"ends_at"`
	GroupTTLSeconds int       `json:"group_ttl_seconds,omitempty"`
}

// DealHolds is a deal's stock as inventory stores it (GET /deals/{id}/holds).
type DealHolds struct {
	DealID  string   `json:"deal_id"`
	Buckets []Bucket `json:"buckets"`
}

// Bucket is one stock bucket: counters and the holds they account for.
type Bucket struct {
	Bucket    int             `json:"bucket"`
	Stock     int             `json:"stock"`
	Available int             `json:"available"`
	Reserved  int             `json:"reserved"`
	Sold      int             `json:"sold"`
	Archived  int             `json:"archived"`
	Holds     map[string]Hold `json:"holds"`
}

// Hold states as inventory names them.
const (
	HoldReserved  = "reserved"
	HoldCommitted = "committed"
	HoldReleased  = "released"
)

// Hold is one order's hold; At is its last transition.
type Hold struct {
	Qty   int       `json:"qty"`
	Until time.Time `json:"until"`
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// Ledger is what the payment app recorded for an order (GET /ledger/{order}).
type Ledger struct {
	Charges []Charge `json:"charges"`
	Refunds []Refund `json:"refunds"`
}

// ChargeSucceeded is the status of a charge that took the money.
const ChargeSucceeded = "succeeded"

// Charge is one charge of an order.
type Charge struct {
	ChargeID    string `json:"charge_id"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amount_cents"`
}

// Refund is one refund of an order.
type Refund struct {
	RefundID    string `json:"refund_id"`
	AmountCents int64  `json:"amount_cents"`
}

// Deals lists the catalog's deals.
type Deals interface {
	Deals(ctx context.Context) ([]Deal, error)
}

// Stock is inventory: the audit read, and the release the leaked-hold repair uses.
type Stock interface {
	Holds(ctx context.Context, dealID string) (DealHolds, error)
	// Release is idempotent; an order without a hold is not an error.
	Release(ctx context.Context, dealID, orderID string) error
}

// Payments is the payment app: the ledger read, and the refund the cancelled-charge repair
// uses (at most one refund per order, ever).
type Payments interface {
	Ledger(ctx context.Context, orderID string) (Ledger, error)
	Refund(ctx context.Context, orderID string) error
}

// Orders reads order documents (order.ErrNotFound when absent).
type Orders interface {
	Get(ctx context.Context, id string) (order.Order, string, error)
}

// Pending is the expiry sweep's pending set.
type Pending interface {
	Due(ctx context.Context, t time.Time) ([]order.PendingEntry, error)
	// Add is a no-op for an order already in the set.
	Add(ctx context.Context, e order.PendingEntry) error
}

// State keeps the reconciler's own documents: the lease and the report. Update closures
// return ErrUnchanged to skip the write; any other error is returned as is.
type State interface {
	UpdateLease(ctx context.Context, fn func(l *Lease) error) error
	UpdateReport(ctx context.Context, fn func(r *Report) error) error
	// Report returns the stored report, the zero Report when there is none.
	Report(ctx context.Context) (Report, error)
}

// Lease is the stored lease of the pass in progress.
type Lease struct {
	Owner     string    `json:"owner,omitempty"`
	Until     time.Time `json:"until"`
	StartedAt time.Time `json:"started_at"`
}

// claim takes the lease for owner unless another pass holds it or one started less than gap
// ago. An expired lease is taken over: its pass ran out of time (it stops before its lease
// ends) or its replica died.
func (l *Lease) claim(owner string, now time.Time, ttl, gap time.Duration) error {
	if l.Owner != "" && now.Before(l.Until) {
		return fmt.Errorf("%w: the pass started at %s holds the lease until %s", ErrSkipped, l.StartedAt.Format(time.RFC3339), l.Until.Format(time.RFC3339))
	}
	if !l.StartedAt.IsZero() && now.Sub(l.StartedAt) < gap {
		return fmt.Errorf("%w: the last pass started at %s", ErrSkipped, l.StartedAt.Format(time.RFC3339))
	}
	*l = Lease{Owner: owner, Until: now.Add(ttl), StartedAt: now}
	return nil
}

// release ends owner's lease and keeps its start, which spaces the next pass.
func (l *Lease) release(owner string) error {
	if l.Owner != owner {
		return ErrUnchanged // expired and taken over: not ours to end
	}
	l.Owner, l.Until = "", time.Time{}
	return nil
}
