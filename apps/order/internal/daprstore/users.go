package daprstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Users implements order.UserIndex in bounded documents:
//
//	userorders:<user>    the head: the user's newest order ids (at most PageSize), the number
//	                     of sealed pages, and per deal still on sale the user's active orders
//	                     and their units (the purchase limit, checked and counted in the one
//	                     CAS of Add). Worst case: PageSize ids (~22 bytes each) plus, per deal
//	                     on sale the user holds units of, at most per_user_limit orders
//	                     (~25 bytes each).
//	userorders:<user>:<n> sealed page n (0 oldest): PageSize order ids, written once.
//
// A deal's counter goes with the first write after the deal ends (no placement can count
// against it then); a cancelled or refunded order leaves its counter at once. Statuses
// live with the orders: the index only says which orders are the user's, newest first.
//
// An earlier version kept every entry, with its status, in the head's "entries": they are
// moved into the new fields by the first write of the head (their deal's end is unknown, so
// their active units count for legacyHold), and read as they are until then.
type Users struct {
	s        *daprstate.Store
	pageSize int
	now      func() time.Time
}

// legacyHold is how long the units of an entry an earlier version wrote count toward its
// deal's limit (the deal's end was not recorded; deals run for days, not months).
const legacyHold = 30 * 24 * time.Hour

// NewUsers returns the user index; a page holds pageSize ids.
func NewUsers(s *daprstate.Store, pageSize int, now func() time.Time) *Users {
	if now == nil {
		now = time.Now
	}
	return &Users{s: s, pageSize: max(pageSize, 1), now: now}
}

type userHead struct {
	// Entries is the earlier version's unbounded list, empty once moved.
	Entries []order.IndexEntry   `json:"entries,omitempty"`
	Recent  []string             `json:"recent,omitempty"` // oldest first
	Pages   int                  `json:"pages,omitempty"`
	Deals   map[string]dealUnits `json:"deals,omitempty"`
}

// dealUnits counts one deal's active orders (order id → quantity) until the deal ends.
type dealUnits struct {
	Until  time.Time      `json:"until"`
	Orders map[string]int `json:"orders"`
}

type userPage struct {
	IDs []string `json:"ids"`
}

func userKey(id string) string { return "userorders:" + id }

func pageKey(userID string, n int) string { return fmt.Sprintf("userorders:%s:%d", userID, n) }

// tidy moves legacy entries into the new fields and drops the counters of ended deals; it
// reports whether it changed anything.
func (h *userHead) tidy(now time.Time) bool {
	changed := false
	if len(h.Entries) > 0 {
		for _, e := range h.Entries {
			if !slices.Contains(h.Recent, e.OrderID) {
				h.Recent = append(h.Recent, e.OrderID)
			}
			if e.Status.Active() {
				h.count(e.DealID, now.Add(legacyHold), e.OrderID, e.Quantity)
			}
		}
		h.Entries = nil
		changed = true
	}
	for id, d := range h.Deals {
		if d.Until.Before(now) {
			delete(h.Deals, id)
			changed = true
		}
	}
	return changed
}

func (h *userHead) count(dealID string, until time.Time, orderID string, qty int) {
	if h.Deals == nil {
		h.Deals = map[string]dealUnits{}
	}
	d := h.Deals[dealID]
	if d.Orders == nil {
		d.Orders = map[string]int{}
	}
	d.Until = until
	d.Orders[orderID] = qty
	h.Deals[dealID] = d
}

func (h *userHead) counts(orderID string) bool {
	for _, d := range h.Deals {
		if _, ok := d.Orders[orderID]; ok {
			return true
		}
	}
	return false
}

// uncount drops orderID from whichever deal counts it.
func (h *userHead) uncount(orderID string) bool {
	for id, d := range h.Deals {
		if _, ok := d.Orders[orderID]; ok {
			delete(d.Orders, orderID)
			if len(d.Orders) == 0 {
				delete(h.Deals, id)
			}
			return true
		}
	}
	return false
}

