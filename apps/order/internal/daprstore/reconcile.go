package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Keys of the reconciler's documents: one lease and one report for the whole app, so any
// replica answers GET /admin/reconciliation and only one runs a pass at a time.
const (
	ReconcileLeaseKey  = "reconcile:lease"
	ReconcileReportKey = "reconcile:report"
)

// Reconcile implements reconcile.State: two documents, each changed by ETag CAS.
type Reconcile struct{ s *daprstate.Store }

// NewReconcile returns the reconciler's state.
func NewReconcile(s *daprstate.Store) *Reconcile { return &Reconcile{s: s} }

var _ reconcile.State = (*Reconcile)(nil)

// UpdateLease implements reconcile.State.
func (r *Reconcile) UpdateLease(ctx context.Context, fn func(l *reconcile.Lease) error) error {
	_, err := daprstate.Mutate(ctx, r.s, ReconcileLeaseKey, casAttempts, func(l *reconcile.Lease, _ bool) error {
		return noChange(fn(l))
	})
	return err
}

// UpdateReport implements reconcile.State.
func (r *Reconcile) UpdateReport(ctx context.Context, fn func(rep *reconcile.Report) error) error {
	_, err := daprstate.Mutate(ctx, r.s, ReconcileReportKey, casAttempts, func(rep *reconcile.Report, _ bool) error {
		return noChange(fn(rep))
	})
	return err
}

// Report implements reconcile.State.
func (r *Reconcile) Report(ctx context.Context) (reconcile.Report, error) {
	var rep reconcile.Report
	_, err := r.s.Get(ctx, ReconcileReportKey, &rep)
	if errors.Is(err, daprstate.ErrNotFound) {
		return reconcile.Report{}, nil
	}
	return rep, err
}

func noChange(err error) error {
	if errors.Is(err, reconcile.ErrUnchanged) {
		return daprstate.ErrNoChange
	}
	return err
}
