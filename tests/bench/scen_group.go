package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// groupAnswer is a 201 answer to an open or a join.
type groupAnswer struct {
	Group struct {
		ID        string    `json:"id"`
		DealID    string    `json:"deal_id"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"group"`
	Order orderAnswer `json:"order"`
}

// groupBook records the groups and members the bench was answered for.
type groupBook struct {
	mu     sync.Mutex
	groups map[string]groupExpect
	ids    []string          // in opening order
	deal   map[string]string // group → deal
}

func newGroupBook() *groupBook {
	return &groupBook{groups: map[string]groupExpect{}, deal: map[string]string{}}
}

func (g *groupBook) dealOf(groupID string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.deal[groupID]
}

func (g *groupBook) add(a groupAnswer, open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, seen := g.groups[a.Group.ID]
	if open && !seen {
		g.ids = append(g.ids, a.Group.ID)
		g.deal[a.Group.ID] = a.Group.DealID
	}
	e.Members = append(e.Members, a.Order.ID)
	g.groups[a.Group.ID] = e
}

func (g *groupBook) expect(status string) map[string]groupExpect {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]groupExpect{}
	for id, e := range g.groups {
		e.Status = status
		out[id] = e
	}
	return out
}

// recordSeat is an OnResult for opens and joins: the group and the member order go to the
// book and the ledger; a request whose outcome is open is kept for a replay with its
// Idempotency-Key (build rebuilds it from its sequence number).
func (b *bench) recordSeat(book *groupBook, open bool, build func(int64, *vegeta.Target) error) func(*vegeta.Result, string) {
	created := func(body []byte, _ time.Time) {
		var a groupAnswer
		if err := json.Unmarshal(body, &a); err == nil && a.Group.ID != "" {
			book.add(a, open)
			o := a.Order
			b.ledger.add(placedOrder{ID: o.ID, UserID: o.UserID, DealID: o.DealID, GroupID: a.Group.ID, Qty: max(o.Quantity, 1), PayBy: o.PayBy})
		}
	}
	return func(r *vegeta.Result, label string) {
		if label == "" && r.Code == http.StatusCreated {
			created(r.Body, r.End())
			return
		}
		if !openOutcome(r) {
			return
		}
		deal := dealOfURL(r.URL) // an open: /deals/{id}/groups
		if !open {
			_, rest, _ := strings.Cut(r.URL, "/groups/")
			id, _, _ := strings.Cut(rest, "/")
			deal = book.dealOf(id)
		}
		var t vegeta.Target
		if i, ok := seqOf(r.URL); ok && build(i, &t) == nil {
			b.ledger.addOpen(openRequest{Deal: deal, Target: t, Created: created})
			return
		}
		b.ledger.addUnknown(deal, 1)
	}
}

// openGroups opens n groups, group i on deal i/perDeal led by user i mod perDeal (a group
// deal takes one seat per user), at the reference concurrency (setup: not measured).
func (b *bench) openGroups(ctx context.Context, deals []string, perDeal, n int, book *groupBook, scen string) error {
	var issued atomic.Int64
	prefix := b.key(scen)
	build := func(i int64, t *vegeta.Target) error {
		u := b.users[int(i)%perDeal]
		t.Method, t.Body = http.MethodPost, []byte(`{}`)
		t.URL = withSeq(b.stack.GatewayURL()+"/deals/"+deals[int(i)/perDeal]+"/groups", i)
		t.Header = http.Header{"Authorization": {"Bearer " + u.Token}, "Idempotency-Key": {prefix + "-" + strconv.FormatInt(i, 10)},
			"Content-Type": {"application/json"}}
		return nil
	}
	t := &loadTarget{
		Name: scen + " open groups",
		Next: func(t *vegeta.Target) error {
			i := issued.Add(1) - 1
			if i >= int64(n) {
				return errDone
			}
			return build(i, t)
		},
		Classify: expect("", http.StatusCreated),
		OnResult: b.recordSeat(book, true, build),
	}
	t0 := time.Now()
	// Opening is setup, not the measurement: at the reference concurrency the order app's
	// admission limit refuses part of the member placements (503 unavailable), and a
	// scenario that cannot open its groups measures nothing.
	s := attack(ctx, t, min(b.cfg.Conc, setupConcurrency), 0, 30*time.Minute)
	b.resolveOpen(ctx)
	book.mu.Lock()
	opened := len(book.ids)
	book.mu.Unlock()
	b.logf("  %s: %d groups opened in %.1fs: %s", scen, opened, time.Since(t0).Seconds(), oneLine(s))
	if opened < n {
		return fmt.Errorf("%s: opened %d of %d groups (%v)", scen, opened, n, s.Errors)
	}
	return nil
}

