package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/groupbuy/groupbuy/tests/bench/baseline"
)

// Check is one invariant checked after a scenario.
type Check struct {
	Scenario string `json:"scenario"`
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Detail   string `json:"detail"`
}

func pass(scen, name, format string, args ...any) Check {
	return Check{Scenario: scen, Name: name, OK: true, Detail: fmt.Sprintf(format, args...)}
}

func fail(scen, name, format string, args ...any) Check {
	return Check{Scenario: scen, Name: name, OK: false, Detail: fmt.Sprintf(format, args...)}
}

// placedOrder is an order the platform (or the baseline) answered 201 for.
type placedOrder struct {
	ID      string
	UserID  string
	DealID  string
	GroupID string
	Qty     int
	PayBy   time.Time
	At      time.Time // when the answer arrived
}

// ledger records every purchase answer the bench got, per deal: what the stores must show.
type ledger struct {
	mu      sync.Mutex
	orders  map[string]placedOrder
	byDeal  map[string][]string
	dups    map[string]int // deal → ids answered twice
	unknown map[string]int // deal → units of answers whose outcome stayed open
	open    []openRequest  // to replay before the next checks
}

// openRequest is a request whose answer left its outcome open, to be replayed.
type openRequest struct {
	Deal    string
	Target  vegeta.Target
	Created func(body []byte, at time.Time) // records a 201 answer
}

func (l *ledger) addOpen(o openRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open = append(l.open, o)
}

func (l *ledger) takeOpen() []openRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.open
	l.open = nil
	return out
}

func newLedger() *ledger {
	return &ledger{orders: map[string]placedOrder{}, byDeal: map[string][]string{}, dups: map[string]int{}, unknown: map[string]int{}}
}

func (l *ledger) add(o placedOrder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, seen := l.orders[o.ID]; seen {
		l.dups[o.DealID]++
		return
	}
	l.orders[o.ID] = o
	l.byDeal[o.DealID] = append(l.byDeal[o.DealID], o.ID)
}

// addUnknown records units a request may or may not have taken (no answer, or a 5xx).
func (l *ledger) addUnknown(dealID string, qty int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unknown[dealID] += qty
}

// deal returns the orders of a deal, their units, the ids answered twice and the open units.
func (l *ledger) deal(dealID string) (orders []placedOrder, units, dups, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.byDeal[dealID] {
		o := l.orders[id]
		orders = append(orders, o)
		units += o.Qty
	}
	return orders, units, l.dups[dealID], l.unknown[dealID]
}

// units is the units of a deal's orders answered 201 so far.
func (l *ledger) units(dealID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, id := range l.byDeal[dealID] {
		n += l.orders[id].Qty
	}
	return n
}

func (l *ledger) get(id string) (placedOrder, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.orders[id]
	return o, ok
}

var activeStatuses = []string{"pending_payment", "paid", "confirmed"}

// holdsStock reports whether an order in this status holds or consumed stock.
func holdsStock(status string) bool { return slices.Contains(activeStatuses, status) }

