#!/usr/bin/env bash
# The phase-2 topology as plain processes on 127.0.0.1 — no Docker needed:
#
#   a 3-master Redis Cluster        127.0.0.1:$FI_LC_REDIS_BASE..+2         (31001..31003)
#   N fi-server processes            127.0.0.1:$FI_LC_SERVER_BASE..+N-1      (7101..7103)
#   HAProxy in front, roundrobin,    127.0.0.1:$FI_LC_HTTP_PORT              (8080)
#     `option httpchk GET /health/ready` every second
#   M fi-worker --all                (HTTP: metrics and probes on $FI_LC_METRICS_BASE..+M-1 if set, else off)
#
#   deploy/local-cluster.sh up       # start everything, wait until healthy, print the env
#   deploy/local-cluster.sh status   # what runs, per pid file
#   deploy/local-cluster.sh down     # stop exactly what `up` started (pid files)
#
# Settings (environment):
#   FI_LC_DIR           state: pid files, logs, configs   (/tmp/fi-local-cluster)
#   FI_LC_BIN           directory holding fi-server and fi-worker
#                       (.build/release if both are built there, else .build/debug)
#   FI_LC_STORAGE       storage root of the corpus files  ($FI_LC_DIR/storage)
#   FI_LC_SERVERS, FI_LC_WORKERS                          (3, 3)
#   FI_LC_HTTP_PORT, FI_LC_SERVER_BASE, FI_LC_REDIS_BASE, FI_LC_METRICS_BASE (unset: no metrics)
#   FI_LC_SERVER_ARGS, FI_LC_WORKER_ARGS   extra flags, e.g. "--claim-idle-ms 2000 --lease-ttl-ms 2000"
#   FI_LC_HAPROXY       haproxy binary (haproxy on PATH, or /usr/sbin/haproxy)
#
# Every process runs detached (own session, clean signal mask) once `up`
# returns: `down` finds them only through $FI_LC_DIR/pids/*.pid and checks that each pid still
# runs the program it started before signalling it (SIGTERM, then SIGKILL
# after 10 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

dir=${FI_LC_DIR:-/tmp/fi-local-cluster}
servers=${FI_LC_SERVERS:-3}
workers=${FI_LC_WORKERS:-3}
http_port=${FI_LC_HTTP_PORT:-8080}
server_base=${FI_LC_SERVER_BASE:-7101}
redis_base=${FI_LC_REDIS_BASE:-31001}
metrics_base=${FI_LC_METRICS_BASE:-}
storage=${FI_LC_STORAGE:-$dir/storage}
redis_ports=("$redis_base" "$((redis_base + 1))" "$((redis_base + 2))")
seeds=$(printf '127.0.0.1:%s,' "${redis_ports[@]}")
seeds=${seeds%,}

if [ -n "${FI_LC_BIN:-}" ]; then
    bin=$FI_LC_BIN
elif [ -x "$root/.build/release/fi-server" ] && [ -x "$root/.build/release/fi-worker" ]; then
    bin=$root/.build/release
else
    bin=$root/.build/debug
fi
haproxy=${FI_LC_HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}

log() { echo "local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# A pid is ours while /proc/<pid>/cmdline still names the program we started
# (pids are reused) and it is not a zombie waiting for a reaper.
runs() { # pid program
    local pid=$1 program=$2 state
    [ -r "/proc/$pid/cmdline" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
    [ "$state" != Z ] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -q -- "$program"
}

# name → program its pid file was written for
program_of() {
    case $1 in
    redis-*) echo redis-server ;;
    fi-server-*) echo fi-server ;;
    fi-worker-*) echo fi-worker ;;
    haproxy) echo haproxy ;;
    esac
}

wait_until() { # seconds description command…
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what (logs in $dir/logs)"
        sleep 0.1
    done
}

healthy() { curl -fsS --max-time 1 "http://127.0.0.1:$1/health" | grep -q '"ok"'; }

