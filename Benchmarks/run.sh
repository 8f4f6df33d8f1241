#!/usr/bin/env bash
# Benchmarks, each beside its reference measured in the same run.
#
#   Benchmarks/run.sh partition     # FIPartitioning vs the reference Python function
#   Benchmarks/run.sh queue         # FIQueue vs redis-benchmark
#   Benchmarks/run.sh storage       # FIStorage vs h5py
#   Benchmarks/run.sh segments      # FIStorage appends with segment rolls vs one file; the roll; lookups over 100 segments
#   Benchmarks/run.sh worker        # fi-worker drain vs the reference Python worker
#   Benchmarks/run.sh http          # fi-server vs the reference FastAPI service vs a bare Hummingbird route
#   Benchmarks/run.sh sessions      # fi-load: consultation sessions at the plan's milestones, and where p95 crosses 50 ms
#   Benchmarks/run.sh summary       # partition, queue, storage, worker, http; their median lines into
#                                   # Docs/data/benchmarks-summary.csv and Docs/benchmarks-summary.png
#
# Builds fi-bench in release mode first (FI_BENCH_NO_BUILD=1 skips the build and uses what is in
# the scratch folder). Prints `RESULT …` lines. partition, queue, storage, worker and http each run
# three rounds, FI Scale and its reference one after the other in every round, and end with one
# `RESULT bench=<mode>-median rounds=3 …` line: the median of each figure and the ratio of the medians
# (a single run on a shared 2-core machine swings by a quarter either way). Record the median lines,
# the command and the machine in Docs/benchmarks.md (older runs: Docs/benchmarks-log.md).
# For a quick smoke run: DURATION=3s DRAIN_N=20000 STORAGE_EVENTS=20000 PARTITION_IDS=200000 \
#   QUEUE_APPENDS=20000 SUMMARY_CSV=/tmp/s.csv SUMMARY_PNG=/tmp/s.png Benchmarks/run.sh summary
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
scratch=${FI_BENCH_SCRATCH:-$here/.build}

build() {
    [ "${FI_BENCH_NO_BUILD:-0}" = 1 ] || swift build -c release --package-path "$here" --scratch-path "$scratch" >&2
    bench="$scratch/release/fi-bench"
}

