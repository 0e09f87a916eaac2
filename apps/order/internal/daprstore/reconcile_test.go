package daprstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
)

// TestReconcileState: the report reads as the zero report before the first write, updates
// round-trip through the store, ErrUnchanged writes nothing, a closure's error comes back as
// is, and concurrent updates of one document all land (ETag CAS).
func TestReconcileState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s := newState()
	r := daprstore.NewReconcile(s)

	rep, err := r.Report(ctx)
	if err != nil || rep.CheckedAt != nil || rep.Findings != nil {
		t.Fatalf("report before any write: %+v, %v; want the zero report", rep, err)
	}
	at := t0
	err = r.UpdateReport(ctx, func(rep *reconcile.Report) error {
		rep.CheckedAt = &at
		rep.Findings = []reconcile.Finding{{Kind: reconcile.KindOrphanHold, DealID: "d1", OrderID: "o1", Detail: "x"}}
		rep.FindingsTotal = 1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.Report{CheckedAt: &at, FindingsTotal: 1,
		Findings: []reconcile.Finding{{Kind: reconcile.KindOrphanHold, DealID: "d1", OrderID: "o1", Detail: "x"}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}

	saves := f.SaveCalls()
	if err := r.UpdateReport(ctx, func(*reconcile.Report) error { return reconcile.ErrUnchanged }); err != nil {
		t.Errorf("unchanged update: %v", err)
	}
	if err := r.UpdateLease(ctx, func(*reconcile.Lease) error { return reconcile.ErrUnchanged }); err != nil {
		t.Errorf("unchanged lease update: %v", err)
	}
	if f.SaveCalls() != saves {
		t.Errorf("unchanged updates wrote %d times", f.SaveCalls()-saves)
	}
	if err := r.UpdateLease(ctx, func(*reconcile.Lease) error { return reconcile.ErrSkipped }); !errors.Is(err, reconcile.ErrSkipped) {
		t.Errorf("lease closure error came back as %v", err)
	}
	if keys := f.Keys(component, "reconcile:"); len(keys) != 1 || keys[0] != daprstore.ReconcileReportKey {
		t.Errorf("keys %v, want only the report", keys)
	}

	// Concurrent updates of the lease document all land.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := r.UpdateLease(ctx, func(l *reconcile.Lease) error {
				l.Until = l.Until.Add(time.Second)
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var l reconcile.Lease
	if err := r.UpdateLease(ctx, func(cur *reconcile.Lease) error { l = *cur; return reconcile.ErrUnchanged }); err != nil {
		t.Fatal(err)
	}
	if want := (time.Time{}).Add(8 * time.Second); !l.Until.Equal(want) {
		t.Errorf("lease until %s after 8 concurrent one-second bumps, want %s", l.Until, want)
	}
}
