package daprpubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/groupbuy/groupbuy/apps/notify/internal/daprpubsub"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/live"
)

type fakePublisher struct {
	req *pb.PublishEventRequest
	err error
}

func (f *fakePublisher) PublishEvent(_ context.Context, pubsub, topic string, data any, opts ...dapr.PublishEventOption) error {
	f.req = &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic, Data: data.([]byte)}
	for _, o := range opts {
		o(f.req)
	}
	return f.err
}

func TestAnnounce(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	n := notification.Notification{ID: "x:order.paid", Type: "order.paid", CreatedAt: at, Data: json.RawMessage(`{"order_id":"x"}`)}
	tests := []struct {
		name      string
		ev        notification.Event
		wantTopic string
		want      live.EventV1
	}{
		{
			name:      "order: the owner only, never a group stream",
			ev:        notification.Event{Kind: notification.KindOrder, Notification: n, Recipients: []string{"u1"}, GroupID: "g1"},
			wantTopic: live.TopicOrder,
			want:      live.EventV1{V: 1, ID: n.ID, Type: n.Type, CreatedAt: at, Data: n.Data, Users: []string{"u1"}},
		},
		{
			name:      "group: members and the group",
			ev:        notification.Event{Kind: notification.KindGroup, Notification: n, Recipients: []string{"u1", "u2"}, GroupID: "g1"},
			wantTopic: live.TopicGroup,
			want:      live.EventV1{V: 1, ID: n.ID, Type: n.Type, CreatedAt: at, Data: n.Data, Users: []string{"u1", "u2"}, GroupID: "g1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakePublisher{}
			if err := daprpubsub.New(f, live.PubSub).Announce(context.Background(), tt.ev); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{"pubsub": f.req.PubsubName, "topic": f.req.Topic,
				"content_type": f.req.DataContentType, "id": f.req.Metadata["cloudevent.id"], "type": f.req.Metadata["cloudevent.type"]}
			want := map[string]string{"pubsub": live.PubSub, "topic": tt.wantTopic,
				"content_type": "application/json", "id": "x:order.paid", "type": "order.paid"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			// What the gateway decodes is what was announced.
			payload, err := live.DecodeEvent(f.req.Data)
			if err != nil {
				t.Fatalf("relay payload does not decode: %v (%s)", err, f.req.Data)
			}
			if diff := cmp.Diff(tt.want, payload); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
	f := &fakePublisher{err: errors.New("unavailable")}
	if err := daprpubsub.New(f, live.PubSub).Announce(context.Background(), notification.Event{}); err == nil {
		t.Error("Announce: want the publish error")
	}
}

// TestBroadcastComponent pins the settings the live streams depend on.
func TestBroadcastComponent(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "components", "pubsub-broadcast.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Metadata struct{ Name string } `yaml:"metadata"`
		Spec     struct {
			Type     string `yaml:"type"`
			Metadata []struct{ Name, Value string }
		} `yaml:"spec"`
		Scopes []string `yaml:"scopes"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	md := map[string]string{}
	for _, m := range c.Spec.Metadata {
		md[m.Name] = m.Value
	}
	if c.Metadata.Name != live.PubSub || c.Spec.Type != "pubsub.rabbitmq" {
		t.Errorf("component %s %s, want pubsub-broadcast pubsub.rabbitmq", c.Metadata.Name, c.Spec.Type)
	}
	if !strings.Contains(md["consumerID"], "{uuid}") {
		t.Errorf("consumerID %q: want a {uuid} so every replica has its own queues", md["consumerID"])
	}
	for k, want := range map[string]string{"durable": "false", "deletedWhenUnused": "true", "enableDeadLetter": "false", "requeueInFailure": "false",
		// The catalog's change events (product.changed, deal.changed) share the component.
		"allowedTopics": live.TopicOrder + "," + live.TopicGroup + ",product.changed,deal.changed"} {
		if md[k] != want {
			t.Errorf("%s = %q, want %q", k, md[k], want)
		}
	}
	// notify publishes the relay (and the catalog its changes); the gateway replicas subscribe
	// and serve the streams.
	if got := slices.Sorted(slices.Values(c.Scopes)); !slices.Equal(got, []string{"catalog", "gateway", "notify"}) {
		t.Errorf("scopes %v, want [catalog gateway notify]", c.Scopes)
	}
}

func TestRepublishKeepsTheCloudEvent(t *testing.T) {
	t.Parallel()
	event := []byte(`{"specversion":"1.0","id":"o1:order.created","type":"order.created","data":{"v":1}}`)
	f := &fakePublisher{}
	if err := daprpubsub.NewRepublisher(f, "pubsub").PublishCloudEvent(context.Background(), "order.created", event); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{"pubsub": f.req.PubsubName, "topic": f.req.Topic, "content_type": f.req.DataContentType, "data": string(f.req.Data)}
	want := map[string]string{"pubsub": "pubsub", "topic": "order.created", "content_type": "application/cloudevents+json", "data": string(event)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if len(f.req.Metadata) != 0 {
		t.Errorf("metadata %v, want none (no rawPayload: daprd must read the data as the CloudEvent)", f.req.Metadata)
	}
	f = &fakePublisher{err: errors.New("unavailable")}
	if err := daprpubsub.NewRepublisher(f, "pubsub").PublishCloudEvent(context.Background(), "order.created", event); err == nil {
		t.Error("PublishCloudEvent: want the publish error")
	}
}
