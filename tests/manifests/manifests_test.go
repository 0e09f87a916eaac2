package manifests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// appComponents is what each app needs from Dapr (DESIGN.md §2, apps/*/main.go): the app must
// be in the scopes of each of these components, whether or not the app is enabled. The gateway
// subscribes to the live relay and the catalog change events on pubsub-broadcast, which notify
// and the catalog publish to; order reads the expiry and reconciliation cron bindings; group
// keeps its actors in the state store and publishes group events.
var appComponents = map[string][]string{
	"gateway":   {"statestore", "secretstore", "pubsub-broadcast"},
	"catalog":   {"statestore", "pubsub", "pubsub-broadcast"},
	"inventory": {"statestore"},
	"order":     {"statestore", "pubsub", "order-expiry", "order-reconcile"},
	"payment":   {"statestore"},
	"notify":    {"statestore", "pubsub", "pubsub-broadcast"},
	"group":     {"statestore", "pubsub"},
}

// actorHosts are the apps that host Dapr actors, with their actor types: each needs the actor
// state store in its scopes (placement and the scheduler come from the Dapr control plane).
var actorHosts = map[string][]string{
	"group": {"GroupActor"},
}

// defaultActorDrain is the group app's ACTOR_DRAIN_TIMEOUT default (apps/group/main.go).
const defaultActorDrain = 30 * time.Second

// nodeIDApps generate Snowflake ids and need a NODE_ID unique per replica.
var nodeIDApps = []string{"gateway", "catalog", "order", "group"}

// daprPorts are the sidecar's ports in the same pod (defaults of the Dapr 1.16 injector).
var daprPorts = []int32{3500, 3501, 50001, 50002, 7777}

type renderCase struct {
	name string
	args []string
	// apps expected to be deployed.
	apps []string
	// production: 3 replicas per app (HPA floor), HPAs, PDBs with minAvailable.
	production bool
	// devSecrets: the chart renders the Secrets itself.
	devSecrets bool
}

var defaultApps = []string{"catalog", "gateway", "group", "inventory", "notify", "order", "payment"}

var cases = []renderCase{
	{name: "default", apps: defaultApps},
	{name: "production", args: []string{"-f", chartDir + "/values-production.yaml"}, apps: defaultApps, production: true},
	{
		name: "dev-secrets",
		args: []string{
			"--set", "devSecrets.create=true",
			"--set", "devSecrets.redisAddress=redis-master:6379",
			"--set", "devSecrets.rabbitmqUrl=amqp://groupbuy:dev-only@rabbitmq:5672/",
		},
		apps:       defaultApps,
		devSecrets: true,
	},
	{
		name: "without-group",
		args: []string{"--set", "apps.group.enabled=false"},
		apps: slices.DeleteFunc(slices.Clone(defaultApps), func(a string) bool { return a == "group" }),
	},
}

func TestChart(t *testing.T) {
	helm := helmBinary(t)
	schemas := loadCRDSchemas(t)
	local := loadLocal(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := runHelm(t, helm, templateArgs(c.args...)...)
			if err != nil {
				t.Fatalf("helm template %v: %v\n%s", c.args, err, stderr)
			}
			checkAll(t, c, []byte(out), schemas, local)
		})
	}
}

// checkAll decodes a rendered chart and runs every check on it, including that its Dapr
// resources mirror the local ones (local may be nil to skip that).
func checkAll(t reporter, c renderCase, out []byte, schemas crdSchemas, local *localResources) {
	t.Helper()
	m := decodeManifest(t, out, schemas)
	apps := checkApps(t, c, m)
	checkUniqueNames(t, m)
	checkComponents(t, m)
	checkActorHosts(t, m, apps)
	checkSubscriptions(t, m)
	checkConfiguration(t, m, apps)
	checkResiliency(t, m)
	checkMirrorsLocal(t, m, local)
	checkSecrets(t, c, m, apps)
	checkGatewaySecretAccess(t, m, apps)
	checkIngresses(t, m)
}

// checkIngresses: every Ingress backend is a rendered Service port.
func checkIngresses(t reporter, m *manifest) {
	t.Helper()
	for _, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				t.Errorf("Ingress %s: a rule without http paths", ing.Name)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				svc := p.Backend.Service
				if svc == nil {
					t.Errorf("Ingress %s: path %s has no Service backend", ing.Name, p.Path)
					continue
				}
				ok := slices.ContainsFunc(m.services, func(s *corev1.Service) bool {
					return s.Name == svc.Name && slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
						return (svc.Port.Name != "" && sp.Name == svc.Port.Name) || (svc.Port.Number != 0 && sp.Port == svc.Port.Number)
					})
				})
				if !ok {
					t.Errorf("Ingress %s: backend %s port %v is not a rendered Service port", ing.Name, svc.Name, svc.Port)
				}
			}
		}
	}
}

// TestHelmLint runs `helm lint --strict` with each values file.
func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for name, args := range map[string][]string{
		"default":    nil,
		"production": {"-f", chartDir + "/values-production.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := runHelm(t, helm, append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, stderr)
			}
			// Template `fail`s surface in lint as [INFO] lines while lint still passes.
			if strings.Contains(out+stderr, "Fail:") {
				t.Errorf("helm lint reported template failures:\n%s%s", out, stderr)
			}
		})
	}
}

