#!/usr/bin/env bash
# The phase-2 topology as plain processes on 127.0.0.1 — no Docker needed:
#
#   a 3-master Redis Cluster        127.0.0.1:$FI_LC_REDIS_BASE..+2         (31001..31003)
#     with FI_LC_REPLICAS=1: six nodes, 3 masters + 3 replicas  $FI_LC_REDIS_BASE..+5
#   N fi-server processes            127.0.0.1:$FI_LC_SERVER_BASE..+N-1      (7101..7103)
#   HAProxy in front, roundrobin,    127.0.0.1:$FI_LC_HTTP_PORT              (8080)
#     `option httpchk GET /health/ready` every second
#   M fi-worker --all                (HTTP: metrics and probes on $FI_LC_METRICS_BASE..+M-1 if set, else off)
#
#   deploy/local-cluster.sh up       # start everything, wait until healthy, print the env
#   deploy/local-cluster.sh status   # what runs, per pid file
#   deploy/local-cluster.sh down     # stop exactly what `up` started (pid files)
#
# A Redis node failing and coming back (a failover, with FI_LC_REPLICAS=1):
#
#   deploy/local-cluster.sh redis-nodes        # one line per node: "PORT master", "PORT down", or
#                                              # "PORT replica MASTER_PORT up|down" (link to it)
#   deploy/local-cluster.sh kill-redis PORT    # kill -9 the redis-server `up` started on PORT
#   deploy/local-cluster.sh wait-ok [SECONDS]  # until every slot is served by a live master and
#                                              # the live nodes say cluster_state:ok (default 30 s)
#   deploy/local-cluster.sh start-redis PORT   # start it again: same --dir, nodes.conf and AOF, so
#                                              # a master that was failed over rejoins as a replica
#                                              # of the node that took its slots; waits for PING
#
# Settings (environment):
#   FI_LC_DIR           state: pid files, logs, configs   (/tmp/fi-local-cluster)
#   FI_LC_BIN           directory holding fi-server and fi-worker
#                       (.build/release if both are built there, else .build/debug)
#   FI_LC_STORAGE       storage root of the corpus files  ($FI_LC_DIR/storage)
#   FI_LC_SERVERS, FI_LC_WORKERS                          (3, 3)
#   FI_LC_REPLICAS      replicas per Redis master, 0 or 1 (0: 3 nodes; 1: 6 nodes, --cluster-replicas 1)
#   FI_LC_NODE_TIMEOUT  cluster-node-timeout in ms (2000): how long a master may be unreachable
#                       before the cluster marks it failed and its replica takes over
#   (`up` records FI_LC_REPLICAS, FI_LC_NODE_TIMEOUT and FI_LC_REDIS_BASE in $FI_LC_DIR/settings;
#   the other commands take them from there)
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
# `up` records the Redis nodes' settings in $dir/settings; every other command reads them from
# there (they win over the environment), so kill-redis and start-redis need only FI_LC_DIR.
if [ "${1:-}" != up ] && [ -r "$dir/settings" ]; then
    while IFS='=' read -r key value; do
        case $key in
        FI_LC_REPLICAS | FI_LC_NODE_TIMEOUT | FI_LC_REDIS_BASE) [[ $value =~ ^[0-9]+$ ]] && export "$key=$value" ;;
        esac
    done <"$dir/settings"
fi
servers=${FI_LC_SERVERS:-3}
workers=${FI_LC_WORKERS:-3}
http_port=${FI_LC_HTTP_PORT:-8080}
server_base=${FI_LC_SERVER_BASE:-7101}
redis_base=${FI_LC_REDIS_BASE:-31001}
metrics_base=${FI_LC_METRICS_BASE:-}
storage=${FI_LC_STORAGE:-$dir/storage}
replicas=${FI_LC_REPLICAS:-0}
node_timeout=${FI_LC_NODE_TIMEOUT:-2000}
case $replicas in 0 | 1) ;; *) echo "local-cluster: error: FI_LC_REPLICAS must be 0 or 1, not '$replicas'" >&2; exit 2 ;; esac
[[ $node_timeout =~ ^[1-9][0-9]*$ ]] || { echo "local-cluster: error: FI_LC_NODE_TIMEOUT must be a number of ms, not '$node_timeout'" >&2; exit 2; }
redis_nodes=$((3 * (1 + replicas)))
redis_ports=()
bus_ports=()   # Redis Cluster's bus: port + 10000
for ((i = 0; i < redis_nodes; i++)); do
    redis_ports+=("$((redis_base + i))")
    bus_ports+=("$((redis_base + i + 10000))")
