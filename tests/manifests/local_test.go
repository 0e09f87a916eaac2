package manifests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The local (self-hosted) Dapr resources the chart mirrors: the components and subscriptions
// daprd loads from components/, and dapr/resiliency.yaml.
const (
	localComponentsGlob = "../../components/*.yaml"
	localResiliency     = "../../dapr/resiliency.yaml"
)

// localResources is what the repository's local resources declare.
type localResources struct {
	components    map[string]*daprComponent    // by name
	subscriptions map[string]*daprSubscription // by name
	subSources    map[string]string            // subscription name -> file
	resiliency    *daprResiliency
}

// loadLocal reads components/*.yaml (not the profile overlays under components/profiles) and
// dapr/resiliency.yaml. Decoding is as lenient as daprd's own loading of these files: fields
// Dapr does not know are dropped, so the comparison is on what the sidecars actually use.
func loadLocal(t *testing.T) *localResources {
	t.Helper()
	l := &localResources{
		components:    map[string]*daprComponent{},
		subscriptions: map[string]*daprSubscription{},
		subSources:    map[string]string{},
	}
	files, err := filepath.Glob(localComponentsGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no local resources match %s: %v", localComponentsGlob, err)
	}
	files = append(files, localResiliency)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if string(bytes.TrimSpace(js)) == "null" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(js, &head); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			name := head.Metadata.Name
			switch head.APIVersion + "/" + head.Kind {
			case "dapr.io/v1alpha1/Component":
				c := &daprComponent{}
				mustUnmarshal(t, f, js, c)
				l.components[name] = c
			case "dapr.io/v2alpha1/Subscription":
				s := &daprSubscription{}
				mustUnmarshal(t, f, js, s)
				if _, dup := l.subscriptions[name]; dup {
					t.Fatalf("%s: subscription %s also in %s", f, name, l.subSources[name])
				}
				l.subscriptions[name] = s
				l.subSources[name] = filepath.Base(f)
			case "dapr.io/v1alpha1/Resiliency":
				r := &daprResiliency{}
				mustUnmarshal(t, f, js, r)
				l.resiliency = r
			default:
				t.Fatalf("%s: %s %s/%s: the chart mirror check does not know this kind (a v1alpha1 "+
					"Subscription? use v2alpha1 as the others do)", f, head.APIVersion, head.Kind, name)
			}
		}
	}
	if len(l.subscriptions) == 0 || l.resiliency == nil {
		t.Fatalf("local resources: %d subscriptions, resiliency %v: expected both", len(l.subscriptions), l.resiliency != nil)
	}
	return l
}

