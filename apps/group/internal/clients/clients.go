// Package clients reaches the catalog and order apps through Dapr service invocation and
// publishes group events through Dapr pub/sub.
package clients

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/bulkpub"
	"github.com/groupbuy/groupbuy/pkg/events"
)

// Caller is the invocation primitive (sidecar.Invoker).
type Caller interface {
	Call(ctx context.Context, app, method, path string, hdr http.Header, in, out any) error
}

// Catalog implements group.Deals; deals are immutable, so they are cached once read.
type Catalog struct {
	call  Caller
	appID string
	cache sync.Map
}

// NewCatalog returns the catalog client.
func NewCatalog(c Caller, appID string) *Catalog { return &Catalog{call: c, appID: appID} }

// Deal implements group.Deals.
func (c *Catalog) Deal(ctx context.Context, id string) (group.Deal, error) {
	if d, ok := c.cache.Load(id); ok {
		return d.(group.Deal), nil
	}
	var d group.Deal
	if err := c.call.Call(ctx, c.appID, http.MethodGet, "internal/deals/"+url.PathEscape(id), nil, nil, &d); err != nil {
		return group.Deal{}, err
	}
	c.cache.Store(id, d)
	return d, nil
}

// Orders implements group.Orders.
type Orders struct {
	call  Caller
	appID string
}

// NewOrders returns the order app client.
func NewOrders(c Caller, appID string) *Orders { return &Orders{call: c, appID: appID} }

// PlaceGroupOrder implements group.Orders: POST internal/group-orders, idempotent by order id.
func (c *Orders) PlaceGroupOrder(ctx context.Context, r group.OrderRequest) (group.Order, error) {
	var raw json.RawMessage
	if err := c.call.Call(ctx, c.appID, http.MethodPost, "internal/group-orders", nil, r, &raw); err != nil {
		return group.Order{}, err
	}
	var o struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.ID == "" {
		return group.Order{}, fmt.Errorf("decode group order %s: %v", r.OrderID, err)
	}
	return group.Order{ID: o.ID, Status: o.Status, Raw: raw}, nil
}

// Publisher publishes group events over the relay's pub/sub components (pkg/bulkpub): in
// batches for the relay, one at a time for a group's final turn. The CloudEvent id is the
// event id, so a re-publish carries the same id and consumers drop the duplicate.
type Publisher struct {
	*bulkpub.Publisher[events.GroupV1]
}

// NewPublisher returns the publisher over the named components.
func NewPublisher(c bulkpub.Client, components []string) *Publisher {
	return &Publisher{bulkpub.New[events.GroupV1](c, components)}
}

// PublishGroup publishes one event (actorhost.Publisher).
func (p *Publisher) PublishGroup(ctx context.Context, e events.GroupV1) error {
	return p.Publish(ctx, []events.GroupV1{e})[0]
}
