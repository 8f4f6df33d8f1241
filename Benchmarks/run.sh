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

# FIStorage: 100,000 1 KB events appended by CorpusWriter with flush + fdatasync per batch (and flush
# only) at batch 256 and 1024, each beside python/bench/h5py_corpus_bench.py (Debian's h5py, same
# layout, same durability), runs interleaved; then the deflate option. FI_PYTHON overrides /usr/bin/python3.
bench_storage() {
    build
    machine
    "$bench" storage 100000 1024 "${FI_BENCH_DIR:-/tmp}" 3
}

case "${1:-}" in
partition) bench_partition ;;
storage) bench_storage ;;
*) echo "usage: $0 partition" >&2; exit 2 ;;
esac