// TestChartRefusesBadValues: the chart's own guards fail rendering.
func TestChartRefusesBadValues(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		// values.schema.json catches these before the templates run.
		{"node id prefix out of range", []string{"--set", "apps.order.nodeIdPrefix=12"}, "/apps/order/nodeIdPrefix"},
		{"misspelt app setting", []string{"--set", "apps.gateway.replicacount=3"}, "additional properties 'replicacount' not allowed"},
		{"misspelt top-level key", []string{"--set", "secret.redis.name=x"}, "additional properties 'secret' not allowed"},
		{"component map that is not a secretKeyRef", []string{"--set", "dapr.components.pubsub.metadata.durable.x=y"}, "/dapr/components/pubsub/metadata/durable"},
		// The templates' own guards (also with --skip-schema-validation).
		{"node id prefix out of range, no schema", []string{"--skip-schema-validation", "--set", "apps.order.nodeIdPrefix=12"}, "nodeIdPrefix must be a single digit"},
		{"component map that is not a secretKeyRef, no schema", []string{"--skip-schema-validation", "--set", "dapr.components.pubsub.metadata.durable.x=y"}, "must be {secretKeyRef"},
		{"too many replicas for NODE_ID", []string{"--set", "apps.catalog.replicaCount=101"}, "at most 100 replicas"},
		{"too many autoscaled replicas", []string{"--set", "defaults.autoscaling.enabled=true", "--set", "defaults.autoscaling.maxReplicas=150"}, "at most 100 replicas"},
		{"app port on a Dapr port", []string{"--set", "apps.payment.ports.http=3500"}, "used by the Dapr sidecar"},
		{"dev secrets without Redis", []string{"--set", "devSecrets.create=true", "--set", "devSecrets.rabbitmqUrl=amqp://x"}, "devSecrets.redisAddress is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, err := runHelm(t, helm, templateArgs(tt.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error containing %q", tt.args, tt.want)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("helm template %v: got error\n%s\nwant it to contain %q", tt.args, stderr, tt.want)
			}
		})
	}
}

// workload is a Deployment or StatefulSet, seen through what the checks need.
type workload struct {
	kind     string
	name     string
	replicas *int32
	labels   map[string]string // workload labels
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(m *manifest) []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Replicas, d.Labels, d.Spec.Selector, d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Labels, s.Spec.Selector, s.Spec.Template})
	}
	return out
}

// appInfo is what later checks need to know about a deployed app.
type appInfo struct {
	workload  workload
	container corev1.Container
	env       map[string]corev1.EnvVar
}

// checkApps checks every app's workload and returns them by app id.
func checkApps(t reporter, c renderCase, m *manifest) map[string]appInfo {
	t.Helper()
	apps := map[string]appInfo{}
	prefixes := map[string]string{} // NODE_ID prefix -> app
	for _, w := range workloads(m) {
		ann := w.pod.Annotations
		id := ann["dapr.io/app-id"]
		where := fmt.Sprintf("%s %s (app %q)", w.kind, w.name, id)
		if id == "" {
			t.Errorf("%s: no dapr.io/app-id annotation", where)
			continue
		}
		if _, dup := apps[id]; dup {
			t.Errorf("%s: app id %q used by two workloads", where, id)
		}
		if len(w.pod.Spec.Containers) != 1 {
			t.Errorf("%s: %d containers, want the app alone (the injector adds daprd)", where, len(w.pod.Spec.Containers))
			continue
		}
		ctr := w.pod.Spec.Containers[0]
		env := map[string]corev1.EnvVar{}
		for _, e := range ctr.Env {
			if _, dup := env[e.Name]; dup {
				t.Errorf("%s: env %s set twice", where, e.Name)
			}
			env[e.Name] = e
		}
		info := appInfo{workload: w, container: ctr, env: env}
		apps[id] = info

		if w.selector == nil || !selects(w.selector, w.pod.Labels) {
			t.Errorf("%s: selector %v does not select its own pod labels %v", where, w.selector, w.pod.Labels)
		}
		checkDaprAnnotations(t, where, w, m)
		httpPort := checkPorts(t, where, ctr, env)
		checkProbes(t, where, ctr, httpPort)
		checkResources(t, where, ctr)
		checkSecurity(t, where, w.pod.Spec, ctr)
		checkTokens(t, where, ann, env)
		checkService(t, where, w, m, httpPort)
		checkPDB(t, c, where, w, m)
		checkReplicas(t, c, where, w, m)
		checkServiceAccount(t, where, w, m)

		// NODE_ID: unique per replica for the apps that generate ids.
		if slices.Contains(nodeIDApps, id) {
			prefix := checkNodeID(t, where, w, m, ctr.Env)
			if prefix != "" {
				if other, dup := prefixes[prefix]; dup {
					t.Errorf("%s: NODE_ID prefix %s also used by %s: their ids would collide", where, prefix, other)
				}
				prefixes[prefix] = id
			}
		} else if _, ok := env["NODE_ID"]; ok && w.kind != "StatefulSet" {
			t.Errorf("%s: NODE_ID set on a Deployment: every replica would share it", where)
		}
	}
	var got []string
	for id := range apps {
		got = append(got, id)
	}
	sort.Strings(got)
	want := slices.Clone(c.apps)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("deployed apps = %v, want %v", got, want)
	}
	return apps
}

