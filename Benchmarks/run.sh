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

# FIQueue: appends from 64 tasks and group reads + acks in batches of 256, 1 KB entries,
# beside redis-benchmark's XADD (non-pipelined, and -P 16 for scale) against the same
# throwaway redis-server on 127.0.0.1:${FI_BENCH_REDIS_PORT:-6599}.
bench_queue() {
    build
    machine
    local port=${FI_BENCH_REDIS_PORT:-6599} dir payload line
    dir=$(mktemp -d /tmp/fi-bench-redis.XXXXXX)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save '' --appendonly no --maxmemory-policy noeviction
    trap 'kill "$(cat "'"$dir"'/redis.pid")" 2>/dev/null; rm -rf "'"$dir"'"' EXIT
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    payload=$(head -c 1024 /dev/zero | tr '\0' x)
    for pipeline in 1 16; do
        line=$(redis-benchmark -h 127.0.0.1 -p "$port" -c 64 -n 200000 -P "$pipeline" -q XADD bench '*' f "$payload" | tr '\r' '\n' | grep 'requests per second' | tail -1)
        echo "RESULT bench=redis-benchmark op=XADD clients=64 pipeline=$pipeline size=1024 requests=200000 requests_per_s=$(echo "${line##*: }" | awk '{printf "%d", $1}')"
        redis-cli -p "$port" flushall >/dev/null
    done
    "$bench" queue --url "redis://127.0.0.1:$port" --appends 200000 --concurrency 64 --size 1024 --batch 256 --consumers 1,4
    redis-cli -p "$port" flushall >/dev/null
    "$bench" queue --memory --appends 200000 --concurrency 64 --size 1024 --batch 256 --consumers 1,4
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
queue) bench_queue ;;
*) echo "usage: $0 partition" >&2; exit 2 ;;
esac