done
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

pings() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }

# The masters that serve slots, as node $1 sees them: "port slot-ranges…" per line, sorted;
# a master flagged failed (fail, fail?) is listed with "failed".
served_by() {
    redis-cli -p "$1" cluster nodes 2>/dev/null | awk '
        $3 ~ /master/ && NF > 8 {
            split($2, a, "[:@]"); line = a[2]
            if ($3 ~ /fail/) line = line " failed"
            for (i = 9; i <= NF; i++) line = line " " $i
            print line
        }' | sort
}

# Every live node says cluster_state:ok with all 16384 slots served, they agree on which
# master serves which slots, and each of those masters is up and not flagged failed.
cluster_settled() {
    local p view="" first=1 port
    for p in "${redis_ports[@]}"; do
        pings "$p" || continue
        redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok$' || return 1
        redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_slots_ok:16384$' || return 1
        local mine
        mine=$(served_by "$p")
        [ -n "$mine" ] || return 1
        if [ $first = 1 ]; then view=$mine; first=0; else [ "$mine" = "$view" ] || return 1; fi
    done
    [ $first = 0 ] || return 1
    ! grep -q failed <<<"$view" || return 1
    for port in $(awk '{print $1}' <<<"$view"); do pings "$port" || return 1; done
}

# role of the node on port $1: "master", "replica <master port> <link up|down>", or "down"
role_of() {
    local out
    out=$(redis-cli -p "$1" role 2>/dev/null | tr -d '\r') || true
    case $(head -1 <<<"$out") in
    master) echo master ;;
    slave) echo "replica $(sed -n 3p <<<"$out") $(sed -n 4p <<<"$out" | sed 's/^connected$/up/; /^up$/!s/.*/down/')" ;;
    *) echo down ;;
    esac
}

# Every replica has finished its initial sync with its master.
replicas_linked() {
    local p r
    for p in "${redis_ports[@]}"; do
        r=$(role_of "$p")
        case $r in
        master) ;;
        "replica "*" up") ;;
        *) return 1 ;;
        esac
    done
}

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

# One Redis node, detached; its log is appended to, so a restart keeps the story.
start_redis() { # port
    local p=$1
    "${detach[@]}" redis-server --bind 127.0.0.1 --port "$p" --dir "$dir/redis-$p" \
        --cluster-enabled yes --cluster-config-file "$dir/redis-$p/nodes.conf" --cluster-node-timeout "$node_timeout" \
        --appendonly yes --appendfsync everysec --save '' --maxmemory-policy noeviction \
        >>"$dir/logs/redis-$p.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/redis-$p.pid"
}

