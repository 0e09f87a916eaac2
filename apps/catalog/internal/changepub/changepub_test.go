package changepub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/groupbuy/groupbuy/pkg/events"
)

var now = time.Date(2026, 3, 1, 10, 30, 0, 123_456_789, time.FixedZone("UTC+2", 2*60*60))

// published is one PublishEvent call as daprd would see it.
type published struct {
	Component   string
	Topic       string
	Data        string
	ContentType string
	Metadata    map[string]string
	CtxErr      error // the call's context error when it was made
	HasDeadline bool
}

// fakeClient records publishes; the first failures calls fail.
type fakeClient struct {
	mu       sync.Mutex
	calls    []published
	failures int
	block    bool // calls wait for their context to end, as a hung sidecar would
}

func (c *fakeClient) PublishEvent(ctx context.Context, component, topic string, data any, opts ...dapr.PublishEventOption) error {
	var req pb.PublishEventRequest
	for _, o := range opts {
		o(&req)
	}
	_, deadline := ctx.Deadline()
	b, _ := data.([]byte)
	c.mu.Lock()
	c.calls = append(c.calls, published{
		Component: component, Topic: topic, Data: string(b), ContentType: req.DataContentType,
		Metadata: req.Metadata, CtxErr: ctx.Err(), HasDeadline: deadline,
	})
	block := c.block
	fail := c.failures > 0
	if fail {
		c.failures--
	}
	c.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("rpc error: code = Unavailable")
	}
	return nil
}

func (c *fakeClient) list() []published {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]published(nil), c.calls...)
}

func newPublisher(c *fakeClient) (*Publisher, *[]time.Duration) {
	p := New(c, events.BroadcastPubSub)
	p.now = func() time.Time { return now }
	var waits []time.Duration
	p.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return p, &waits
}

