// Package changepub announces catalog changes (events.CatalogChangedV1) on the broadcast
// pub/sub component (events.BroadcastPubSub, components/pubsub-broadcast.yaml), topic
// product.changed or deal.changed, where every gateway replica consumes them from a queue of
// its own and drops or refreshes its cached copy (apps/gateway/internal/readcache).
//
// The change is already stored when it is announced, so a publish that keeps failing must not
// fail the request: Changed retries a few times within a bound well under a second and then
// returns the error for the caller to log. The broadcast component has no resiliency policy
// (a failed live-stream delivery is dropped on purpose), so these few retries are the only
// ones; the gateway's periodic rebuild covers what is still lost.
package changepub

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/groupbuy/groupbuy/pkg/events"
)

// Client is the part of the Dapr client the publisher needs.
type Client interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
}

// Bounds of one announcement: at most attempts publishes, each bounded by attemptTimeout,
// with backoff between them, all within budget (so a create waits less than a second for a
// broken broker).
const (
	attempts       = 3
	attemptTimeout = 250 * time.Millisecond
	budget         = 900 * time.Millisecond
)

// backoff is the wait before retry i (0-based).
var backoff = [attempts - 1]time.Duration{50 * time.Millisecond, 150 * time.Millisecond}

// Publisher implements catalog.Changes.
type Publisher struct {
	client    Client
	component string
	now       func() time.Time
	sleep     func(ctx context.Context, d time.Duration) error
}

// New returns a publisher on the named pub/sub component (events.BroadcastPubSub).
func New(c Client, component string) *Publisher {
	return &Publisher{client: c, component: component, now: time.Now, sleep: sleep}
}

// Topic is the topic of a change of kind (events.KindProduct, events.KindDeal).
func Topic(kind string) (string, error) {
	switch kind {
	case events.KindProduct:
		return events.TopicProductChanged, nil
	case events.KindDeal:
		return events.TopicDealChanged, nil
	}
	return "", fmt.Errorf("unknown catalog change kind %q", kind)
}

// EventID is the CloudEvent id of a change: "<kind>:<id>:<occurred_at in unix ms>". A retry
// of the same announcement carries the same id, so a consumer that got it twice can tell.
func EventID(e events.CatalogChangedV1) string {
	return e.Kind + ":" + e.ID + ":" + strconv.FormatInt(e.OccurredAt.UnixMilli(), 10)
}

// Changed implements catalog.Changes. OccurredAt is stamped when it is called, after the store
// write, so it is never before the change became visible. The publish does not end with the
// request's context (a client that hung up does not stop the announcement of a change that
// is stored), only with its own bound.
func (p *Publisher) Changed(ctx context.Context, kind, id string) error {
	topic, err := Topic(kind)
	if err != nil {
		return err
	}
	e := events.CatalogChangedV1{V: 1, Kind: kind, ID: id, OccurredAt: p.now().UTC().Truncate(time.Millisecond)}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s %s change: %w", kind, id, err)
	}
	eventID := EventID(e)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	for attempt := range attempts {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		err = p.client.PublishEvent(actx, p.component, topic, data,
			dapr.PublishEventWithContentType("application/json"),
			dapr.PublishEventWithMetadata(map[string]string{
				"cloudevent.id":   eventID,
				"cloudevent.type": topic,
			}))
		acancel()
		if err == nil {
			return nil
		}
		if attempt == attempts-1 {
			break
		}
		if serr := p.sleep(ctx, backoff[attempt]); serr != nil {
			break
		}
	}
	return fmt.Errorf("publish %s to %s/%s: %w", eventID, p.component, topic, err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
