package httpapi_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/live"
)

// TestSubscriptionsMatchRoutes keeps components/subscriptions-gateway.yaml and the router in
// step: daprd treats a 404 answer as "drop", so a route named there but not mounted here would
// silently end every live stream.
func TestSubscriptionsMatchRoutes(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("..", "..", "..", "..", "components", "subscriptions-gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			PubSub string `yaml:"pubsubname"`
			Topic  string `yaml:"topic"`
			Routes struct {
				Default string `yaml:"default"`
			} `yaml:"routes"`
			DeadLetterTopic string `yaml:"deadLetterTopic"`
		} `yaml:"spec"`
		Scopes []string `yaml:"scopes"`
	}
	e := newEnv(t)
	mounted := map[string]bool{}
	if err := chi.Walk(e.router.(chi.Router), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		mounted[method+" "+route] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	got := map[string]string{}
	dec := yaml.NewDecoder(f)
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode: %v", err)
		}
		name := d.Spec.PubSub + "/" + d.Spec.Topic
		if d.Kind != "Subscription" || d.APIVersion != "dapr.io/v2alpha1" {
			t.Errorf("%s: %s %s, want Subscription dapr.io/v2alpha1", name, d.APIVersion, d.Kind)
		}
		if !slices.Equal(d.Scopes, []string{"gateway"}) {
			t.Errorf("%s: scopes %v, want [gateway]", name, d.Scopes)
		}
		if d.Spec.DeadLetterTopic != "" {
			t.Errorf("%s: deadLetterTopic %q, want none (broadcast events are best effort)", name, d.Spec.DeadLetterTopic)
		}
		if !mounted["POST "+d.Spec.Routes.Default] {
			t.Errorf("%s: route POST %s is not mounted", name, d.Spec.Routes.Default)
		}
		got[name] = d.Spec.Routes.Default
	}
	want := map[string]string{
		live.PubSub + "/" + live.TopicOrder:                       httpapi.RouteLiveOrder,
		live.PubSub + "/" + live.TopicGroup:                       httpapi.RouteLiveGroup,
		events.BroadcastPubSub + "/" + events.TopicProductChanged: httpapi.RouteCatalogChanged,
		events.BroadcastPubSub + "/" + events.TopicDealChanged:    httpapi.RouteCatalogChanged,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
}