func TestChangedPublishes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, id string
		want     published
	}{
		{
			kind: events.KindProduct, id: "7001",
			want: published{
				Component: "pubsub-broadcast", Topic: "product.changed",
				Data:        `{"v":1,"kind":"product","id":"7001","occurred_at":"2026-03-01T08:30:00.123Z"}`,
				ContentType: "application/json",
				Metadata:    map[string]string{"cloudevent.id": "product:7001:1772353800123", "cloudevent.type": "product.changed"},
				HasDeadline: true,
			},
		},
		{
			kind: events.KindDeal, id: "9002",
			want: published{
				Component: "pubsub-broadcast", Topic: "deal.changed",
				Data:        `{"v":1,"kind":"deal","id":"9002","occurred_at":"2026-03-01T08:30:00.123Z"}`,
				ContentType: "application/json",
				Metadata:    map[string]string{"cloudevent.id": "deal:9002:1772353800123", "cloudevent.type": "deal.changed"},
				HasDeadline: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			c := &fakeClient{}
			p, waits := newPublisher(c)

			err := p.Changed(context.Background(), tt.kind, tt.id)

			if err != nil {
				t.Fatalf("Changed() error = %v", err)
			}
			if diff := cmp.Diff(c.list(), []published{tt.want}); diff != "" {
				t.Errorf("publishes mismatch (-got +want):\n%s", diff)
			}
			if len(*waits) != 0 {
				t.Errorf("waits = %v, want none", *waits)
			}
			// What the gateway decodes.
			e, err := events.DecodeCatalogChanged([]byte(c.list()[0].Data))
			if err != nil {
				t.Fatalf("DecodeCatalogChanged: %v", err)
			}
			want := events.CatalogChangedV1{V: 1, Kind: tt.kind, ID: tt.id, OccurredAt: now.Truncate(time.Millisecond)}
			if diff := cmp.Diff(e, want); diff != "" {
				t.Errorf("decoded event mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestChangedRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		failures  int
		wantCalls int
		wantWaits []time.Duration
		wantErr   bool
	}{
		{name: "one failure", failures: 1, wantCalls: 2, wantWaits: []time.Duration{50 * time.Millisecond}},
		{name: "two failures", failures: 2, wantCalls: 3, wantWaits: []time.Duration{50 * time.Millisecond, 150 * time.Millisecond}},
		{name: "gives up after three attempts", failures: 10, wantCalls: 3, wantWaits: []time.Duration{50 * time.Millisecond, 150 * time.Millisecond}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeClient{failures: tt.failures}
			p, waits := newPublisher(c)

			err := p.Changed(context.Background(), events.KindDeal, "9002")

			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Changed() error = %v, want error %v", err, tt.wantErr)
			}
			calls := c.list()
			if len(calls) != tt.wantCalls {
				t.Fatalf("publishes = %d, want %d", len(calls), tt.wantCalls)
			}
			// Every attempt is the same event: same id, same payload.
			for _, call := range calls[1:] {
				if diff := cmp.Diff(call, calls[0]); diff != "" {
					t.Errorf("retry differs from the first attempt (-retry +first):\n%s", diff)
				}
			}
			if diff := cmp.Diff(*waits, tt.wantWaits); diff != "" {
				t.Errorf("waits mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestChangedIsBoundedAndOutlivesTheRequest(t *testing.T) {
	t.Parallel()
	c := &fakeClient{block: true}
	p := New(c, events.BroadcastPubSub)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client hung up after the create was stored

	start := time.Now()
	err := p.Changed(ctx, events.KindProduct, "7001")
	took := time.Since(start)

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Changed() error = %v, want %v", err, context.DeadlineExceeded)
	}
	if took >= time.Second {
		t.Errorf("Changed() took %v, want less than a second", took)
	}
	calls := c.list()
	if len(calls) != attempts {
		t.Errorf("publishes = %d, want %d", len(calls), attempts)
	}
	for i, call := range calls {
		if call.CtxErr != nil || !call.HasDeadline {
			t.Errorf("publish %d: context error %v, deadline %v; want a live context with a deadline", i, call.CtxErr, call.HasDeadline)
		}
	}
}

// TestBroadcastComponent: the component the catalog publishes on lets it (scopes) publish the
// change topics (allowedTopics), in the default and the postgres profile; daprd refuses
// either otherwise, and every create would log catalog_change_unpublished.
func TestBroadcastComponent(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..", "..", "..", "components")
	for _, path := range []string{
		filepath.Join(root, "pubsub-broadcast.yaml"),
		filepath.Join(root, "profiles", "postgres", "pubsub-broadcast.yaml"),
	} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Metadata struct{ Name string } `yaml:"metadata"`
				Spec     struct {
					Metadata []struct{ Name, Value string }
				} `yaml:"spec"`
				Scopes []string `yaml:"scopes"`
			}
			if err := yaml.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if c.Metadata.Name != events.BroadcastPubSub {
				t.Errorf("component %q, want %q", c.Metadata.Name, events.BroadcastPubSub)
			}
			if !slices.Contains(c.Scopes, "catalog") {
				t.Errorf("scopes %v lack catalog", c.Scopes)
			}
			var allowed []string
			for _, m := range c.Spec.Metadata {
				if m.Name == "allowedTopics" {
					allowed = strings.Split(m.Value, ",")
				}
			}
			for _, topic := range []string{events.TopicProductChanged, events.TopicDealChanged} {
				if !slices.Contains(allowed, topic) {
					t.Errorf("allowedTopics %v lack %s", allowed, topic)
				}
			}
		})
	}
}

func TestUnknownKind(t *testing.T) {
	t.Parallel()
	c := &fakeClient{}
	p, _ := newPublisher(c)

	if err := p.Changed(context.Background(), "group", "1"); err == nil {
		t.Error("Changed(group) error = nil, want an error")
	}
	if n := len(c.list()); n != 0 {
		t.Errorf("publishes = %d, want none", n)
	}
}
