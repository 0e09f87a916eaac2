package reconcile

import (
	"fmt"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
)

// Kind names a kind of finding: the label of reconcile_findings_total and the "kind" of
// the report's entries.
type Kind string

// Finding kinds. The comment says when the reconciler repairs one; the rest are reported.
const (
	// A bucket's counters against each other and its holds.
	KindCounterMismatch  Kind = "counter_mismatch"
	KindUnknownHoldState Kind = "unknown_hold_state"
	KindDuplicateHold    Kind = "duplicate_hold" // one order holding stock in two buckets or deals

	// Holds against orders.
	KindOrphanHold           Kind = "orphan_hold" // reserved, no order: released once OrphanAge old (unless the sweep owns it)
	KindLeakedHold           Kind = "leaked_hold" // reserved, order cancelled, refunded or confirmed: released
	KindSoldWithoutConfirmed Kind = "sold_without_confirmed_order"
	KindConfirmedWithoutSold Kind = "confirmed_order_without_sold_stock"
	KindPendingWithoutHold   Kind = "pending_order_without_hold"
	KindPaidWithoutHold      Kind = "paid_order_without_hold"
	KindQuantityMismatch     Kind = "quantity_mismatch"
	KindDealMismatch         Kind = "deal_mismatch"
	KindUnknownOrderStatus   Kind = "unknown_order_status"

	// Orders the expiry sweep should be finishing: put back into its pending set when they
	// are missing there (flash orders only, for paid ones).
	KindOverduePending Kind = "overdue_pending_order"
	KindPaidNotSettled Kind = "paid_order_not_settled"
	KindUnsettled      Kind = "unsettled_order" // final, but its side effects did not all complete

	// Payments against orders.
	KindChargedCancelled      Kind = "charge_of_cancelled_order" // refunded once past PaymentGrace
	KindChargedPending        Kind = "charged_order_unpaid"
	KindKeptWithoutCharge     Kind = "paid_order_without_charge"
	KindKeptRefunded          Kind = "refund_of_kept_order"
	KindRefundedWithoutRefund Kind = "refunded_order_without_refund"
	KindAmountMismatch        Kind = "amount_mismatch"
	KindMultipleCharges       Kind = "multiple_charges"
	KindMultipleRefunds       Kind = "multiple_refunds"
	KindRefundWithoutCharge   Kind = "refund_without_charge"
)

// Action is a repair.
type Action string

// Repairs.
const (
	ActionReleaseHold  Action = "release_hold"
	ActionRefundCharge Action = "refund_charge"
	ActionRequeue      Action = "requeue_for_sweep"
)

// Finding is one difference a pass found. Repair names the repair the pass attempts; when
// it failed, RepairError says why and the finding stays in the report.
type Finding struct {
	Kind        Kind   `json:"kind"`
	DealID      string `json:"deal_id,omitempty"`
	OrderID     string `json:"order_id,omitempty"`
	Bucket      *int   `json:"bucket,omitempty"`
	Detail      string `json:"detail"`
	Repair      Action `json:"repair,omitempty"`
	RepairError string `json:"repair_error,omitempty"`
}

// checkBucket checks one bucket's counters against each other and its holds, as inventory's
// own Bucket.Check does: a broken counter is reported, never repaired (which side is right
// is for a person to decide).
func checkBucket(dealID string, b Bucket) []Finding {
	var reserved, sold int
	for _, h := range b.Holds {
		switch h.State {
		case HoldReserved:
			reserved += h.Qty
		case HoldCommitted:
			sold += h.Qty
		}
	}
	var problems []string
	if b.Available < 0 || b.Reserved < 0 || b.Sold < 0 || b.Archived < 0 {
		problems = append(problems, "a counter is negative")
	}
	if b.Available+b.Reserved+b.Sold != b.Stock {
		problems = append(problems, "available+reserved+sold != stock")
	}
	if reserved != b.Reserved {
		problems = append(problems, fmt.Sprintf("reserved holds add up to %d", reserved))
	}
	if sold+b.Archived != b.Sold {
		problems = append(problems, fmt.Sprintf("committed holds add up to %d (+%d archived)", sold, b.Archived))
	}
	if len(problems) == 0 {
		return nil
	}
	i := b.Bucket
	return []Finding{{Kind: KindCounterMismatch, DealID: dealID, Bucket: &i,
		Detail: fmt.Sprintf("stock %d available %d reserved %d sold %d: %v", b.Stock, b.Available, b.Reserved, b.Sold, problems)}}
}

