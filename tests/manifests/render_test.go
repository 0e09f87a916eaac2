package manifests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../../charts/groupbuy"
	release   = "groupbuy"
	namespace = "groupbuy"
	// kubeVersion is the cluster version `helm template` assumes: the chart's floor
	// (Chart.yaml kubeVersion), so nothing newer sneaks in unnoticed.
	kubeVersion = "1.28.0"
)

// helmBinary returns the helm to run: $HELM, else the one scripts/helm.sh installs, else helm
// on PATH. It skips the test when there is none, the only reason to skip, unless
// GROUPBUY_REQUIRE_HELM is set (scripts that installed helm set it, so a lost helm fails).
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("HELM=%s: %v", h, err)
		}
		return h
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) > 1 {
			for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "helm")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if os.Getenv("GROUPBUY_REQUIRE_HELM") != "" {
		t.Fatal("GROUPBUY_REQUIRE_HELM is set but helm is not installed: run `bash scripts/helm.sh --install` or set HELM")
	}
	t.Skip("SKIP: helm is not installed, so the chart was not rendered or validated. " +
		"Install the pinned helm with `bash scripts/helm.sh --install` " +
		"(`go tool task test:manifests` does it) or set HELM=/path/to/helm.")
	return ""
}

// runHelm runs helm with args from the test package's directory, bounded in time.
func runHelm(t *testing.T, helm string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// No repository config, cache or kube context of the machine leaks in.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig-none"),
	)
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// templateArgs is `helm template` of the chart with extra flags.
func templateArgs(extra ...string) []string {
	return append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, extra...)
}

// reporter is what the checks need of a *testing.T; TestChecksCatchMistakes passes a
// recorder instead, to prove that each check fails when it should.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// object is one rendered document, decoded.
type object struct {
	source string // the template it came from ("# Source:" line)
	meta   metav1.TypeMeta
	name   string
	typed  any // pointer to the k8s API type, or to a dapr* struct below
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.meta.APIVersion, o.meta.Kind, o.name, o.source)
}

// manifest is everything one `helm template` rendered, by kind.
type manifest struct {
	objects         []object
	deployments     []*appsv1.Deployment
	statefulSets    []*appsv1.StatefulSet
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	secrets         []*corev1.Secret
	configMaps      []*corev1.ConfigMap
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	ingresses       []*networkingv1.Ingress
	roles           []*rbacv1.Role
	roleBindings    []*rbacv1.RoleBinding
	components      []*daprComponent
	configurations  []*daprConfiguration
	resiliencies    []*daprResiliency
	subscriptions   []*daprSubscription
}

// kubeKinds are the Kubernetes kinds the chart may render, decoded strictly into their API
// types. Anything else fails the test: a new kind needs a decision here.
var kubeKinds = map[string]func(m *manifest) any{
	"apps/v1/Deployment": func(m *manifest) any {
		o := &appsv1.Deployment{}
		m.deployments = append(m.deployments, o)
		return o
	},
	"apps/v1/StatefulSet": func(m *manifest) any {
		o := &appsv1.StatefulSet{}
		m.statefulSets = append(m.statefulSets, o)
		return o
	},
	"v1/Service": func(m *manifest) any {
		o := &corev1.Service{}
		m.services = append(m.services, o)
		return o
	},
	"v1/ServiceAccount": func(m *manifest) any {
		o := &corev1.ServiceAccount{}
		m.serviceAccounts = append(m.serviceAccounts, o)
		return o
	},
	"v1/Secret": func(m *manifest) any {
		o := &corev1.Secret{}
		m.secrets = append(m.secrets, o)
		return o
	},
	"v1/ConfigMap": func(m *manifest) any {
		o := &corev1.ConfigMap{}
		m.configMaps = append(m.configMaps, o)
		return o
	},
	"policy/v1/PodDisruptionBudget": func(m *manifest) any {
		o := &policyv1.PodDisruptionBudget{}
		m.pdbs = append(m.pdbs, o)
		return o
	},
	"autoscaling/v2/HorizontalPodAutoscaler": func(m *manifest) any {
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		m.hpas = append(m.hpas, o)
		return o
	},
	"networking.k8s.io/v1/Ingress": func(m *manifest) any {
		o := &networkingv1.Ingress{}
		m.ingresses = append(m.ingresses, o)
		return o
	},
	"rbac.authorization.k8s.io/v1/Role": func(m *manifest) any {
		o := &rbacv1.Role{}
		m.roles = append(m.roles, o)
		return o
	},
	"rbac.authorization.k8s.io/v1/RoleBinding": func(m *manifest) any {
		o := &rbacv1.RoleBinding{}
		m.roleBindings = append(m.roleBindings, o)
		return o
	},
}