func selects(sel *metav1.LabelSelector, lbls map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	return s.Matches(labels.Set(lbls))
}

func checkDaprAnnotations(t reporter, where string, w workload, m *manifest) {
	t.Helper()
	ann := w.pod.Annotations
	want := map[string]string{
		"dapr.io/enabled":        "true",
		"dapr.io/app-protocol":   "http",
		"dapr.io/enable-metrics": "true",
	}
	for k, v := range want {
		if ann[k] != v {
			t.Errorf("%s: annotation %s = %q, want %q", where, k, ann[k], v)
		}
	}
	for _, k := range []string{
		"dapr.io/app-port", "dapr.io/config", "dapr.io/app-token-secret", "dapr.io/api-token-secret",
		"dapr.io/sidecar-cpu-request", "dapr.io/sidecar-memory-request", "dapr.io/sidecar-memory-limit",
		"dapr.io/metrics-port",
	} {
		if ann[k] == "" {
			t.Errorf("%s: annotation %s missing", where, k)
		}
	}
	for _, k := range []string{"dapr.io/sidecar-cpu-request", "dapr.io/sidecar-cpu-limit", "dapr.io/sidecar-memory-request", "dapr.io/sidecar-memory-limit"} {
		if v, ok := ann[k]; ok {
			if _, err := resource.ParseQuantity(v); err != nil {
				t.Errorf("%s: annotation %s = %q is not a quantity: %v", where, k, v, err)
			}
		}
	}
	if mp, err := strconv.Atoi(ann["dapr.io/metrics-port"]); err != nil || mp <= 0 {
		t.Errorf("%s: dapr.io/metrics-port = %q is not a port", where, ann["dapr.io/metrics-port"])
	}
	if cfg := ann["dapr.io/config"]; cfg != "" && !slices.ContainsFunc(m.configurations, func(c *daprConfiguration) bool { return c.Name == cfg }) {
		t.Errorf("%s: dapr.io/config %q is not a rendered Configuration", where, cfg)
	}
}

// checkPorts checks the container's ports against APP_PORT/ADMIN_PORT/LISTEN_HOST and the
// sidecar's ports, and returns the http port.
func checkPorts(t reporter, where string, ctr corev1.Container, env map[string]corev1.EnvVar) int32 {
	t.Helper()
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
		if slices.Contains(daprPorts, p.ContainerPort) {
			t.Errorf("%s: container port %d is the Dapr sidecar's", where, p.ContainerPort)
		}
	}
	if env["LISTEN_HOST"].Value != "0.0.0.0" {
		t.Errorf("%s: LISTEN_HOST = %q, want 0.0.0.0 (probes and the sidecar reach the pod IP)", where, env["LISTEN_HOST"].Value)
	}
	for envName, portName := range map[string]string{"APP_PORT": "http", "ADMIN_PORT": "admin"} {
		p, ok := ports[portName]
		if !ok {
			t.Errorf("%s: no container port named %q", where, portName)
			continue
		}
		if got := env[envName].Value; got != strconv.Itoa(int(p)) {
			t.Errorf("%s: %s = %q, want %d (container port %q)", where, envName, got, p, portName)
		}
	}
	return ports["http"]
}

func checkProbes(t reporter, where string, ctr corev1.Container, httpPort int32) {
	t.Helper()
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", ctr.LivenessProbe, "/healthz"},
		{"readinessProbe", ctr.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s", where, p.kind)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s: %s path %q, want %q", where, p.kind, g.Path, p.path)
		}
		if g.Port != intstr.FromString("http") && g.Port != intstr.FromInt32(httpPort) {
			t.Errorf("%s: %s port %s, want the http port", where, p.kind, g.Port.String())
		}
	}
}

func checkResources(t reporter, where string, ctr corev1.Container) {
	t.Helper()
	r := ctr.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", where, name)
		}
	}
	if q, ok := r.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
		t.Errorf("%s: no memory limit", where)
	} else if req := r.Requests[corev1.ResourceMemory]; req.Cmp(q) > 0 {
		t.Errorf("%s: memory request %s above the limit %s", where, req.String(), q.String())
	}
}

func checkSecurity(t reporter, where string, pod corev1.PodSpec, ctr corev1.Container) {
	t.Helper()
	psc := pod.SecurityContext
	csc := ctr.SecurityContext
	if psc == nil || csc == nil {
		t.Errorf("%s: pod and container need a securityContext", where)
		return
	}
	nonRoot := (csc.RunAsNonRoot != nil && *csc.RunAsNonRoot) || (csc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot must be true", where)
	}
	uid := psc.RunAsUser
	if csc.RunAsUser != nil {
		uid = csc.RunAsUser
	}
	if uid == nil || *uid != 65532 {
		t.Errorf("%s: runAsUser = %v, want 65532", where, uid)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", where)
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
	if csc.Privileged != nil && *csc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", where)
	}
	seccomp := psc.SeccompProfile
	if csc.SeccompProfile != nil {
		seccomp = csc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile must be RuntimeDefault (it covers the injected sidecar too)", where)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: shares a host namespace", where)
	}
}

