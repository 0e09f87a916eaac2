// Package bulkpub publishes events over several Dapr pub/sub components that point at the
// same broker, in bulk requests: the order app's outbox relay and the group app's event relay
// share it.
package bulkpub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Event is what the publisher needs of an event: the key whose events share a component (so
// they are published in order of their requests), the event id and the topic.
type Event interface {
	Route() (key, id, topic string)
}

// Client is the part of the Dapr client the publisher needs.
type Client interface {
	PublishEvents(ctx context.Context, pubsubName, topicName string, events []interface{}, opts ...dapr.PublishEventsOption) dapr.PublishEventsResponse
}

// Publisher publishes events over several Dapr pub/sub components that point at
// the same broker (components/pubsub-relay-*.yaml): Dapr 1.16's RabbitMQ component holds one
// message in flight per component instance until its confirm, so N components give N
// confirms in flight. The topic is the exchange (the stream, on Redis), so subscribers of the
// "pubsub" component receive what any of them publishes. Each component gets one bulk
// request per topic (POST /v1.0-alpha1/publish/bulk): RabbitMQ and Redis Streams do not
// implement bulk publishing, so daprd publishes the entries one by one into the component,
// but the app makes one call instead of one per event.
type Publisher[E Event] struct {
	client     Client
	components []string
}

// New returns the publisher over the named components.
func New[E Event](c Client, components []string) *Publisher[E] {
	return &Publisher[E]{client: c, components: components}
}

// Publish publishes msgs and returns one error per message, nil for a published one. The
// events of one key (an order, a group) all go through one component. The CloudEvent id is
// the event id, so a re-publish carries the same id and consumers drop it.
func (p *Publisher[E]) Publish(ctx context.Context, msgs []E) []error {
	errs := make([]error, len(msgs))
	type group struct {
		component, topic string
		idx              []int
	}
	groups := map[[2]string]*group{}
	var order [][2]string
	for i, m := range msgs {
		key, _, topic := m.Route()
		h := fnv.New32a()
		h.Write([]byte(key))
		comp := p.components[h.Sum32()%uint32(len(p.components))]
		k := [2]string{comp, topic}
		g, ok := groups[k]
		if !ok {
			g = &group{component: comp, topic: topic}
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
				_, id, topic := m.Route()
				data, err := json.Marshal(m)
				if err != nil {
					errs[i] = fmt.Errorf("encode event %s: %w", id, err)
					continue
				}
				entries = append(entries, dapr.PublishEventsEvent{
					EntryID: id, Data: data, ContentType: "application/json",
					Metadata: map[string]string{"cloudevent.id": id, "cloudevent.type": topic},
				})
				byEntry[id] = i
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