// orderCase is everything a pass knows about one order: its hold (if the deal's buckets
// have one), whether the pending set lists it, its document and its payment ledger (nil when
// missing or not looked up).
type orderCase struct {
	Deal       Deal
	OrderID    string
	Hold       *Hold
	Bucket     int
	InPending  bool
	PendingDue time.Time
	Order      *order.Order
	Ledger     *Ledger
}

// needsLedger says whether the order's payments are worth a lookup: every order that was
// or should have been paid, every cancelled one (a late charge), and pending ones with a
// charge started.
func needsLedger(o *order.Order) bool {
	if o == nil {
		return false
	}
	switch o.Status {
	case order.StatusPending:
		return o.PaymentStartedAt != nil
	default:
		return true
	}
}

// checkOrder is the pure check of one order at now: the findings, each with the repair the
// pass should attempt. Orders changed within the quiet window are in the middle of a flow
// (their side effects follow the write) and are left for a later pass.
func checkOrder(now time.Time, w windows, c orderCase) []Finding {
	var out []Finding
	add := func(k Kind, a Action, format string, args ...any) {
		f := Finding{Kind: k, DealID: c.Deal.ID, OrderID: c.OrderID, Detail: fmt.Sprintf(format, args...), Repair: a}
		if c.Hold != nil {
			b := c.Bucket
			f.Bucket = &b
		}
		out = append(out, f)
	}
	since := func(t time.Time) time.Duration { return now.Sub(t) }
	h, o := c.Hold, c.Order

	if h != nil && h.State != HoldReserved && h.State != HoldCommitted && h.State != HoldReleased {
		add(KindUnknownHoldState, "", "hold in unknown state %q", h.State)
		return out
	}
	if o == nil {
		switch {
		case h == nil || h.State == HoldReleased:
			// A placement in flight, or one undone: nothing is held.
		case h.State == HoldCommitted:
			add(KindSoldWithoutConfirmed, "", "%d units sold to an order that does not exist", h.Qty)
		case c.InPending:
			// The sweep releases holds of placements that never finished once their entry
			// is due; the reconciler does not race it, but says when it has not.
			if since(c.PendingDue) >= w.quiet {
				add(KindOrphanHold, "", "%d units reserved for an order that does not exist; its pending entry was due at %s and the expiry sweep has not released them",
					h.Qty, c.PendingDue.Format(time.RFC3339))
			}
		case since(h.At) >= w.orphan && since(h.Until) >= w.quiet:
			add(KindOrphanHold, ActionReleaseHold, "%d units reserved at %s for an order that does not exist", h.Qty, h.At.Format(time.RFC3339))
		}
		return out
	}
	if since(o.UpdatedAt) < w.quiet {
		return out
	}
	if o.DealID != c.Deal.ID {
		add(KindDealMismatch, "", "the order is for deal %s", o.DealID)
		return out
	}
	if h != nil && h.Qty != o.Quantity {
		add(KindQuantityMismatch, "", "the hold is for %d units, the order for %d", h.Qty, o.Quantity)
	}
	state := "no hold"
	if h != nil {
		state = "a " + h.State + " hold"
	}
	held := h != nil && h.State != HoldReleased
	requeue := func() Action {
		if c.InPending {
			return "" // the sweep will get to it
		}
		return ActionRequeue
	}

	switch o.Status {
	case order.StatusPending:
		switch {
		case !held:
			add(KindPendingWithoutHold, "", "pending order with %s: paying it cannot commit stock", state)
		case h.State == HoldCommitted:
			add(KindSoldWithoutConfirmed, "", "%d units sold to an order still pending", h.Qty)
		}
		if since(o.PayBy) >= w.grace+w.quiet {
			a := requeue()
			why := "the expiry sweep has not cancelled it"
			if a != "" {
				why = "and missing from the expiry sweep's pending set"
			}
			add(KindOverduePending, a, "pending past pay_by %s %s", o.PayBy.Format(time.RFC3339), why)
		}
	case order.StatusPaid:
		// No hold at all is what a commit leaves once inventory's recent-ops window lets the
		// committed hold go (the order's confirmation comes next, or the sweep finishes it):
		// only a released hold is a finding.
		if h != nil && h.State == HoldReleased {
			add(KindPaidWithoutHold, "", "paid order with %s", state)
		}
		if o.Kind == "group" {
			// A group is decided by its deadline, at most group_ttl after the order was
			// placed; then settlement confirms or refunds the order.
			ttl := time.Duration(c.Deal.GroupTTLSeconds) * time.Second
			if ttl > 0 && since(o.CreatedAt) >= ttl+w.grace+w.quiet {
				add(KindPaidNotSettled, "", "paid group order still paid after its group's deadline (group %s)", o.GroupID)
			}
		} else {
			add(KindPaidNotSettled, requeue(), "paid flash order not confirmed (%s)", state)
		}
	case order.StatusConfirmed:
		// A confirmed order's hold was committed, and leaves inventory's document with its
		// recent-ops window: no hold is as expected. A reserved one is a second hold (a stale
		// placement attempt reserved after the commit) that nobody will ever commit.
		switch {
		case h != nil && h.State == HoldReserved:
			add(KindLeakedHold, ActionReleaseHold, "%d units still reserved for a confirmed order", h.Qty)
		case h != nil && h.State == HoldReleased:
			add(KindConfirmedWithoutSold, "", "confirmed order with %s", state)
		}
		if !o.Settled {
			if a := requeue(); a != "" {
				add(KindUnsettled, a, "confirmed order whose side effects did not all complete")
			}
		}
	case order.StatusCancelled, order.StatusRefunded:
		switch {
		case h != nil && h.State == HoldReserved:
			add(KindLeakedHold, ActionReleaseHold, "%d units still reserved for a %s order", h.Qty, o.Status)
		case h != nil && h.State == HoldCommitted:
			add(KindSoldWithoutConfirmed, "", "%d units sold to a %s order", h.Qty, o.Status)
		}
		if !o.Settled {
			if a := requeue(); a != "" {
				add(KindUnsettled, a, "%s order whose side effects did not all complete", o.Status)
			}
		}
	default:
		add(KindUnknownOrderStatus, "", "order in unknown status %q", o.Status)
		return out
	}
	if c.Ledger != nil {
		checkMoney(now, w, c, add)
	}
	return out
}