// checkTokens: the app and its sidecar share the token Secrets named in the annotations.
func checkTokens(t reporter, where string, ann map[string]string, env map[string]corev1.EnvVar) {
	t.Helper()
	for envName, annotation := range map[string]string{
		"APP_API_TOKEN":  "dapr.io/app-token-secret",
		"DAPR_API_TOKEN": "dapr.io/api-token-secret",
	} {
		ref := secretRef(env[envName])
		if ref == nil {
			t.Errorf("%s: %s must come from a secretKeyRef", where, envName)
			continue
		}
		if ref.Name != ann[annotation] || ref.Key != "token" {
			t.Errorf("%s: %s from secret %s/%s, want %s/token (annotation %s)", where, envName, ref.Name, ref.Key, ann[annotation], annotation)
		}
	}
}

func secretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

func checkService(t reporter, where string, w workload, m *manifest, httpPort int32) {
	t.Helper()
	for _, s := range m.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone || !selectsMap(s.Spec.Selector, w.pod.Labels) {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort == intstr.FromString("http") || p.TargetPort == intstr.FromInt32(httpPort) {
				return
			}
		}
	}
	t.Errorf("%s: no Service selects its pods on the http port", where)
}

func selectsMap(sel, lbls map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(lbls))
}

func checkPDB(t reporter, c renderCase, where string, w workload, m *manifest) {
	t.Helper()
	n := 0
	for _, p := range m.pdbs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector, w.pod.Labels) {
			continue
		}
		n++
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("%s: PDB %s must set exactly one of minAvailable and maxUnavailable", where, p.Name)
		}
		if c.production && (p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 2) {
			t.Errorf("%s: production PDB %s: minAvailable = %v, want at least 2 of 3", where, p.Name, p.Spec.MinAvailable)
		}
	}
	if n != 1 {
		t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", where, n)
	}
}

// checkReplicas: production runs 3 replicas per app: an HPA with minReplicas 3 owns the count
// (the workload then leaves `replicas` out), or replicas is 3.
func checkReplicas(t reporter, c renderCase, where string, w workload, m *manifest) {
	t.Helper()
	var hpaMin, hpaMax int32
	hpas := 0
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != w.kind || ref.Name != w.name {
			continue
		}
		hpas++
		if ref.APIVersion != "apps/v1" {
			t.Errorf("%s: HPA %s targets apiVersion %q", where, h.Name, ref.APIVersion)
		}
		if h.Spec.MinReplicas != nil {
			hpaMin = *h.Spec.MinReplicas
		} else {
			hpaMin = 1
		}
		hpaMax = h.Spec.MaxReplicas
		if len(h.Spec.Metrics) == 0 {
			t.Errorf("%s: HPA %s has no metrics", where, h.Name)
		}
		if hpaMax < hpaMin {
			t.Errorf("%s: HPA %s maxReplicas %d < minReplicas %d", where, h.Name, hpaMax, hpaMin)
		}
	}
	if hpas > 1 {
		t.Errorf("%s: %d HPAs target it", where, hpas)
	}
	if hpas == 1 && w.replicas != nil {
		t.Errorf("%s: sets replicas although an HPA owns the count (every upgrade would reset it)", where)
	}
	if !c.production {
		return
	}
	if hpas != 1 {
		t.Errorf("%s: production needs an HPA", where)
	}
	effective := hpaMin
	if w.replicas != nil {
		effective = *w.replicas
	}
	if effective != 3 {
		t.Errorf("%s: production replicas = %d, want 3", where, effective)
	}
}

func checkServiceAccount(t reporter, where string, w workload, m *manifest) {
	t.Helper()
	sa := w.pod.Spec.ServiceAccountName
	if sa == "" || sa == "default" {
		return
	}
	if !slices.ContainsFunc(m.serviceAccounts, func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
		t.Errorf("%s: ServiceAccount %q is not rendered", where, sa)
	}
}

var nodeIDValue = regexp.MustCompile(`^([1-9])\$\(POD_INDEX\)$`)

// checkNodeID checks the NODE_ID scheme: a StatefulSet, POD_INDEX from the pod-index label,
// NODE_ID = <one digit><POD_INDEX>, at most 100 replicas. It returns the digit.
func checkNodeID(t reporter, where string, w workload, m *manifest, env []corev1.EnvVar) string {
	t.Helper()
	if w.kind != "StatefulSet" {
		t.Errorf("%s: generates ids, so it must be a StatefulSet (NODE_ID from the pod ordinal)", where)
		return ""
	}
	podIndex, nodeID := -1, -1
	for i, e := range env {
		switch e.Name {
		case "POD_INDEX":
			podIndex = i
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.labels['apps.kubernetes.io/pod-index']" {
				t.Errorf("%s: POD_INDEX must come from the pod-index label", where)
			}
		case "NODE_ID":
			nodeID = i
		}
	}
	if podIndex < 0 || nodeID < 0 || podIndex > nodeID {
		t.Errorf("%s: needs POD_INDEX, then NODE_ID referring to it", where)
		return ""
	}
	match := nodeIDValue.FindStringSubmatch(env[nodeID].Value)
	if match == nil {
		t.Errorf("%s: NODE_ID = %q, want <digit 1-9>$(POD_INDEX)", where, env[nodeID].Value)
		return ""
	}
	// "<d><i>" is unique and below 1024 while i < 100.
	most := int32(1)
	if w.replicas != nil {
		most = *w.replicas
	}
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == w.kind && h.Spec.ScaleTargetRef.Name == w.name {
			most = h.Spec.MaxReplicas
		}
	}
	if most > 100 {
		t.Errorf("%s: up to %d replicas, NODE_ID allows 100", where, most)
	}
	return match[1]
}

