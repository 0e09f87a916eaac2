package order

import (
	"context"
	"sync"
	"time"
)

// StockLevels reads how many units of a deal are left, without writing anything (inventory's
// GET /stock/{deal}). The sold-out marker asks it to renew itself instead of letting a
// purchase find out the expensive way.
type StockLevels interface {
	Available(ctx context.Context, dealID string) (int, error)
}

// soldOutMarks is this replica's memory of inventory's sold-out answers, per deal, so that a
// purchase of a deal known to be sold out is refused before anything is written: no
// idempotency claim, no index or pending entry to add and undo, no reservation round trip.
//
// A mark lives ttl after the answer that set it, so stock that comes back (an unpaid order
// expires, an order is cancelled) is on sale again at most ttl (plus one probe) later. Once a
// mark has lapsed, the first purchase of the deal asks StockLevels (reads only) while the
// others wait for its answer: still none left renews the mark, anything left forgets it and
// every waiting purchase goes the normal way. A deal that never sold out costs nothing.
//
// Inventory refuses a quantity that fits no bucket, so a mark refuses quantities of at least
// the smallest one it was set with; a probe that finds the deal empty refuses every quantity.
type soldOutMarks struct {
	ttl   time.Duration
	now   func() time.Time
	probe StockLevels // nil: a lapsed mark is forgotten without asking

	mu    sync.Mutex
	deals map[string]*soldOutMark
}

type soldOutMark struct {
	minQty  int
	until   time.Time
	probing chan struct{} // closed when the running probe ends; nil when none runs
}

func newSoldOutMarks(ttl time.Duration, now func() time.Time, probe StockLevels) *soldOutMarks {
	return &soldOutMarks{ttl: ttl, now: now, probe: probe, deals: map[string]*soldOutMark{}}
}

// set records that inventory refused qty units of the deal as sold out.
func (m *soldOutMarks) set(dealID string, qty int) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	until := m.now().Add(m.ttl)
	mk := m.deals[dealID]
	if mk == nil {
		m.deals[dealID] = &soldOutMark{minQty: qty, until: until}
		return
	}
	if !m.now().Before(mk.until) || qty < mk.minQty {
		mk.minQty = qty
	}
	mk.until = until
}

// refuses tells whether a purchase of qty units is refused as sold out. It waits for a
// running probe of the deal, or runs one when the deal's mark has lapsed; a probe that fails
// forgets the mark (the purchase then learns the answer from inventory itself).
func (m *soldOutMarks) refuses(ctx context.Context, dealID string, qty int) bool {
	if m.ttl <= 0 {
		return false
	}
	m.mu.Lock()
	for {
		mk := m.deals[dealID]
		switch {
		case mk == nil:
			m.mu.Unlock()
			return false
		case m.now().Before(mk.until):
			m.mu.Unlock()
			return qty >= mk.minQty
		case mk.probing != nil:
			wait := mk.probing
			m.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return false // the purchase goes on and fails on its own context
			}
			m.mu.Lock()
		case m.probe == nil:
			delete(m.deals, dealID)
			m.mu.Unlock()
			return false
		default:
			done := make(chan struct{})
			mk.probing = done
			m.mu.Unlock()
			left, err := m.probe.Available(ctx, dealID)
			m.mu.Lock()
			mk.probing = nil
			close(done)
			if err == nil && left == 0 {
				mk.minQty, mk.until = 1, m.now().Add(m.ttl)
			} else if m.deals[dealID] == mk {
				delete(m.deals, dealID)
			}
		}
	}
}