// checkMoney compares the order's status with its payment ledger, reporting through add.
func checkMoney(now time.Time, w windows, c orderCase, add func(Kind, Action, string, ...any)) {
	o, l := c.Order, c.Ledger
	var succeeded int
	var charged int64
	for _, ch := range l.Charges {
		if ch.Status == ChargeSucceeded {
			succeeded++
			charged += ch.AmountCents
		}
	}
	refunds := len(l.Refunds)
	if succeeded > 1 {
		add(KindMultipleCharges, "", "%d succeeded charges", succeeded)
	}
	if refunds > 1 {
		add(KindMultipleRefunds, "", "%d refunds", refunds)
	}
	if refunds > succeeded {
		add(KindRefundWithoutCharge, "", "%d refunds of %d succeeded charges", refunds, succeeded)
	}
	switch o.Status {
	case order.StatusPaid, order.StatusConfirmed:
		switch {
		case succeeded == 0:
			add(KindKeptWithoutCharge, "", "%s order without a succeeded charge", o.Status)
		case refunds > 0:
			add(KindKeptRefunded, "", "%s order whose charge was refunded", o.Status)
		case charged != o.TotalCents:
			add(KindAmountMismatch, "", "charged %d cents for an order of %d", charged, o.TotalCents)
		}
	case order.StatusRefunded:
		switch {
		case succeeded == 0:
			add(KindKeptWithoutCharge, "", "refunded order without a succeeded charge")
		case refunds == 0:
			add(KindRefundedWithoutRefund, "", "refunded order whose charge of %d cents was never refunded", charged)
		}
	case order.StatusCancelled:
		// Cancelled is final: the money is owed back. The live path (the Pay request that
		// found the order cancelled) refunds within the payment grace; after that, nobody
		// else will.
		if succeeded > refunds && now.Sub(o.UpdatedAt) >= w.grace+w.quiet {
			add(KindChargedCancelled, ActionRefundCharge, "cancelled order with a succeeded charge of %d cents and no refund", charged)
		}
	case order.StatusPending:
		if succeeded > refunds && now.Sub(o.PayBy) >= w.grace+w.quiet {
			add(KindChargedPending, "", "charged %d cents, still pending after pay_by %s", charged, o.PayBy.Format(time.RFC3339))
		}
	}
}
