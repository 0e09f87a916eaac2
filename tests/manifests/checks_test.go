package manifests

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// recorder is a reporter that keeps the errors instead of failing the test.
type recorder struct {
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) contains(s string) bool {
	for _, e := range r.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestChecksCatchMistakes renders the chart with values that helm accepts but that break a
// rule, and expects the checks to say so: a check that never fails proves nothing.
func TestChecksCatchMistakes(t *testing.T) {
	helm := helmBinary(t)
	schemas := loadCRDSchemas(t)
	local := loadLocal(t)
	prod := []string{"-f", chartDir + "/values-production.yaml"}
	tests := []struct {
		name       string
		args       []string
		production bool
		want       string
	}{
		{"unknown field in a pod securityContext", []string{"--set", "defaults.securityContext.runAsNonRot=true"}, false, `unknown field "runAsNonRot"`},
		{"unknown field in a Subscription", []string{"--set", "dapr.subscriptions.notify-order-paid.spec.deadLeterTopic=x"}, false, "does not match the Dapr CRD schema"},
		{"unknown field in a Resiliency retry", []string{"--set", "dapr.resiliency.spec.policies.retries.invoke.initialInterval=50ms"}, false, "does not match the Dapr CRD schema"},
		{"two apps with one NODE_ID prefix", []string{"--set", "apps.catalog.nodeIdPrefix=1"}, false, "their ids would collide"},
		{"id-generating app as a Deployment", []string{"--set", "apps.order.nodeIdPrefix=null"}, false, "must be a StatefulSet"},
		{"app missing from a component's scopes", []string{"--set", "dapr.components.pubsub.scopes={catalog,order,notify}"}, false, "app group needs it but is not in its scopes"},
		{"plain Redis address in a component", []string{"--set", "dapr.components.statestore.metadata.redisHost=redis:6379"}, false, "metadata redisHost is a plain value"},
		{"literal password in env", []string{"--set", "apps.payment.env.DB_PASSWORD=hunter2"}, false, "env DB_PASSWORD must come from a secretKeyRef"},
		{"credentials in a URL", []string{"--set", "apps.notify.env.UPSTREAM=amqp://user:pw@host/"}, false, "holds a URL with credentials"},
		{"writable root filesystem", []string{"--set", "defaults.securityContext.readOnlyRootFilesystem=false"}, false, "readOnlyRootFilesystem must be true"},
		{"privilege escalation", []string{"--set", "defaults.securityContext.allowPrivilegeEscalation=true"}, false, "allowPrivilegeEscalation must be false"},
		{"root user", []string{"--set", "defaults.podSecurityContext.runAsUser=0", "--set", "defaults.securityContext.runAsUser=0"}, false, "runAsUser"},
		{"no memory limit", []string{"--set", "defaults.resources.limits=null"}, false, "no memory limit"},
		{"undefined retry policy", []string{"--set", "dapr.resiliency.spec.targets.apps.payment.retry=nope"}, false, `retry policy "nope" is not defined`},
		{"durable subscription without dead-letter topic", []string{"--set", "dapr.subscriptions.notify-order-paid.spec.deadLetterTopic=null"}, false, "no deadLetterTopic"},
		{"subscription on an unknown pub/sub", []string{"--set", "dapr.subscriptions.notify-order-paid.spec.pubsubname=nats"}, false, "is not a rendered pub/sub component"},
		{"lossy durable pub/sub", []string{"--set", "dapr.components.pubsub.metadata.deliveryMode=1"}, false, "deliveryMode"},
		{"second actor state store", []string{"--set", "dapr.components.cache.enabled=true,dapr.components.cache.type=state.redis,dapr.components.cache.version=v1,dapr.components.cache.scopes={catalog},dapr.components.cache.metadata.actorStateStore=true"}, false, "want exactly 1"},
		{"dev Secret outside the dev case", []string{"--set", "devSecrets.create=true,devSecrets.redisAddress=r:6379,devSecrets.rabbitmqUrl=amqp://r"}, false, "secret values must not be in the manifests"},
		{"disabled app", []string{"--set", "apps.payment.enabled=false"}, false, "deployed apps ="},
		{"production with 2 replicas", append(prod, "--set", "defaults.autoscaling.minReplicas=2"), true, "production replicas = 2, want 3"},
		{"production without HPA", append(prod, "--set", "defaults.autoscaling.enabled=false"), true, "production needs an HPA"},
		{"production PDB by maxUnavailable", append(prod, "--set", "defaults.pdb.minAvailable=null"), true, "minAvailable"},
		{"no PDB", []string{"--set", "defaults.pdb.enabled=false"}, false, "PodDisruptionBudgets select its pods, want 1"},
		// Apps and components.
		{"gateway without the broadcast pub/sub", []string{"--set", "dapr.components.pubsub-broadcast.scopes={notify,catalog}"}, false, "app gateway needs it but is not in its scopes"},
		{"catalog without the broadcast pub/sub", []string{"--set", "dapr.components.pubsub-broadcast.scopes={notify,gateway}"}, false, "app catalog needs it but is not in its scopes"},
		{"actor host without the actor state store", []string{"--set", "dapr.components.statestore.scopes={gateway,catalog,inventory,order,payment,notify}"}, false, "hosts actors [GroupActor] but is not in the scopes"},
		{"actor drain beyond the sidecar's shutdown", []string{"--set", "apps.group.env.ACTOR_DRAIN_TIMEOUT=45s"}, false, "ACTOR_DRAIN_TIMEOUT 45s, not below the sidecar's graceful shutdown"},
		// Dead letters.
		{"dead-letter topic nobody keeps", []string{"--set", "dapr.subscriptions.notify-dead-order-paid=null"}, false, "order.paid.dead on pubsub, which no subscription keeps"},
		{"dead-letter keeper without rawPayload", []string{"--set", "dapr.subscriptions.notify-dead-group-failed.spec.metadata=null"}, false, `metadata rawPayload must be "true"`},
		{"dead-letter topic not named after its topic", []string{"--set", "dapr.subscriptions.order-group-failed.spec.deadLetterTopic=order.dead"}, false, `want "group.failed.dead"`},
		// The chart mirrors components/*.yaml and dapr/resiliency.yaml.
		{"subscription route drifted from components/", []string{"--set", "dapr.subscriptions.group-order-paid.spec.routes.default=/events/paid"}, false, "subscription group-order-paid does not match components/subscriptions-group.yaml: spec.routes"},
		{"subscription topic drifted from components/", []string{"--set", "dapr.subscriptions.order-group-failed.spec.topic=group.closed"}, false, "spec.topic"},
		{"subscription scopes drifted from components/", []string{"--set", "dapr.subscriptions.gateway-live-group.scopes={gateway,notify}"}, false, "subscription gateway-live-group does not match components/subscriptions-gateway.yaml: scopes"},
		{"subscription metadata drifted from components/", []string{"--set-string", "dapr.subscriptions.notify-dead-order-created.spec.metadata.rawPayload=false"}, false, "spec.metadata"},
		{"local subscription missing from the chart", []string{"--set", "dapr.subscriptions.gateway-live-order=null"}, false, "subscription gateway-live-order (components/subscriptions-gateway.yaml: pubsub pubsub-broadcast, topic notify.live.order) is not rendered by the chart"},
		{"catalog change subscription missing from the chart", []string{"--set", "dapr.subscriptions.gateway-deal-changed=null"}, false, "subscription gateway-deal-changed (components/subscriptions-gateway.yaml: pubsub pubsub-broadcast, topic deal.changed) is not rendered by the chart"},
		{"chart-only subscription", []string{"--set", "dapr.subscriptions.notify-extra.scopes={notify},dapr.subscriptions.notify-extra.spec.pubsubname=pubsub-broadcast,dapr.subscriptions.notify-extra.spec.topic=notify.live.order,dapr.subscriptions.notify-extra.spec.routes.default=/x"}, false, "subscription notify-extra (pubsub pubsub-broadcast, topic notify.live.order) has no counterpart"},
		{"component scopes drifted from components/", []string{"--set", "dapr.components.order-expiry.scopes={order,group}"}, false, "component order-expiry: scopes [group order], components/*.yaml has [order]"},
		{"resiliency actor target missing", []string{"--set", "dapr.resiliency.spec.targets.actors=null"}, false, "resiliency target actors.GroupActor in dapr/resiliency.yaml is missing"},
		{"resiliency app target missing", []string{"--set", "dapr.resiliency.spec.targets.apps.group=null"}, false, "resiliency target apps.group in dapr/resiliency.yaml is missing"},
		{"resiliency component direction missing", []string{"--set", "dapr.resiliency.spec.targets.components.pubsub.inbound=null"}, false, "resiliency target components.pubsub.inbound in dapr/resiliency.yaml is missing"},
		{"resiliency target with another policy", []string{"--set", "dapr.resiliency.spec.targets.apps.inventory.circuitBreaker=paymentCB"}, false, "resiliency target apps.inventory ="},
		{"resiliency target only in the chart", []string{"--set", "dapr.resiliency.spec.targets.components.statestore.inbound.retry=state"}, false, "resiliency target components.statestore.inbound is rendered but not in dapr/resiliency.yaml"},
		{"breaker on the state store", []string{"--set", "dapr.resiliency.spec.targets.components.statestore.outbound.circuitBreaker=appCB"}, false, "resiliency target components.statestore.outbound ="},
		{"resiliency retry policy drifted", []string{"--set", "dapr.resiliency.spec.policies.retries.invoke.maxRetries=5"}, false, "resiliency policy retries.invoke ="},
		{"resiliency timeout drifted", []string{"--set", "dapr.resiliency.spec.policies.timeouts.fast=3s"}, false, "resiliency policy timeouts.fast"},
		{"resiliency breaker drifted", []string{"--set", "dapr.resiliency.spec.policies.circuitBreakers.paymentCB.trip=consecutiveFailures >= 5"}, false, "resiliency policy circuitBreakers.paymentCB ="},
		{"actor target for an unknown actor type", []string{"--set", "dapr.resiliency.spec.targets.actors.DealActor.retry=actor"}, false, `actor type "DealActor" is hosted by no groupbuy app`},
		{"gateway may read more secrets", []string{"--set", "apps.gateway.adminUsers={admin,ops}", "--set", "dapr.configuration.restrictSecrets=false"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := runHelm(t, helm, templateArgs(tt.args...)...)
			if err != nil {
				t.Fatalf("helm template %v: %v\n%s", tt.args, err, stderr)
			}
			rec := &recorder{}
			c := renderCase{name: tt.name, apps: defaultApps, production: tt.production}
			checkAll(rec, c, []byte(out), schemas, local)
			if tt.want == "" {
				// A legitimate change: the checks must stay quiet.
				if len(rec.errs) > 0 {
					t.Errorf("checks failed on valid values %v:\n%s", tt.args, strings.Join(rec.errs, "\n"))
				}
				return
			}
			if !rec.contains(tt.want) {
				t.Errorf("values %v: no check error contains %q; got %d errors:\n%s", tt.args, tt.want, len(rec.errs), strings.Join(rec.errs, "\n"))
			}
		})
	}
}

// TestDecodeRejects feeds single documents straight to the decoder.
func TestDecodeRejects(t *testing.T) {
	schemas := loadCRDSchemas(t)
	tests := []struct {
		name, doc, want string
	}{
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "unexpected kind v1/Pod"},
		{"duplicate key", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n", "already set in map"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: three}\n", "replicas"},
		{"component scope typo", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: state.redis, version: v1, metadata: []}\nscope: [a]\n", "does not match the Dapr CRD schema"},
		{"component without version", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: state.redis, metadata: []}\n", "does not match the Dapr CRD schema"},
		{"component metadata typo", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: state.redis, version: v1, metadata: [{name: a, valeu: b}]}\n", "does not match the Dapr CRD schema"},
		{"object meta typo", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x, lables: {a: b}}\nspec: {type: state.redis, version: v1, metadata: []}\n", `unknown field "lables"`},
		{"subscription without routes", "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: x}\nspec: {pubsubname: p, topic: t}\n", "does not match the Dapr CRD schema"},
		{"configuration tracing without samplingRate", "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: x}\nspec: {tracing: {stdout: true}}\n", "does not match the Dapr CRD schema"},
		{"old subscription version", "apiVersion: dapr.io/v2alpha2\nkind: Subscription\nmetadata: {name: x}\n", "unexpected kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js, err := yaml.YAMLToJSON([]byte(tt.doc))
			if err == nil {
				_, err = decodeObject(&manifest{}, "test", []byte(tt.doc), js, schemas)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decoding\n%s\ngot error %v, want one containing %q", tt.doc, err, tt.want)
			}
		})
	}
}
