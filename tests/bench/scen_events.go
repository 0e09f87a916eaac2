package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// scenarioS5: order paid → notification readable. The event path is measured at the rate the
// issue asks (--s5-rate) when the pay path can carry it, else at what it can: a short
// closed-loop probe of payments (c=--concurrency/2, on orders of a deal of its own) measures
// the pay path first, and the measured phase runs open loop at min(--s5-rate, 0.8 × that), so
// the latency is the event path's, not a queue in front of an overloaded pay call. Orders are
// placed first (setup); a poller watches the owners' inboxes in Redis (the inbox's ETag first,
// the document only when it changed) and records when each order.paid notification is there,
// measured from the moment the pay call answered.
func (b *bench) scenarioS5(ctx context.Context) error {
	const scen = "S5"
	tokens := map[string]string{}
	w := newInboxWatcher()
	stopWatch := make(chan struct{})
	watchDone := make(chan error, 1)
	go func() { watchDone <- w.run(ctx, b, stopWatch) }()
	stopWatching := func() error {
		close(stopWatch)
		return <-watchDone
	}
	// pay places n orders on a deal of their own, then pays them at rate (0: closed loop).
	type phase struct {
		deal   string
		m      Measurement
		orders int
	}
	pay := func(n int, conc int, rate float64, dur time.Duration) (phase, error) {
		if err := b.ensureUsers(ctx, max(b.cfg.Users, n/maxPerUser+1)); err != nil {
			return phase{}, err
		}
		for _, u := range b.users {
			tokens[u.ID] = u.Token
		}
		d, err := b.seed.flashDeal(ctx, n)
		if err != nil {
			return phase{}, err
		}
		orders, err := b.placeOrders(ctx, d.ID, n, scen)
		if err != nil {
			return phase{}, err
		}
		var next atomic.Int64
		t := &loadTarget{
			Name: "S5 pay",
			Next: func(t *vegeta.Target) error {
				i := int(next.Add(1) - 1)
				if i >= len(orders) {
					return errBudget
				}
				o := orders[i]
				t.Method, t.URL = http.MethodPost, b.stack.GatewayURL()+"/orders/"+o.ID+"/pay"
				t.Body = []byte(`{"payment_token":"tok_ok"}`)
				t.Header = http.Header{"Authorization": {"Bearer " + tokens[o.UserID]}, "Content-Type": {"application/json"}}
				return nil
			},
			Classify: expect("", http.StatusOK),
			OnResult: func(r *vegeta.Result, label string) {
				if label != "" {
					return
				}
				id := orderIDOfPayURL(r.URL)
				if o, ok := b.ledger.get(id); ok {
					w.expect(o.UserID, id, r.End())
				}
			},
		}
		m := b.platformMeter().measure(ctx, func() Summary { return attack(ctx, t, conc, rate, dur) })
		return phase{deal: d.ID, m: m, orders: len(orders)}, nil
	}
	// settle waits for the notifications still on their way (up to a minute).
	settle := func() {
		wait := time.Now().Add(60 * time.Second)
		for w.pending() > 0 && time.Now().Before(wait) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}

	probeDur := min(3*time.Second, b.cfg.Duration)
	probeConc := max(b.cfg.Conc/2, 1)
	// Enough orders for the probe at the baseline's pace would be wasteful to place; the pay
	// path is no faster than placement's order of magnitude, so a few hundred suffice and the
	// probe ends early (budget) if it is faster.
	probe, err := pay(min(max(b.cfg.S5Rate, 40), 400), probeConc, 0, probeDur)
	if err != nil {
		_ = stopWatching()
		return err
	}
	settle()
	w.resetLatencies()
	capacity := probe.m.OKPerSec
	rate := float64(b.cfg.S5Rate)
	limited := false
	if 0.8*capacity < rate {
		rate, limited = max(math.Floor(0.8*capacity), 1), true
	}
	b.logf("  pay path probe: %.0f payments/s at c=%d (%s); measuring at %.0f/s", capacity, probeConc, oneLine(probe.m.Summary), rate)
	n := int(rate*b.cfg.Duration.Seconds()) + int(rate/10) + 1
	main, err := pay(n, 0, rate, b.cfg.Duration)
	if err != nil {
		_ = stopWatching()
		return err
	}
	m := main.m
	settle()
	if err := stopWatching(); err != nil {
		return err
	}
	lat, missing := w.result()
	p50, p99 := quantile(lat, 0.5), quantile(lat, 0.99)
	note := fmt.Sprintf("paid %d at %.0f/s offered; notification latency p50 %.1fms p99 %.1fms (%d never arrived within 60s)",
		m.OK, m.OfferedRate, ms(p50), ms(p99), missing)
	if limited {
		note += fmt.Sprintf("; the pay path carried %.0f/s at c=%d (probe), so the %d/s the target asks was not offered", capacity, probeConc, b.cfg.S5Rate)
	}
	b.report.addMeasurement(scen, "platform: POST /orders/{id}/pay (latency: the pay call)", "S5", m, note)
	b.report.addMeasurement(scen, "platform: POST /orders/{id}/pay, closed-loop probe", "S5.probe", probe.m, "")
	b.report.Rows = append(b.report.Rows, Row{Scenario: scen, Target: "order paid → notification in the inbox", Load: fmt.Sprintf("%.0f/s", rate),
		OKPerSec: float64(len(lat)) / max(m.Seconds, 1e-9), P50MS: ms(p50), P95MS: ms(quantile(lat, 0.95)), P99MS: ms(p99),
		Errors: fmt.Sprintf("%d missing", missing), Sustainable: -1, Note: "inbox polled in Redis every 5ms"})
	if len(lat) > 0 {
		// No notification, no latency: the target stays "not measured" rather than met at 0.
		b.report.set("S5.p50_ms", ms(p50))
		b.report.set("S5.p99_ms", ms(p99))
		b.report.set("S5.rate", m.SentRate)
	}
	b.report.set("S5.pay_capacity", capacity)
	b.report.set("S5.missing", float64(missing))
	b.logf("  %s", note)
	if m.OK == 0 {
		b.report.Checks = append(b.report.Checks, fail(scen, "scenario ran", "no payment succeeded at %.0f/s offered: %s", m.OfferedRate, oneLine(m.Summary)))
	}
	if missing > 0 {
		b.report.Checks = append(b.report.Checks, fail(scen, "every paid order notified", "%d of %d order.paid notifications never reached the inbox", missing, missing+len(lat)))
	} else {
		b.report.Checks = append(b.report.Checks, pass(scen, "every paid order notified", "%d notifications (probe included)", len(w.paidIDs())))
	}
	// Paid orders end confirmed (a flash order goes paid → confirmed at once), the rest stay
	// pending: held + sold still equals the orders' units.
	paid := map[string]bool{}
	for _, id := range w.paidIDs() {
		paid[id] = true
	}
	for _, d := range []string{probe.deal, main.deal} {
		b.report.Checks = append(b.report.Checks, waitCheck(ctx, time.Minute, func() []Check {
			cs := checkFlashDeal(ctx, b.stack.Redis, scen, d, b.ledger, []string{"pending_payment", "paid", "confirmed"})
			return append(cs, b.checkPaidConfirmed(ctx, scen, d, paid)...)
		})...)
	}
	return nil
}