# fi-server and fi-worker in release mode, from the same scratch folder.
build_binaries() {
    build
    if [ "${FI_BENCH_NO_BUILD:-0}" != 1 ]; then
        swift build -c release --package-path "$here" --scratch-path "$scratch" --product fi-server >&2
        swift build -c release --package-path "$here" --scratch-path "$scratch" --product fi-worker >&2
    fi
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

# field KEY TEXT: the value of the first KEY=value in TEXT.
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
# median VALUE…: the middle value (of 3: the second smallest).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

machine() {
    echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "# load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# FIPartitioning: keys per second for random UUID ids on one core, fi-bench (best of 5 passes over
# PARTITION_IDS, default 2,000,000) then the plan's Python function (best of 3 over half as many), both
# pinned to core 0 so "single core" means the same thing for each; three rounds, then the medians
# and the ratio of the medians (mod-N against Python). PARTITION_PY overrides the interpreter (python3).
bench_partition() {
    build
    machine
    local n=${PARTITION_IDS:-2000000} py=${PARTITION_PY:-python3} out round impl=""
    local mod=() jump=() ref=()
    for round in 1 2 3; do
        out=$(taskset -c 0 "$bench" partition "$n" 3)
        sed "s/^RESULT bench=partition /RESULT bench=partition round=$round /" <<<"$out"
        mod+=("$(field keys_per_s "$(grep 'strategy=modulo ' <<<"$out")")")
        jump+=("$(field keys_per_s "$(grep 'strategy=jump' <<<"$out")")")
        out=$(taskset -c 0 "$py" "$here/partition_reference.py" $((n / 2)) 3)
        sed "s/^RESULT bench=partition /RESULT bench=partition round=$round /" <<<"$out"
        ref+=("$(field keys_per_s "$out")")
        impl=$(sed -n 's/.* impl=\([^ ]*\).*/\1/p' <<<"$out")
    done
    awk -v m="$(median "${mod[@]}")" -v j="$(median "${jump[@]}")" -v p="$(median "${ref[@]}")" -v impl="$impl" \
        'BEGIN{printf "RESULT bench=partition-median rounds=3 partitions=3 modulo_keys_per_s=%d jump_keys_per_s=%d python_keys_per_s=%d python=%s ratio=%.2f\n", m, j, p, impl, m/p}'
}

# FIQueue: appends from 64 tasks and group reads + acks in batches of 256, 1 KB entries,
# beside redis-benchmark's XADD (non-pipelined, and -P 16 for scale) against the same
# throwaway redis-server on 127.0.0.1:${FI_BENCH_REDIS_PORT:-6599}. Three rounds, each
# redis-benchmark then fi-bench, interleaved; the last line gives the medians and the ratio
# of the medians (one run on this shared machine swings by a quarter either way).
bench_queue() {
    build
    machine
    local port=${FI_BENCH_REDIS_PORT:-6599} n=${QUEUE_APPENDS:-200000} dir payload line out round
    local rb=() appends=() seq1=() seq4=() over=()
    dir=$(mktemp -d /tmp/fi-bench-redis.XXXXXX)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save '' --appendonly no --maxmemory-policy noeviction
    trap 'kill "$(cat "'"$dir"'/redis.pid")" 2>/dev/null || true; rm -rf "'"$dir"'"' EXIT
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    payload=$(head -c 1024 /dev/zero | tr '\0' x)
    xadd() {
        line=$(redis-benchmark -h 127.0.0.1 -p "$port" -c 64 -n "$n" -P "$1" -q XADD bench '*' f "$payload" | tr '\r' '\n' | grep 'requests per second' | tail -1)
        echo "${line##*: }" | awk '{printf "%d", $1}'
    }
    value() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
    for round in 1 2 3; do
        rb+=("$(xadd 1)")
        echo "RESULT bench=redis-benchmark op=XADD clients=64 pipeline=1 size=1024 requests=$n round=$round requests_per_s=${rb[-1]}"
        redis-cli -p "$port" flushall >/dev/null
        out=$("$bench" queue --url "redis://127.0.0.1:$port" --appends "$n" --concurrency 64 --size 1024 --batch 256 --consumers 1,4)
        echo "$out" | sed "s/^RESULT bench=queue /RESULT bench=queue round=$round /"
        appends+=("$(value appends_per_s "$(grep 'op=append' <<<"$out")")")
        seq1+=("$(value entries_per_s "$(grep 'mode=sequential consumers=1 ' <<<"$out")")")
        seq4+=("$(value entries_per_s "$(grep 'mode=sequential consumers=4 ' <<<"$out")")")
        over+=("$(value entries_per_s "$(grep 'mode=overlapped' <<<"$out")")")
        redis-cli -p "$port" flushall >/dev/null
    done
    echo "RESULT bench=redis-benchmark op=XADD clients=64 pipeline=16 size=1024 requests=$n requests_per_s=$(xadd 16)"
    redis-cli -p "$port" flushall >/dev/null
    awk -v rb="$(median "${rb[@]}")" -v ap="$(median "${appends[@]}")" -v s1="$(median "${seq1[@]}")" \
        -v s4="$(median "${seq4[@]}")" -v ov="$(median "${over[@]}")" \
        'BEGIN{printf "RESULT bench=queue-median rounds=3 redis_benchmark_xadd_per_s=%d appends_per_s=%d ratio=%.2f read_ack_seq1_per_s=%d read_ack_seq4_per_s=%d read_ack_overlapped_per_s=%d\n", rb, ap, ap/rb, s1, s4, ov}'
    "$bench" queue --memory --appends "$n" --concurrency 64 --size 1024 --batch 256 --consumers 1,4
}

# FIStorage: 100,000 (STORAGE_EVENTS) 1 KB events appended by CorpusWriter with flush + fdatasync per
# batch (and flush only) at batch 256 and 1024, each beside python/bench/h5py_corpus_bench.py (Debian's
# h5py, same layout, same durability); then the deflate option. FI_PYTHON overrides /usr/bin/python3.
# fi-bench interleaves the rounds itself: its last argument is the number of rounds, and for each
# configuration every round runs CorpusWriter then h5py, and each line gives the median of the rounds.
# The last line collects the durable medians (batch 256, the worker's default, and 1024).
bench_storage() {
    build
    machine
    local out
    out=$(mktemp /tmp/fi-bench-storage-out.XXXXXX)
    "$bench" storage "${STORAGE_EVENTS:-100000}" 1024 "${FI_BENCH_DIR:-/tmp}" 3 | tee "$out"
    durable() { field events_per_s "$(grep "impl=$1 batch=$2 fsync=yes compression=none " "$out" | head -1)"; }
    awk -v s256="$(durable swift 256)" -v h256="$(durable h5py 256)" -v s1024="$(durable swift 1024)" -v h1024="$(durable h5py 1024)" \
        'BEGIN{printf "RESULT bench=storage-median rounds=3 durable_b256_events_per_s=%d h5py_durable_b256_events_per_s=%d ratio_b256=%.2f durable_b1024_events_per_s=%d h5py_durable_b1024_events_per_s=%d ratio_b1024=%.2f\n", s256, h256, s256/h256, s1024, h1024, s1024/h1024}'
    rm -f "$out"
}

# Worker drain: 100,000 (DRAIN_N) prefilled 1 KB entries in one partition, one worker, batch 256, durable
# (flush + fdatasync per batch), from start to an empty stream; then the reference Python worker
# (redis-py + h5py, batch 256, flush without fsync) draining the same prefill. Three rounds, each
# fi-worker then the Python worker. The median line compares the steady rate of fi-worker (from the
# first poll that sees the stream shrink to an empty stream) with the Python worker's own report
# (first read to last XACK), and gives both peak RSS (the Python worker's by /usr/bin/time).
bench_worker() {
    build_binaries
    machine
    local port=${FI_BENCH_REDIS_PORT:-6598} n=${DRAIN_N:-100000} storage t0 t1 tf left pid rss cpu line out round
    local launch=() steady=() rsss=() cpus=() py=() pyrss=() pycpu=()
    start_redis "$port"
    trap stop_redis EXIT
    storage=$(mktemp -d /tmp/fi-bench-storage.XXXXXX)
    for round in 1 2 3; do
        redis-cli -p "$port" flushall >/dev/null
        rm -rf "${storage:?}"/*
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
        out=$(awk -v a="$t0" -v b="$t1" -v f="$tf" -v left="$left" -v n="$n" -v rss="$rss" -v cpu="$cpu" -v hz="$(getconf CLK_TCK)" \
            'BEGIN{printf "RESULT bench=worker impl=fi-worker rep='"$round"' events=%d seconds=%.3f events_per_s=%.0f steady_events_per_s=%.0f peak_rss_mb=%.1f cpu_us_per_event=%.1f\n", n, b-a, n/(b-a), (b > f ? left/(b-f) : 0), rss/1024, cpu/hz*1e6/n}')
        echo "$out"
        launch+=("$(field events_per_s "$out")") steady+=("$(field steady_events_per_s "$out")")
        rsss+=("$(field peak_rss_mb "$out")") cpus+=("$(field cpu_us_per_event "$out")")

        redis-cli -p "$port" flushall >/dev/null
        rm -rf "${storage:?}"/*
        FI_REDIS_URL="redis://127.0.0.1:$port/0" "$peer_py" "$peer/tools/prefill_stream.py" --stream fi:events:partition_0 -n "$n" --body-bytes 1024 >/dev/null
        sync
        # Its report (stderr): "worker partition_0: N events in S s = R events/s, worker CPU C s = U us/event (…)".
        out=$(cd "$peer" && FI_REDIS_URL="redis://127.0.0.1:$port/0" FI_STORAGE_DIR="$storage" \
            /usr/bin/time -f 'peak_rss_kb=%M' "$peer_py" backend/event_worker.py partition_0 --batch 256 --block-ms 500 --drain 2>&1)
        sed 's/^/# python: /' <<<"$out"
        line=$(grep -m1 '^worker .* events/s' <<<"$out" | tr -d ,)
        py+=("$(sed -n 's/.* = \([0-9.]*\) events\/s.*/\1/p' <<<"$line")")
        pycpu+=("$(sed -n 's/.* = \([0-9.]*\) us\/event.*/\1/p' <<<"$line")")
        pyrss+=("$(sed -n 's/^peak_rss_kb=\([0-9]*\).*/\1/p' <<<"$out" | awk '{printf "%.1f", $1 / 1024}')")
        echo "RESULT bench=worker impl=python rep=$round events=$n events_per_s=${py[-1]} peak_rss_mb=${pyrss[-1]} cpu_us_per_event=${pycpu[-1]}"
    done
    rm -rf "$storage"
    awk -v s="$(median "${steady[@]}")" -v l="$(median "${launch[@]}")" -v p="$(median "${py[@]}")" \
        -v r="$(median "${rsss[@]}")" -v pr="$(median "${pyrss[@]}")" -v c="$(median "${cpus[@]}")" -v pc="$(median "${pycpu[@]}")" -v n="$n" \
        'BEGIN{printf "RESULT bench=worker-median rounds=3 events=%d steady_events_per_s=%d python_events_per_s=%d ratio=%.2f events_per_s_from_launch=%d ratio_from_launch=%.2f peak_rss_mb=%.1f python_peak_rss_mb=%.1f cpu_us_per_event=%.1f python_cpu_us_per_event=%.1f\n", n, s, p, s/p, l, l/p, r, pr, c, pc}'
}

# HTTP ingest: wrk -t2 -c64 -d20s (DURATION) --latency -s post_event.lua (1 KB events, half with site ids)
# after a 3 s warm-up, against fi-server (local redis-server), the reference Python service with 2
# uvicorn workers, and a bare Hummingbird route, one after another; three rounds, a fresh process of
# each in every round. As for the Python service, no worker drains meanwhile (it would share the 2
# cores), so --max-backlog is lifted for the run. The median line gives requests/s and p99 of each,
# fi-server's ratio to Python and fraction of the bare route (ratios of the medians), fi-server's
# peak RSS and the Python service's (all of uvicorn's processes, summed), and each server's CPU (user +
# system, /proc/<pid>/stat, children included) per request over the measured run.
bench_http() {
    build_binaries
    machine
    local port=${FI_BENCH_REDIS_PORT:-6597} tls_port=${FI_BENCH_REDIS_TLS_PORT:-6595} lua="$peer_lua" duration=${DURATION:-20s} storage rss out round child
    local fi=() fip99=() firss=() ficpu=() py=() pyp99=() pyrss=() pycpu=() br=() brp99=() brcpu=() errors=0
    local ficsw=() brcsw=() tl=() tlp99=() tlcpu=() certs tls_dir
    pid=""
    start_redis "$port"
    # The same Redis again, TLS only (certificates from scripts/tls-certs.sh): fi-server over rediss:// is
    # measured beside fi-server over redis:// in every round, for what TLS costs.
    certs=$(mktemp -d /tmp/fi-bench-tls.XXXXXX)
    "$here/../scripts/tls-certs.sh" "$certs"
    tls_dir=$(mktemp -d /tmp/fi-bench-redis.XXXXXX)
    redis-server --bind 127.0.0.1 --port 0 --tls-port "$tls_port" --tls-cert-file "$certs/server.crt" --tls-key-file "$certs/server.key" \
        --tls-ca-cert-file "$certs/ca.crt" --tls-auth-clients no --dir "$tls_dir" --daemonize yes --pidfile "$tls_dir/redis.pid" \
        --logfile "$tls_dir/redis.log" --save '' --appendonly no --maxmemory-policy noeviction
    for _ in $(seq 1 50); do redis-cli --tls --cacert "$certs/ca.crt" -p "$tls_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    # (Each kill ends in `|| true`: under set -e a failed kill of an exited process would end the trap
    # before stop_redis, leaving the throwaway Redis running.)
    trap '{ [ -n "$pid" ] && kill "$pid" 2>/dev/null; } || true; { kill "$(cat "'"$tls_dir"'/redis.pid")" 2>/dev/null; } || true; stop_redis; rm -rf "'"$certs"'" "'"$tls_dir"'"' EXIT
    storage=$(mktemp -d /tmp/fi-bench-storage.XXXXXX)
    # CPU (user + system, clock ticks) of $pid and its children: fi-server's threads, or uvicorn's master and workers.
    ticks() {
        local t=0 p
        for p in "$pid" $(pgrep -P "$pid" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
        echo "$t"
    }
    # Context switches (voluntary + involuntary) of every thread of $pid and its children.
    switches() {
        local s=0 p
        for p in "$pid" $(pgrep -P "$pid" || true); do
            s=$((s + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
        done
        echo "$s"
    }
    run_wrk() { # label url: a 3 s warm-up, then the measured run; adds the server's CPU and context switches per request
        local before before_cs
        wrk -t2 -c64 -d3s -s "$lua" "$2" >/dev/null 2>&1 || true
        before=$(ticks) before_cs=$(switches)
        out=$(wrk -t2 -c64 -d"$duration" --latency -s "$lua" "$2" | grep RESULT | sed "s/^RESULT /RESULT bench=http round=$round impl=$1 /")
        out+=$(awk -v t="$(($(ticks) - before))" -v c="$(($(switches) - before_cs))" -v n="$(field requests "$out")" -v hz="$(getconf CLK_TCK)" \
            'BEGIN{printf " cpu_us_per_request=%.1f context_switches_per_request=%.2f", (n > 0 ? t / hz * 1e6 / n : 0), (n > 0 ? c / n : 0)}')
        echo "$out"
    }
    errs() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^err_/) { split($i, kv, "="); s += kv[2] } } END { print s + 0 }' <<<"$1"; }

    for round in 1 2 3; do
        "$server" --port 7301 --redis-url "redis://127.0.0.1:$port" --storage "$storage" --max-backlog 100000000 --log-level warning &
        pid=$!
        for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7301/health >/dev/null && break; sleep 0.1; done
        run_wrk fi-server http://127.0.0.1:7301
        fi+=("$(field rps "$out")") fip99+=("$(field p99_ms "$out")") ficpu+=("$(field cpu_us_per_request "$out")")
        ficsw+=("$(field context_switches_per_request "$out")")
        errors=$((errors + $(errs "$out")))
        rss=$(peak_rss_kb "$pid")
        firss+=("$(awk -v r="$rss" 'BEGIN{printf "%.1f", r/1024}')")
        echo "RESULT bench=http round=$round impl=fi-server peak_rss_mb=${firss[-1]}"
        curl -s http://127.0.0.1:7301/metrics | grep -E '^fi_http_requests_total' | sed 's/^/# /'
        kill -TERM "$pid"; wait "$pid" || true
        pid=""
        redis-cli -p "$port" flushall >/dev/null

        (cd "$peer" && FI_REDIS_URL="redis://127.0.0.1:$port/0" exec "$peer_py" -m uvicorn backend.fi_consult_service:app \
            --host 127.0.0.1 --port 7101 --workers 2 --no-access-log --log-level warning) &
        pid=$!
        for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7101/health >/dev/null && break; sleep 0.1; done
        run_wrk python-uvicorn-2 http://127.0.0.1:7101
        py+=("$(field rps "$out")") pyp99+=("$(field p99_ms "$out")") pycpu+=("$(field cpu_us_per_request "$out")")
        rss=$(peak_rss_kb "$pid")
        for child in $(pgrep -P "$pid" || true); do rss=$((rss + $(peak_rss_kb "$child"))); done
        pyrss+=("$(awk -v r="$rss" 'BEGIN{printf "%.1f", r/1024}')")
        echo "RESULT bench=http round=$round impl=python-uvicorn-2 peak_rss_mb=${pyrss[-1]} processes=$((1 + $(pgrep -c -P "$pid" || true)))"
        kill -TERM "$pid"; wait "$pid" || true
        pid=""
        redis-cli -p "$port" flushall >/dev/null

        "$bare" 7201 &
        pid=$!
        sleep 1
        run_wrk bare-hummingbird http://127.0.0.1:7201
        br+=("$(field rps "$out")") brp99+=("$(field p99_ms "$out")") brcpu+=("$(field cpu_us_per_request "$out")")
        brcsw+=("$(field context_switches_per_request "$out")")
        kill -TERM "$pid"; wait "$pid" || true
        pid=""

        "$server" --port 7302 --redis-url "rediss://127.0.0.1:$tls_port" --redis-tls-ca "$certs/ca.crt" --storage "$storage" \
            --max-backlog 100000000 --log-level warning &
        pid=$!
        for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7302/health >/dev/null && break; sleep 0.1; done
        run_wrk fi-server-tls http://127.0.0.1:7302
        tl+=("$(field rps "$out")") tlp99+=("$(field p99_ms "$out")") tlcpu+=("$(field cpu_us_per_request "$out")")
        errors=$((errors + $(errs "$out")))
        kill -TERM "$pid"; wait "$pid" || true
        pid=""
        redis-cli --tls --cacert "$certs/ca.crt" -p "$tls_port" flushall >/dev/null
    done
    rm -rf "$storage"
    awk -v f="$(median "${fi[@]}")" -v p="$(median "${py[@]}")" -v b="$(median "${br[@]}")" \
        -v f99="$(median "${fip99[@]}")" -v p99="$(median "${pyp99[@]}")" -v b99="$(median "${brp99[@]}")" \
        -v r="$(median "${firss[@]}")" -v pr="$(median "${pyrss[@]}")" -v e="$errors" -v d="$duration" \
        -v fc="$(median "${ficpu[@]}")" -v pc="$(median "${pycpu[@]}")" -v bc="$(median "${brcpu[@]}")" \
        -v fs="$(median "${ficsw[@]}")" -v bs="$(median "${brcsw[@]}")" \
        -v t="$(median "${tl[@]}")" -v t99="$(median "${tlp99[@]}")" -v tc="$(median "${tlcpu[@]}")" \
        'BEGIN{printf "RESULT bench=http-median rounds=3 duration=%s fi_server_rps=%d python_rps=%d bare_rps=%d ratio=%.2f fraction_of_bare=%.2f fi_server_p99_ms=%.2f python_p99_ms=%.2f bare_p99_ms=%.2f fi_server_peak_rss_mb=%.1f python_peak_rss_mb=%.1f fi_server_errors=%d fi_server_cpu_us_per_request=%.1f python_cpu_us_per_request=%.1f bare_cpu_us_per_request=%.1f fi_server_cs_per_request=%.2f bare_cs_per_request=%.2f tls_rps=%d tls_p99_ms=%.2f tls_cpu_us_per_request=%.1f tls_fraction_of_plain=%.2f\n", d, f, p, b, f/p, f/b, f99, p99, b99, r, pr, e, fc, pc, bc, fs, bs, t, t99, tc, t/f}'
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

# The five comparisons, three rounds each, one after another, then their median lines as
# Docs/data/benchmarks-summary.csv (SUMMARY_CSV) and the plot Docs/benchmarks-summary.png
# (SUMMARY_PNG, by scripts/plot_benchmarks.py with Debian's python3-matplotlib). Builds first; while
# the measured part runs, /tmp/fi-bench-running (FI_BENCH_FLAG) exists, so that others can hold their
# builds. The whole output goes to SUMMARY_LOG (default Benchmarks/results/summary-<time>.log).
# The ratio column is always FI Scale ÷ reference (for ms, µs and MB lower is better).
bench_summary() {
    build_binaries
    local stamp csv png log flag=${FI_BENCH_FLAG:-/tmp/fi-bench-running} mode date lines
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    csv=${SUMMARY_CSV:-$root/Docs/data/benchmarks-summary.csv}
    png=${SUMMARY_PNG:-$root/Docs/benchmarks-summary.png}
    log=${SUMMARY_LOG:-$here/results/summary-$stamp.log}
    mkdir -p "$(dirname "$log")" "$(dirname "$csv")"
    touch "$flag"
    trap 'rm -f "'"$flag"'"' EXIT
    machine | tee "$log"
    echo "# $(swift --version 2>/dev/null | head -1); $(redis-server --version | cut -d' ' -f1-3); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); reference Python $("$peer_py" -c 'import sys; print(sys.version.split()[0])')" | tee -a "$log"
    for mode in partition queue storage worker http; do
        echo "## Benchmarks/run.sh $mode" | tee -a "$log"
        FI_BENCH_NO_BUILD=1 "$here/run.sh" "$mode" 2>&1 | tee -a "$log"
    done
    echo "# load after the last run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
    rm -f "$flag"
    date=$(date -u +%F)
    lines=$(grep '^RESULT bench=[a-z]*-median ' "$log")
    echo "$lines"
    # get MODE KEY: KEY= from MODE's median line.
    get() { field "$2" "$(grep "^RESULT bench=$1-median " <<<"$lines")"; }
    # cmd MODE: the command, with any size override that was in effect.
    cmd() {
        local v
        case $1 in partition) v=PARTITION_IDS ;; queue) v=QUEUE_APPENDS ;; storage) v=STORAGE_EVENTS ;; worker) v=DRAIN_N ;; http) v=DURATION ;; esac
        echo "${!v:+$v=${!v} }Benchmarks/run.sh $1"
    }
    q() { printf '"%s"' "${1//\"/\"\"}"; }
    # row MEASURE UNIT FI REF REF_NAME MODE
    row() {
        local ratio=""
        [ -n "$4" ] && ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.2f", a / b }')
        echo "$(q "$1"),$2,$3,$4,$(q "$5"),$ratio,$date,$(q "$(cmd "$6")")"
    }
    {
        echo "measure,unit,fi_scale,reference,reference_name,ratio,date,command"
        row "Partition routing, one core (mod-N)" "keys/s" "$(get partition modulo_keys_per_s)" "$(get partition python_keys_per_s)" \
            "the plan's get_partition_key ($(sed -n 's/.* python=\([^ ]*\).*/\1/p' <<<"$lines"))" partition
        row "Queue appends, 64 tasks, 1 KB" "appends/s" "$(get queue appends_per_s)" "$(get queue redis_benchmark_xadd_per_s)" \
            "redis-benchmark XADD, 64 clients, not pipelined" queue
        row "Queue group read + ack, 4 consumers, batch 256" "entries/s" "$(get queue read_ack_seq4_per_s)" "" "" queue
        row "Corpus append, durable, batch 256" "events/s" "$(get storage durable_b256_events_per_s)" "$(get storage h5py_durable_b256_events_per_s)" \
            "h5py, same layout, flush + fdatasync per batch" storage
        row "Corpus append, durable, batch 1024" "events/s" "$(get storage durable_b1024_events_per_s)" "$(get storage h5py_durable_b1024_events_per_s)" \
            "h5py, same layout, flush + fdatasync per batch" storage
        row "Worker drain, steady, batch 256" "events/s" "$(get worker steady_events_per_s)" "$(get worker python_events_per_s)" \
            "the plan's Python worker (redis-py + h5py; flush without fsync)" worker
        row "Worker CPU per event" "µs" "$(get worker cpu_us_per_event)" "$(get worker python_cpu_us_per_event)" \
            "the plan's Python worker (redis-py + h5py; flush without fsync)" worker
        row "Worker peak RSS" "MB" "$(get worker peak_rss_mb)" "$(get worker python_peak_rss_mb)" \
            "the plan's Python worker (redis-py + h5py; flush without fsync)" worker
        row "HTTP ingest throughput" "requests/s" "$(get http fi_server_rps)" "$(get http python_rps)" \
            "the plan's FastAPI service, 2 uvicorn workers" http
        row "HTTP ingest p99 latency" "ms" "$(get http fi_server_p99_ms)" "$(get http python_p99_ms)" \
            "the plan's FastAPI service, 2 uvicorn workers" http
        row "HTTP server CPU per request" "µs" "$(get http fi_server_cpu_us_per_request)" "$(get http python_cpu_us_per_request)" \
            "the plan's FastAPI service, 2 uvicorn workers" http
        row "HTTP ingest throughput vs a bare route" "requests/s" "$(get http fi_server_rps)" "$(get http bare_rps)" \
            "bare Hummingbird route (answers 202, no work)" http
        row "fi-server peak RSS" "MB" "$(get http fi_server_peak_rss_mb)" "$(get http python_peak_rss_mb)" \
            "the plan's FastAPI service (uvicorn, all 4 processes)" http
    } >"$csv"
    echo "# wrote $csv"
    /usr/bin/python3 "$root/scripts/plot_benchmarks.py" "$csv" "$png"
    echo "# wrote $png; log: $log"
}

# Corpus segments (Docs/storage.md): 1,000,000 (SEGMENT_EVENTS) 1 KB events, batch 1024, flush + fdatasync,
# appended three ways in each of three interleaved rounds — to one file as before segments, to a
# partition directory with rolling off, and rolling every 64 MiB (SEGMENT_MIB) — then 3,000,000 events with
# the default 1 GiB segments, one round; each roll's close, next-segment creation and background checksum
# + manifest time; then a consultation lookup in 100 closed segments beside the same 1,000,000 rows in one file.
bench_segments() {
    build
    machine
    "$bench" storage segments "${SEGMENT_EVENTS:-1000000}" "${SEGMENT_MIB:-64}" 1024 3
    "$bench" storage segments $((3 * ${SEGMENT_EVENTS:-1000000})) 1024 1024 1
    "$bench" storage lookup-segments 100 10000
}

case "${1:-}" in
partition) bench_partition ;;
storage) bench_storage ;;
segments) bench_segments ;;
queue) bench_queue ;;
worker) bench_worker ;;
http) bench_http ;;
sessions) bench_sessions ;;
summary) bench_summary ;;
*) echo "usage: $0 partition|queue|storage|segments|worker|http|sessions|summary" >&2; exit 2 ;;
esac
