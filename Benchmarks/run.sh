#!/usr/bin/env bash
# Benchmarks, each beside its reference measured in the same run.
#
#   Benchmarks/run.sh partition     # FIPartitioning vs the reference Python function
#   Benchmarks/run.sh queue         # FIQueue vs redis-benchmark
#   Benchmarks/run.sh storage       # FIStorage vs h5py
#   Benchmarks/run.sh worker        # fi-worker drain vs the reference Python worker
#   Benchmarks/run.sh http          # fi-server vs the reference FastAPI service vs a bare Hummingbird route
#   Benchmarks/run.sh sessions      # fi-load: consultation sessions at the plan's milestones, and where p95 crosses 50 ms
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

# fi-server and fi-worker in release mode, from the same scratch folder.
build_binaries() {
    build
    swift build -c release --package-path "$here" --scratch-path "$scratch" --product fi-server >&2
    swift build -c release --package-path "$here" --scratch-path "$scratch" --product fi-worker >&2
    server="$scratch/release/fi-server"
    worker="$scratch/release/fi-worker"
    bare="$scratch/release/bare-http"
}

# The reference Python service and worker (Benchmarks/reference, see its README.md) need
# FastAPI, uvicorn, redis-py, h5py and orjson: PEER_PY names an interpreter that has them
# (made once with: python3 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install
# -r Benchmarks/reference/requirements.txt). PEER_DIR overrides the folder, FI_BENCH_LUA
# the wrk script (default: Benchmarks/reference/post_event.lua).
peer=${PEER_DIR:-$here/reference}
peer_py=${PEER_PY:-/tmp/peer-venv/bin/python}
peer_lua=${FI_BENCH_LUA:-$peer/post_event.lua}

