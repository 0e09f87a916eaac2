package reconcile_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// TestChargeOfCancelledOrderRefundedOnce: the refund happens in the first pass; later passes
// find the ledger balanced and neither report nor refund again, while the report keeps the
// repair listed.
func TestChargeOfCancelledOrderRefundedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	at := t0.Add(-time.Hour)
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"o1": hold(reconcile.HoldReleased, 1, at)}))
	e.orders.Put(doc("o1", order.StatusCancelled, 1, at))
	e.pay.put("o1", charged(100, 0))

	for pass := range 3 {
		res := e.tick(t)
		want := reconcile.TickResult{Ran: true}
		if pass == 0 {
			want.Repaired = 1
		}
		if res != want {
			t.Errorf("pass %d: %+v, want %+v", pass, res, want)
		}
		e.clock.Advance(time.Minute)
	}
	if diff := cmp.Diff(e.pay.refundCalls(), []string{"o1"}); diff != "" {
		t.Errorf("refund calls (-got +want):\n%s", diff)
	}
	if l := e.pay.ledger("o1"); len(l.Refunds) != 1 {
		t.Errorf("ledger %+v, want one refund", l)
	}
	rep := e.report(t)
	if len(rep.Repaired) != 1 || rep.RepairedTotal != 1 || rep.Repaired[0].Kind != reconcile.KindChargedCancelled || !rep.Repaired[0].At.Equal(t0) {
		t.Errorf("repaired %+v (total %d), want the refund made at %s", rep.Repaired, rep.RepairedTotal, t0)
	}
	if len(rep.Findings) != 0 || rep.CheckedAt == nil || !rep.CheckedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("latest pass: findings %+v, checked at %v; want none, at %s", rep.Findings, rep.CheckedAt, t0.Add(2*time.Minute))
	}
}

// TestTicksOnEveryReplicaRunOnePass: the cron binding fires on every replica at once; one
// pass runs, the others skip, and the next tick within MinInterval skips too.
func TestTicksOnEveryReplicaRunOnePass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"ghost": hold(reconcile.HoldReserved, 1, t0.Add(-time.Hour))}))
	const replicas = 6
	recs := make([]*reconcile.Reconciler, replicas)
	for i := range recs {
		recs[i] = e.newReconciler(t, testConfig())
	}
	tickAll := func() (ran int) {
		var wg sync.WaitGroup
		results := make([]reconcile.TickResult, replicas)
		errs := make([]error, replicas)
		for i, r := range recs {
			wg.Go(func() { results[i], errs[i] = r.Tick(testContext(t)) })
		}
		wg.Wait()
		for i := range recs {
			if errs[i] != nil {
				t.Errorf("replica %d: %v", i, errs[i])
			}
			if results[i].Ran {
				ran++
			} else if !strings.Contains(results[i].Skipped, "another pass is running or ran recently") {
				t.Errorf("replica %d skipped with %q", i, results[i].Skipped)
			}
		}
		return ran
	}
	if ran := tickAll(); ran != 1 {
		t.Errorf("first tick: %d passes ran, want 1", ran)
	}
	e.clock.Advance(10 * time.Second)
	if ran := tickAll(); ran != 0 {
		t.Errorf("tick 10s later: %d passes ran, want 0 (MinInterval 30s)", ran)
	}
	e.clock.Advance(25 * time.Second)
	if ran := tickAll(); ran != 1 {
		t.Errorf("tick 35s after the first: %d passes ran, want 1", ran)
	}
	if calls := e.stock.releaseCalls(); len(calls) != 1 {
		t.Errorf("releases %v, want one (the second pass found the hold released)", calls)
	}
	if got := e.counters(t)["reconcile_passes_total outcome=skipped"]; got != 3*replicas-2 {
		t.Errorf("skipped ticks counted %d, want %d", got, 3*replicas-2)
	}
}