func checkUniqueNames(t reporter, m *manifest) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range m.objects {
		k := o.meta.Kind + "/" + o.name
		if seen[k] {
			t.Errorf("%s rendered twice", k)
		}
		seen[k] = true
		if o.name == "" {
			t.Errorf("%s: no name", o)
		}
	}
}

// sensitiveMeta are component metadata fields that carry addresses or credentials: they must
// be secretKeyRefs.
var sensitiveMeta = regexp.MustCompile(`(?i)(password|passwd|connectionstring|host|url|token|secret|credential|accesskey|sas|dsn)`)

func checkComponents(t reporter, m *manifest) {
	t.Helper()
	byName := map[string]*daprComponent{}
	actorStores := 0
	for _, c := range m.components {
		byName[c.Name] = c
		if len(c.Scopes) == 0 {
			t.Errorf("component %s: no scopes (every app would load it)", c.Name)
		}
		usesSecrets := false
		for _, md := range c.Spec.Metadata {
			switch {
			case md.SecretKeyRef != nil:
				usesSecrets = true
				if md.SecretKeyRef.Name == "" || md.SecretKeyRef.Key == "" {
					t.Errorf("component %s: metadata %s: secretKeyRef needs name and key", c.Name, md.Name)
				}
			case sensitiveMeta.MatchString(md.Name):
				t.Errorf("component %s: metadata %s is a plain value; addresses and credentials come from a secretKeyRef", c.Name, md.Name)
			}
			if s, ok := md.Value.(string); ok && credentialsInURL.MatchString(s) {
				t.Errorf("component %s: metadata %s holds a URL with credentials", c.Name, md.Name)
			}
		}
		if usesSecrets && c.Auth != nil && c.Auth.SecretStore != "kubernetes" {
			t.Errorf("component %s: secretKeyRefs resolve through secret store %q, want kubernetes", c.Name, c.Auth.SecretStore)
		}
		if strings.HasPrefix(c.Spec.Type, "state.") {
			if v, _ := c.meta("actorStateStore"); v == "true" {
				actorStores++
			}
		}
	}
	if actorStores != 1 {
		t.Errorf("%d state stores with actorStateStore=true, want exactly 1", actorStores)
	}
	for name, wantType := range map[string]string{
		"statestore": "state.", "pubsub": "pubsub.", "pubsub-broadcast": "pubsub.",
		"order-expiry": "bindings.cron", "order-reconcile": "bindings.cron", "secretstore": "secretstores.kubernetes",
	} {
		c, ok := byName[name]
		if !ok {
			t.Errorf("component %s not rendered", name)
			continue
		}
		if !strings.HasPrefix(c.Spec.Type, wantType) {
			t.Errorf("component %s: type %s, want %s*", name, c.Spec.Type, wantType)
		}
	}
	for app, comps := range appComponents {
		for _, name := range comps {
			if c, ok := byName[name]; ok && !slices.Contains(c.Scopes, app) {
				t.Errorf("component %s: app %s needs it but is not in its scopes %v", name, app, c.Scopes)
			}
		}
	}
	// The durable pub/sub must not lose messages (DESIGN.md §2).
	if ps, ok := byName["pubsub"]; ok && ps.Spec.Type == "pubsub.rabbitmq" {
		for k, want := range map[string]string{
			"durable": "true", "deletedWhenUnused": "false", "deliveryMode": "2",
			"publisherConfirm": "true", "requeueInFailure": "true", "enableDeadLetter": "true",
		} {
			if got, _ := ps.meta(k); got != want {
				t.Errorf("component pubsub: %s = %q, want %q", k, got, want)
			}
		}
		if n, _ := ps.meta("prefetchCount"); n == "" || n == "0" {
			t.Errorf("component pubsub: prefetchCount must be bounded, got %q", n)
		}
	}
	// The order app's outbox relay publishes through copies of pubsub: every copy needs the
	// same broker-side exchange settings (a redeclaration with others fails) and loses nothing.
	relays := 0
	for name, c := range byName {
		if !strings.HasPrefix(name, "pubsub-relay-") {
			continue
		}
		relays++
		if !slices.Contains(c.Scopes, "order") {
			t.Errorf("component %s: the order app publishes through it but is not in its scopes %v", name, c.Scopes)
		}
		ps, ok := byName["pubsub"]
		if !ok || c.Spec.Type != ps.Spec.Type {
			t.Errorf("component %s: type %s, want pubsub's", name, c.Spec.Type)
			continue
		}
		if c.Spec.Type != "pubsub.rabbitmq" {
			continue
		}
		for _, k := range []string{"durable", "deletedWhenUnused", "deliveryMode", "publisherConfirm", "exchangeKind"} {
			got, _ := c.meta(k)
			want, _ := ps.meta(k)
			if got != want {
				t.Errorf("component %s: %s = %q, want pubsub's %q", name, k, got, want)
			}
		}
	}
	if relays == 0 {
		t.Errorf("no pubsub-relay-* component rendered: the order app's outbox relay publishes through them")
	}
	for _, name := range []string{"order-expiry", "order-reconcile"} {
		if cron, ok := byName[name]; ok {
			if s, _ := cron.meta("schedule"); s == "" {
				t.Errorf("component %s: no schedule", name)
			}
		}
	}
}

