package reconcile

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Report is the stored (and served) outcome of the latest pass, plus the repairs of recent
// passes: a repair happens in one pass and is gone from the next pass's findings, so the
// report keeps the last MaxListed of them. Lists are capped at MaxListed; the totals count
// everything.
type Report struct {
	// CheckedAt is when the latest pass ended; nil before the first.
	CheckedAt  *time.Time `json:"checked_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	DurationMS int64      `json:"duration_ms"`
	Deals      int        `json:"deals_checked"`
	Orders     int        `json:"orders_checked"`
	// Findings of the latest pass that were not repaired (reported, or a failed repair).
	Findings      []Finding `json:"findings"`
	FindingsTotal int       `json:"findings_total"`
	// Repaired lists the latest repairs, newest first, across passes.
	Repaired      []Repaired `json:"repaired"`
	RepairedTotal int        `json:"repaired_total"`
	// Errors are checks of the latest pass that could not run (a deal's holds unreadable,
	// payment unavailable): what they would have checked is unknown, not clean.
	Errors      []string `json:"errors"`
	ErrorsTotal int      `json:"errors_total"`
}

// Repaired is a finding the reconciler repaired.
type Repaired struct {
	Finding
	At time.Time `json:"repaired_at"`
}

// TickResult is what one cron tick did.
type TickResult struct {
	Ran      bool   `json:"ran"`
	Skipped  string `json:"skipped,omitempty"`
	Findings int    `json:"findings"`
	Repaired int    `json:"repaired"`
	Errors   int    `json:"errors"`
}

// Reconciler runs reconciliation passes.
type Reconciler struct {
	cfg      Config
	w        windows
	deals    Deals
	stock    Stock
	payments Payments
	orders   Orders
	pending  Pending
	state    State
	log      *slog.Logger
	now      func() time.Time
	newOwner func() string

	findings metric.Int64Counter
	repairs  metric.Int64Counter
	passes   metric.Int64Counter
}

// Deps are the reconciler's collaborators.
type Deps struct {
	Deals    Deals
	Stock    Stock
	Payments Payments
	Orders   Orders
	Pending  Pending
	State    State
	Log      *slog.Logger
	// Meter records reconcile_findings_total, reconcile_repairs_total and
	// reconcile_passes_total (default no-op).
	Meter metric.Meter
	// Now tells the time (default time.Now).
	Now func() time.Time
}

// New returns a reconciler.
func New(cfg Config, d Deps) (*Reconciler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Meter == nil {
		d.Meter = noop.NewMeterProvider().Meter("reconcile")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{cfg: cfg, w: cfg.windows(), deals: d.Deals, stock: d.Stock, payments: d.Payments, orders: d.Orders,
		pending: d.Pending, state: d.State, log: d.Log, now: d.Now, newOwner: rand.Text}
	var err error
	if r.findings, err = d.Meter.Int64Counter("reconcile_findings_total",
		metric.WithDescription("Differences found by reconciliation passes, by kind; a difference that stays is counted by every pass")); err != nil {
		return nil, fmt.Errorf("reconcile metrics: %w", err)
	}
	if r.repairs, err = d.Meter.Int64Counter("reconcile_repairs_total",
		metric.WithDescription("Repairs attempted by reconciliation passes, by finding kind, action and outcome (ok, failed)")); err != nil {
		return nil, fmt.Errorf("reconcile metrics: %w", err)
	}
	if r.passes, err = d.Meter.Int64Counter("reconcile_passes_total",
		metric.WithDescription("Reconciliation ticks by outcome: clean, findings, partial (some checks could not run), skipped, failed")); err != nil {
		return nil, fmt.Errorf("reconcile metrics: %w", err)
	}
	return r, nil
}

// Report returns the stored report; before the first pass, one with no checked_at and
// empty lists.
func (r *Reconciler) Report(ctx context.Context) (Report, error) {
	rep, err := r.state.Report(ctx)
	if err != nil {
		return Report{}, err
	}
	rep.Findings = nonNil(rep.Findings)
	rep.Repaired = nonNil(rep.Repaired)
	rep.Errors = nonNil(rep.Errors)
	return rep, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Tick is one cron tick: it runs a pass unless another replica's pass holds the lease or one
// started less than MinInterval ago (then Skipped says why and nothing else happens). The
// pass stops before its lease ends; its report is stored and the lease released even when
// ctx ends first.
func (r *Reconciler) Tick(ctx context.Context) (TickResult, error) {
	owner := r.newOwner()
	start := r.now().UTC()
	err := r.state.UpdateLease(ctx, func(l *Lease) error { return l.claim(owner, start, r.cfg.Lease, r.cfg.MinInterval) })
	if errors.Is(err, ErrSkipped) {
		r.passes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "skipped")))
		return TickResult{Skipped: err.Error()}, nil
	}
	if err != nil {
		r.passes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "failed")))
		return TickResult{}, fmt.Errorf("claim the reconciliation lease: %w", err)
	}
	// A tenth of the lease is left for storing the report and releasing the lease, so the
	// next pass cannot start while this one still writes.
	pctx, cancel := context.WithDeadline(ctx, start.Add(r.cfg.Lease-r.cfg.Lease/10))
	p := r.pass(pctx, start)
	cancel()

	wctx := context.WithoutCancel(ctx)
	end := r.now().UTC()
	err = r.state.UpdateReport(wctx, func(rep *Report) error {
		p.into(rep, start, end, r.cfg.MaxListed)
		return nil
	})
	if rerr := r.state.UpdateLease(wctx, func(l *Lease) error { return l.release(owner) }); rerr != nil {
		r.log.WarnContext(ctx, "reconcile_lease_release_failed", slog.String("error", rerr.Error()))
	}
	outcome := "clean"
	switch {
	case len(p.errors) > 0:
		outcome = "partial"
	case len(p.findings) > 0:
		outcome = "findings"
	}
	if err != nil {
		outcome = "failed"
	}
	r.passes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	res := TickResult{Ran: true, Findings: len(p.findings), Repaired: len(p.repaired), Errors: len(p.errors)}
	if err != nil {
		return res, fmt.Errorf("store the reconciliation report: %w", err)
	}
	return res, nil
}

// passResult is what one pass found, before it is folded into the stored report.
type passResult struct {
	deals, orders int
	findings      []Finding // not repaired
	repaired      []Repaired
	errors        []string
}

func (p *passResult) errorf(format string, args ...any) {
	p.errors = append(p.errors, fmt.Sprintf(format, args...))
}

// into folds the pass into the stored report: the pass's findings and errors replace the
// previous ones, its repairs go in front of the earlier ones.
func (p *passResult) into(rep *Report, start, end time.Time, maxListed int) {
	rep.CheckedAt, rep.StartedAt = &end, &start
	rep.DurationMS = end.Sub(start).Milliseconds()
	rep.Deals, rep.Orders = p.deals, p.orders
	rep.Findings, rep.FindingsTotal = capped(p.findings, maxListed), len(p.findings)
	rep.Errors, rep.ErrorsTotal = capped(p.errors, maxListed), len(p.errors)
	newest := slices.Clone(p.repaired)
	slices.Reverse(newest)
	rep.Repaired = capped(append(newest, rep.Repaired...), maxListed)
	rep.RepairedTotal += len(p.repaired)
}

func capped[T any](s []T, n int) []T {
	if len(s) > n {
		s = s[:n]
	}
	return slices.Clip(nonNil(s))
}

// pass checks every deal in the horizon and the orders it finds, then repairs. now is the
// pass's start: every age is measured from it, so an order read later only looks younger.
func (r *Reconciler) pass(ctx context.Context, now time.Time) passResult {
	var p passResult
	deals, err := r.deals.Deals(ctx)
	if err != nil {
		p.errorf("list deals: %v", err)
		return p
	}
	// Read before the holds, so an entry added after this read belongs to a placement whose
	// hold is newer than the read too, and too young to count as an orphan.
	due, err := r.pending.Due(ctx, now.AddDate(100, 0, 0))
	if err != nil {
		p.errorf("read the pending set: %v", err)
		return p
	}
	cases := map[string]*orderCase{}
	checked := map[string]Deal{}
	var found []Finding
	for _, d := range deals {
		if r.cfg.DealHorizon > 0 && now.Sub(d.EndsAt) > r.cfg.DealHorizon {
			continue
		}
		if ctx.Err() != nil {
			p.errorf("pass stopped before deal %s: %v", d.ID, ctx.Err())
			break
		}
		dh, err := r.stock.Holds(ctx, d.ID)
		if err != nil {
			p.errorf("holds of deal %s: %v", d.ID, err)
			continue
		}
		checked[d.ID] = d
		p.deals++
		for _, b := range dh.Buckets {
			found = append(found, checkBucket(d.ID, b)...)
			for id, h := range b.Holds {
				if h.State != HoldReserved && r.cfg.Lookback > 0 && now.Sub(h.At) > r.cfg.Lookback {
					continue // settled long ago and checked by earlier passes
				}
				if prev, dup := cases[id]; dup {
					bucket := b.Bucket
					found = append(found, Finding{Kind: KindDuplicateHold, DealID: d.ID, OrderID: id, Bucket: &bucket,
						Detail: fmt.Sprintf("the order also holds stock in deal %s bucket %d", prev.Deal.ID, prev.Bucket)})
					continue
				}
				cases[id] = &orderCase{Deal: d, OrderID: id, Hold: &h, Bucket: b.Bucket}
			}
		}
	}
	for _, e := range due {
		d, ok := checked[e.DealID]
		if !ok {
			continue
		}
		if c, ok := cases[e.OrderID]; ok {
			c.InPending, c.PendingDue = true, e.Due
			continue
		}
		cases[e.OrderID] = &orderCase{Deal: d, OrderID: e.OrderID, InPending: true, PendingDue: e.Due}
	}

	found = append(found, r.checkOrders(ctx, now, cases, &p)...)
	slices.SortFunc(found, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.DealID, b.DealID), cmp.Compare(a.OrderID, b.OrderID), cmp.Compare(a.Kind, b.Kind))
	})
	for _, f := range found {
		r.findings.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(f.Kind))))
		if f.Repair == "" {
			p.findings = append(p.findings, f)
			continue
		}
		if err := r.repair(ctx, now, f, cases[f.OrderID], &p); err != nil {
			f.RepairError = err.Error()
			p.findings = append(p.findings, f)
			r.repairs.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(f.Kind)), attribute.String("action", string(f.Repair)), attribute.String("outcome", "failed")))
			r.log.WarnContext(ctx, "reconcile_repair_failed", slog.String("kind", string(f.Kind)), slog.String("order_id", f.OrderID),
				slog.String("deal_id", f.DealID), slog.String("error", err.Error()))
			continue
		}
		p.repaired = append(p.repaired, Repaired{Finding: f, At: r.now().UTC()})
		r.repairs.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(f.Kind)), attribute.String("action", string(f.Repair)), attribute.String("outcome", "ok")))
		r.log.InfoContext(ctx, "reconcile_repaired", slog.String("kind", string(f.Kind)), slog.String("action", string(f.Repair)),
			slog.String("order_id", f.OrderID), slog.String("deal_id", f.DealID))
	}
	for _, f := range p.findings {
		r.log.WarnContext(ctx, "reconcile_finding", slog.String("kind", string(f.Kind)), slog.String("order_id", f.OrderID),
			slog.String("deal_id", f.DealID), slog.String("detail", f.Detail))
	}
	return p
}

// checkOrders reads each order (and its ledger where it matters) with bounded concurrency
// and checks it. Once the payment app answers unavailable, the rest of the pass skips ledger
// lookups rather than keep its breaker open.
func (r *Reconciler) checkOrders(ctx context.Context, now time.Time, cases map[string]*orderCase, p *passResult) []Finding {
	ids := make([]string, 0, len(cases))
	for id := range cases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var (
		mu          sync.Mutex
		found       []Finding
		paymentDown bool
		skipped     int
		wg          sync.WaitGroup
	)
	sem := make(chan struct{}, r.cfg.Concurrency)
	for _, id := range ids {
		c := cases[id]
		if ctx.Err() != nil {
			mu.Lock()
			p.errorf("pass stopped before order %s: %v", id, ctx.Err())
			mu.Unlock()
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o, _, err := r.orders.Get(ctx, id)
			switch {
			case errors.Is(err, order.ErrNotFound):
			case err != nil:
				mu.Lock()
				p.errorf("order %s: %v", id, err)
				mu.Unlock()
				return
			default:
				c.Order = &o
			}
			if needsLedger(c.Order) {
				mu.Lock()
				down := paymentDown
				if down {
					skipped++
				}
				mu.Unlock()
				if !down {
					l, err := r.payments.Ledger(ctx, id)
					mu.Lock()
					switch {
					case err == nil:
						c.Ledger = &l
					case problem.CodeOf(err) == problem.CodeUnavailable:
						paymentDown = true
						p.errorf("payment ledger of order %s: %v (ledger lookups skipped for the rest of the pass)", id, err)
					default:
						p.errorf("payment ledger of order %s: %v", id, err)
					}
					mu.Unlock()
				}
			}
			fs := checkOrder(now, r.w, *c)
			mu.Lock()
			p.orders++
			found = append(found, fs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if skipped > 0 {
		p.errorf("payment unavailable: money of %d orders not checked", skipped)
	}
	return found
}

// repair applies f's repair. Every repair is idempotent, so a pass that overlaps another
// (an expired lease taken over) repeats it harmlessly.
func (r *Reconciler) repair(ctx context.Context, now time.Time, f Finding, c *orderCase, p *passResult) error {
	switch f.Repair {
	case ActionReleaseHold:
		if err := r.stock.Release(ctx, f.DealID, f.OrderID); err != nil {
			return err
		}
		if c.Order == nil {
			// The one race left: a retry of the placement, resumed with the same order id,
			// reserved (a replay, so the hold looked old) before the release and created
			// the order after it. Look once more, so that it is reported, not lost.
			if o, _, err := r.orders.Get(ctx, f.OrderID); err == nil && o.Status == order.StatusPending {
				p.findings = append(p.findings, Finding{Kind: KindPendingWithoutHold, DealID: f.DealID, OrderID: f.OrderID,
					Detail: "the order was created while the reconciler released its orphaned hold"})
				r.findings.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(KindPendingWithoutHold))))
			}
		}
		return nil
	case ActionRefundCharge:
		return r.payments.Refund(ctx, f.OrderID)
	case ActionRequeue:
		o := c.Order
		return r.pending.Add(ctx, order.PendingEntry{OrderID: o.ID, UserID: o.UserID, DealID: o.DealID, Due: now})
	}
	return fmt.Errorf("unknown repair %q", f.Repair)
}