// TestLeaseOfADeadPassIsTakenOver: a replica that died mid-pass holds the lease until it
// expires; then the next tick runs.
func TestLeaseOfADeadPassIsTakenOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.stock.put(dealID, bucket(0, 5, nil))
	err := e.state.UpdateLease(testContext(t), func(l *reconcile.Lease) error {
		*l = reconcile.Lease{Owner: "dead-replica", StartedAt: t0.Add(-4 * time.Minute), Until: t0.Add(time.Minute)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rec.Tick(testContext(t))
	if err != nil || res.Ran {
		t.Fatalf("tick under a live lease: %+v, %v; want skipped", res, err)
	}
	e.clock.Advance(time.Minute)
	e.tick(t)
	// The pass released its lease, keeping its start: the next tick within MinInterval skips.
	e.clock.Advance(time.Second)
	if res, err := e.rec.Tick(testContext(t)); err != nil || res.Ran {
		t.Errorf("tick 1s after the pass: %+v, %v; want skipped", res, err)
	}
}

// TestPaymentDownIsPartialNotClean: with payment unavailable the pass still checks and
// repairs stock, says which money checks it could not make, and asks payment once.
func TestPaymentDownIsPartialNotClean(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	at := t0.Add(-time.Hour)
	holds := map[string]reconcile.Hold{"leaked": hold(reconcile.HoldReserved, 1, at)}
	for i := range 3 {
		id := fmt.Sprintf("o%d", i)
		holds[id] = hold(reconcile.HoldReleased, 1, at)
		e.orders.Put(doc(id, order.StatusCancelled, 1, at))
		e.pay.put(id, charged(100, 0))
	}
	e.orders.Put(doc("leaked", order.StatusCancelled, 1, at))
	e.stock.put(dealID, bucket(0, 10, holds))
	e.pay.down = true

	res := e.tick(t)

	if res.Repaired != 1 || res.Errors == 0 {
		t.Errorf("tick %+v, want the leaked hold repaired and errors", res)
	}
	if n := e.pay.lookupCalls(); n != 1 {
		t.Errorf("%d ledger lookups, want 1: the first unavailable answer stops them", n)
	}
	rep := e.report(t)
	if len(rep.Errors) == 0 || !strings.Contains(strings.Join(rep.Errors, "\n"), "payment unavailable: money of") {
		t.Errorf("errors %q, want the skipped money checks said", rep.Errors)
	}
	if got := e.counters(t)["reconcile_passes_total outcome=partial"]; got != 1 {
		t.Errorf("partial passes counted %d, want 1", got)
	}
}

// TestUnreadableDealIsReported: a deal whose holds cannot be read is an error of the pass,
// not a clean deal; the other deals are checked and repaired.
func TestUnreadableDealIsReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.deals.deals = append(e.deals.deals, reconcile.Deal{ID: "d2", Kind: "flash", EndsAt: t0})
	e.stock.failHold["d2"] = problem.New(problem.CodeUnavailable, "inventory unavailable")
	at := t0.Add(-time.Hour)
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"o1": hold(reconcile.HoldReserved, 1, at)}))
	e.orders.Put(doc("o1", order.StatusRefunded, 1, at))
	e.pay.put("o1", charged(100, 1))

	res := e.tick(t)
	rep := e.report(t)
	if res.Repaired != 1 || rep.Deals != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "holds of deal d2") {
		t.Errorf("tick %+v, report deals %d errors %q; want 1 repair, 1 deal checked, d2's error", res, rep.Deals, rep.Errors)
	}
}

// TestDealListUnavailable: without the deal list nothing is checked, and the report says so.
func TestDealListUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.deals.err = problem.New(problem.CodeUnavailable, "catalog unavailable")
	res := e.tick(t)
	rep := e.report(t)
	if res.Errors != 1 || rep.Deals != 0 || len(rep.Errors) != 1 || rep.CheckedAt == nil {
		t.Errorf("tick %+v, report %+v; want one error stored", res, rep)
	}
}

