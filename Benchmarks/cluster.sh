#!/usr/bin/env bash
# Throughput of the phase-2 topology on this machine (Docs/scaling.md):
# wrk → HAProxy → 1, 2 or 3 fi-server → a 3-master Redis Cluster, started by
# deploy/local-cluster.sh from release binaries.
#
#   swift build -c release && Benchmarks/cluster.sh
#   swift build -c release && Benchmarks/cluster.sh replicas   # the cost of --redis-min-replicas 1
#
# Runs, each with a fresh cluster:
#   direct-1      wrk straight at one fi-server (no HAProxy), no workers
#   haproxy-N     wrk at HAProxy in front of N = 1, 2, 3 fi-server, no workers
#                 (--max-backlog lifted: nothing drains during the run)
#   full-3        HAProxy, 3 fi-server, 3 fi-worker --all writing the corpora,
#                 default --max-backlog (429 once a partition is 100,000 behind)
# `replicas` instead: a six-node cluster (3 masters + 3 replicas, FI_LC_REPLICAS=1),
# wrk straight at one fi-server (no HAProxy, no workers, --max-backlog lifted), with
# --redis-min-replicas 0 and 1 one after the other, ROUNDS times (3), then the
# median of each: what waiting for a replica's acknowledgement (WAIT) costs.
# Each prints wrk's RESULT line (Free Intelligence's post_event.lua: ~1 KB
# events, half with a site id) and the CPU time each kind of process used
# during the measured run, per request (from /proc/<pid>/stat).
#
# Settings: DURATION (20s), CONNECTIONS (64), FI_BENCH_BASE (first port, 34101),
# FI_LC_BIN (.build/release), FI_BENCH_LUA (Benchmarks/reference/post_event.lua).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-20s}
connections=${CONNECTIONS:-64}
base=${FI_BENCH_BASE:-34101}
lua=${FI_BENCH_LUA:-$root/Benchmarks/reference/post_event.lua}
export FI_LC_BIN=${FI_LC_BIN:-$root/.build/release}
export FI_LC_REDIS_BASE=$base FI_LC_SERVER_BASE=$((base + 10)) FI_LC_HTTP_PORT=$((base + 20))
state=$(mktemp -d /tmp/fi-bench-cluster.XXXXXX)
export FI_LC_DIR=$state/lc
trap '"$root/deploy/local-cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
ticks=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "# binaries: $FI_LC_BIN; wrk -t2 -c$connections -d$duration --latency -s $lua"

cpu_of() { # pid-file glob → total utime+stime ticks of the processes
    local total=0 f pid
    for f in $FI_LC_DIR/pids/$1.pid; do
        [ -e "$f" ] || continue
        for pid in $(cat "$f"); do
            [ -r "/proc/$pid/stat" ] || continue
            total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
        done
    done
    echo $total
}

run() { # label servers workers url extra-server-args
    local label=$1 servers=$2 workers=$3 url_kind=$4 server_args=$5
    rm -rf "$FI_LC_DIR"
    FI_LC_SERVERS=$servers FI_LC_WORKERS=$workers FI_LC_SERVER_ARGS="$server_args --log-level warning" \
        FI_LC_WORKER_ARGS="${worker_args:-} --log-level warning" "$root/deploy/local-cluster.sh" up >/dev/null
    local url="http://127.0.0.1:$FI_LC_HTTP_PORT"
    [ "$url_kind" = direct ] && url="http://127.0.0.1:$FI_LC_SERVER_BASE"
    wrk -t2 -c"$connections" -d3s -s "$lua" "$url" >/dev/null 2>&1 || true   # warm-up
    local kinds=(haproxy 'fi-server-*' 'redis-*' 'fi-worker-*') before=() after=() i
    for i in "${!kinds[@]}"; do before[i]=$(cpu_of "${kinds[i]}"); done
    local result
    result=$(wrk -t2 -c"$connections" -d"$duration" --latency -s "$lua" "$url" | grep '^RESULT')
    for i in "${!kinds[@]}"; do after[i]=$(cpu_of "${kinds[i]}"); done
    local requests cpu=""
    requests=$(echo "$result" | sed -E 's/.* requests=([0-9]+).*/\1/')
    for i in "${!kinds[@]}"; do
        cpu+=" cpu_us_per_req_${kinds[i]//[-*]/}=$(awk -v t=$((after[i] - before[i])) -v hz="$ticks" -v n="$requests" 'BEGIN{printf "%.1f", n ? t / hz * 1e6 / n : 0}')"
    done
    echo "${result/RESULT/RESULT run=$label}$cpu"
    if [ "$workers" -gt 0 ]; then
        # How long the workers need to store what is still queued.
        local start=$SECONDS backlog
        while :; do
            backlog=0
            for p in $(seq "$FI_LC_REDIS_BASE" $((FI_LC_REDIS_BASE + 3 * (1 + ${FI_LC_REPLICAS:-0}) - 1))); do
                for key in $(redis-cli -p "$p" --scan --pattern 'fi:events:*'); do
                    backlog=$((backlog + $(redis-cli -p "$p" xlen "$key")))
                done
            done
            [ "$backlog" -gt 0 ] && [ $((SECONDS - start)) -lt 600 ] || break
            sleep 1
        done
        local rows=0
        rows=$(/usr/bin/python3 - "$FI_LC_DIR/storage" <<'PY'
import glob, sys, h5py
n = 0
for path in glob.glob(sys.argv[1] + "/*/corpus.h5") + glob.glob(sys.argv[1] + "/*/segment-*.h5"):
    with h5py.File(path, "r", swmr=True) as f:
        n += len(f["events/stream_id"])
print(n)
PY
)
        echo "RESULT run=$label drained_after_s=$((SECONDS - start)) backlog_left=$backlog rows_stored=$rows"
    fi
    "$root/deploy/local-cluster.sh" down >/dev/null 2>&1
}

case ${1:-all} in
all)
    run direct-1 1 0 direct "--max-backlog 100000000"
    for n in 1 2 3; do
        run "haproxy-$n" "$n" 0 haproxy "--max-backlog 100000000"
    done
    run full-3 3 3 haproxy ""
    ;;
replicas)
    export FI_LC_REPLICAS=1
    rounds=${ROUNDS:-3}
    echo "# six Redis nodes (3 masters + 3 replicas), fi-server --redis-min-replicas 0 and 1 interleaved, $rounds rounds"
    lines=()
    for round in $(seq 1 "$rounds"); do
        for n in 0 1; do
            line=$(run "replicas-N$n-round$round" 1 0 direct "--max-backlog 100000000 --redis-min-replicas $n")
            echo "$line"
            lines+=("$n $line")
        done
    done
    field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
    median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    for n in 0 1; do
        rps=() p50=() p99=()
        for entry in "${lines[@]}"; do
            [ "${entry%% *}" = "$n" ] || continue
            rps+=("$(field rps "$entry")") p50+=("$(field p50_ms "$entry")") p99+=("$(field p99_ms "$entry")")
        done
        echo "RESULT run=replicas-N$n-median rounds=$rounds rps=$(median "${rps[@]}") p50_ms=$(median "${p50[@]}") p99_ms=$(median "${p99[@]}") rps_all=$(IFS=,; echo "${rps[*]}") p99_all=$(IFS=,; echo "${p99[*]}")"
    done
    ;;
*)
    echo "usage: $0 [all|replicas]" >&2
    exit 2
    ;;
esac