// daprKinds are the Dapr kinds: validated against the CRD schema, then decoded into the small
// structs the checks read.
var daprKinds = map[string]func(m *manifest) any{
	"dapr.io/v1alpha1/Component": func(m *manifest) any {
		o := &daprComponent{}
		m.components = append(m.components, o)
		return o
	},
	"dapr.io/v1alpha1/Configuration": func(m *manifest) any {
		o := &daprConfiguration{}
		m.configurations = append(m.configurations, o)
		return o
	},
	"dapr.io/v1alpha1/Resiliency": func(m *manifest) any {
		o := &daprResiliency{}
		m.resiliencies = append(m.resiliencies, o)
		return o
	},
	"dapr.io/v2alpha1/Subscription": func(m *manifest) any {
		o := &daprSubscription{}
		m.subscriptions = append(m.subscriptions, o)
		return o
	},
}

type secretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

type daprComponent struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Type     string `json:"type"`
		Version  string `json:"version"`
		Metadata []struct {
			Name         string        `json:"name"`
			Value        any           `json:"value"`
			SecretKeyRef *secretKeyRef `json:"secretKeyRef"`
		} `json:"metadata"`
	} `json:"spec"`
	Auth *struct {
		SecretStore string `json:"secretStore"`
	} `json:"auth"`
	Scopes []string `json:"scopes"`
}

// meta returns the plain value of metadata item name and whether it is set as a value.
func (c *daprComponent) meta(name string) (string, bool) {
	for _, m := range c.Spec.Metadata {
		if m.Name == name && m.Value != nil {
			return fmt.Sprint(m.Value), true
		}
	}
	return "", false
}

type daprConfiguration struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Tracing *struct {
			SamplingRate string `json:"samplingRate"`
		} `json:"tracing"`
		NameResolution *struct {
			Component string `json:"component"`
		} `json:"nameResolution"`
		Secrets *struct {
			Scopes []struct {
				StoreName      string   `json:"storeName"`
				DefaultAccess  string   `json:"defaultAccess"`
				AllowedSecrets []string `json:"allowedSecrets"`
			} `json:"scopes"`
		} `json:"secrets"`
	} `json:"spec"`
}

type daprResiliency struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Policies struct {
			Timeouts        map[string]string          `json:"timeouts"`
			Retries         map[string]json.RawMessage `json:"retries"`
			CircuitBreakers map[string]json.RawMessage `json:"circuitBreakers"`
		} `json:"policies"`
		Targets struct {
			Apps       map[string]resiliencyTarget `json:"apps"`
			Actors     map[string]resiliencyTarget `json:"actors"`
			Components map[string]componentTargets `json:"components"`
		} `json:"targets"`
	} `json:"spec"`
	Scopes []string `json:"scopes"`
}

// resiliencyTarget is a target's policy names (comparable: the mirror check compares them).
type resiliencyTarget struct {
	Timeout                 string `json:"timeout"`
	Retry                   string `json:"retry"`
	CircuitBreaker          string `json:"circuitBreaker"`
	CircuitBreakerScope     string `json:"circuitBreakerScope"`
	CircuitBreakerCacheSize int    `json:"circuitBreakerCacheSize"`
}

type componentTargets struct {
	Inbound  *resiliencyTarget `json:"inbound"`
	Outbound *resiliencyTarget `json:"outbound"`
}

type daprSubscription struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		PubsubName      string `json:"pubsubname"`
		Topic           string `json:"topic"`
		DeadLetterTopic string `json:"deadLetterTopic"`
		Routes          struct {
			Default string `json:"default"`
			Rules   []struct {
				Match string `json:"match"`
				Path  string `json:"path"`
			} `json:"rules"`
		} `json:"routes"`
		Metadata map[string]string `json:"metadata"`
	} `json:"spec"`
	Scopes []string `json:"scopes"`
	// RawSpec is the whole spec as decoded, for comparisons that must not miss a field.
	RawSpec json.RawMessage `json:"-"`
}