// TestLookbackAndHorizon: settled holds older than the lookback and deals that ended before
// the horizon are not read again.
func TestLookbackAndHorizon(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.deals.deals = append(e.deals.deals, reconcile.Deal{ID: "d-ancient", Kind: "flash", EndsAt: t0.Add(-800 * time.Hour)})
	e.stock.failHold["d-ancient"] = errors.New("must not be read")
	at := t0.Add(-25 * time.Hour)
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"o1": hold(reconcile.HoldReleased, 1, at)}))
	e.orders.Put(doc("o1", order.StatusCancelled, 1, at))
	e.pay.put("o1", charged(100, 0))

	res := e.tick(t)
	if res != (reconcile.TickResult{Ran: true}) || e.pay.lookupCalls() != 0 {
		t.Errorf("tick %+v with %d ledger lookups, want a clean pass that read neither", res, e.pay.lookupCalls())
	}
}

// TestReportIsBounded: lists are capped at MaxListed, totals count everything, and repairs
// accumulate across passes newest first.
func TestReportIsBounded(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxListed = 2
	e := newEnv(t, cfg)
	at := t0.Add(-time.Hour)
	holds := map[string]reconcile.Hold{}
	for _, id := range []string{"a", "b", "c"} {
		holds[id] = hold(reconcile.HoldReserved, 1, at)
		e.orders.Put(doc(id, order.StatusCancelled, 1, at))
	}
	broken := bucket(0, 10, holds)
	broken.Stock = 11 // a counter mismatch
	e.deals.deals = append(e.deals.deals, reconcile.Deal{ID: "d2", EndsAt: t0}, reconcile.Deal{ID: "d3", EndsAt: t0})
	e.stock.put(dealID, broken)
	e.stock.put("d2", reconcile.Bucket{Stock: 1, Holds: map[string]reconcile.Hold{}})
	e.stock.put("d3", reconcile.Bucket{Stock: 1, Holds: map[string]reconcile.Hold{}})

	e.tick(t)
	rep := e.report(t)
	if len(rep.Findings) != 2 || rep.FindingsTotal != 3 || len(rep.Repaired) != 2 || rep.RepairedTotal != 3 {
		t.Fatalf("findings %d of %d, repaired %d of %d; want 2 of 3 each", len(rep.Findings), rep.FindingsTotal, len(rep.Repaired), rep.RepairedTotal)
	}
	if rep.Repaired[0].OrderID != "c" || rep.Repaired[1].OrderID != "b" {
		t.Errorf("repaired %+v, want c then b (newest first)", rep.Repaired)
	}

	e.clock.Advance(time.Minute)
	e.orders.Put(doc("d", order.StatusCancelled, 1, at))
	b := e.stock.buckets(dealID)[0]
	b.Holds["d"] = hold(reconcile.HoldReserved, 1, at)
	b.Reserved++
	b.Available--
	e.stock.put(dealID, b)
	e.tick(t)
	rep = e.report(t)
	if rep.RepairedTotal != 4 || len(rep.Repaired) != 2 || rep.Repaired[0].OrderID != "d" || rep.Repaired[1].OrderID != "c" {
		t.Errorf("repaired %+v (total %d), want d then c of 4", rep.Repaired, rep.RepairedTotal)
	}
}

