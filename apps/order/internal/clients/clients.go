// Package clients reaches the catalog, inventory and payment apps through Dapr service
// invocation and publishes the outbox relay's order events through Dapr pub/sub.
package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/events"
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

// BulkPublisher is the part of the Dapr client the relay publisher needs.
type BulkPublisher interface {
	PublishEvents(ctx context.Context, pubsubName, topicName string, events []interface{}, opts ...dapr.PublishEventsOption) dapr.PublishEventsResponse
}

// Publisher implements outbox.Publisher over several Dapr pub/sub components that point at
// the same broker (components/pubsub-relay-*.yaml): Dapr 1.16's RabbitMQ component holds one
// message in flight per component instance until its confirm, so N components give N
// confirms in flight. The topic is the exchange (the stream, on Redis), so subscribers of the
// "pubsub" component receive what any of them publishes. Each component gets one bulk
// request per topic (POST /v1.0-alpha1/publish/bulk): RabbitMQ and Redis Streams do not
// implement bulk publishing, so daprd publishes the entries one by one into the component,
// but the app makes one call instead of one per event.
type Publisher struct {
	client     BulkPublisher
	components []string
}

// NewPublisher returns the publisher over the named components.
func NewPublisher(c BulkPublisher, components []string) *Publisher {
	return &Publisher{client: c, components: components}
}

// Publish implements outbox.Publisher. An order's events all go through one component. The
// CloudEvent id is the event id, so a re-publish carries the same id and consumers drop it.
func (p *Publisher) Publish(ctx context.Context, msgs []events.OrderV1) []error {
	errs := make([]error, len(msgs))
	type group struct {
		component, topic string
		idx              []int
	}
	groups := map[[2]string]*group{}
	var order [][2]string
	for i, m := range msgs {
		h := fnv.New32a()
		h.Write([]byte(m.OrderID))
		comp := p.components[h.Sum32()%uint32(len(p.components))]
		k := [2]string{comp, m.Type}
		g, ok := groups[k]
		if !ok {
			g = &group{component: comp, topic: m.Type}
			groups[k] = g
			order = append(order, k)
		}
		g.idx = append(g.idx, i)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		g := groups[k]
		wg.Go(func() {
			entries := make([]any, 0, len(g.idx))
			byEntry := make(map[string]int, len(g.idx))
			for _, i := range g.idx {
				m := msgs[i]
				data, err := json.Marshal(m)
				if err != nil {
					errs[i] = fmt.Errorf("encode event %s: %w", m.EventID, err)
					continue
				}
				entries = append(entries, dapr.PublishEventsEvent{
					EntryID: m.EventID, Data: data, ContentType: "application/json",
					Metadata: map[string]string{"cloudevent.id": m.EventID, "cloudevent.type": m.Type},
				})
				byEntry[m.EventID] = i
			}
			res := p.client.PublishEvents(ctx, g.component, g.topic, entries)
			if res.Error == nil {
				return
			}
			failed := errors.Join(problem.New(problem.CodeUnavailable, "event publishing failed"), res.Error)
			var which []int
			for _, fe := range res.FailedEvents {
				e, ok := fe.(dapr.PublishEventsEvent)
				i, known := byEntry[e.EntryID]
				if !ok || !known {
					which = nil // cannot tell which: count them all as failed
					break
				}
				which = append(which, i)
			}
			if which == nil {
				which = slices.Collect(maps.Values(byEntry))
			}
			for _, i := range which {
				errs[i] = failed
			}
		})
	}
	wg.Wait()
	return errs
}