# A worker has joined once its membership lease fi:member:<consumer>:… exists.
worker_joined() { # i
    local p
    for p in "${redis_ports[@]}"; do
        redis-cli -p "$p" --scan --pattern "fi:member:fi-worker-$1:*" | grep -q . && return 0
    done
    return 1
}

cluster_ok() { redis-cli -p "${redis_ports[0]}" cluster info | grep -q cluster_state:ok; }

# `"${detach[@]}" program args… &` runs a daemon in a session of its own with
# nothing inherited that could stop `down` or keep a caller waiting: no
# descriptors beyond stdio, no blocked signals, default signal handling.
# Foundation's Process, for one, starts children with SIGINT, SIGTERM and
# SIGCHLD blocked and a socket it watches for EOF; a daemon inheriting those
# ignores SIGTERM and keeps the caller waiting for the script long after it
# exited. An array, not a function, so that `… &` forks once and execs: $! is
# the daemon's own pid and no shell stays in between.
detach=(/usr/bin/python3 -c '
import os, signal, sys
for s in signal.valid_signals():
    if s not in (signal.SIGKILL, signal.SIGSTOP):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
signal.pthread_sigmask(signal.SIG_SETMASK, ())
os.closerange(3, 1 << 16)
try:
    os.setsid()
except OSError:
    pass
os.execvp(sys.argv[1], sys.argv[1:])
')

start() { # name program args… — detached, with a pid file and a log
    local name=$1
    shift
    "${detach[@]}" "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name.pid"
}

up() {
    [ -x "$bin/fi-server" ] && [ -x "$bin/fi-worker" ] || die "fi-server/fi-worker not found in $bin (swift build, or set FI_LC_BIN)"
    [ -x "$haproxy" ] || die "haproxy not found (apt install haproxy, or set FI_LC_HAPROXY)"
    shopt -s nullglob
    local existing=("$dir"/pids/*.pid)
    [ ${#existing[@]} -eq 0 ] || die "$dir already has pid files: run down first"
    local port
    for port in "${redis_ports[@]}" $((redis_base + 10000)) $((redis_base + 10001)) $((redis_base + 10002)) "$http_port" \
        $(seq "$server_base" $((server_base + servers - 1))) ${metrics_base:+$(seq "$metrics_base" $((metrics_base + workers - 1)))}; do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "127.0.0.1:$port is in use (pick other ports: FI_LC_*_BASE)"
    done
    mkdir -p "$dir/pids" "$dir/logs" "$storage"
    # Whatever fails from here on, stop what was started.
    trap 'status=$?; [ $status -eq 0 ] || { log "up failed: stopping what it started"; down; }' EXIT

    # Redis Cluster: 3 masters, AOF with everysec, noeviction (deploy/redis.conf).
    for p in "${redis_ports[@]}"; do
        mkdir -p "$dir/redis-$p"
        start "redis-$p" redis-server --bind 127.0.0.1 --port "$p" --dir "$dir/redis-$p" \
            --cluster-enabled yes --cluster-config-file "$dir/redis-$p/nodes.conf" --cluster-node-timeout 2000 \
            --appendonly yes --appendfsync everysec --save '' --maxmemory-policy noeviction
    done
    for p in "${redis_ports[@]}"; do
        wait_until 20 "redis-server on :$p" redis-cli -p "$p" ping
    done
    redis-cli --cluster create "${redis_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
        >"$dir/logs/cluster-create.log" 2>&1 || die "redis-cli --cluster create failed: $(tail -3 "$dir/logs/cluster-create.log")"
    wait_until 30 "cluster_state:ok" cluster_ok

    local i
    for i in $(seq 1 "$servers"); do
        # shellcheck disable=SC2086 # FI_LC_SERVER_ARGS is a list of flags
        start "fi-server-$i" "$bin/fi-server" --host 127.0.0.1 --port "$((server_base + i - 1))" \
            --redis-cluster "$seeds" --storage "$storage" ${FI_LC_SERVER_ARGS:-}
    done
    for i in $(seq 1 "$workers"); do
        local metrics=()
        # Several workers on one host: each its own HTTP port, or none.
        metrics=(--http-port 0)
        [ -z "$metrics_base" ] || metrics=(--http-port "$((metrics_base + i - 1))")
        # shellcheck disable=SC2086
        start "fi-worker-$i" "$bin/fi-worker" --all --redis-cluster "$seeds" --storage "$storage" \
            --consumer "fi-worker-$i" "${metrics[@]}" ${FI_LC_WORKER_ARGS:-}
    done

    # HAProxy: the settings of deploy/haproxy.cfg, with loopback addresses.
    {
        cat <<CFG
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1

frontend fi_http
    bind 127.0.0.1:$http_port
    option forwardfor
    http-request deny deny_status 404 if { path /metrics }
    default_backend fi_servers

backend fi_servers
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
CFG
        for i in $(seq 1 "$servers"); do
            echo "    server fi-server-$i 127.0.0.1:$((server_base + i - 1)) check"
        done
    } >"$dir/haproxy.cfg"
    "$haproxy" -c -q -f "$dir/haproxy.cfg" || die "haproxy -c $dir/haproxy.cfg failed"
    "${detach[@]}" "$haproxy" -D -p "$dir/pids/haproxy.pid" -f "$dir/haproxy.cfg" >"$dir/logs/haproxy.log" 2>&1 </dev/null \
        || die "haproxy did not start: $(tail -3 "$dir/logs/haproxy.log")"

    for i in $(seq 1 "$servers"); do
        wait_until 60 "fi-server-$i /health" healthy "$((server_base + i - 1))"
    done
    for i in $(seq 1 "$workers"); do
        wait_until 60 "fi-worker-$i to join" worker_joined "$i"
    done
    wait_until 30 "HAProxy /health" healthy "$http_port"
    for f in "$dir"/pids/*.pid; do
        local name pid
        name=$(basename "$f" .pid)
        pid=$(head -1 "$f")
        runs "$pid" "$(program_of "$name")" || die "$name (pid $pid) is not running: $(tail -5 "$dir/logs/$name.log" 2>/dev/null)"
    done
    log "up: http://127.0.0.1:$http_port → $servers fi-server, $workers fi-worker, Redis Cluster $seeds; state in $dir"
    echo "FI_LC_URL=http://127.0.0.1:$http_port"
    echo "FI_LC_REDIS_CLUSTER=$seeds"
    echo "FI_LC_STORAGE=$storage"
}

status() {
    shopt -s nullglob
    local f name pid
    for f in "$dir"/pids/*.pid; do
        name=$(basename "$f" .pid)
        pid=$(head -1 "$f")
        if runs "$pid" "$(program_of "$name")"; then echo "$name $pid running"; else echo "$name $pid gone"; fi
    done
}

# SIGTERM to each pid file's process that still runs its program, wait up to
# 10 s, SIGKILL what is left. Echoes how many it stopped.
stop_group() { # pid files…
    local f name pid program entries=() entry
    for f in "$@"; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        program=$(program_of "$name")
        for pid in $(cat "$f"); do   # haproxy's pid file may list several
            if runs "$pid" "$program"; then
                kill -TERM "$pid" 2>/dev/null || true
                entries+=("$pid $program $name")
            fi
        done
        rm -f "$f"
    done
    local deadline=$((SECONDS + 10))
    for entry in "${entries[@]}"; do
        read -r pid program name <<<"$entry"
        while runs "$pid" "$program" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if runs "$pid" "$program"; then
            log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    echo ${#entries[@]}
}

down() {
    shopt -s nullglob
    # HAProxy, servers and workers first (a worker finishes the batch in hand
    # and releases its leases, which needs Redis), Redis last.
    local a b
    a=$(stop_group "$dir"/pids/haproxy.pid "$dir"/pids/fi-server-*.pid "$dir"/pids/fi-worker-*.pid)
    b=$(stop_group "$dir"/pids/redis-*.pid)
    log "down: stopped $((a + b)) processes; logs and storage left in $dir"
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
