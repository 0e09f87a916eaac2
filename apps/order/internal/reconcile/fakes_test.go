package reconcile_test

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// fakeDeals is the catalog's deal list.
type fakeDeals struct {
	mu    sync.Mutex
	deals []reconcile.Deal
	err   error
}

func (f *fakeDeals) Deals(context.Context) ([]reconcile.Deal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]reconcile.Deal(nil), f.deals...), f.err
}

// fakeStock is inventory as the reconciler sees it: the buckets of each deal, and Release
// with inventory's semantics (a reserved hold goes back to available; releasing a released or
// absent hold is a no-op; a committed hold is a conflict). It records every release.
type fakeStock struct {
	mu       sync.Mutex
	deals    map[string][]reconcile.Bucket
	failHold map[string]error // Holds of these deals fail
	releases []string         // "deal/order" of every Release call
	// releaseErr fails every Release; onRelease runs after each successful one (outside
	// the lock), as whatever else happens meanwhile.
	releaseErr error
	onRelease  func(dealID, orderID string)
}

func newFakeStock() *fakeStock {
	return &fakeStock{deals: map[string][]reconcile.Bucket{}, failHold: map[string]error{}}
}

func (f *fakeStock) put(dealID string, buckets ...reconcile.Bucket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deals[dealID] = buckets
}

func (f *fakeStock) Holds(_ context.Context, dealID string) (reconcile.DealHolds, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failHold[dealID]; err != nil {
		return reconcile.DealHolds{}, err
	}
	bs, ok := f.deals[dealID]
	if !ok {
		return reconcile.DealHolds{}, problem.New(problem.CodeNotFound, "no stock record for this deal")
	}
	return reconcile.DealHolds{DealID: dealID, Buckets: cloneBuckets(bs)}, nil
}

func (f *fakeStock) Release(_ context.Context, dealID, orderID string) error {
	err := f.release(dealID, orderID)
	if err == nil && f.onRelease != nil {
		f.onRelease(dealID, orderID)
	}
	return err
}

func (f *fakeStock) release(dealID, orderID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases = append(f.releases, dealID+"/"+orderID)
	if f.releaseErr != nil {
		return f.releaseErr
	}
	for i := range f.deals[dealID] {
		b := &f.deals[dealID][i]
		h, ok := b.Holds[orderID]
		if !ok {
			continue
		}
		switch h.State {
		case reconcile.HoldReserved:
			b.Reserved -= h.Qty
			b.Available += h.Qty
			h.State = reconcile.HoldReleased
			b.Holds[orderID] = h
		case reconcile.HoldCommitted:
			return problem.New(problem.CodeConflict, "the order's hold was committed")
		}
		return nil
	}
	return nil // absent
}

// hold returns the stored hold of an order in a deal; ok is false without one.
func (f *fakeStock) hold(dealID, orderID string) (reconcile.Hold, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.deals[dealID] {
		if h, ok := b.Holds[orderID]; ok {
			return h, true
		}
	}
	return reconcile.Hold{}, false
}

func (f *fakeStock) buckets(dealID string) []reconcile.Bucket {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneBuckets(f.deals[dealID])
}

func (f *fakeStock) releaseCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.releases...)
}

func cloneBuckets(bs []reconcile.Bucket) []reconcile.Bucket {
	out := make([]reconcile.Bucket, len(bs))
	for i, b := range bs {
		b.Holds = maps.Clone(b.Holds)
		out[i] = b
	}
	return out
}

// fakePayments is the payment app: a ledger per order and Refund with its semantics (one
// refund per order, ever, of a succeeded charge; later calls return the first). down makes
// every call answer unavailable, as an open breaker does.
type fakePayments struct {
	mu      sync.Mutex
	ledgers map[string]reconcile.Ledger
	down    bool
	refunds []string // order ids of every Refund call
	lookups int
}

func newFakePayments() *fakePayments {
	return &fakePayments{ledgers: map[string]reconcile.Ledger{}}
}

var errPaymentDown = problem.New(problem.CodeUnavailable, "payment unavailable")

func (f *fakePayments) put(orderID string, l reconcile.Ledger) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ledgers[orderID] = l
}

func (f *fakePayments) Ledger(_ context.Context, orderID string) (reconcile.Ledger, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return reconcile.Ledger{}, errPaymentDown
	}
	l := f.ledgers[orderID]
	return reconcile.Ledger{Charges: append([]reconcile.Charge{}, l.Charges...), Refunds: append([]reconcile.Refund{}, l.Refunds...)}, nil
}

func (f *fakePayments) Refund(_ context.Context, orderID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds = append(f.refunds, orderID)
	if f.down {
		return errPaymentDown
	}
	l := f.ledgers[orderID]
	if len(l.Refunds) > 0 {
		return nil
	}
	for _, c := range l.Charges {
		if c.Status == reconcile.ChargeSucceeded {
			l.Refunds = append(l.Refunds, reconcile.Refund{RefundID: fmt.Sprintf("re_%s", orderID), AmountCents: c.AmountCents})
			f.ledgers[orderID] = l
			return nil
		}
	}
	return problem.New(problem.CodeConflict, "the order has no succeeded charge to refund")
}

func (f *fakePayments) lookupCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func (f *fakePayments) ledger(orderID string) reconcile.Ledger {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ledgers[orderID]
}

func (f *fakePayments) refundCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refunds...)
}
