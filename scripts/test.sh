#!/usr/bin/env bash
# Test entry point: `scripts/test.sh all|unit|integration|smoke|profiles|bench`.
#   unit         go vet + unit tests with -race (no services needed)
#   integration  the integration suite (tests/integration, build tag "integration") against
#                Redis, RabbitMQ and real daprd/placement/scheduler processes
#   smoke        the integration suite's smoke subset (tests named TestSmoke*)
#   profiles     the core scenarios again on the second infrastructure profile
#                (GROUPBUY_TEST_PROFILE=postgres: PostgreSQL state store, Redis Streams pub/sub)
#   bench        the benchmark harness's own tests, then `scripts/bench.sh --smoke`: every
#                scenario for a few seconds; it asserts that the harness runs and that the
#                stores' invariants hold after each scenario, never a speed
#   all          unit, integration, profiles, bench
# GROUPBUY_TEST_INFRA=local|testcontainers picks where Redis/RabbitMQ come from (default local
# here: the services already running; see tests/testinfra).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
export GROUPBUY_TEST_INFRA=${GROUPBUY_TEST_INFRA:-local}
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
summary=()

# Packages outside tests/ with integration-tagged tests: adapter contract suites run against a
# real daprd (each starts a stack of its own app through tests/harness) and pkg/devstack.
contract_pkgs() {
  grep -rl --include='*_test.go' '^//go:build integration' apps pkg | xargs -n1 dirname | sort -u | sed 's|^|./|'
}

unit() {
  echo "== go vet"
  go vet ./...
  go vet -tags integration ./tests/... $(contract_pkgs)
  echo "== unit tests (-race)"
  local pkgs
  pkgs=$(go list ./... | grep -v '/tests/')
  if go test -race -count=1 $pkgs 2>&1 | tee /tmp/groupbuy-unit.log; then
    summary+=("unit: PASS ($(grep -c '^ok' /tmp/groupbuy-unit.log) packages ok)")
  else
    summary+=("unit: FAIL"); print_summary; exit 1
  fi
  echo "== chart: helm lint + manifest validation"
  bash scripts/helm.sh --install
  if GROUPBUY_REQUIRE_HELM=1 go test -count=1 -v ./tests/manifests/ > /tmp/groupbuy-manifests.log 2>&1; then
    summary+=("manifests: PASS ($(grep -c -- '--- PASS' /tmp/groupbuy-manifests.log) checks passed)")
  else
    tail -n 60 /tmp/groupbuy-manifests.log
    summary+=("manifests: FAIL (log /tmp/groupbuy-manifests.log)"); print_summary; exit 1
  fi
}

integration() {
  local run=${1:-} label=${2:-integration}
  bash scripts/dapr-install.sh
  echo "== $label tests (infra: $GROUPBUY_TEST_INFRA, profile: ${GROUPBUY_TEST_PROFILE:-default})"
  local args=(-tags integration -count=1 -timeout 40m -v)
  local pkgs=(./tests/integration/ ./tests/testinfra/)
  mapfile -t -O ${#pkgs[@]} pkgs < <(contract_pkgs)
  if [ -n "$run" ]; then
    args+=(-run "$run")
    pkgs=(./tests/integration/)
  fi
  set +e
  go test "${args[@]}" "${pkgs[@]}" 2>&1 | tee "/tmp/groupbuy-$label.log" \
    | grep --line-buffered -E '^(=== RUN|\s*--- |PASS|FAIL|ok|panic)|_test\.go:[0-9]+:'
  local rc=${PIPESTATUS[0]}
  set -e
  local passed failed
  passed=$(grep -c -- '^--- PASS' "/tmp/groupbuy-$label.log" || true)
  failed=$(grep -c -- '^--- FAIL' "/tmp/groupbuy-$label.log" || true)
  local what="$label ($GROUPBUY_TEST_INFRA, profile ${GROUPBUY_TEST_PROFILE:-default})"
  if [ "$rc" -eq 0 ]; then
    summary+=("$what: PASS ($passed tests passed)")
  else
    summary+=("$what: FAIL ($failed failed; full log /tmp/groupbuy-$label.log)")
    print_summary; exit 1
  fi
}

bench() {
  echo "== bench harness: its tests, then a smoke run (invariants only, never a speed)"
  go test -count=1 ./tests/bench/...
  local log=${TMPDIR:-/tmp}/groupbuy-bench-smoke.log
  if bash scripts/bench.sh --smoke --out "${TMPDIR:-/tmp}/groupbuy-bench-smoke" >"$log" 2>&1; then
    summary+=("bench smoke: PASS ($(grep -c '^  ok ' "$log") invariant checks held; log $log)")
  else
    tail -n 60 "$log"
    summary+=("bench smoke: FAIL (log $log)"); print_summary; exit 1
  fi
}

print_summary() {
  echo
  echo "== test summary"
  printf '  %s\n' "${summary[@]}"
}

# The core scenarios every infrastructure profile must pass.
CORE='^(TestSmoke|TestFlashRace|TestIdempotent|TestOrderLifecycle|TestOrderEventSurvives|TestExpiry|TestNotif|TestDeadLetter|TestGroup(SucceedsWhenAllPay|FailsAtDeadline|JoinRace)|TestPaymentDown)'

profiles() {
  local prev_infra=$GROUPBUY_TEST_INFRA
  # The postgres profile uses the local PostgreSQL (a database per stack) and Redis.
  export GROUPBUY_TEST_INFRA=local GROUPBUY_TEST_PROFILE=postgres
  integration "$CORE" profile-postgres
  export GROUPBUY_TEST_INFRA=$prev_infra
  unset GROUPBUY_TEST_PROFILE
}

case "$mode" in
  unit) unit ;;
  integration) integration ;;
  smoke) integration '^TestSmoke' smoke ;;
  profiles) profiles ;;
  bench) bench ;;
  all) unit; integration; profiles; bench ;;
  *) echo "usage: $0 all|unit|integration|smoke|profiles|bench" >&2; exit 2 ;;
esac
print_summary