// setupConcurrency bounds the requests in flight while a scenario builds its state (groups to
// join or to expire): below the order app's admission limit (ADMISSION_LIMIT, 32).
const setupConcurrency = 16

// groupDeals creates ceil(n/perDeal) group deals.
func (b *bench) groupDeals(ctx context.Context, n, perDeal, size int, ttl time.Duration) ([]string, error) {
	var deals []string
	for range (n + perDeal - 1) / perDeal {
		d, err := b.seed.groupDeal(ctx, perDeal*size, size, ttl)
		if err != nil {
			return nil, err
		}
		deals = append(deals, d.ID)
	}
	return deals, nil
}

// s4GroupsPerDeal is how many of S4's open groups share a deal. A group deal takes one seat
// per user, so a deal's joins are bounded by the users; spreading the groups over deals
// multiplies the joins the seeded users can make (rounds of one join per group, each by a
// user new to that deal).
const s4GroupsPerDeal = 20

// scenarioS4: group joins spread over --groups open groups (seats per second, with the sweep
// and the search at the group objective); a few small groups filled and paid, to see success
// settle; and --deadline-groups groups left to fail at their deadline, whose lateness is
// read from the actors' state.
func (b *bench) scenarioS4(ctx context.Context) error {
	const scen = "S4"
	g := b.cfg.Groups
	perDeal := min(s4GroupsPerDeal, g)
	if err := b.ensureUsers(ctx, 2*perDeal); err != nil {
		return err
	}
	deals, err := b.groupDeals(ctx, g, perDeal, 100, time.Hour)
	if err != nil {
		return err
	}
	book := newGroupBook()
	if err := b.openGroups(ctx, deals, perDeal, g, book, scen); err != nil {
		return err
	}
	book.mu.Lock()
	groups := slices.Clone(book.ids)
	book.mu.Unlock()
	// Opens answer in any order: index the groups by their deal and place within it again.
	byDeal := map[string][]string{}
	for _, id := range groups {
		d := book.dealOf(id)
		byDeal[d] = append(byDeal[d], id)
	}
	var ordered []string
	for _, d := range deals {
		ordered = append(ordered, byDeal[d]...)
	}

	// Join k goes to group k mod G; in round r = k / G the j-th group of a deal is joined by
	// user perDeal + r*perDeal + j: new to that deal, never one of its leaders (users
	// 0..perDeal-1), and one seat per user per deal.
	users := len(b.users)
	rounds := min(99, (users-perDeal)/perDeal)
	var k atomic.Int64
	prefix := b.key(scen)
	build := func(i64 int64, t *vegeta.Target) error {
		i := int(i64)
		gi, round := i%len(ordered), i/len(ordered)
		if round >= rounds {
			return errBudget
		}
		u := b.users[perDeal+round*perDeal+gi%perDeal]
		t.Method, t.Body = http.MethodPost, []byte(`{}`)
		t.URL = withSeq(b.stack.GatewayURL()+"/groups/"+ordered[gi]+"/join", i64)
		t.Header = http.Header{"Authorization": {"Bearer " + u.Token}, "Idempotency-Key": {prefix + "-" + strconv.Itoa(i)},
			"Content-Type": {"application/json"}}
		return nil
	}
	t := &loadTarget{
		Name:     "S4 joins",
		Next:     func(t *vegeta.Target) error { return build(k.Add(1)-1, t) },
		Classify: expect("", http.StatusCreated),
		OnResult: b.recordSeat(book, false, build),
	}
	o := b.opts(true)
	o.SLO = b.cfg.GroupSLO
	prof := profile(ctx, t, b.platformMeter(), o, b.logf)
	b.report.addProfile(scen, fmt.Sprintf("platform: joins over %d open groups", g), "S4", &prof,
		fmt.Sprintf("%d groups on %d deals, at most %d joins with %d users; %s", g, len(deals), rounds*g, users, pathNote(prof.Main)))
	b.report.setSustainable("S4.sustainable", &prof)
	b.report.set("S4.okps", prof.Main.OKPerSec)
	b.report.set("S4.p95", prof.Main.P95MS)
	b.report.set("S4.cpu_ms", prof.Main.CPUPerOKMS)
	if err := b.stack.Dead(); err != nil {
		return err
	}
	b.resolveOpen(ctx)
	b.report.Checks = append(b.report.Checks, checkGroups(ctx, b.stack.Redis, scen, book.expect("open"), 30*time.Second)...)
	b.report.Checks = append(b.report.Checks, checkDeals(ctx, b.stack.Redis, scen, "join deals", deals, b.ledger, []string{"pending_payment"})...)

	// The floor is the yardstick of the joins (issue 11), measured once per run.
	if err := b.floor(ctx); err != nil {
		return err
	}
	if err := b.s4Succeed(ctx, scen); err != nil {
		return err
	}
	return b.s4Deadlines(ctx, scen)
}