// waitInvocable waits until three calls in a row from the gateway's sidecar reach app's
// /healthz.
func (b *bench) waitInvocable(ctx context.Context, app string, timeout time.Duration) error {
	c := newAPI(b.stack.App("gateway").DaprHTTPURL() + "/v1.0/invoke/" + app + "/method")
	hdr := map[string]string{"dapr-api-token": b.stack.DaprToken()}
	deadline := time.Now().Add(timeout)
	ok := 0
	for ok < 3 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.do(rctx, http.MethodGet, "/healthz", "", hdr, nil, http.StatusOK, nil)
		cancel()
		switch {
		case err == nil:
			ok++
		case time.Now().After(deadline):
			return fmt.Errorf("%s not reachable through the sidecars after its restart: %w", app, err)
		default:
			ok = 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// checkPaidConfirmed checks that every order whose payment was answered 200 is confirmed, and
// that the deal's sold units are the units of its confirmed orders (a payment answered with
// an error may still have gone through; the store decides).
func (b *bench) checkPaidConfirmed(ctx context.Context, scen, dealID string, paid map[string]bool) []Check {
	orders, _, _, _ := b.ledger.deal(dealID)
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	stored, err := readOrders(ctx, b.stack.Redis, ids)
	if err != nil {
		return []Check{fail(scen, "paid orders confirmed", "%v", err)}
	}
	notConfirmed, confirmedUnits, confirmed := 0, 0, 0
	statuses := map[string]int{}
	for _, o := range orders {
		s := stored[o.ID]
		statuses[s.Status]++
		if s.Status == "confirmed" {
			confirmed++
			confirmedUnits += s.Quantity
		} else if paid[o.ID] {
			notConfirmed++
		}
	}
	lv, err := readStock(ctx, b.stack.Redis, dealID)
	if err != nil {
		return []Check{fail(scen, "paid orders confirmed", "%v", err)}
	}
	if notConfirmed > 0 || lv.Sold != confirmedUnits {
		return []Check{fail(scen, "paid orders confirmed, sold == confirmed units", "%d of %d orders paid with a 200 are not confirmed; sold %d, confirmed orders hold %d units; orders by status %v",
			notConfirmed, len(paid), lv.Sold, confirmedUnits, statuses)}
	}
	return []Check{pass(scen, "paid orders confirmed, sold == confirmed units", "%d paid with a 200, %d confirmed in all, %d units sold", len(paid), confirmed, lv.Sold)}
}

func orderIDOfPayURL(u string) string {
	_, rest, _ := strings.Cut(u, "/orders/")
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// inboxWatcher waits for order.paid notifications to show up in their owners' inboxes.
type inboxWatcher struct {
	mu      sync.Mutex
	waiting map[string]map[string]time.Time // user → order → paid at
	seenVer map[string]string               // user → last inbox version looked at
	lat     []time.Duration
	paid    []string
}

func newInboxWatcher() *inboxWatcher {
	return &inboxWatcher{waiting: map[string]map[string]time.Time{}, seenVer: map[string]string{}}
}

func (w *inboxWatcher) expect(user, orderID string, paidAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting[user] == nil {
		w.waiting[user] = map[string]time.Time{}
	}
	w.waiting[user][orderID] = paidAt
	w.paid = append(w.paid, orderID)
	delete(w.seenVer, user) // look at the inbox again: the notice may already be there
}

// resetLatencies forgets the latencies recorded so far (a probe's), keeping what is awaited.
func (w *inboxWatcher) resetLatencies() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lat = nil
}

func (w *inboxWatcher) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.waiting {
		n += len(m)
	}
	return n
}

func (w *inboxWatcher) paidIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.paid)
}

