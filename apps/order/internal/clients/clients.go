// Package clients reaches the catalog, inventory and payment apps through Dapr service
// invocation.
package clients

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Caller is the invocation primitive (sidecar.Invoker).
type Caller interface {
	Call(ctx context.Context, app, method, path string, hdr http.Header, in, out any) error
}

// Catalog implements order.Deals; deals are immutable, so they are cached once read.
type Catalog struct {
	call  Caller
	appID string
	cache sync.Map
}

// NewCatalog returns the catalog client.
func NewCatalog(c Caller, appID string) *Catalog { return &Catalog{call: c, appID: appID} }

// Deal implements order.Deals.
func (c *Catalog) Deal(ctx context.Context, id string) (order.Deal, error) {
	if d, ok := c.cache.Load(id); ok {
		return d.(order.Deal), nil
	}
	var d order.Deal
	err := c.call.Call(ctx, c.appID, http.MethodGet, "internal/deals/"+url.PathEscape(id), nil, nil, &d)
	if err != nil {
		return order.Deal{}, err
	}
	c.cache.Store(id, d)
	return d, nil
}

// Inventory implements order.Stock.
type Inventory struct {
	call  Caller
	appID string
}

// NewInventory returns the inventory client.
func NewInventory(c Caller, appID string) *Inventory { return &Inventory{call: c, appID: appID} }

type holdReply struct {
	Outcome string `json:"outcome"`
	State   string `json:"state"`
}

// Reserve implements order.Stock.
func (c *Inventory) Reserve(ctx context.Context, dealID, orderID string, qty int, until time.Time) (string, bool, error) {
	in := map[string]any{"deal_id": dealID, "order_id": orderID, "quantity": qty, "until": until.UTC().Format(time.RFC3339Nano)}
	var out holdReply
	if err := c.call.Call(ctx, c.appID, http.MethodPost, "reservations", nil, in, &out); err != nil {
		return "", false, err
	}
	if out.Outcome == "sold_out" {
		return "", true, nil
	}
	return out.State, false, nil
}

// Available implements order.StockLevels: inventory reads the deal's buckets and writes
// nothing.
func (c *Inventory) Available(ctx context.Context, dealID string) (int, error) {
	var out struct {
		Available int `json:"available"`
	}
	if err := c.call.Call(ctx, c.appID, http.MethodGet, "stock/"+url.PathEscape(dealID), nil, nil, &out); err != nil {
		return 0, err
	}
	return out.Available, nil
}

// Commit implements order.Stock. Inventory keeps a finished hold only for its short
// recent-ops window, so a repeated commit (a retry after a crash between the commit and the
// order's confirmation) may find no hold: "not found". The order app commits only orders whose
// document says they hold stock (the document is written only after inventory reserved for
// it, and a paid order's hold is never released), so no hold means inventory committed it
// before: that is success.
func (c *Inventory) Commit(ctx context.Context, dealID, orderID string) error {
	err := c.call.Call(ctx, c.appID, http.MethodPost, "reservations/"+url.PathEscape(orderID)+"/commit", nil, map[string]string{"deal_id": dealID}, nil)
	if problem.CodeOf(err) == problem.CodeNotFound {
		return nil
	}
	return err
}

// Release implements order.Stock.
func (c *Inventory) Release(ctx context.Context, dealID, orderID string) error {
	return c.call.Call(ctx, c.appID, http.MethodPost, "reservations/"+url.PathEscape(orderID)+"/release", nil, map[string]string{"deal_id": dealID}, nil)
}

// Payment implements order.Payments.
type Payment struct {
	call  Caller
	appID string
}

// NewPayment returns the payment client.
func NewPayment(c Caller, appID string) *Payment { return &Payment{call: c, appID: appID} }

// Charge implements order.Payments.
func (c *Payment) Charge(ctx context.Context, orderID string, amount int64, token string) (order.ChargeResult, error) {
	var out order.ChargeResult
	in := map[string]any{"order_id": orderID, "amount_cents": amount, "payment_token": token}
	err := c.call.Call(ctx, c.appID, http.MethodPost, "charges", nil, in, &out)
	return out, err
}

// Lookup implements order.Payments.
func (c *Payment) Lookup(ctx context.Context, orderID string) (order.ChargeResult, bool, error) {
	var out order.ChargeResult
	err := c.call.Call(ctx, c.appID, http.MethodGet, "charges/"+url.PathEscape(orderID), nil, nil, &out)
	if problem.CodeOf(err) == problem.CodeNotFound {
		return order.ChargeResult{}, false, nil
	}
	return out, err == nil, err
}

// Refund implements order.Payments.
func (c *Payment) Refund(ctx context.Context, orderID string) error {
	return c.call.Call(ctx, c.appID, http.MethodPost, "refunds", nil, map[string]string{"order_id": orderID}, nil)
}
