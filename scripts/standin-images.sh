#!/usr/bin/env bash
# Makes sure the local Docker host has the images integration tests run in testcontainers mode
# (redis:7.0, rabbitmq:3.10-management, and daprio/{daprd,placement,scheduler}:$DAPR_VERSION
# for the binaries in $DAPR_BIN_DIR), by running the shared standin-images tool, which builds
# them from Debian packages and local binaries since this machine cannot pull from registries.
#
#   sudo scripts/standin-images.sh
#
# The tool is found next to the checkout (<repo>/../shared/tools/standin-images), or next to
# the local checkout this one was cloned from, unless STANDIN_IMAGES names it. Exits 0 at once when every image is there; building needs root
# (the tool installs docker.io, starts dockerd and runs debootstrap).
set -euo pipefail

log() { printf 'standin-images.sh: %s\n' "$*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool=${STANDIN_IMAGES:-$repo/../shared/tools/standin-images}
# A clone elsewhere (e.g. a CI clone in a temp dir) looks next to the checkout it was cloned
# from, when that is a local directory.
if [ -z "${STANDIN_IMAGES:-}" ] && [ ! -x "$tool" ]; then
  origin=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  if [ -n "$origin" ] && [ -d "$origin" ] && [ -x "$origin/../shared/tools/standin-images" ]; then
    tool=$origin/../shared/tools/standin-images
  fi
fi

# Under sudo, $HOME is usually root's; the Dapr binaries (scripts/dapr-install.sh) are in the
# invoking user's home.
home=$HOME
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
fi
export DAPR_BIN_DIR=${DAPR_BIN_DIR:-$home/.dapr/bin}
# Same default as the tool; it names the daprio tags.
export DAPR_VERSION=${DAPR_VERSION:-1.16.0}

wanted=(redis:7.0 rabbitmq:3.10-management)
for bin in daprd placement scheduler; do
  [ -x "$DAPR_BIN_DIR/$bin" ] && wanted+=("daprio/$bin:$DAPR_VERSION")
done

missing=()
if docker info >/dev/null 2>&1; then
  for img in "${wanted[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
  done
else
  log "no docker daemon answers (or this user may not use its socket)"
  missing=("${wanted[@]}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  log "images present: ${wanted[*]}"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "missing images: ${missing[*]}"
  log "building them needs root (installs docker.io, starts dockerd, runs debootstrap): sudo $0"
  exit 1
fi
if [ ! -x "$tool" ]; then
  log "no executable standin-images tool at $tool; set STANDIN_IMAGES to its path"
  exit 1
fi

log "building ${missing[*]} with $tool (DAPR_BIN_DIR=$DAPR_BIN_DIR)"
"$tool"