// TestMetricsCountFindingsAndRepairs: one counter point per finding kind, repairs by kind,
// action and outcome; a failed repair stays a finding with its error.
func TestMetricsCountFindingsAndRepairs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	at := t0.Add(-time.Hour)
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{
		"o1":    hold(reconcile.HoldReserved, 1, at),
		"o2":    hold(reconcile.HoldCommitted, 1, at),
		"ghost": hold(reconcile.HoldReserved, 1, at),
	}))
	e.orders.Put(doc("o1", order.StatusCancelled, 1, at))
	e.orders.Put(doc("o2", order.StatusCancelled, 1, at))
	e.stock.releaseErr = problem.New(problem.CodeUnavailable, "inventory unavailable")

	e.tick(t)
	e.stock.releaseErr = nil
	e.clock.Advance(time.Minute)
	e.tick(t)

	got := e.counters(t)
	want := map[string]int64{
		"reconcile_findings_total kind=leaked_hold":                                   2,
		"reconcile_findings_total kind=orphan_hold":                                   2,
		"reconcile_findings_total kind=sold_without_confirmed_order":                  2,
		"reconcile_repairs_total action=release_hold kind=leaked_hold outcome=failed": 1,
		"reconcile_repairs_total action=release_hold kind=orphan_hold outcome=failed": 1,
		"reconcile_repairs_total action=release_hold kind=leaked_hold outcome=ok":     1,
		"reconcile_repairs_total action=release_hold kind=orphan_hold outcome=ok":     1,
		"reconcile_passes_total outcome=findings":                                     2,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("counters (-got +want):\n%s", diff)
	}
	rep := e.report(t)
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != reconcile.KindSoldWithoutConfirmed {
		t.Errorf("findings %+v, want only the sold units (the repairs succeeded this time)", rep.Findings)
	}
}

// TestFailedRepairStaysAFinding: the report says which repair failed and why.
func TestFailedRepairStaysAFinding(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	at := t0.Add(-time.Hour)
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"o1": hold(reconcile.HoldReserved, 1, at)}))
	e.orders.Put(doc("o1", order.StatusCancelled, 1, at))
	e.stock.releaseErr = problem.New(problem.CodeUnavailable, "inventory unavailable")
	e.tick(t)
	rep := e.report(t)
	if len(rep.Findings) != 1 || rep.Findings[0].Repair != reconcile.ActionReleaseHold || !strings.Contains(rep.Findings[0].RepairError, "inventory unavailable") {
		t.Errorf("findings %+v, want the leaked hold with its failed release", rep.Findings)
	}
}

// TestOrderCreatedWhileItsOrphanedHoldIsReleased: a placement resumed with the same order id
// may create the order right after the release; the pass looks again and reports it.
func TestOrderCreatedWhileItsOrphanedHoldIsReleased(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.stock.put(dealID, bucket(0, 5, map[string]reconcile.Hold{"o1": hold(reconcile.HoldReserved, 1, t0.Add(-time.Hour))}))
	e.stock.onRelease = func(_, orderID string) { e.orders.Put(doc(orderID, order.StatusPending, 1, t0)) }
	e.tick(t)
	rep := e.report(t)
	findings := project(rep.Findings, func(f reconcile.Finding) reconcile.Finding { return f })
	if diff := cmp.Diff(findings, []got{{reconcile.KindPendingWithoutHold, "o1", ""}}); diff != "" {
		t.Errorf("findings (-got +want):\n%s", diff)
	}
}

// TestReportBeforeTheFirstPass has no checked_at and empty lists.
func TestReportBeforeTheFirstPass(t *testing.T) {
	t.Parallel()
	rep := newEnv(t, testConfig()).report(t)
	if rep.CheckedAt != nil || rep.Findings == nil || rep.Repaired == nil || rep.Errors == nil || len(rep.Findings)+len(rep.Repaired)+len(rep.Errors) != 0 {
		t.Errorf("report %+v, want no checked_at and three empty lists", rep)
	}
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(c *reconcile.Config){
		"no lease":         func(c *reconcile.Config) { c.Lease = 0 },
		"nothing listed":   func(c *reconcile.Config) { c.MaxListed = 0 },
		"no concurrency":   func(c *reconcile.Config) { c.Concurrency = 0 },
		"negative margin":  func(c *reconcile.Config) { c.Margin = -time.Second },
		"negative orphans": func(c *reconcile.Config) { c.OrphanAge = -time.Second },
	} {
		cfg := testConfig()
		edit(&cfg)
		if _, err := reconcile.New(cfg, reconcile.Deps{}); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
