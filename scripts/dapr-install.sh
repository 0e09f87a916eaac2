#!/usr/bin/env bash
# Installs daprd, placement and scheduler $DAPR_VERSION into $DAPR_BIN_DIR (default ~/.dapr/bin).
# Does nothing when the right versions are already there. Uses `dapr init --slim` when the dapr
# CLI is installed; otherwise builds the binaries from the Go module proxy (the dapr module has
# replace directives, so `go install` refuses it: download the module, copy it, build in place).
set -euo pipefail

DAPR_VERSION=${DAPR_VERSION:-1.16.0}
DAPR_BIN_DIR=${DAPR_BIN_DIR:-$HOME/.dapr/bin}
STAMP="$DAPR_BIN_DIR/.groupbuy-dapr-version"
# Source builds carry one local patch (see patch_loopback_healthz); the stamp records it so a
# build without it is redone.
BUILD_ID="$DAPR_VERSION+loopback-healthz"

log() { printf 'dapr-install: %s\n' "$*" >&2; }

installed() {
  local bin
  for bin in daprd placement scheduler; do
    [ -x "$DAPR_BIN_DIR/$bin" ] || return 1
  done
  if [ -f "$STAMP" ]; then
    [ "$(cat "$STAMP")" = "$BUILD_ID" ]
    return
  fi
  # Binaries from `dapr init --slim` (no stamp) report their version themselves.
  "$DAPR_BIN_DIR/daprd" --version 2>/dev/null | grep -qx "$DAPR_VERSION"
}

if installed; then
  log "dapr $DAPR_VERSION already in $DAPR_BIN_DIR"
  exit 0
fi

mkdir -p "$DAPR_BIN_DIR"

if command -v dapr >/dev/null 2>&1 && [ -z "${GROUPBUY_BUILD_DAPR:-}" ]; then
  log "using the dapr CLI: dapr init --slim --runtime-version $DAPR_VERSION"
  dapr init --slim --runtime-version "$DAPR_VERSION"
  installed && exit 0
  log "dapr init --slim did not leave $DAPR_VERSION in $DAPR_BIN_DIR; building from source"
fi

log "building dapr $DAPR_VERSION from the Go module proxy (several minutes on 2 cores)"
moddir=$(cd "$(mktemp -d)" && go mod download -json "github.com/dapr/dapr@v$DAPR_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -d "$moddir" ] || { log "go mod download github.com/dapr/dapr@v$DAPR_VERSION failed"; exit 1; }

src=$(mktemp -d)
trap 'chmod -R u+w "$src" 2>/dev/null; rm -rf "$src"' EXIT
cp -r "$moddir/." "$src/"
chmod -R u+w "$src"
cd "$src"

# Dapr 1.16's placement and scheduler accept --healthz-listen-address but their healthz server
# listens on ":port" (all interfaces) regardless. Local builds bind it to loopback instead, as
# every listener of a dev stack must.
patch_loopback_healthz() {
  local f=pkg/healthz/server/server.go
  grep -q 'fmt.Sprintf(":%d", s.port)' "$f" || { log "healthz patch no longer applies to $f"; exit 1; }
  sed -i 's|fmt.Sprintf(":%d", s.port)|fmt.Sprintf("127.0.0.1:%d", s.port)|' "$f"
}
patch_loopback_healthz

ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION"
for bin in daprd placement scheduler; do
  log "go build ./cmd/$bin"
  # allcomponents does not compile on Go 1.26; stablecomponents has every component we use.
  CGO_ENABLED=0 go build -tags stablecomponents -ldflags "$ldflags" -o "$DAPR_BIN_DIR/$bin.tmp" "./cmd/$bin"
  mv "$DAPR_BIN_DIR/$bin.tmp" "$DAPR_BIN_DIR/$bin"
done
echo "$BUILD_ID" >"$STAMP"
log "installed daprd, placement, scheduler $DAPR_VERSION into $DAPR_BIN_DIR"
