#!/usr/bin/env bash
# Benchmark harness (docs/BENCHMARKS.md): builds the app binaries (with inventory's stockbench
# engine driver) and the harness into bin/, installs daprd/placement/scheduler if needed, then
# runs tests/bench, which brings up its own stack on shifted ports. Arguments go to the
# harness, e.g.:
#   scripts/bench.sh --scenario S2 --duration 20s
#   scripts/bench.sh --smoke            # every scenario for a few seconds (the CI stage)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "bench: go build -o bin/ ./apps/... && go build -o bin/bench ./tests/bench" >&2
mkdir -p bin
go build -o bin/ ./apps/...
go build -o bin/bench ./tests/bench

bash scripts/dapr-install.sh

exec bin/bench "$@"