var credentialsInURL = regexp.MustCompile(`://[^/@\s:]+:[^/@\s]+@`)

// deadLetterSuffix names a topic's dead-letter topic (pkg/events.DeadLetterSuffix).
const deadLetterSuffix = ".dead"

// checkSubscriptions: every Subscription is on a rendered pub/sub its apps load, has a route,
// and on a pub/sub that dead-letters names its "<topic>.dead" topic; every dead-letter topic
// has a keeper subscription (with RabbitMQ a message sent to an exchange without a queue is
// discarded), which takes the raw payload and names no further dead-letter topic.
func checkSubscriptions(t reporter, m *manifest) {
	t.Helper()
	comps := map[string]*daprComponent{}
	for _, c := range m.components {
		comps[c.Name] = c
	}
	if len(m.subscriptions) == 0 {
		t.Errorf("no Subscriptions rendered")
	}
	type pubsubTopic struct{ pubsub, topic string }
	subscribed := map[pubsubTopic]bool{}
	deadLetters := map[pubsubTopic]string{} // -> a subscription naming it
	for _, s := range m.subscriptions {
		subscribed[pubsubTopic{s.Spec.PubsubName, s.Spec.Topic}] = true
		if s.Spec.DeadLetterTopic != "" {
			deadLetters[pubsubTopic{s.Spec.PubsubName, s.Spec.DeadLetterTopic}] = s.Name
		}
	}
	for _, s := range m.subscriptions {
		ps, ok := comps[s.Spec.PubsubName]
		if !ok || !strings.HasPrefix(ps.Spec.Type, "pubsub.") {
			t.Errorf("subscription %s: pubsubname %q is not a rendered pub/sub component", s.Name, s.Spec.PubsubName)
			continue
		}
		if len(s.Scopes) == 0 {
			t.Errorf("subscription %s: no scopes", s.Name)
		}
		for _, app := range s.Scopes {
			if _, known := appComponents[app]; !known {
				t.Errorf("subscription %s: scope %q is not a groupbuy app", s.Name, app)
			}
			if !slices.Contains(ps.Scopes, app) {
				t.Errorf("subscription %s: app %s is not in the scopes of %s", s.Name, app, ps.Name)
			}
		}
		if s.Spec.Routes.Default == "" || !strings.HasPrefix(s.Spec.Routes.Default, "/") {
			t.Errorf("subscription %s: default route %q", s.Name, s.Spec.Routes.Default)
		}
		for _, r := range s.Spec.Routes.Rules {
			if !strings.HasPrefix(r.Path, "/") {
				t.Errorf("subscription %s: rule %q routes to %q", s.Name, r.Match, r.Path)
			}
		}
		keeper := strings.HasSuffix(s.Spec.Topic, deadLetterSuffix)
		if _, named := deadLetters[pubsubTopic{s.Spec.PubsubName, s.Spec.Topic}]; named {
			keeper = true
		}
		switch {
		case keeper:
			if s.Spec.Metadata["rawPayload"] != "true" {
				t.Errorf("subscription %s keeps dead letters of %s: metadata rawPayload must be \"true\" (a dead letter that is not a CloudEvent would be requeued forever)", s.Name, s.Spec.Topic)
			}
			if s.Spec.DeadLetterTopic != "" {
				t.Errorf("subscription %s keeps dead letters: deadLetterTopic %q (dead letters of dead letters are not kept)", s.Name, s.Spec.DeadLetterTopic)
			}
		case s.Spec.DeadLetterTopic != "":
			if want := s.Spec.Topic + deadLetterSuffix; s.Spec.DeadLetterTopic != want {
				t.Errorf("subscription %s: deadLetterTopic %q, want %q (notify's keeper stores by that name)", s.Name, s.Spec.DeadLetterTopic, want)
			}
		default:
			if dl, _ := ps.meta("enableDeadLetter"); dl == "true" {
				t.Errorf("subscription %s on %s: no deadLetterTopic", s.Name, ps.Name)
			}
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(deadLetters), func(a, b pubsubTopic) int {
		return strings.Compare(a.pubsub+" "+a.topic, b.pubsub+" "+b.topic)
	}) {
		if !subscribed[k] {
			t.Errorf("subscription %s dead-letters to %s on %s, which no subscription keeps (RabbitMQ discards messages sent to an exchange without a queue)", deadLetters[k], k.topic, k.pubsub)
		}
	}
}

// checkActorHosts: an app hosting actors has the actor state store in its scopes, and its
// sidecar drains actor calls (ACTOR_DRAIN_TIMEOUT, reported to daprd as
// drainOngoingCallTimeout) within its own graceful shutdown and the pod's termination grace.
func checkActorHosts(t reporter, m *manifest, apps map[string]appInfo) {
	t.Helper()
	var actorStore *daprComponent
	for _, c := range m.components {
		if v, _ := c.meta("actorStateStore"); v == "true" && strings.HasPrefix(c.Spec.Type, "state.") {
			actorStore = c
		}
	}
	for _, app := range slices.Sorted(maps.Keys(actorHosts)) {
		if actorStore != nil && !slices.Contains(actorStore.Scopes, app) {
			t.Errorf("app %s hosts actors %v but is not in the scopes %v of the actor state store %s", app, actorHosts[app], actorStore.Scopes, actorStore.Name)
		}
		a, deployed := apps[app]
		if !deployed {
			continue
		}
		drain := defaultActorDrain
		if e, ok := a.env["ACTOR_DRAIN_TIMEOUT"]; ok {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Errorf("app %s: ACTOR_DRAIN_TIMEOUT %q is not a duration", app, e.Value)
				continue
			}
			drain = d
		}
		ann := a.workload.pod.Annotations
		if gs, err := strconv.Atoi(ann["dapr.io/graceful-shutdown-seconds"]); err == nil && drain >= time.Duration(gs)*time.Second {
			t.Errorf("app %s: ACTOR_DRAIN_TIMEOUT %s, not below the sidecar's graceful shutdown (%ds): actor calls would be cut off", app, drain, gs)
		}
		if g := a.workload.pod.Spec.TerminationGracePeriodSeconds; g != nil && drain >= time.Duration(*g)*time.Second {
			t.Errorf("app %s: ACTOR_DRAIN_TIMEOUT %s, not below terminationGracePeriodSeconds %d", app, drain, *g)
		}
	}
}