// checkFlashDeal checks a platform deal against what the bench was answered: the stock
// counters (per bucket, summed), no order id answered twice, every order answered 201 stored
// with its deal, quantity and a status in wantStatus, and the units held or sold equal to the
// units of those orders that still hold stock by their stored status (pending, paid,
// confirmed), give or take the requests whose outcome stayed open.
//
// The stores are read stock, orders, stock: an order's status only moves forward and an
// order is cancelled before its units are released, so the first read must hold at least the
// active orders' units (no active order ever lost its hold) and the second at most those plus
// the cancelled orders' units (no hold without an order). With no cancelled order both are
// equality; with some, a release may still be on its way (expiry is asynchronous) and the
// detail says how many units are.
func checkFlashDeal(ctx context.Context, rdb *redis.Client, scen, dealID string, l *ledger, wantStatus []string) []Check {
	name := "deal " + dealID
	var out []Check
	first, err := readStock(ctx, rdb, dealID)
	if err != nil {
		return append(out, fail(scen, name+": stock counters", "%v", err))
	}
	orders, units, dups, unknown := l.deal(dealID)
	if len(orders) == 0 && unknown == 0 && first.Reserved+first.Sold == 0 {
		return []Check{pass(scen, name+": untouched", "no orders, stock %d all available over %d bucket(s)", first.Stock, first.Buckets)}
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	stored, err := readOrders(ctx, rdb, ids)
	if err != nil {
		return append(out, fail(scen, name+": orders stored", "%v", err))
	}
	second, err := readStock(ctx, rdb, dealID)
	if err != nil {
		return append(out, fail(scen, name+": stock counters", "%v", err))
	}
	out = append(out, pass(scen, name+": stock counters", "stock %d = available %d + reserved %d + sold %d over %d bucket(s), none negative",
		second.Stock, second.Available, second.Reserved, second.Sold, second.Buckets))

	var missing, wrong, activeUnits, releasedUnits int
	var example string
	for _, o := range orders {
		s, ok := stored[o.ID]
		switch {
		case !ok:
			missing++
			example = "missing " + o.ID
			continue
		case s.DealID != dealID || s.Quantity != o.Qty || !slices.Contains(wantStatus, s.Status):
			wrong++
			example = fmt.Sprintf("order %s: deal %s qty %d status %s", o.ID, s.DealID, s.Quantity, s.Status)
		}
		if holdsStock(s.Status) {
			activeUnits += s.Quantity
		} else {
			releasedUnits += s.Quantity
		}
	}
	if missing+wrong > 0 {
		out = append(out, fail(scen, name+": orders stored", "%d of %d orders missing, %d not matching (want status %v); e.g. %s",
			missing, len(orders), wrong, wantStatus, example))
	} else {
		out = append(out, pass(scen, name+": orders stored", "%d orders (%d units) stored with status in %v", len(orders), units, wantStatus))
	}

	held1, held2 := first.Reserved+first.Sold, second.Reserved+second.Sold
	const check = "orders == held + sold"
	if ok, why := heldMatches(held1, held2, activeUnits, releasedUnits, unknown); ok {
		out = append(out, pass(scen, name+": "+check, "%d units in %d successful orders, %d still holding stock; %s", units, len(orders), activeUnits, why))
	} else {
		out = append(out, fail(scen, name+": "+check, "reserved %d + sold %d: %s", second.Reserved, second.Sold, why))
	}
	if dups > 0 {
		out = append(out, fail(scen, name+": no duplicate order ids", "%d order ids answered twice", dups))
	} else {
		out = append(out, pass(scen, name+": no duplicate order ids", "%d distinct ids", len(orders)))
	}
	return out
}

// heldMatches judges the units a deal holds (held1 read before the orders, held2 after)
// against its orders: active is the units of orders that hold stock by their stored status,
// released those of cancelled or refunded ones, open those of requests whose outcome stayed
// open. No active order may have lost its hold (held1 >= active), and no hold may exist
// without an order (held2 <= active + released + open); with nothing cancelled, the units
// held beyond the active ones can only be open outcomes.
func heldMatches(held1, held2, active, released, open int) (bool, string) {
	switch {
	case held1 < active:
		return false, fmt.Sprintf("orders holding stock have %d units, the store holds only %d", active, held1)
	case held2 > active+released+open:
		return false, fmt.Sprintf("the store holds %d units, orders account for %d (%d of them cancelled or refunded, %d of open outcomes)",
			held2, active+released+open, released, open)
	case released == 0 && held2 > active+open:
		return false, fmt.Sprintf("the store holds %d units, the orders %d (%d of open outcomes allowed)", held2, active, open)
	case held2 > active:
		return true, fmt.Sprintf("the store holds %d: %d units of cancelled orders or open outcomes not released yet", held2, held2-active)
	}
	return true, fmt.Sprintf("the store holds %d (%d units of open outcomes allowed)", held2, open)
}

// checkDeals runs checkFlashDeal over several deals and folds the passing checks into one per
// kind ("stock counters", ...); failures stay one per deal.
func checkDeals(ctx context.Context, rdb *redis.Client, scen, label string, deals []string, l *ledger, wantStatus []string) []Check {
	if len(deals) == 1 {
		return checkFlashDeal(ctx, rdb, scen, deals[0], l, wantStatus)
	}
	var out []Check
	passed := map[string]int{}
	var kinds []string
	for _, d := range deals {
		for _, c := range checkFlashDeal(ctx, rdb, scen, d, l, wantStatus) {
			if !c.OK {
				out = append(out, c)
				continue
			}
			_, kind, _ := strings.Cut(c.Name, ": ")
			if passed[kind] == 0 {
				kinds = append(kinds, kind)
			}
			passed[kind]++
		}
	}
	for _, k := range kinds {
		out = append(out, pass(scen, label+": "+k, "holds on %d of %d deals", passed[k], len(deals)))
	}
	return out
}

// checkBaselineDeal checks the baseline's deal: units left == stock - units of its 201
// answers (give or take open outcomes), never negative, each answered order stored once.
func checkBaselineDeal(ctx context.Context, rdb *redis.Client, scen, dealID string, stock int, l *ledger) []Check {
	name := "baseline deal " + dealID
	var out []Check
	left, err := rdb.Get(ctx, baseline.StockKey(dealID)).Int()
	if err != nil {
		return append(out, fail(scen, name+": stock", "%v", err))
	}
	orders, units, dups, unknown := l.deal(dealID)
	taken := stock - left
	switch {
	case left < 0:
		out = append(out, fail(scen, name+": stock", "negative stock %d", left))
	case taken < units || taken > units+unknown:
		out = append(out, fail(scen, name+": orders == units taken", "successful orders hold %d units, the stock key lost %d", units, taken))
	default:
		out = append(out, pass(scen, name+": orders == units taken", "%d units in %d orders, %d left of %d", units, len(orders), left, stock))
	}
	if dups > 0 {
		out = append(out, fail(scen, name+": no duplicate order ids", "%d order ids answered twice", dups))
	}
	var missing int
	for start := 0; start < len(orders); start += 1000 {
		pipe := rdb.Pipeline()
		var cmds []*redis.IntCmd
		for _, o := range orders[start:min(start+1000, len(orders))] {
			cmds = append(cmds, pipe.Exists(ctx, baseline.OrderKey(o.ID)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return append(out, fail(scen, name+": orders stored", "%v", err))
		}
		for _, c := range cmds {
			if c.Val() != 1 {
				missing++
			}
		}
	}
	if missing > 0 {
		out = append(out, fail(scen, name+": orders stored", "%d of %d orders missing", missing, len(orders)))
	} else {
		out = append(out, pass(scen, name+": orders stored", "%d orders stored", len(orders)))
	}
	return out
}

// groupExpect is what a group must look like after a scenario.
type groupExpect struct {
	Status  string   // "" for any of open, succeeded, failed
	Members []string // order ids the bench was answered 201 for (leader and joins)
}

// checkGroups reads every group's actor state and its members' orders: each group is exactly
// one of open, succeeded or failed, holds no more seats than its size, holds every member the
// bench was told it had, and its members' orders match its outcome (succeeded: confirmed;
// failed: cancelled or refunded; open: pending or paid). Orders settle after the group
// decides, so the check retries until settle passes.
func checkGroups(ctx context.Context, rdb *redis.Client, scen string, groups map[string]groupExpect, settle time.Duration) []Check {
	deadline := time.Now().Add(settle)
	for {
		checks, retry := checkGroupsOnce(ctx, rdb, scen, groups)
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return checks
		}
		time.Sleep(time.Second)
	}
}

func checkGroupsOnce(ctx context.Context, rdb *redis.Client, scen string, groups map[string]groupExpect) ([]Check, bool) {
	ids := make([]string, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	states, err := readGroups(ctx, rdb, ids)
	if err != nil {
		return []Check{fail(scen, "groups", "%v", err)}, false
	}
	var orderIDs []string
	for _, g := range states {
		for _, s := range g.Seats {
			if s.OrderID != "" {
				orderIDs = append(orderIDs, s.OrderID)
			}
		}
	}
	orders, err := readOrders(ctx, rdb, orderIDs)
	if err != nil {
		return []Check{fail(scen, "groups", "%v", err)}, false
	}
	counts := map[string]int{}
	var problems []string
	unsettled := false
	note := func(format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, id := range ids {
		want := groups[id]
		g, ok := states[id]
		if !ok {
			note("group %s has no actor state", id)
			continue
		}
		counts[g.Status]++
		if !slices.Contains([]string{"open", "succeeded", "failed"}, g.Status) {
			note("group %s in status %q", id, g.Status)
			continue
		}
		if want.Status != "" && g.Status != want.Status {
			unsettled = true
			note("group %s is %s, want %s", id, g.Status, want.Status)
		}
		if len(g.Seats) > g.GroupSize {
			note("group %s holds %d seats of %d", id, len(g.Seats), g.GroupSize)
		}
		seated := map[string]bool{}
		for _, s := range g.Seats {
			seated[s.OrderID] = true
			o, ok := orders[s.OrderID]
			if !ok {
				if s.State == "held" {
					note("group %s: member order %s is not stored", id, s.OrderID)
				}
				continue
			}
			var okStatus []string
			switch g.Status {
			case "succeeded":
				okStatus = []string{"confirmed"}
			case "failed":
				okStatus = []string{"cancelled", "refunded"}
			default:
				okStatus = []string{"pending_payment", "paid"}
			}
			if !slices.Contains(okStatus, o.Status) {
				unsettled = true
				note("group %s (%s): member order %s is %s", id, g.Status, o.ID, o.Status)
			}
		}
		if g.Status == "open" || g.Status == "succeeded" {
			for _, m := range want.Members {
				if !seated[m] {
					note("group %s (%s) lost member order %s", id, g.Status, m)
				}
			}
		}
	}
	summary := fmt.Sprintf("%d groups: %d open, %d succeeded, %d failed", len(ids), counts["open"], counts["succeeded"], counts["failed"])
	if len(problems) > 0 {
		return []Check{fail(scen, "groups: one state each, seats within size, member orders match", "%s; %v", summary, problems)}, unsettled
	}
	return []Check{pass(scen, "groups: one state each, seats within size, member orders match", "%s", summary)}, false
}