// seal moves the oldest PageSize recent ids into the next page while the head holds more.
// The page is written before the head that points to it; a page a lost attempt already
// wrote is taken as it is (its ids leave the head; ids it lacks stay in the head).
func (r *Users) seal(ctx context.Context, userID string, h *userHead) error {
	for len(h.Recent) > r.pageSize {
		page := userPage{IDs: slices.Clone(h.Recent[:r.pageSize])}
		key := pageKey(userID, h.Pages)
		err := r.s.Create(ctx, key, page)
		if errors.Is(err, daprstate.ErrExists) {
			if _, err = r.s.Get(ctx, key, &page); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		h.Recent = slices.DeleteFunc(h.Recent, func(id string) bool { return slices.Contains(page.IDs, id) })
		h.Pages++
	}
	return nil
}

// Add implements order.UserIndex.
func (r *Users) Add(ctx context.Context, userID string, e order.IndexEntry, limit int) error {
	now := r.now().UTC()
	_, err := daprstate.Mutate(ctx, r.s, userKey(userID), casAttempts, func(h *userHead, _ bool) error {
		if slices.ContainsFunc(h.Entries, func(x order.IndexEntry) bool { return x.OrderID == e.OrderID }) ||
			slices.Contains(h.Recent, e.OrderID) || h.counts(e.OrderID) {
			return daprstate.ErrNoChange
		}
		h.tidy(now)
		units := 0
		for _, q := range h.Deals[e.DealID].Orders {
			units += q
		}
		if units+e.Quantity > limit {
			return order.ErrPurchaseLimit
		}
		h.count(e.DealID, e.Until, e.OrderID, e.Quantity)
		h.Recent = append(h.Recent, e.OrderID)
		return r.seal(ctx, userID, h)
	})
	return err
}

// SetStatus implements order.UserIndex: only a cancellation or refund changes the index (the
// order stops counting toward its deal's limit, for good: a late "paid" cannot bring it back).
func (r *Users) SetStatus(ctx context.Context, userID, orderID string, st order.Status) error {
	if st.Active() {
		return nil
	}
	now := r.now().UTC()
	_, err := daprstate.Mutate(ctx, r.s, userKey(userID), casAttempts, func(h *userHead, found bool) error {
		if !found {
			return daprstate.ErrNoChange
		}
		for i, x := range h.Entries {
			if x.OrderID == orderID {
				h.Entries[i].Status = st
			}
		}
		tidied := h.tidy(now)
		if !h.uncount(orderID) && !tidied {
			return daprstate.ErrNoChange
		}
		return r.seal(ctx, userID, h)
	})
	return err
}

// Remove implements order.UserIndex. An id already sealed into a page stays there; the list
// skips ids without an order.
func (r *Users) Remove(ctx context.Context, userID, orderID string) error {
	now := r.now().UTC()
	_, err := daprstate.Mutate(ctx, r.s, userKey(userID), casAttempts, func(h *userHead, found bool) error {
		if !found {
			return daprstate.ErrNoChange
		}
		h.Entries = slices.DeleteFunc(h.Entries, func(x order.IndexEntry) bool { return x.OrderID == orderID })
		tidied := h.tidy(now)
		uncounted := h.uncount(orderID)
		n := len(h.Recent)
		h.Recent = slices.DeleteFunc(h.Recent, func(id string) bool { return id == orderID })
		if !tidied && !uncounted && n == len(h.Recent) {
			return daprstate.ErrNoChange
		}
		return r.seal(ctx, userID, h)
	})
	return err
}

// List implements order.UserIndex: the head, then pages from the newest, until limit ids.
func (r *Users) List(ctx context.Context, userID, before string, limit int) ([]order.IndexEntry, error) {
	var h userHead
	_, err := r.s.Get(ctx, userKey(userID), &h)
	if errors.Is(err, daprstate.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []order.IndexEntry
	add := func(ids []string) bool {
		for i := len(ids) - 1; i >= 0; i-- {
			if len(out) >= limit {
				return false
			}
			if !order.OlderThan(ids[i], before) {
				continue // newer than the cursor: on an earlier page
			}
			out = append(out, order.IndexEntry{OrderID: ids[i]})
		}
		return true
	}
	// Unmoved legacy entries are the oldest (a write moves them before anything is added).
	legacy := make([]string, 0, len(h.Entries))
	for _, e := range h.Entries {
		legacy = append(legacy, e.OrderID)
	}
	if !add(h.Recent) || !add(legacy) {
		return out, nil
	}
	for n := h.Pages - 1; n >= 0; n-- {
		var p userPage
		if _, err := r.s.Get(ctx, pageKey(userID, n), &p); err != nil && !errors.Is(err, daprstate.ErrNotFound) {
			return nil, err
		}
		if !add(p.IDs) {
			break
		}
	}
	return out, nil
}