func checkConfiguration(t reporter, m *manifest, apps map[string]appInfo) {
	t.Helper()
	if len(m.configurations) != 1 {
		t.Errorf("%d Configurations rendered, want 1", len(m.configurations))
		return
	}
	cfg := m.configurations[0]
	if cfg.Spec.Tracing == nil || cfg.Spec.Tracing.SamplingRate == "" {
		t.Errorf("Configuration %s: no tracing samplingRate", cfg.Name)
	} else if r, err := strconv.ParseFloat(cfg.Spec.Tracing.SamplingRate, 64); err != nil || r < 0 || r > 1 {
		t.Errorf("Configuration %s: samplingRate %q is not in 0..1", cfg.Name, cfg.Spec.Tracing.SamplingRate)
	}
	if nr := cfg.Spec.NameResolution; nr != nil && nr.Component == "mdns" {
		t.Errorf("Configuration %s: mDNS name resolution on Kubernetes", cfg.Name)
	}
	for id, a := range apps {
		if got := a.workload.pod.Annotations["dapr.io/config"]; got != cfg.Name {
			t.Errorf("app %s: dapr.io/config %q, want %q", id, got, cfg.Name)
		}
	}
}

func checkResiliency(t reporter, m *manifest) {
	t.Helper()
	if len(m.resiliencies) != 1 {
		t.Errorf("%d Resiliencies rendered, want 1", len(m.resiliencies))
		return
	}
	r := m.resiliencies[0]
	p := r.Spec.Policies
	check := func(where string, tg resiliencyTarget) {
		if _, ok := p.Timeouts[tg.Timeout]; tg.Timeout != "" && !ok {
			t.Errorf("resiliency %s: %s: timeout policy %q is not defined", r.Name, where, tg.Timeout)
		}
		if _, ok := p.Retries[tg.Retry]; tg.Retry != "" && !ok {
			t.Errorf("resiliency %s: %s: retry policy %q is not defined", r.Name, where, tg.Retry)
		}
		if _, ok := p.CircuitBreakers[tg.CircuitBreaker]; tg.CircuitBreaker != "" && !ok {
			t.Errorf("resiliency %s: %s: circuit breaker %q is not defined", r.Name, where, tg.CircuitBreaker)
		}
	}
	for app, tg := range r.Spec.Targets.Apps {
		if _, known := appComponents[app]; !known {
			t.Errorf("resiliency %s: target app %q is not a groupbuy app", r.Name, app)
		}
		check("apps."+app, tg)
	}
	for name, tg := range r.Spec.Targets.Actors {
		hosted := false
		for _, types := range actorHosts {
			hosted = hosted || slices.Contains(types, name)
		}
		if !hosted {
			t.Errorf("resiliency %s: target actor type %q is hosted by no groupbuy app", r.Name, name)
		}
		check("actors."+name, tg)
	}
	comps := map[string]bool{}
	for _, c := range m.components {
		comps[c.Name] = true
	}
	for name, tg := range r.Spec.Targets.Components {
		if !comps[name] {
			t.Errorf("resiliency %s: target component %q is not rendered", r.Name, name)
		}
		if tg.Inbound != nil {
			check("components."+name+".inbound", *tg.Inbound)
		}
		if tg.Outbound != nil {
			check("components."+name+".outbound", *tg.Outbound)
		}
	}
}