# A throwaway redis-server on 127.0.0.1:$1 (appendonly no, as the reference's own figures were measured).
start_redis() {
    local port=$1
    redis_dir=$(mktemp -d /tmp/fi-bench-redis.XXXXXX)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$redis_dir" --daemonize yes --pidfile "$redis_dir/redis.pid" \
        --logfile "$redis_dir/redis.log" --save '' --appendonly no --maxmemory-policy noeviction
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

stop_redis() {
    [ -n "${redis_dir:-}" ] || return 0
    kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$redis_dir"
}

# Peak RSS (kB) of a pid, from /proc (VmHWM).
peak_rss_kb() { awk '/VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

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
# throwaway redis-server on 127.0.0.1:${FI_BENCH_REDIS_PORT:-6599}. Three rounds, each
# redis-benchmark then fi-bench, interleaved; the last line gives the medians and the ratio
# of the medians (one run on this shared machine swings by a quarter either way).
bench_queue() {
    build
    machine
    local port=${FI_BENCH_REDIS_PORT:-6599} dir payload line out round
    local rb=() appends=() seq1=() seq4=() over=()
    dir=$(mktemp -d /tmp/fi-bench-redis.XXXXXX)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save '' --appendonly no --maxmemory-policy noeviction
    trap 'kill "$(cat "'"$dir"'/redis.pid")" 2>/dev/null || true; rm -rf "'"$dir"'"' EXIT
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    payload=$(head -c 1024 /dev/zero | tr '\0' x)
    xadd() {
        line=$(redis-benchmark -h 127.0.0.1 -p "$port" -c 64 -n 200000 -P "$1" -q XADD bench '*' f "$payload" | tr '\r' '\n' | grep 'requests per second' | tail -1)
        echo "${line##*: }" | awk '{printf "%d", $1}'
    }
    value() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
    for round in 1 2 3; do
        rb+=("$(xadd 1)")
        echo "RESULT bench=redis-benchmark op=XADD clients=64 pipeline=1 size=1024 requests=200000 round=$round requests_per_s=${rb[-1]}"
        redis-cli -p "$port" flushall >/dev/null
        out=$("$bench" queue --url "redis://127.0.0.1:$port" --appends 200000 --concurrency 64 --size 1024 --batch 256 --consumers 1,4)
        echo "$out" | sed "s/^RESULT bench=queue /RESULT bench=queue round=$round /"
        appends+=("$(value appends_per_s "$(grep 'op=append' <<<"$out")")")
        seq1+=("$(value entries_per_s "$(grep 'mode=sequential consumers=1 ' <<<"$out")")")
        seq4+=("$(value entries_per_s "$(grep 'mode=sequential consumers=4 ' <<<"$out")")")
        over+=("$(value entries_per_s "$(grep 'mode=overlapped' <<<"$out")")")
        redis-cli -p "$port" flushall >/dev/null
    done
    echo "RESULT bench=redis-benchmark op=XADD clients=64 pipeline=16 size=1024 requests=200000 requests_per_s=$(xadd 16)"
    redis-cli -p "$port" flushall >/dev/null
    median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
    awk -v rb="$(median "${rb[@]}")" -v ap="$(median "${appends[@]}")" -v s1="$(median "${seq1[@]}")" \
        -v s4="$(median "${seq4[@]}")" -v ov="$(median "${over[@]}")" \
        'BEGIN{printf "RESULT bench=queue-median rounds=3 redis_benchmark_xadd_per_s=%d appends_per_s=%d ratio=%.2f read_ack_seq1_per_s=%d read_ack_seq4_per_s=%d read_ack_overlapped_per_s=%d\n", rb, ap, ap/rb, s1, s4, ov}'
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

# Worker drain: 100,000 prefilled 1 KB entries in one partition, one worker, batch 256, durable
# (flush + fdatasync per batch), from start to an empty stream; then the reference Python worker
# (redis-py + h5py, batch 256) draining the same prefill in the same run. Peak RSS of ours.
bench_worker() {
    build_binaries
    machine
    local port=${FI_BENCH_REDIS_PORT:-6598} n=${DRAIN_N:-100000} storage t0 t1 tf left pid rss cpu line
    start_redis "$port"
    trap stop_redis EXIT
    storage=$(mktemp -d /tmp/fi-bench-storage.XXXXXX)
    for rep in 1 2; do
        redis-cli -p "$port" flushall >/dev/null
        rm -rf "$storage"/*
        FI_REDIS_URL="redis://127.0.0.1:$port/0" "$peer_py" "$peer/tools/prefill_stream.py" --stream fi:events:partition_0 -n "$n" --body-bytes 1024 >/dev/null
        sync
        t0=$(date +%s.%N)
        "$worker" partition_0 --redis-url "redis://127.0.0.1:$port" --storage "$storage" --log-level warning &
        pid=$!
        # Poll XLEN every 10 ms on one connection (a redis-cli process per poll would steal a core).
        # Two rates: from the worker's launch (process start, connect, lease, file creation
        # included) to an empty stream, and the steady drain from the first poll that sees
        # the stream shrink — how the reference worker reports itself (first read to last ack).
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        tf="" left=""
        while :; do
            printf 'XLEN fi:events:partition_0\r\n' >&3
            IFS= read -r line <&3
            line=${line%$'\r'}
            [ "$line" = ":0" ] && break
            if [ -z "$tf" ] && [ "${line#:}" -lt "$n" ]; then tf=$(date +%s.%N) left=${line#:}; fi
            sleep 0.01
        done
        exec 3>&-
        t1=$(date +%s.%N)
        [ -n "$tf" ] || { tf=$t0 left=$n; }
        rss=$(peak_rss_kb "$pid")
        cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")  # user + system, clock ticks
        kill -TERM "$pid"; wait "$pid" || true
        awk -v a="$t0" -v b="$t1" -v f="$tf" -v left="$left" -v n="$n" -v rss="$rss" -v cpu="$cpu" -v hz="$(getconf CLK_TCK)" \
            'BEGIN{printf "RESULT bench=worker impl=fi-worker rep='"$rep"' events=%d seconds=%.3f events_per_s=%.0f steady_events_per_s=%.0f peak_rss_mb=%.1f cpu_us_per_event=%.1f\n", n, b-a, n/(b-a), (b > f ? left/(b-f) : 0), rss/1024, cpu/hz*1e6/n}'

        redis-cli -p "$port" flushall >/dev/null
        rm -rf "$storage"/*
        FI_REDIS_URL="redis://127.0.0.1:$port/0" "$peer_py" "$peer/tools/prefill_stream.py" --stream fi:events:partition_0 -n "$n" --body-bytes 1024 >/dev/null
        sync
        (cd "$peer" && FI_REDIS_URL="redis://127.0.0.1:$port/0" FI_STORAGE_DIR="$storage" "$peer_py" backend/event_worker.py partition_0 --batch 256 --block-ms 500 --drain) 2>&1 \
            | sed 's/^/# python: /'
    done
    rm -rf "$storage"
}

# HTTP ingest: wrk -t2 -c64 -d20s --latency -s post_event.lua (1 KB events, half with site ids)
# against fi-server (local redis-server), the reference Python service with 2 uvicorn workers,
# and a bare Hummingbird route, one after another in the same run. As for the Python service, no
# worker drains meanwhile (it would share the 2 cores), so --max-backlog is lifted for the run.
bench_http() {
    build_binaries
    machine
    local port=${FI_BENCH_REDIS_PORT:-6597} lua="$peer_lua" duration=${DURATION:-20s} storage rss
    pid=""
    start_redis "$port"
    # (Each kill ends in `|| true`: under set -e a failed kill of an exited process would end the trap
    # before stop_redis, leaving the throwaway Redis running.)
    trap '{ [ -n "$pid" ] && kill "$pid" 2>/dev/null; } || true; stop_redis' EXIT
    storage=$(mktemp -d /tmp/fi-bench-storage.XXXXXX)
    run_wrk() { # label url
        wrk -t2 -c64 -d3s -s "$lua" "$2" >/dev/null 2>&1 || true
        wrk -t2 -c64 -d"$duration" --latency -s "$lua" "$2" | grep RESULT | sed "s/^RESULT /RESULT bench=http impl=$1 /"
    }

    "$server" --port 7301 --redis-url "redis://127.0.0.1:$port" --storage "$storage" --max-backlog 100000000 --log-level warning &
    pid=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7301/health >/dev/null && break; sleep 0.1; done
    run_wrk fi-server http://127.0.0.1:7301
    rss=$(peak_rss_kb "$pid")
    echo "RESULT bench=http impl=fi-server peak_rss_mb=$(awk -v r="$rss" 'BEGIN{printf "%.1f", r/1024}')"
    curl -s http://127.0.0.1:7301/metrics | grep -E '^fi_http_requests_total' | sed 's/^/# /'
    kill -TERM "$pid"; wait "$pid" || true
    redis-cli -p "$port" flushall >/dev/null

    (cd "$peer" && FI_REDIS_URL="redis://127.0.0.1:$port/0" exec "$peer_py" -m uvicorn backend.fi_consult_service:app \
        --host 127.0.0.1 --port 7101 --workers 2 --no-access-log --log-level warning) &
    pid=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7101/health >/dev/null && break; sleep 0.1; done
    run_wrk python-uvicorn-2 http://127.0.0.1:7101
    kill -TERM "$pid"; wait "$pid" || true
    redis-cli -p "$port" flushall >/dev/null

    "$bare" 7201 &
    pid=$!
    sleep 1
    run_wrk bare-hummingbird http://127.0.0.1:7201
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$storage"
}

# Consultation sessions (fi-load, see Docs/capacity.md): each of the plan's milestones — 300, 1,000
# and 10,000 sessions/day — as one day of sessions compressed into DAY_SECONDS (default 120) wall
# seconds, so the load applied is the milestone × 86,400 / DAY_SECONDS in real-time terms; each
# followed by the corpus check. Then the search: the same compression, the target doubled from
# SEARCH_START (2,000 sessions/day) until p95 passes 50 ms or errors pass 1 % (halved if it starts
# above), then bisected BISECT (4) times, STEP_SECONDS (30) per step, without the corpus check
# (VERIFY_SEARCH=1 adds it).
# MODE=embedded (default: fi-server alone) or MODE=redis (a local redis-server and one fi-worker --all).
# Writes OUT (default Benchmarks/results/sessions-<mode>-<time>.csv); plot with
# scripts/plot_sessions.py OUT Docs/capacity-p95.png.
bench_sessions() {
    build_binaries
    machine
    local mode=${MODE:-embedded} day=${DAY_SECONDS:-120} step=${STEP_SECONDS:-30} port=${FI_BENCH_REDIS_PORT:-6596}
    local http_port=${FI_BENCH_HTTP_PORT:-7401} out storage compression base queue_args=() wpid="" lo hi mid verify=()
    out=${OUT:-$here/results/sessions-$mode-$(date -u +%Y%m%dT%H%M%SZ).csv}
    mkdir -p "$(dirname "$out")"
    compression=$(awk -v d="$day" 'BEGIN{printf "%g", 86400/d}')
    base="http://127.0.0.1:$http_port"
    storage=$(mktemp -d /tmp/fi-bench-storage.XXXXXX)
    pid=""
    if [ "$mode" = redis ]; then
        start_redis "$port"
        queue_args=(--redis-url "redis://127.0.0.1:$port")
    fi
    trap '{ [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid"; } || true; { [ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid"; } || true; stop_redis; rm -rf "$storage"' EXIT
    "$server" --port "$http_port" "${queue_args[@]}" --storage "$storage" --log-level warning &
    pid=$!
    if [ "$mode" = redis ]; then
        "$worker" --all "${queue_args[@]}" --storage "$storage" --log-level warning &
        wpid=$!
    fi
    for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
    echo "# mode=$mode compression=$compression (a day in $day s) out=$out"

    # Waits (at most 120 s) until fi-server reports no backlog, so a step does not pay for the
    # previous step's queue: a saturated step leaves events for the worker to drain.
    settle() {
        for _ in $(seq 1 240); do
            [ "$(curl -s "$base/metrics" | awk '/^fi_queue_backlog/ { s += $2 } END { print s + 0 }')" = 0 ] && return
            sleep 0.5
        done
        echo "# backlog still not drained after 120 s"
    }
    # run LABEL SESSIONS_PER_DAY DURATION [fi-load flags…]: one fi-load run, appending a CSV row.
    run() {
        local label=$1 target=$2 seconds=$3
        shift 3
        settle
        "$scratch/release/fi-load" --url "$base" --sessions-per-day "$target" --compression "$compression" \
            --duration "$seconds" --csv "$out" --label "$label" "$@" >/dev/null || echo "# fi-load exited $?"
        tail -1 "$out" | sed 's/^/# /'
    }
    # A column of the last CSV row, by header name.
    last() { awk -F, -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } END { print $c }' "$out"; }
    # Crossed: p95 above 50 ms, errors above 1 %, or under 90 % of the applied request rate achieved
    # (server or load generator saturated: the target load was not applied).
    crossed() {
        awk -v p="$(last p95_ms)" -v e="$(last errors)" -v n="$(last requests)" -v r="$(last request_rate)" -v a="$(last applied_sessions_per_day)" \
            'BEGIN { exit !(p > 50 || (n > 0 && e / n > 0.01) || r < 0.9 * a * 20 / 86400) }'
    }

    for milestone in 300 1000 10000; do
        run "milestone-$milestone" "$milestone" "$day"
    done

    [ "${VERIFY_SEARCH:-0}" = 1 ] || verify=(--no-verify)
    # Double (or halve) from SEARCH_START until the p95 crossing is bracketed, then bisect.
    lo="" hi="" mid=${SEARCH_START:-2000}
    for _ in $(seq 1 12); do
        run "search" "$mid" "$step" "${verify[@]}"
        if crossed; then hi=$mid; else lo=$mid; fi
        [ -n "$lo" ] && [ -n "$hi" ] && break
        if [ -n "$hi" ]; then mid=$((mid / 2)); else mid=$((mid * 2)); fi
        [ "$mid" -ge 1 ] || break
    done
    if [ -n "$lo" ] && [ -n "$hi" ]; then
        for _ in $(seq 1 "${BISECT:-4}"); do
            mid=$(((lo + hi) / 2))
            run "search" "$mid" "$step" "${verify[@]}"
            if crossed; then hi=$mid; else lo=$mid; fi
        done
        echo "RESULT bench=sessions mode=$mode compression=$compression p95_crosses_50ms_between_sessions_per_day=$lo..$hi applied_sessions_per_day=$(awk -v a="$lo" -v b="$hi" -v c="$compression" 'BEGIN{printf "%.0f..%.0f", a*c, b*c}')"
    else
        echo "RESULT bench=sessions mode=$mode compression=$compression p95_crossing_not_bracketed lo=${lo:-none} hi=${hi:-none}"
    fi
    curl -s "$base/capacity" | tr -d '\n' | cut -c1-600 | sed 's/^/# GET \/capacity: /'; echo
    kill -TERM "$pid"; wait "$pid" || true
    pid=""
    if [ -n "$wpid" ]; then kill -TERM "$wpid"; wait "$wpid" || true; wpid=""; fi
    echo "# wrote $out"
}

case "${1:-}" in
partition) bench_partition ;;
storage) bench_storage ;;
queue) bench_queue ;;
worker) bench_worker ;;
http) bench_http ;;
sessions) bench_sessions ;;
*) echo "usage: $0 partition|queue|storage|worker|http|sessions" >&2; exit 2 ;;
esac
