#!/usr/bin/env bash
# Benchmarks, each beside its reference measured in the same run.
#
#   Benchmarks/run.sh partition     # FIPartitioning vs the reference Python function
#
# Builds fi-bench in release mode first. Prints `RESULT …` lines; record them,
# the command and the machine in Docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scratch=${FI_BENCH_SCRATCH:-$here/.build}

build() {
    swift build -c release --package-path "$here" --scratch-path "$scratch" >&2
    bench="$scratch/release/fi-bench"
}

machine() {
    echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "# load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

bench_partition() {
    build
    machine
    # Pin both to one core so "single core" means the same thing for each.
    taskset -c 0 "$bench" partition 2000000 3
    taskset -c 0 python3 "$here/partition_reference.py" 1000000 3
}

case "${1:-}" in
partition) bench_partition ;;
*) echo "usage: $0 partition" >&2; exit 2 ;;
esac
