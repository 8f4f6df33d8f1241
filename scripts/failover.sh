#!/usr/bin/env bash
# The Redis Cluster failover test alone (Tests/EndToEndTests/FailoverTests.swift), repeated:
# for each N of --redis-min-replicas it runs `runs` times — a six-node cluster from
# deploy/local-cluster.sh, a master killed with SIGKILL under load, its replica promoted, the
# node restarted as a replica — and prints every run's `failover N=…` line again at the end.
#
#   scripts/failover.sh [runs]        # runs per N (default: $FI_FAILOVER_RUNS, else 1)
#
# Needs redis-server, redis-cli and haproxy (scripts/setup.sh) and a debug build
# (`swift build --build-tests`; swift test builds what is missing). Extra arguments after
# `runs` go to `swift test`. The whole output is kept in $FI_FAILOVER_LOG (a temporary file
# by default); the exit status is swift test's.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-${FI_FAILOVER_RUNS:-1}}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [runs]   (runs: a positive number, not '$runs')" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
log=${FI_FAILOVER_LOG:-$(mktemp /tmp/fi-failover.XXXXXX)}

export FI_FAILOVER_RUNS=$runs
export FI_REQUIRE_SERVICES=1   # fail, not skip, when redis-server or haproxy is missing
set +e
swift test --no-parallel --filter FailoverTests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo
echo "== scripts/failover.sh: $runs run(s) per N, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); output in $log"
grep -E '^failover N=' "$log" || echo "(no failover lines: see $log)"
exit "$status"
