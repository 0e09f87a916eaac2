#!/usr/bin/env bash
# Builds one container image per app: a static linux/amd64 binary (CGO_ENABLED=0) into
# bin/linux-amd64/<app>, then `docker build -f deploy/Dockerfile` FROM scratch, tagged
# groupbuy/<app>:<tag> in the local engine. No registry is involved.
#   scripts/images.sh                  # every app under apps/
#   scripts/images.sh catalog order    # some apps
#   TAG=dev scripts/images.sh          # tag (default: git short sha, else "dev")
#   IMAGE_PREFIX=groupbuy              # repository prefix (default groupbuy)
#   NO_DOCKER=1 scripts/images.sh      # binaries only
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'images: %s\n' "$*" >&2; }

TAG=${TAG:-$(git rev-parse --short HEAD 2>/dev/null || true)}
TAG=${TAG:-dev}
IMAGE_PREFIX=${IMAGE_PREFIX:-groupbuy}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
OUT=bin/linux-amd64
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ $# -gt 0 ]; then
  apps=("$@")
else
  apps=()
  for main in apps/*/main.go; do
    apps+=("$(basename "$(dirname "$main")")")
  done
fi
[ ${#apps[@]} -gt 0 ] || { log "no apps found under apps/"; exit 1; }

mkdir -p "$OUT"
for app in "${apps[@]}"; do
  [ -f "apps/$app/main.go" ] || { log "unknown app $app (no apps/$app/main.go)"; exit 1; }
  log "go build $app -> $OUT/$app"
  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags '-s -w' -o "$OUT/$app" "./apps/$app"
  # FROM scratch has no dynamic loader: refuse anything that is not statically linked.
  if command -v readelf >/dev/null 2>&1 && readelf -l "$OUT/$app" | grep -q 'INTERP'; then
    log "$OUT/$app is dynamically linked; FROM scratch needs a static binary"
    exit 1
  fi
done

[ -z "${NO_DOCKER:-}" ] || exit 0

if [ ! -f "$CA_BUNDLE" ]; then
  log "no CA bundle at $CA_BUNDLE (apt-get install ca-certificates, or set CA_BUNDLE)"
  exit 1
fi
cp "$CA_BUNDLE" "$OUT/ca-certificates.crt"

command -v docker >/dev/null 2>&1 || { log "docker is not installed (NO_DOCKER=1 builds binaries only)"; exit 1; }
# Without the buildx plugin the docker CLI uses the classic builder, which is all this
# Dockerfile needs (FROM scratch, COPY); say so explicitly rather than failing on BuildKit.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

for app in "${apps[@]}"; do
  image="$IMAGE_PREFIX/$app:$TAG"
  log "docker build $image"
  # The context is a tar of just what the Dockerfile copies, so the repository (and .git)
  # is never uploaded to the engine.
  # The classic builder's deprecation notice goes to stderr: show stderr only on failure.
  if ! tar -cf - deploy/Dockerfile "$OUT/ca-certificates.crt" "$OUT/$app" |
    docker build -q -f deploy/Dockerfile \
      --build-arg "APP=$app" --build-arg "VERSION=$TAG" --build-arg "REVISION=$REVISION" \
      -t "$image" - >/dev/null 2>"$OUT/docker-build.log"; then
    cat "$OUT/docker-build.log" >&2
    log "docker build $image failed"
    exit 1
  fi
done

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^$IMAGE_PREFIX/($(IFS='|'; echo "${apps[*]}")):$TAG\b" || true
