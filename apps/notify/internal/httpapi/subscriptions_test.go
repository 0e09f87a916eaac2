package httpapi_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"gopkg.in/yaml.v3"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/events"
)

type subscriptionDoc struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		PubSub string `yaml:"pubsubname"`
		Topic  string `yaml:"topic"`
		Routes struct {
			Default string `yaml:"default"`
		} `yaml:"routes"`
		DeadLetterTopic string            `yaml:"deadLetterTopic"`
		Metadata        map[string]string `yaml:"metadata"`
	} `yaml:"spec"`
	Scopes []string `yaml:"scopes"`
}

// TestSubscriptionsMatchRoutes keeps components/subscriptions-notify.yaml and the router in
// step: daprd treats a 404 answer as "drop without dead-lettering", so a route named there but
// not mounted here would lose every event of its topic.
func TestSubscriptionsMatchRoutes(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("..", "..", "..", "..", "components", "subscriptions-notify.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var subs []subscriptionDoc
	dec := yaml.NewDecoder(f)
	for {
		var d subscriptionDoc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode: %v", err)
		}
		subs = append(subs, d)
	}

	e := newEnv(t)
	mounted := map[string]bool{}
	err = chi.Walk(e.router.(chi.Router), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		mounted[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]string{} // component/topic -> route
	var topics []string
	for _, topic := range events.OrderTopics {
		want[events.PubSub+"/"+topic] = httpapi.RouteOrderEvents
		topics = append(topics, topic)
	}
	for _, topic := range notification.GroupTopics {
		want[events.PubSub+"/"+topic] = httpapi.RouteGroupEvents
		topics = append(topics, topic)
	}
	// Every dead-letter topic has a keeper, or RabbitMQ discards what lands there.
	for _, topic := range topics {
		want[events.PubSub+"/"+topic+events.DeadLetterSuffix] = httpapi.RouteDeadLetters
	}

	got := map[string]string{}
	for _, s := range subs {
		if s.Kind != "Subscription" || s.APIVersion != "dapr.io/v2alpha1" {
			t.Errorf("%s: kind %s %s, want Subscription dapr.io/v2alpha1", s.Metadata.Name, s.APIVersion, s.Kind)
		}
		if !slices.Equal(s.Scopes, []string{"notify"}) {
			t.Errorf("%s: scopes %v, want [notify]", s.Metadata.Name, s.Scopes)
		}
		if s.Spec.PubSub != events.PubSub {
			t.Errorf("%s: pubsub %q, want %q (notify no longer subscribes to the live relay)", s.Metadata.Name, s.Spec.PubSub, events.PubSub)
		}
		if !mounted["POST "+s.Spec.Routes.Default] {
			t.Errorf("%s: route POST %s is not mounted", s.Metadata.Name, s.Spec.Routes.Default)
		}
		isDead := strings.HasSuffix(s.Spec.Topic, events.DeadLetterSuffix)
		wantDead, wantRaw := s.Spec.Topic+events.DeadLetterSuffix, ""
		if isDead {
			// The keeper has nowhere further to send a message, and reads it raw (see
			// subscriber.go: keepDeadLetter).
			wantDead, wantRaw = "", "true"
		}
		if s.Spec.DeadLetterTopic != wantDead {
			t.Errorf("%s: deadLetterTopic %q, want %q", s.Metadata.Name, s.Spec.DeadLetterTopic, wantDead)
		}
		if got := s.Spec.Metadata["rawPayload"]; got != wantRaw {
			t.Errorf("%s: rawPayload %q, want %q", s.Metadata.Name, got, wantRaw)
		}
		got[s.Spec.PubSub+"/"+s.Spec.Topic] = s.Spec.Routes.Default
	}
	for k, route := range want {
		if got[k] != route {
			t.Errorf("subscription %s routes to %q, want %q", k, got[k], route)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected subscription %s", k)
		}
	}
	// Listing and replay by id look through the keeper's known topics: they are exactly the
	// dead-letter topics subscribed to.
	var dead []string
	for _, s := range subs {
		if strings.HasSuffix(s.Spec.Topic, events.DeadLetterSuffix) {
			dead = append(dead, s.Spec.Topic)
		}
	}
	if got, want := slices.Sorted(slices.Values(deadletter.KnownTopics())), slices.Sorted(slices.Values(dead)); !slices.Equal(got, want) {
		t.Errorf("deadletter.KnownTopics() = %v, want the subscribed dead-letter topics %v", got, want)
	}
}
