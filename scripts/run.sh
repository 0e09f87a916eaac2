#!/usr/bin/env bash
# Runs the whole groupbuy stack locally in the foreground: builds the app binaries into bin/,
# installs daprd/placement/scheduler if needed, then hands over to the dev launcher.
# Arguments go to the launcher, e.g.: scripts/run.sh --port-offset 100 --cli never
set -euo pipefail

cd "$(dirname "$0")/.."

echo "run: go build -o bin/ ./apps/..." >&2
mkdir -p bin
go build -o bin/ ./apps/...

bash scripts/dapr-install.sh

exec go run ./tools/devrun "$@"
