#!/usr/bin/env bash
# Soak: fi-server + fi-worker + redis-server (release build, 127.0.0.1 only) under a
# steady request rate for a long time, sampled every window into a CSV.
#
#   scripts/soak.sh [RATE_PER_S] [DURATION_S] [CSV]      # defaults: 3000 600 soak.csv
#
# Load: Debian's wrk with scripts/soak/rate.lua (wrk2-style pacing of the reference
# Benchmarks/reference/post_event.lua: ~1 KB events, half with a site), run as
# back-to-back 10 s windows (-t2 -c32); each window prints its rate and latency
# percentiles. After each window the script samples, for fi-server, fi-worker and
# redis-server: RSS (VmRSS) and open file descriptors (/proc/<pid>/fd), plus the
# backlog (sum of XLEN fi:events:*). At the end it waits for the backlog to drain,
# counts the corpus rows with h5py, and prints SUMMARY lines.
#
# Environment: FI_SOAK_BIN (a folder with release fi-server and fi-worker; default:
# build them), FI_SOAK_REDIS_PORT (6432), FI_SOAK_PORT (7432), FI_SOAK_LUA (the
# post_event.lua; default Benchmarks/reference/post_event.lua), FI_SOAK_KEEP=1 keeps the scratch folder (corpus files, logs).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-3000}
duration=${2:-600}
csv=${3:-soak.csv}
window=10
redis_port=${FI_SOAK_REDIS_PORT:-6432}
port=${FI_SOAK_PORT:-7432}
export FI_SOAK_LUA=${FI_SOAK_LUA:-$here/Benchmarks/reference/post_event.lua}
[ -f "$FI_SOAK_LUA" ] || { echo "soak: no load script at $FI_SOAK_LUA (set FI_SOAK_LUA)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "soak: wrk is not installed (apt install wrk)" >&2; exit 2; }

if [ -z "${FI_SOAK_BIN:-}" ]; then
    swift build -c release --package-path "$here" --product fi-server >&2
    swift build -c release --package-path "$here" --product fi-worker >&2
    FI_SOAK_BIN=$(swift build -c release --package-path "$here" --show-bin-path)
fi

scratch=$(mktemp -d /tmp/fi-soak.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    [ "${FI_SOAK_KEEP:-0}" = 1 ] && echo "soak: kept $scratch" >&2 || rm -rf "$scratch"
}
trap cleanup EXIT

# Redis as in production: AOF on, fsync every second, never evict.
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$scratch" --save '' --appendonly yes \
    --appendfsync everysec --maxmemory-policy noeviction --logfile "$scratch/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_url="redis://127.0.0.1:$redis_port"

"$FI_SOAK_BIN/fi-server" --host 127.0.0.1 --port "$port" --redis-url "$redis_url" --storage "$scratch/storage" \
    --log-level warning 2>"$scratch/server.log" &
server_pid=$!
pids+=("$server_pid")
"$FI_SOAK_BIN/fi-worker" --all --redis-url "$redis_url" --storage "$scratch/storage" --log-level warning \
    2>"$scratch/worker.log" &
worker_pid=$!
pids+=("$worker_pid")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
backlog() {
    local total=0 n
    for stream in $(redis-cli -p "$redis_port" --scan --pattern 'fi:events:*'); do
        n=$(redis-cli -p "$redis_port" xlen "$stream")
        total=$((total + n))
    done
    echo "$total"
}

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores; target ${rate}/s for ${duration}s; load before start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "t_s,target_rps,rps,p50_ms,p99_ms,max_ms,requests,non2xx,socket_errors,server_rss_kb,server_fds,worker_rss_kb,worker_fds,redis_rss_kb,redis_fds,backlog,load1" >"$csv"
per_thread=$(awk -v r="$rate" 'BEGIN { printf "%.3f", r / 2 }')
start=$(date +%s)
requests_total=0
non2xx_total=0
while [ $(($(date +%s) - start)) -lt "$duration" ]; do
    line=$(FI_SOAK_RATE_PER_THREAD=$per_thread wrk -t2 -c32 -d${window}s -s "$here/scripts/soak/rate.lua" \
        "http://127.0.0.1:$port" 2>&1 | grep '^RESULT' || true)
    t=$(($(date +%s) - start))
    val() { local v; v=$(echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'); echo "${v:-0}"; }
    requests=$(val requests); non2xx=$(val err_status)
    sockerr=$(( $(val err_connect) + $(val err_read) + $(val err_write) + $(val err_timeout) ))
    requests_total=$((requests_total + requests))
    non2xx_total=$((non2xx_total + non2xx))
    for pid in "$server_pid" "$worker_pid" "$redis_pid"; do
        kill -0 "$pid" 2>/dev/null || { echo "soak: process $pid died at t=${t}s" >&2; exit 1; }
    done
    row="$t,$rate,$(val rps),$(val p50_ms),$(val p99_ms),$(val max_ms),$requests,$non2xx,$sockerr"
    row+=",$(rss_kb "$server_pid"),$(fds "$server_pid"),$(rss_kb "$worker_pid"),$(fds "$worker_pid")"
    row+=",$(rss_kb "$redis_pid"),$(fds "$redis_pid"),$(backlog),$(cut -d' ' -f1 /proc/loadavg)"
    echo "$row" >>"$csv"
    echo "$row" >&2
done

# Drain, then count what the corpus holds.
for _ in $(seq 1 600); do [ "$(backlog)" = 0 ] && break; sleep 0.5; done
kill -TERM "$worker_pid" "$server_pid"
wait "$worker_pid" "$server_pid" 2>/dev/null || true
rows=$(/usr/bin/python3 - "$scratch/storage" <<'EOF'
import glob, sys, h5py
# Every segment of every partition (layout 2), and layout 1's corpus.h5.
print(sum(len(h5py.File(p, "r")["events/stream_id"]) for p in glob.glob(sys.argv[1] + "/*/corpus.h5") + glob.glob(sys.argv[1] + "/*/segment-*.h5")))
EOF
)
dead=0
for stream in $(redis-cli -p "$redis_port" --scan --pattern 'fi:dead:*'); do dead=$((dead + $(redis-cli -p "$redis_port" xlen "$stream"))); done

echo "SUMMARY requests=$requests_total non2xx=$non2xx_total accepted_counted=$((requests_total - non2xx_total)) rows_stored=$rows dead_letters=$dead"
/usr/bin/python3 - "$csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def col(name): return [float(r[name]) for r in rows if r[name] not in ("", None)]
n = len(rows)
k = max(1, n // 10)   # first and last tenth of the run
for name in ("server_rss_kb", "worker_rss_kb", "redis_rss_kb", "server_fds", "worker_fds", "redis_fds"):
    v = col(name)
    print(f"SUMMARY {name}: first={statistics.mean(v[:k]):.0f} last={statistics.mean(v[-k:]):.0f} min={min(v):.0f} max={max(v):.0f}")
p99 = col("p99_ms"); rps = col("rps"); backlog = col("backlog")
print(f"SUMMARY p99_ms: median={statistics.median(p99):.2f} p90_of_windows={sorted(p99)[int(0.9 * (len(p99) - 1))]:.2f} max={max(p99):.2f} first_tenth={statistics.mean(p99[:k]):.2f} last_tenth={statistics.mean(p99[-k:]):.2f}")
print(f"SUMMARY rps: mean={statistics.mean(rps):.0f} min={min(rps):.0f} max={max(rps):.0f}; backlog max={max(backlog):.0f}; windows={n}")
EOF