func mustUnmarshal(t *testing.T, file string, js []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(js, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// checkMirrorsLocal: the chart's Components, Subscriptions and Resiliency are those the apps
// run with locally, so the two cannot drift apart unnoticed.
func checkMirrorsLocal(t reporter, m *manifest, local *localResources) {
	t.Helper()
	if local == nil {
		return
	}
	checkComponentScopesMirror(t, m, local)
	checkSubscriptionsMirror(t, m, local)
	checkResiliencyMirror(t, m, local)
}

// checkComponentScopesMirror: every component exists on both sides with the same scopes (the
// types and connection metadata differ on purpose: Kubernetes secrets, in-cluster servers).
func checkComponentScopesMirror(t reporter, m *manifest, local *localResources) {
	t.Helper()
	rendered := map[string]bool{}
	for _, c := range m.components {
		rendered[c.Name] = true
		lc, ok := local.components[c.Name]
		if !ok {
			t.Errorf("component %s has no counterpart in components/*.yaml", c.Name)
			continue
		}
		if !sameSet(c.Scopes, lc.Scopes) {
			t.Errorf("component %s: scopes %v, components/*.yaml has %v", c.Name, sorted(c.Scopes), sorted(lc.Scopes))
		}
	}
	for _, name := range sortedKeys(local.components) {
		if !rendered[name] {
			t.Errorf("component %s is in components/*.yaml but not rendered by the chart", name)
		}
	}
}

// checkSubscriptionsMirror: the chart renders exactly the Subscriptions of components/*.yaml,
// by name, each with the same spec (pubsubname, topic, routes, deadLetterTopic, metadata,
// bulkSubscribe, ...) and scopes.
func checkSubscriptionsMirror(t reporter, m *manifest, local *localResources) {
	t.Helper()
	rendered := map[string]bool{}
	for _, s := range m.subscriptions {
		rendered[s.Name] = true
		ls, ok := local.subscriptions[s.Name]
		if !ok {
			t.Errorf("subscription %s (pubsub %s, topic %s) has no counterpart in components/*.yaml", s.Name, s.Spec.PubsubName, s.Spec.Topic)
			continue
		}
		src := "components/" + local.subSources[s.Name]
		got, want := specMap(s.RawSpec), specMap(ls.RawSpec)
		for _, k := range unionKeys(got, want) {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("subscription %s does not match %s: spec.%s = %s, want %s", s.Name, src, k, jsonString(got[k]), jsonString(want[k]))
			}
		}
		if !sameSet(s.Scopes, ls.Scopes) {
			t.Errorf("subscription %s does not match %s: scopes %v, want %v", s.Name, src, sorted(s.Scopes), sorted(ls.Scopes))
		}
	}
	for _, name := range sortedKeys(local.subscriptions) {
		if !rendered[name] {
			ls := local.subscriptions[name]
			t.Errorf("subscription %s (components/%s: pubsub %s, topic %s) is not rendered by the chart",
				name, local.subSources[name], ls.Spec.PubsubName, ls.Spec.Topic)
		}
	}
}

// retryPolicy and breakerPolicy are the fields Dapr 1.16 reads (pkg/apis/resiliency/v1alpha1);
// anything else in a policy (e.g. initialInterval) is ignored by daprd and left out here.
type retryPolicy struct {
	Policy      string `json:"policy"`
	Duration    string `json:"duration"`
	MaxInterval string `json:"maxInterval"`
	MaxRetries  *int   `json:"maxRetries"`
	Matching    *struct {
		HTTPStatusCodes string `json:"httpStatusCodes"`
		GRPCStatusCodes string `json:"gRPCStatusCodes"`
	} `json:"matching"`
}

type breakerPolicy struct {
	MaxRequests int    `json:"maxRequests"`
	Interval    string `json:"interval"`
	Timeout     string `json:"timeout"`
	Trip        string `json:"trip"`
}

// checkResiliencyMirror: every target of dapr/resiliency.yaml (apps, actors, components with
// their directions) is in the rendered Resiliency with the same policy names and no target is
// only in the chart; the policies the targets name are defined alike.
func checkResiliencyMirror(t reporter, m *manifest, local *localResources) {
	t.Helper()
	if len(m.resiliencies) != 1 {
		return // checkResiliency reports it
	}
	r, lr := m.resiliencies[0], local.resiliency
	const src = "dapr/resiliency.yaml"

	compareTargets := func(kind string, got, want map[string]resiliencyTarget) {
		for _, name := range sortedKeys(want) {
			g, ok := got[name]
			if !ok {
				t.Errorf("resiliency target %s.%s in %s is missing from the rendered Resiliency %s", kind, name, src, r.Name)
				continue
			}
			if g != want[name] {
				t.Errorf("resiliency target %s.%s = %+v, %s has %+v", kind, name, g, src, want[name])
			}
		}
		for _, name := range sortedKeys(got) {
			if _, ok := want[name]; !ok {
				t.Errorf("resiliency target %s.%s is rendered but not in %s", kind, name, src)
			}
		}
	}
	compareTargets("apps", r.Spec.Targets.Apps, lr.Spec.Targets.Apps)
	compareTargets("actors", r.Spec.Targets.Actors, lr.Spec.Targets.Actors)
	directions := func(comps map[string]componentTargets) map[string]resiliencyTarget {
		out := map[string]resiliencyTarget{}
		for name, c := range comps {
			if c.Inbound != nil {
				out[name+".inbound"] = *c.Inbound
			}
			if c.Outbound != nil {
				out[name+".outbound"] = *c.Outbound
			}
		}
		return out
	}
	compareTargets("components", directions(r.Spec.Targets.Components), directions(lr.Spec.Targets.Components))

	got, want := r.Spec.Policies, lr.Spec.Policies
	for _, name := range unionKeys(got.Timeouts, want.Timeouts) {
		g, gok := got.Timeouts[name]
		w, wok := want.Timeouts[name]
		if gok != wok || g != w {
			t.Errorf("resiliency policy timeouts.%s = %q, %s has %q", name, g, src, w)
		}
	}
	comparePolicies(t, "retries", got.Retries, want.Retries, func() any { return &retryPolicy{} })
	comparePolicies(t, "circuitBreakers", got.CircuitBreakers, want.CircuitBreakers, func() any { return &breakerPolicy{} })
}

func comparePolicies(t reporter, kind string, got, want map[string]json.RawMessage, newPolicy func() any) {
	t.Helper()
	for _, name := range unionKeys(got, want) {
		g, gok := got[name]
		w, wok := want[name]
		if !gok || !wok {
			t.Errorf("resiliency policy %s.%s: rendered %v, in dapr/resiliency.yaml %v", kind, name, gok, wok)
			continue
		}
		gp, wp := newPolicy(), newPolicy()
		if err := json.Unmarshal(g, gp); err != nil {
			t.Errorf("resiliency policy %s.%s: %v", kind, name, err)
			continue
		}
		if err := json.Unmarshal(w, wp); err != nil {
			t.Errorf("resiliency policy %s.%s in dapr/resiliency.yaml: %v", kind, name, err)
			continue
		}
		if !reflect.DeepEqual(gp, wp) {
			t.Errorf("resiliency policy %s.%s = %s, dapr/resiliency.yaml has %s", kind, name, jsonString(gp), jsonString(wp))
		}
	}
}

func specMap(raw json.RawMessage) map[string]any {
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

func jsonString(v any) string {
	if v == nil {
		return "(unset)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func unionKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Compact(sorted(a)), slices.Compact(sorted(b)))
}

// TestLocalResourcesLoad: the mirror check reads what it should (a parse that silently found
// nothing would make every comparison pass).
func TestLocalResourcesLoad(t *testing.T) {
	l := loadLocal(t)
	for _, name := range []string{"statestore", "pubsub", "pubsub-broadcast", "order-expiry", "secretstore"} {
		if _, ok := l.components[name]; !ok {
			t.Errorf("local component %s not found", name)
		}
	}
	for name, s := range l.subscriptions {
		if s.Spec.PubsubName == "" || s.Spec.Topic == "" || len(s.Scopes) == 0 || !strings.HasPrefix(s.Spec.Routes.Default, "/") {
			t.Errorf("local subscription %s (%s) decoded incompletely: %+v scopes %v", name, l.subSources[name], s.Spec, s.Scopes)
		}
	}
	if len(l.resiliency.Spec.Targets.Apps) == 0 || len(l.resiliency.Spec.Targets.Components) == 0 || len(l.resiliency.Spec.Policies.Retries) == 0 {
		t.Errorf("dapr/resiliency.yaml decoded incompletely: %+v", l.resiliency.Spec)
	}
}