func (s *daprSubscription) UnmarshalJSON(b []byte) error {
	type plain daprSubscription // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = daprSubscription(p)
	s.RawSpec = raw.Spec
	return nil
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// decodeManifest splits a multi-document YAML stream and decodes every object: Kubernetes
// kinds strictly into their API types, Dapr kinds against their CRD schema. Every problem is
// reported; the manifest holds what decoded.
func decodeManifest(t reporter, stream []byte, schemas crdSchemas) *manifest {
	t.Helper()
	m := &manifest{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("document %d: %v", i, err)
			break
		}
		source := "?"
		if s := sourceLine.FindSubmatch(doc); s != nil {
			source = string(s[1])
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Errorf("%s: not YAML: %v", source, err)
			continue
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // only comments
		}
		if obj, err := decodeObject(m, source, doc, js, schemas); err != nil {
			t.Errorf("%s: %v", source, err)
		} else {
			m.objects = append(m.objects, obj)
		}
	}
	return m
}

func decodeObject(m *manifest, source string, doc, js []byte, schemas crdSchemas) (object, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return object{}, err
	}
	var head struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(js, &head)
	obj := object{source: source, meta: tm, name: head.Metadata.Name}
	key := tm.APIVersion + "/" + tm.Kind
	if newTyped, ok := kubeKinds[key]; ok {
		typed := newTyped(m)
		// UnmarshalStrict: unknown fields and duplicate keys are errors.
		if err := yaml.UnmarshalStrict(doc, typed); err != nil {
			return obj, fmt.Errorf("%s %s: strict decoding: %w", key, obj.name, err)
		}
		obj.typed = typed
		return obj, nil
	}
	if newTyped, ok := daprKinds[key]; ok {
		sch, ok := schemas[key]
		if !ok {
			return obj, fmt.Errorf("%s: no CRD schema for it in testdata/crds", key)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
		if err != nil {
			return obj, err
		}
		if err := sch.Validate(inst); err != nil {
			return obj, fmt.Errorf("%s %s does not match the Dapr CRD schema: %w", key, obj.name, err)
		}
		// The CRD leaves metadata open (type: object): check it as the ObjectMeta it is.
		var meta struct {
			Metadata json.RawMessage `json:"metadata"`
		}
		if err := json.Unmarshal(js, &meta); err != nil {
			return obj, err
		}
		if err := yaml.UnmarshalStrict(meta.Metadata, &metav1.ObjectMeta{}); err != nil {
			return obj, fmt.Errorf("%s %s: metadata: %w", key, obj.name, err)
		}
		typed := newTyped(m)
		if err := json.Unmarshal(js, typed); err != nil {
			return obj, err
		}
		obj.typed = typed
		return obj, nil
	}
	return obj, fmt.Errorf("unexpected kind %s (add it to kubeKinds or daprKinds in render_test.go, with strict decoding)", key)
}

// crdSchemas maps "apiVersion/kind" (e.g. "dapr.io/v1alpha1/Component") to its schema.
type crdSchemas map[string]*jsonschema.Schema

// loadCRDSchemas compiles the openAPIV3Schema of every version of every CRD in testdata/crds,
// made strict: an object schema that lists properties rejects others unless it says
// x-kubernetes-preserve-unknown-fields (the API server would silently prune them, which hides
// typos; kubectl's strict field validation rejects them).
func loadCRDSchemas(t *testing.T) crdSchemas {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in testdata/crds: %v", err)
	}
	out := crdSchemas{}
	c := jsonschema.NewCompiler()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			key := crd.Spec.Group + "/" + v.Name + "/" + crd.Spec.Names.Kind
			js, err := json.Marshal(strictSchema(v.Schema.OpenAPIV3Schema))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
			if err != nil {
				t.Fatal(err)
			}
			url := "file:///crds/" + key + ".json"
			if err := c.AddResource(url, doc); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			sch, err := c.Compile(url)
			if err != nil {
				t.Fatalf("%s: compiling the schema: %v", key, err)
			}
			out[key] = sch
		}
	}
	return out
}

// strictSchema returns s with additionalProperties: false on every object schema that lists
// properties and neither allows more nor preserves unknown fields.
func strictSchema(s any) any {
	switch v := s.(type) {
	case map[string]any:
		out := make(map[string]any, len(v)+1)
		for k, x := range v {
			switch k {
			case "properties", "patternProperties", "definitions", "$defs":
				if props, ok := x.(map[string]any); ok {
					np := make(map[string]any, len(props))
					for pk, pv := range props {
						np[pk] = strictSchema(pv)
					}
					out[k] = np
					continue
				}
			}
			out[k] = strictSchema(x)
		}
		_, hasProps := v["properties"]
		_, hasAdditional := v["additionalProperties"]
		preserve, _ := v["x-kubernetes-preserve-unknown-fields"].(bool)
		if hasProps && !hasAdditional && !preserve {
			out["additionalProperties"] = false
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = strictSchema(x)
		}
		return out
	default:
		return s
	}
}
