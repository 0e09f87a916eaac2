package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
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
	ids    []string // in opening order
	opened map[string]time.Time
	expiry map[string]time.Time
}

func newGroupBook() *groupBook {
	return &groupBook{groups: map[string]groupExpect{}, opened: map[string]time.Time{}, expiry: map[string]time.Time{}}
}

func (g *groupBook) add(a groupAnswer, at time.Time, open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, seen := g.groups[a.Group.ID]
	if open && !seen {
		g.ids = append(g.ids, a.Group.ID)
		g.opened[a.Group.ID] = at
		g.expiry[a.Group.ID] = a.Group.ExpiresAt
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
// book and the ledger.
func (b *bench) recordSeat(book *groupBook, open bool) func(*vegeta.Result, string) {
	return func(r *vegeta.Result, label string) {
		if label == "" && r.Code == http.StatusCreated {
			var a groupAnswer
			if err := json.Unmarshal(r.Body, &a); err == nil && a.Group.ID != "" {
				book.add(a, r.End(), open)
				o := a.Order
				b.ledger.add(placedOrder{ID: o.ID, UserID: o.UserID, DealID: o.DealID, GroupID: a.Group.ID, Qty: max(o.Quantity, 1), PayBy: o.PayBy, At: r.End()})
				return
			}
		}
		if unknownOutcome(r) {
			b.ledger.addUnknown(b.currentGroupDeal, 1)
		}
	}
}

// openGroups opens n groups of a deal, leader i being user i mod U, at the reference
// concurrency (setup: not measured).
func (b *bench) openGroups(ctx context.Context, dealID string, n int, book *groupBook, scen string) error {
	var issued atomic.Int64
	prefix := b.key(scen)
	t := &loadTarget{
		Name: scen + " open groups",
		Next: func(t *vegeta.Target) error {
			i := issued.Add(1) - 1
			if i >= int64(n) {
				return errDone
			}
			u := b.users[int(i)%len(b.users)]
			t.Method, t.URL, t.Body = http.MethodPost, b.stack.GatewayURL()+"/deals/"+dealID+"/groups", []byte(`{}`)
			t.Header = http.Header{"Authorization": {"Bearer " + u.Token}, "Idempotency-Key": {prefix + "-" + strconv.FormatInt(i, 10)},
				"Content-Type": {"application/json"}}
			return nil
		},
		Classify: expect("", http.StatusCreated),
		OnResult: b.recordSeat(book, true),
	}
	b.currentGroupDeal = dealID
	t0 := time.Now()
	s := attack(ctx, t, b.cfg.Conc, 0, 30*time.Minute)
	b.logf("  %s: %d groups opened in %.1fs: %s", scen, s.OK, time.Since(t0).Seconds(), oneLine(s))
	if s.OK < n {
		return fmt.Errorf("%s: opened %d of %d groups (%v)", scen, s.OK, n, s.Errors)
	}
	return nil
}

// scenarioS4: group joins spread over --groups open groups (seats per second, with the sweep
// and the search at the group objective); a few small groups filled and paid, to see success
// settle; and --deadline-groups groups left to fail at their deadline, whose lateness is
// read from the actors' state.
func (b *bench) scenarioS4(ctx context.Context) error {
	const scen = "S4"
	g := b.cfg.Groups
	// Each user leads about g/U groups and joins others; the deal allows 100 units a user.
	if err := b.ensureUsers(ctx, max(b.cfg.Users, g/50+2)); err != nil {
		return err
	}
	deal, err := b.seed.groupDeal(ctx, 1_000_000, 100, time.Hour)
	if err != nil {
		return err
	}
	book := newGroupBook()
	if err := b.openGroups(ctx, deal.ID, g, book, scen); err != nil {
		return err
	}
	book.mu.Lock()
	groups := slices.Clone(book.ids)
	book.mu.Unlock()

	// Join k goes to group k mod G, by the user after the leader shifted by the round: a user
	// never joins a group twice, and stays within 100 seats of the deal.
	users := len(b.users)
	leadsPerUser := (g + users - 1) / users
	rounds := min(99, users-1, (maxPerUser-leadsPerUser)*users/g)
	var k atomic.Int64
	prefix := b.key(scen)
	t := &loadTarget{
		Name: "S4 joins",
		Next: func(t *vegeta.Target) error {
			i := int(k.Add(1) - 1)
			gi, round := i%len(groups), i/len(groups)
			if round >= rounds {
				return errBudget
			}
			u := b.users[(gi+1+round)%users]
			t.Method, t.URL, t.Body = http.MethodPost, b.stack.GatewayURL()+"/groups/"+groups[gi]+"/join", []byte(`{}`)
			t.Header = http.Header{"Authorization": {"Bearer " + u.Token}, "Idempotency-Key": {prefix + "-" + strconv.Itoa(i)},
				"Content-Type": {"application/json"}}
			return nil
		},
		Classify: expect("", http.StatusCreated),
		OnResult: b.recordSeat(book, false),
	}
	o := b.opts(true)
	o.SLO = b.cfg.GroupSLO
	prof := profile(ctx, t, b.platformMeter(), o, b.logf)
	b.report.addProfile(scen, fmt.Sprintf("platform: joins over %d open groups", g), "S4", &prof, pathNote(prof.Main))
	b.report.set("S4.sustainable", prof.Sustainable)
	b.report.set("S4.okps", prof.Main.OKPerSec)
	b.report.set("S4.p95", prof.Main.P95MS)
	b.report.set("S4.cpu_ms", prof.Main.CPUPerOKMS)
	b.report.Checks = append(b.report.Checks, checkGroups(ctx, b.stack.Redis, scen, book.expect("open"), 30*time.Second)...)
	b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, deal.ID, b.ledger, []string{"pending_payment"}, false)...)

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
		book.add(a, time.Now(), true)
		b.ledger.add(placedOrder{ID: a.Order.ID, UserID: lead.ID, DealID: deal.ID, GroupID: a.Group.ID, Qty: 1})
		paid = append(paid, placedOrder{ID: a.Order.ID, UserID: lead.ID})
		var j groupAnswer
		if err := b.api.do(ctx, http.MethodPost, "/groups/"+a.Group.ID+"/join", member.Token, map[string]string{"Idempotency-Key": b.key(scen)}, map[string]any{}, http.StatusCreated, &j); err != nil {
			return err
		}
		book.add(j, time.Now(), false)
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
		return checkFlashDeal(ctx, b.stack.Redis, scen+" filled", deal.ID, b.ledger, []string{"confirmed"}, false)
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
	if err := b.ensureUsers(ctx, n/maxPerUser+1); err != nil {
		return err
	}
	deal, err := b.seed.groupDeal(ctx, max(n, 1), 100, b.cfg.DLTTL)
	if err != nil {
		return err
	}
	book := newGroupBook()
	t0 := time.Now()
	if err := b.openGroups(ctx, deal.ID, n, book, scen+" deadlines"); err != nil {
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
		return checkFlashDeal(ctx, b.stack.Redis, scen+" deadlines", deal.ID, b.ledger, []string{"cancelled"}, true)
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