// s4Succeed fills two groups of 2 and pays every seat: both must succeed and confirm.
func (b *bench) s4Succeed(ctx context.Context, scen string) error {
	deal, err := b.seed.groupDeal(ctx, 100, 2, 10*time.Minute)
	if err != nil {
		return err
	}
	book := newGroupBook()
	var paid []placedOrder
	for i := range 2 {
		lead, member := b.users[(2*i)%len(b.users)], b.users[(2*i+1)%len(b.users)]
		var a groupAnswer
		if err := b.api.do(ctx, http.MethodPost, "/deals/"+deal.ID+"/groups", lead.Token, map[string]string{"Idempotency-Key": b.key(scen)}, map[string]any{}, http.StatusCreated, &a); err != nil {
			return err
		}
		book.add(a, true)
		b.ledger.add(placedOrder{ID: a.Order.ID, UserID: lead.ID, DealID: deal.ID, GroupID: a.Group.ID, Qty: 1})
		paid = append(paid, placedOrder{ID: a.Order.ID, UserID: lead.ID})
		var j groupAnswer
		if err := b.api.do(ctx, http.MethodPost, "/groups/"+a.Group.ID+"/join", member.Token, map[string]string{"Idempotency-Key": b.key(scen)}, map[string]any{}, http.StatusCreated, &j); err != nil {
			return err
		}
		book.add(j, false)
		b.ledger.add(placedOrder{ID: j.Order.ID, UserID: member.ID, DealID: deal.ID, GroupID: a.Group.ID, Qty: 1})
		paid = append(paid, placedOrder{ID: j.Order.ID, UserID: member.ID})
	}
	tokens := map[string]string{}
	for _, u := range b.users {
		tokens[u.ID] = u.Token
	}
	for _, o := range paid {
		if err := b.api.do(ctx, http.MethodPost, "/orders/"+o.ID+"/pay", tokens[o.UserID], nil, map[string]string{"payment_token": "tok_ok"}, http.StatusOK, nil); err != nil {
			return fmt.Errorf("pay group order: %w", err)
		}
	}
	b.report.Checks = append(b.report.Checks, checkGroups(ctx, b.stack.Redis, scen+" filled", book.expect("succeeded"), time.Minute)...)
	b.report.Checks = append(b.report.Checks, waitCheck(ctx, time.Minute, func() []Check {
		return checkFlashDeal(ctx, b.stack.Redis, scen+" filled", deal.ID, b.ledger, []string{"confirmed"})
	})...)
	return nil
}

