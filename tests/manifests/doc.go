// Package manifests checks the Helm chart in charts/groupbuy without a cluster: its tests run
// `helm template` with the default, production and dev-secrets values, decode every rendered
// object strictly into the Kubernetes API types (an unknown or misspelt field fails), validate
// the Dapr resources against the openAPIV3Schema of the Dapr 1.16 CRDs (testdata/crds, unknown
// fields rejected), and check the platform's own rules: probes, resources, security contexts
// and Dapr annotations on every app, component scopes, actor hosting, dead-letter keepers,
// NODE_ID uniqueness, no secret values in the manifests, and three replicas per app in
// production. The rendered Subscriptions, component scopes and Resiliency must mirror the local
// resources (components/*.yaml, dapr/resiliency.yaml) both ways. They also run `helm lint --strict`.
//
// The tests need helm: $HELM, else the binary scripts/helm.sh installs into
// $(go env GOBIN) or $(go env GOPATH)/bin, else helm on PATH. Without any they skip, saying
// so (or fail when GROUPBUY_REQUIRE_HELM is set); `go tool task test:manifests` installs the
// pinned helm first and sets it.
package manifests
