package clients

import (
	"context"
	"net/http"
	"net/url"

	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
)

// The reads the reconciler makes of the other apps (it owns none of their keys). Its repairs
// use Inventory.Release and Payment.Refund.
var (
	_ reconcile.Deals    = (*Catalog)(nil)
	_ reconcile.Stock    = (*Inventory)(nil)
	_ reconcile.Payments = (*Payment)(nil)
)

// Deals implements reconcile.Deals: every deal of the catalog (GET /deals).
func (c *Catalog) Deals(ctx context.Context) ([]reconcile.Deal, error) {
	var out struct {
		Items []reconcile.Deal `json:"items"`
	}
	if err := c.call.Call(ctx, c.appID, http.MethodGet, "deals", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Holds implements reconcile.Stock: the deal's buckets with their holds.
func (c *Inventory) Holds(ctx context.Context, dealID string) (reconcile.DealHolds, error) {
	var out reconcile.DealHolds
	err := c.call.Call(ctx, c.appID, http.MethodGet, "deals/"+url.PathEscape(dealID)+"/holds", nil, nil, &out)
	return out, err
}

// Ledger implements reconcile.Payments: the order's charges and refunds.
func (c *Payment) Ledger(ctx context.Context, orderID string) (reconcile.Ledger, error) {
	var out reconcile.Ledger
	err := c.call.Call(ctx, c.appID, http.MethodGet, "ledger/"+url.PathEscape(orderID), nil, nil, &out)
	return out, err
}