// waitCheck repeats check until it passes or timeout ends (for outcomes that settle
// asynchronously) and returns its last result.
func waitCheck(ctx context.Context, timeout time.Duration, check func() []Check) []Check {
	deadline := time.Now().Add(timeout)
	for {
		cs := check()
		ok := true
		for _, c := range cs {
			ok = ok && c.OK
		}
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			return cs
		}
		time.Sleep(time.Second)
	}
}

// s4Deadlines opens --deadline-groups groups with a --deadline-ttl deadline and nobody
// joining, waits until each has been decided, and reports how late after expires_at each was
// closed (the actor state's closed_at).
func (b *bench) s4Deadlines(ctx context.Context, scen string) error {
	n := b.cfg.DLGroups
	perDeal := min(n, len(b.users))
	deals, err := b.groupDeals(ctx, n, perDeal, 100, b.cfg.DLTTL)
	if err != nil {
		return err
	}
	book := newGroupBook()
	t0 := time.Now()
	if err := b.openGroups(ctx, deals, perDeal, n, book, scen+" deadlines"); err != nil {
		return err
	}
	openFor := time.Since(t0)
	book.mu.Lock()
	ids := slices.Clone(book.ids)
	book.mu.Unlock()
	wait := b.cfg.DLTTL + 2*time.Minute
	b.logf("  %d groups opened over %.1fs; waiting up to %s for their deadlines", len(ids), openFor.Seconds(), wait)
	deadline := time.Now().Add(wait)
	var states map[string]storedGroup
	for {
		states, err = readGroups(ctx, b.stack.Redis, ids)
		if err != nil {
			return err
		}
		open := 0
		for _, id := range ids {
			if states[id].Status == "open" {
				open++
			}
		}
		if open == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	var late []time.Duration
	counts := map[string]int{}
	for _, id := range ids {
		st := states[id]
		counts[st.Status]++
		closed := st.ClosedAt
		if closed == nil {
			closed = st.DeadlineFiredAt
		}
		if st.Status != "open" && closed != nil {
			late = append(late, max(closed.Sub(st.ExpiresAt), 0))
		}
	}
	slices.Sort(late)
	p50, p99 := quantile(late, 0.5), quantile(late, 0.99)
	b.report.set("S4.deadline_p50_s", p50.Seconds())
	b.report.set("S4.deadline_p99_s", p99.Seconds())
	b.report.extra("S4.deadlines", map[string]any{"groups": len(ids), "opened_over_s": openFor.Seconds(), "by_status": counts,
		"lateness_p50_s": p50.Seconds(), "lateness_p99_s": p99.Seconds(), "max_s": quantile(late, 1).Seconds()})
	b.report.Rows = append(b.report.Rows, Row{Scenario: scen, Target: fmt.Sprintf("deadlines: %d groups, ttl %s", len(ids), b.cfg.DLTTL),
		Load: fmt.Sprintf("%d groups", len(ids)), P50MS: ms(p50), P95MS: ms(quantile(late, 0.95)), P99MS: ms(p99), Errors: "0", Sustainable: -1,
		Note: fmt.Sprintf("lateness after expires_at (latency columns); ended: %d failed, %d succeeded, %d still open", counts["failed"], counts["succeeded"], counts["open"])})
	b.logf("  deadlines: %v, lateness p50 %.2fs p99 %.2fs", counts, p50.Seconds(), p99.Seconds())
	b.report.Checks = append(b.report.Checks, checkGroups(ctx, b.stack.Redis, scen+" deadlines", book.expect("failed"), time.Minute)...)
	b.report.Checks = append(b.report.Checks, waitCheck(ctx, time.Minute, func() []Check {
		return checkDeals(ctx, b.stack.Redis, scen+" deadlines", "deadline deals", deals, b.ledger, []string{"pending_payment", "cancelled"})
	})...)
	return nil
}

// quantile of sorted durations (0 when empty).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}