// sensitiveEnv names environment variables that carry credentials or the addresses the issue
// wants from Secrets. Names of secrets (…_SECRET, …_SECRET_PREFIX, SECRET_STORE) are not.
var (
	sensitiveEnv = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|API_?KEY|PRIVATE_KEY|SIGNING_KEY|CONNECTION_?STRING|DSN|^REDIS_ADDR$|RABBITMQ_URL)`)
	secretName   = regexp.MustCompile(`(_SECRET|_SECRET_PREFIX|^SECRET_STORE)$`)
)

// checkSecrets: no secret value anywhere in the manifests unless the dev-only switch is on.
func checkSecrets(t reporter, c renderCase, m *manifest, apps map[string]appInfo) {
	t.Helper()
	for id, a := range apps {
		for _, e := range a.container.Env {
			if sensitiveEnv.MatchString(e.Name) && !secretName.MatchString(e.Name) {
				if secretRef(e) == nil {
					t.Errorf("app %s: env %s must come from a secretKeyRef, not a literal", id, e.Name)
				}
			}
			if credentialsInURL.MatchString(e.Value) {
				t.Errorf("app %s: env %s holds a URL with credentials", id, e.Name)
			}
		}
		if len(a.container.EnvFrom) > 0 {
			t.Errorf("app %s: envFrom hides which keys reach the app; use env with secretKeyRef", id)
		}
	}
	if len(m.configMaps) > 0 {
		t.Errorf("%d ConfigMaps rendered; the chart has none", len(m.configMaps))
	}
	if !c.devSecrets {
		for _, s := range m.secrets {
			t.Errorf("Secret %s rendered with %d data keys: secret values must not be in the manifests (only devSecrets.create)", s.Name, len(s.Data)+len(s.StringData))
		}
		return
	}
	// Dev: every secretKeyRef the pods and components use resolves to a rendered Secret key.
	have := map[string]map[string][]byte{}
	for _, s := range m.secrets {
		if s.Labels["groupbuy.io/dev-secret"] != "true" {
			t.Errorf("Secret %s: not labelled as a dev secret", s.Name)
		}
		have[s.Name] = s.Data
	}
	need := map[secretKeyRef]string{}
	for id, a := range apps {
		for _, e := range a.container.Env {
			if r := secretRef(e); r != nil {
				need[secretKeyRef{r.Name, r.Key}] = "app " + id + " env " + e.Name
			}
		}
		gw := a.env
		if id == "gateway" {
			jwt := gw["JWT_SIGNING_KEY_SECRET"].Value
			need[secretKeyRef{jwt, jwt}] = "gateway JWT signing key"
			for _, u := range strings.Split(gw["ADMIN_USERS"].Value, ",") {
				if u != "" {
					n := gw["ADMIN_PASSWORD_SECRET_PREFIX"].Value + u
					need[secretKeyRef{n, n}] = "gateway admin " + u
				}
			}
		}
	}
	for _, comp := range m.components {
		for _, md := range comp.Spec.Metadata {
			if md.SecretKeyRef != nil {
				need[*md.SecretKeyRef] = "component " + comp.Name + " " + md.Name
			}
		}
	}
	for ref, user := range need {
		data, ok := have[ref.Name]
		if !ok {
			t.Errorf("%s: Secret %s not rendered", user, ref.Name)
			continue
		}
		if _, ok := data[ref.Key]; !ok {
			t.Errorf("%s: Secret %s has no key %s", user, ref.Name, ref.Key)
		}
	}
}

// checkGatewaySecretAccess: the gateway's ServiceAccount may get exactly the Secrets it reads
// through the Dapr secret store, and the Configuration allows the store exactly those.
func checkGatewaySecretAccess(t reporter, m *manifest, apps map[string]appInfo) {
	t.Helper()
	gw, ok := apps["gateway"]
	if !ok {
		return
	}
	want := []string{gw.env["JWT_SIGNING_KEY_SECRET"].Value}
	for _, u := range strings.Split(gw.env["ADMIN_USERS"].Value, ",") {
		if u != "" {
			want = append(want, gw.env["ADMIN_PASSWORD_SECRET_PREFIX"].Value+u)
		}
	}
	sort.Strings(want)
	sa := gw.workload.pod.Spec.ServiceAccountName
	var granted []string
	for _, rb := range m.roleBindings {
		if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa }) {
			continue
		}
		for _, r := range m.roles {
			if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != r.Name {
				continue
			}
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, "secrets") {
					if len(rule.ResourceNames) == 0 {
						t.Errorf("Role %s: grants every Secret; list resourceNames", r.Name)
					}
					if slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "get" }) {
						t.Errorf("Role %s: verbs %v on secrets, want get only", r.Name, rule.Verbs)
					}
					granted = append(granted, rule.ResourceNames...)
				}
			}
		}
	}
	sort.Strings(granted)
	if !slices.Equal(granted, want) {
		t.Errorf("gateway ServiceAccount %s may get secrets %v, want %v", sa, granted, want)
	}
	if a := gw.workload.pod.Spec.AutomountServiceAccountToken; a != nil && !*a {
		t.Errorf("gateway: the ServiceAccount token must be mounted (its sidecar's Kubernetes secret store uses it)")
	}
	if len(m.configurations) == 1 && m.configurations[0].Spec.Secrets != nil {
		for _, s := range m.configurations[0].Spec.Secrets.Scopes {
			if s.StoreName != "secretstore" {
				continue
			}
			allowed := slices.Clone(s.AllowedSecrets)
			sort.Strings(allowed)
			if s.DefaultAccess != "deny" || !slices.Equal(allowed, want) {
				t.Errorf("Configuration: secretstore scope defaultAccess=%q allowed=%v, want deny and %v", s.DefaultAccess, allowed, want)
			}
		}
	}
}
