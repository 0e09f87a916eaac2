#!/usr/bin/env bash
# Runs the project's pinned Helm with the given arguments, installing it first when missing:
#   scripts/helm.sh lint --strict charts/groupbuy
#   scripts/helm.sh --path      # install if needed, print the binary's path (for tests and CI)
#   scripts/helm.sh --install   # install if needed, print nothing else
# Helm is built from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`,
# a few minutes once on 2 cores) into $(go env GOBIN) or $(go env GOPATH)/bin; nothing is
# downloaded from anywhere else. HELM=/path/to/helm uses that binary instead.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}

log() { printf 'helm.sh: %s\n' "$*" >&2; }

bin_dir() {
  local dir
  dir=$(go env GOBIN)
  [ -n "$dir" ] || dir="$(go env GOPATH)/bin"
  printf '%s\n' "$dir"
}

# has_version BIN: BIN reports $HELM_VERSION (`helm version --short` prints e.g. v3.22.0+gabc).
has_version() {
  local got
  got=$("$1" version --short 2>/dev/null) || return 1
  [ "${got%%+*}" = "$HELM_VERSION" ]
}

find_helm() {
  if [ -n "${HELM:-}" ]; then
    [ -x "$HELM" ] || { log "HELM=$HELM is not an executable"; exit 1; }
    printf '%s\n' "$HELM"
    return
  fi
  local pinned
  pinned="$(bin_dir)/helm"
  if [ -x "$pinned" ] && has_version "$pinned"; then
    printf '%s\n' "$pinned"
    return
  fi
  log "installing helm $HELM_VERSION into $(bin_dir) (go install, once)"
  # The same -X flags as Helm's Makefile: without them `helm version` says "v3.22" and
  # `helm template`/`helm lint` assume Kubernetes 1.20 instead of the client-go version Helm
  # was built with (its default .Capabilities.KubeVersion and deprecation checks).
  local gomod k8s minor
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  k8s=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")   # v0.37.0 -> Kubernetes 1.37
  minor=$(printf '%s\n' "$k8s" | cut -d. -f2)
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  if [ -n "$minor" ]; then
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  fi
  # -buildvcs=false: the build happens outside any repository; CGO off for a static binary.
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  if ! has_version "$pinned"; then
    log "installed $pinned but it does not report $HELM_VERSION: $("$pinned" version --short 2>&1 || true)"
    exit 1
  fi
  printf '%s\n' "$pinned"
}

case "${1:-}" in
  --path) find_helm ;;
  --install) find_helm >/dev/null ;;
  *)
    helm=$(find_helm)
    exec "$helm" "$@"
    ;;
esac
