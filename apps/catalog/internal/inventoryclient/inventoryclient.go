// Package inventoryclient reaches the inventory app through Dapr service invocation.
package inventoryclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
)

// Caller is the invocation primitive (sidecar.Invoker).
type Caller interface {
	Call(ctx context.Context, app, method, path string, hdr http.Header, in, out any) error
}

// Client implements catalog.Stock.
type Client struct {
	call  Caller
	appID string
}

// New returns a client for the inventory app with the given app id.
func New(c Caller, appID string) *Client { return &Client{call: c, appID: appID} }

// Create implements catalog.Stock.
func (c *Client) Create(ctx context.Context, dealID string, qty int) error {
	body := struct {
		Stock int `json:"stock"`
	}{qty}
	return c.call.Call(ctx, c.appID, http.MethodPut, "stock/"+url.PathEscape(dealID), nil, body, nil)
}

// Levels implements catalog.Stock.
func (c *Client) Levels(ctx context.Context, dealID string) (catalog.Levels, error) {
	var v struct {
		Stock     int `json:"stock"`
		Available int `json:"available"`
		Reserved  int `json:"reserved"`
		Sold      int `json:"sold"`
	}
	if err := c.call.Call(ctx, c.appID, http.MethodGet, "stock/"+url.PathEscape(dealID), nil, nil, &v); err != nil {
		return catalog.Levels{}, err
	}
	return catalog.Levels{Total: v.Stock, Available: v.Available, Reserved: v.Reserved, Sold: v.Sold}, nil
}