up() {
    [ -x "$bin/fi-server" ] && [ -x "$bin/fi-worker" ] || die "fi-server/fi-worker not found in $bin (swift build, or set FI_LC_BIN)"
    [ -x "$haproxy" ] || die "haproxy not found (apt install haproxy, or set FI_LC_HAPROXY)"
    shopt -s nullglob
    local existing=("$dir"/pids/*.pid)
    [ ${#existing[@]} -eq 0 ] || die "$dir already has pid files: run down first"
    local port
    for port in "${redis_ports[@]}" "${bus_ports[@]}" "$http_port" \
        $(seq "$server_base" $((server_base + servers - 1))) ${metrics_base:+$(seq "$metrics_base" $((metrics_base + workers - 1)))}; do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "127.0.0.1:$port is in use (pick other ports: FI_LC_*_BASE)"
    done
    mkdir -p "$dir/pids" "$dir/logs" "$storage"
    printf 'FI_LC_REPLICAS=%s\nFI_LC_NODE_TIMEOUT=%s\nFI_LC_REDIS_BASE=%s\n' "$replicas" "$node_timeout" "$redis_base" >"$dir/settings"
    # Whatever fails from here on, stop what was started.
    trap 'status=$?; [ $status -eq 0 ] || { log "up failed: stopping what it started"; down; }' EXIT

    # Redis Cluster: 3 masters (and with FI_LC_REPLICAS=1 a replica each), AOF with everysec,
    # noeviction (deploy/redis.conf).
    for p in "${redis_ports[@]}"; do
        mkdir -p "$dir/redis-$p"
        start_redis "$p"
    done
    for p in "${redis_ports[@]}"; do
        wait_until 20 "redis-server on :$p" redis-cli -p "$p" ping
    done
    redis-cli --cluster create "${redis_ports[@]/#/127.0.0.1:}" --cluster-replicas "$replicas" --cluster-yes \
        >"$dir/logs/cluster-create.log" 2>&1 || die "redis-cli --cluster create failed: $(tail -3 "$dir/logs/cluster-create.log")"
    wait_until 30 "cluster_state:ok" cluster_ok
    if [ "$replicas" -gt 0 ]; then
        # Every node agrees on the masters, and every replica has its first copy.
        wait_until 30 "every node to agree on the slot map" cluster_settled
        wait_until 30 "every replica to sync with its master" replicas_linked
    fi

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
        if runs "$pid" "$(program_of "$name")"; then
            case $name in
            redis-*) echo "$name $pid running $(role_of "${name#redis-}")" ;;
            *) echo "$name $pid running" ;;
            esac
        else
            echo "$name $pid gone"
        fi
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

# A port of this cluster's Redis nodes, or exit 2.
redis_port_arg() { # port
    local p
    for p in "${redis_ports[@]}"; do [ "$p" = "${1:-}" ] && return 0; done
    echo "local-cluster: error: '${1:-}' is not one of this cluster's Redis ports (${redis_ports[*]})" >&2
    exit 2
}

# kill -9 the redis-server `up` (or start-redis) started on a port, and wait until it is gone.
kill_redis() { # port
    local p=$1 f pid
    f="$dir/pids/redis-$p.pid"
    [ -e "$f" ] || die "no pid file for redis-$p in $dir/pids"
    pid=$(head -1 "$f")
    runs "$pid" redis-server || die "redis-$p (pid $pid) is not running"
    kill -KILL "$pid"
    wait_until 10 "redis-$p (pid $pid) to exit" eval '! runs '"$pid"' redis-server'
    log "kill-redis: redis-$p (pid $pid) killed with SIGKILL"
}

# Start a node again with the arguments `up` gave it: the same --dir, nodes.conf and AOF. A
# master that was failed over finds, in the gossip, that its slots belong to its former replica
# with a newer configuration epoch and turns itself into that node's replica.
start_redis_again() { # port
    local p=$1 f
    f="$dir/pids/redis-$p.pid"
    [ -d "$dir/redis-$p" ] || die "$dir/redis-$p does not exist: was the cluster started with up?"
    if [ -e "$f" ] && runs "$(head -1 "$f")" redis-server; then die "redis-$p already runs (pid $(head -1 "$f"))"; fi
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "127.0.0.1:$p is in use by another process"
    start_redis "$p"
    wait_until 20 "redis-server on :$p" pings "$p"
    log "start-redis: redis-$p started again (pid $(head -1 "$f"))"
}

redis_nodes() {
    local p
    for p in "${redis_ports[@]}"; do echo "$p $(role_of "$p")"; done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
redis-nodes) redis_nodes ;;
kill-redis)
    redis_port_arg "${2:-}"
    kill_redis "$2"
    ;;
start-redis)
    redis_port_arg "${2:-}"
    start_redis_again "$2"
    ;;
wait-ok)
    seconds=${2:-30}
    [[ $seconds =~ ^[0-9]+$ ]] || { echo "local-cluster: error: wait-ok takes whole seconds, not '$seconds'" >&2; exit 2; }
    wait_until "$seconds" "every slot served by a live master (cluster_state:ok on every live node)" cluster_settled
    log "wait-ok: $(served_by "$(for p in "${redis_ports[@]}"; do pings "$p" && { echo "$p"; break; }; done)" | awk '{print $1}' | paste -sd' ') serve every slot"
    ;;
*)
    echo "usage: $0 up|down|status|redis-nodes|kill-redis PORT|start-redis PORT|wait-ok [SECONDS]" >&2
    exit 2
    ;;
esac