func (w *inboxWatcher) result() ([]time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lat := slices.Clone(w.lat)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	missing := 0
	for _, m := range w.waiting {
		missing += len(m)
	}
	return lat, missing
}

// run polls every 5ms until stop closes.
func (w *inboxWatcher) run(ctx context.Context, b *bench, stop <-chan struct{}) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		w.mu.Lock()
		users := make([]string, 0, len(w.waiting))
		for u, m := range w.waiting {
			if len(m) > 0 {
				users = append(users, u)
			}
		}
		w.mu.Unlock()
		if len(users) == 0 {
			continue
		}
		vers, err := inboxVersions(ctx, b.stack.Redis, users)
		if err != nil {
			return err
		}
		for _, u := range users {
			w.mu.Lock()
			changed := vers[u] != "" && vers[u] != w.seenVer[u]
			w.mu.Unlock()
			if !changed {
				continue
			}
			ids, err := inboxIDs(ctx, b.stack.Redis, u)
			if err != nil {
				return err
			}
			now := time.Now()
			w.mu.Lock()
			w.seenVer[u] = vers[u]
			for orderID, paidAt := range w.waiting[u] {
				if ids[notificationID(orderID, "order.paid")] {
					w.lat = append(w.lat, max(now.Sub(paidAt), 0))
					delete(w.waiting[u], orderID)
				}
			}
			w.mu.Unlock()
		}
	}
}

