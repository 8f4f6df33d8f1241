#!/usr/bin/env bash
# Start or stop the servers the test suite needs, on 127.0.0.1 only:
#   a single redis-server      127.0.0.1:${FI_TEST_REDIS_PORT:-6391}
#   a 3-master Redis Cluster   127.0.0.1:${FI_TEST_CLUSTER_BASE:-30001}..+2
#   a TLS-only redis-server    127.0.0.1:${FI_TEST_REDIS_TLS_PORT:-6392} (certificates from scripts/tls-certs.sh)
# State lives in ${FI_SERVICES_DIR:-/tmp/fi-services}; `stop` stops exactly the
# processes whose pid files are there.
#
#   scripts/services.sh start    # prints the env lines to export
#   scripts/services.sh env      # the env lines again
#   scripts/services.sh stop
set -euo pipefail

dir=${FI_SERVICES_DIR:-/tmp/fi-services}
port=${FI_TEST_REDIS_PORT:-6391}
tls_port=${FI_TEST_REDIS_TLS_PORT:-6392}
base=${FI_TEST_CLUSTER_BASE:-30001}
cluster_ports=("$base" "$((base + 1))" "$((base + 2))")

print_env() {
    echo "export FI_TEST_REDIS_URL=redis://127.0.0.1:$port"
    echo "export FI_TEST_REDIS_CLUSTER=127.0.0.1:${cluster_ports[0]},127.0.0.1:${cluster_ports[1]},127.0.0.1:${cluster_ports[2]}"
    echo "export FI_TEST_REDIS_TLS_URL=rediss://127.0.0.1:$tls_port"
    echo "export FI_TEST_REDIS_TLS_CA=$dir/tls/ca.crt"
}

wait_ping() { # port [redis-cli options…]
    local p=$1
    shift
    for _ in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$p" "$@" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis on 127.0.0.1:$p did not start" >&2
    return 1
}

start_redis() { # name port [extra args…]
    local name=$1 p=$2
    shift 2
    mkdir -p "$dir/$name"
    redis-server --bind 127.0.0.1 --port "$p" --dir "$dir/$name" \
        --daemonize yes --pidfile "$dir/$name.pid" --logfile "$dir/$name.log" \
        --save '' --appendonly no --maxmemory-policy noeviction "$@"
    if [[ " $* " == *" --tls-port "* ]]; then
        wait_ping "$(sed 's/.*--tls-port \([0-9]*\).*/\1/' <<<"$*")" --tls --cacert "$dir/tls/ca.crt"
    else
        wait_ping "$p"
    fi
}

start() {
    mkdir -p "$dir"
    start_redis single "$port"
    "$(dirname "$0")/tls-certs.sh" "$dir/tls"
    start_redis tls 0 --tls-port "$tls_port" --tls-cert-file "$dir/tls/server.crt" --tls-key-file "$dir/tls/server.key" \
        --tls-ca-cert-file "$dir/tls/ca.crt" --tls-auth-clients no
    for p in "${cluster_ports[@]}"; do
        start_redis "cluster-$p" "$p" --cluster-enabled yes \
            --cluster-config-file "$dir/cluster-$p/nodes.conf" --cluster-node-timeout 2000
    done
    redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1
    for _ in $(seq 1 100); do
        if redis-cli -p "${cluster_ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
            print_env
            return 0
        fi
        sleep 0.1
    done
    echo "Redis Cluster did not reach cluster_state:ok (see $dir/cluster-create.log)" >&2
    return 1
}

stop() {
    shopt -s nullglob
    for f in "$dir"/*.pid; do
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$f"
    done
    rm -rf "$dir"
}

case "${1:-}" in
start) stop; start ;;
stop) stop ;;
env) print_env ;;
*) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
