package bulkpub_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/bulkpub"
	"github.com/groupbuy/groupbuy/pkg/events"
)

// fakeBulk records bulk requests; failing names entry ids daprd reports as failed, and down
// makes every request fail as a whole (the sidecar unreachable).
type fakeBulk struct {
	mu      sync.Mutex
	reqs    map[string][]string // "component topic" → entry ids
	failing map[string]bool
	down    bool
}

func (f *fakeBulk) PublishEvents(_ context.Context, pubsub, topic string, evs []any, _ ...dapr.PublishEventsOption) dapr.PublishEventsResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	var failed []any
	for _, e := range evs {
		ev := e.(dapr.PublishEventsEvent)
		if ev.Metadata["cloudevent.id"] != ev.EntryID {
			failed = append(failed, e)
		}
		f.reqs[pubsub+" "+topic] = append(f.reqs[pubsub+" "+topic], ev.EntryID)
		if f.failing[ev.EntryID] {
			failed = append(failed, e)
		}
	}
	if f.down {
		return dapr.PublishEventsResponse{Error: errors.New("unavailable"), FailedEvents: evs}
	}
	if len(failed) > 0 {
		return dapr.PublishEventsResponse{Error: errors.New("some failed"), FailedEvents: failed}
	}
	return dapr.PublishEventsResponse{}
}

func event(orderID, topic string) events.OrderV1 {
	return events.NewOrderV1(topic, orderID, "u1", "d1", "", 1, 100, "pending_payment", time.Unix(0, 0))
}

// One bulk request per component and topic; an order's events all go through one component;
// the CloudEvent id is the event id; failures come back per event.
func TestPublisherSpreadsBatchesOverComponents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failing  map[string]bool
		down     bool
		wantErrs []bool
	}{
		{name: "all published", wantErrs: []bool{false, false, false, false}},
		{name: "one entry refused", failing: map[string]bool{"o2:order.created": true}, wantErrs: []bool{false, true, false, false}},
		{name: "sidecar down", down: true, wantErrs: []bool{true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeBulk{reqs: map[string][]string{}, failing: tt.failing, down: tt.down}
			p := bulkpub.New[events.OrderV1](f, []string{"relay-a", "relay-b"})
			msgs := []events.OrderV1{event("o1", "order.created"), event("o2", "order.created"), event("o1", "order.paid"), event("o3", "order.created")}

			errs := p.Publish(context.Background(), msgs)

			var gotErrs []bool
			for _, err := range errs {
				gotErrs = append(gotErrs, err != nil)
			}
			if diff := cmp.Diff(gotErrs, tt.wantErrs); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
			var all []string
			component := map[string]string{}
			for k, ids := range f.reqs {
				all = append(all, ids...)
				for _, id := range ids {
					order := id[:2]
					comp := k[:len("relay-a")]
					if c, ok := component[order]; ok && c != comp {
						t.Errorf("order %s published through %s and %s", order, c, comp)
					}
					component[order] = comp
				}
			}
			slices.Sort(all)
			want := []string{"o1:order.created", "o1:order.paid", "o2:order.created", "o3:order.created"}
			if diff := cmp.Diff(all, want); diff != "" {
				t.Errorf("entries sent (-got +want):\n%s", diff)
			}
		})
	}
}