// scenarioS6: expiry. The order app is restarted with a short pay window (--s6-window), N
// orders are placed and left unpaid, and the deal's counters are sampled until every unit is
// back. Lateness, per unit: the k-th unit released against the k-th earliest pay_by (units
// are interchangeable, so this is when stock due back was available again); and per order,
// from its document: pay_by → the cancellation's updated_at.
func (b *bench) scenarioS6(ctx context.Context) error {
	const scen = "S6"
	n := b.cfg.S6Orders
	b.logf("  restarting the order app with PAY_WINDOW=%s", b.cfg.S6Window)
	if err := b.stack.restartApp(ctx, "order", map[string]string{"PAY_WINDOW": b.cfg.S6Window.String()}); err != nil {
		return fmt.Errorf("restart order: %w", err)
	}
	// Ready is not reachable: the order's sidecar refuses invocations until its app health
	// probe (every 5s) has passed. Wait until calls go through the gateway's sidecar again.
	if err := b.waitInvocable(ctx, "order", time.Minute); err != nil {
		return err
	}
	d, err := b.seed.flashDeal(ctx, n)
	if err != nil {
		return err
	}
	// Sample from before the first order: each sample is (time, units released so far).
	type sample struct {
		at       time.Time
		released int
	}
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Units released = units taken so far (orders answered 201) - units held. The
			// ledger is read first: an order answered in between is held but not counted,
			// which undercounts releases for a moment rather than inventing one.
			placed := b.ledger.units(d.ID)
			if placed == 0 {
				continue
			}
			lv, err := readStock(ctx, b.stack.Redis, d.ID)
			if err != nil {
				continue
			}
			mu.Lock()
			samples = append(samples, sample{at: time.Now(), released: placed - lv.Reserved - lv.Sold})
			mu.Unlock()
		}
	}()
	orders, err := b.placeOrders(ctx, d.ID, n, scen)
	if err != nil {
		close(stop)
		<-sampled
		return err
	}
	var lastDue time.Time
	dues := make([]time.Time, 0, len(orders))
	for _, o := range orders {
		dues = append(dues, o.PayBy)
		if o.PayBy.After(lastDue) {
			lastDue = o.PayBy
		}
	}
	slices.SortFunc(dues, func(a, b time.Time) int { return a.Compare(b) })
	b.logf("  %d orders placed, due between %s and %s; waiting for their stock", len(orders), dues[0].Format(time.TimeOnly), lastDue.Format(time.TimeOnly))
	giveUp := lastDue.Add(b.cfg.S6Wait)
	for ctx.Err() == nil && time.Now().Before(giveUp) {
		mu.Lock()
		done := len(samples) > 0 && samples[len(samples)-1].released >= len(orders)
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	<-sampled

	// Per unit: the first sample at which k units were back, against the k-th pay_by.
	var unitLate []time.Duration
	si := 0
	for k := 1; k <= len(dues); k++ {
		for si < len(samples) && samples[si].released < k {
			si++
		}
		if si == len(samples) {
			break
		}
		unitLate = append(unitLate, max(samples[si].at.Sub(dues[k-1]), 0))
	}
	notBack := len(dues) - len(unitLate)
	slices.Sort(unitLate)
	// Per order: pay_by → the cancelled document's updated_at.
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	stored, err := readOrders(ctx, b.stack.Redis, ids)
	if err != nil {
		return err
	}
	var orderLate []time.Duration
	for _, o := range orders {
		if s, ok := stored[o.ID]; ok && s.Status == "cancelled" {
			orderLate = append(orderLate, max(s.UpdatedAt.Sub(o.PayBy), 0))
		}
	}
	slices.Sort(orderLate)
	p50, p99 := quantile(unitLate, 0.5), quantile(unitLate, 0.99)
	if notBack > 0 {
		// Units never back count as late as the wait: p99 is then a lower bound.
		for range notBack {
			unitLate = append(unitLate, time.Since(lastDue))
		}
		slices.Sort(unitLate)
		p50, p99 = quantile(unitLate, 0.5), quantile(unitLate, 0.99)
	}
	b.report.set("S6.p50_s", p50.Seconds())
	b.report.set("S6.p99_s", p99.Seconds())
	b.report.extra("S6", map[string]any{"orders": len(orders), "pay_window": b.cfg.S6Window.String(), "due_first": dues[0], "due_last": lastDue,
		"units_not_back": notBack, "stock_back_p50_s": p50.Seconds(), "stock_back_p99_s": p99.Seconds(),
		"cancelled": len(orderLate), "cancel_p50_s": quantile(orderLate, 0.5).Seconds(), "cancel_p99_s": quantile(orderLate, 0.99).Seconds()})
	note := fmt.Sprintf("lateness pay_by → stock back (latency columns); %d of %d units back; order cancelled: p50 %.1fs p99 %.1fs (%d orders)",
		len(dues)-notBack, len(dues), quantile(orderLate, 0.5).Seconds(), quantile(orderLate, 0.99).Seconds(), len(orderLate))
	b.report.Rows = append(b.report.Rows, Row{Scenario: scen, Target: fmt.Sprintf("expiry of %d unpaid orders", len(orders)),
		Load: "window " + b.cfg.S6Window.String(), P50MS: ms(p50), P95MS: ms(quantile(unitLate, 0.95)), P99MS: ms(p99),
		Errors: fmt.Sprintf("%d not back", notBack), Sustainable: -1, Note: note})
	b.logf("  %s", note)
	b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, d.ID, b.ledger, []string{"pending_payment", "cancelled"})...)
	return nil
}
