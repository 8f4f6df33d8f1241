#!/usr/bin/env bash
# Checks the deployment files with the real tools (CI runs this through the
# DeployConfigTests suite; scripts/setup.sh installs the tools):
#
#   nginx -t        deploy/nginx.conf, on a copy whose upstream host names
#                   (fi-server-1 …, which only Docker's DNS knows) are mapped
#                   to loopback addresses: nginx resolves upstream names when it
#                   loads a configuration and would otherwise fail on them
#   haproxy -c      deploy/haproxy.cfg as is (its servers use init-addr none:
#                   unresolvable names are warnings, any other warning fails)
#   promtool        check config of both Prometheus files, check rules alerts.yml,
#                   test rules alerts.test.yml (the alerts fire on the series
#                   they are meant for, and only on those)
#   redis-server    started with deploy/redis.conf on a free loopback port; the
#                   settings that matter are read back
#   check_compose   both compose files parsed and checked for services and
#                   settings, the Prometheus targets, the dashboard's metrics,
#                   and every alert's runbook section in Docs/operations.md
#
#   deploy/check-configs.sh [DEPLOY_DIR]     # default: this script's directory
set -euo pipefail

dir=$(cd "${1:-$(dirname "$0")}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/fi-check-configs.XXXXXX)
redis_pid=""
cleanup() {
    [ -z "$redis_pid" ] || kill -9 "$redis_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
failed=0
fail() { echo "check-configs: FAIL: $*" >&2; failed=1; }
ok() { echo "check-configs: ok: $*"; }

tool() { # name → path, or fail
    local p
    for p in "$(command -v "$1" 2>/dev/null || true)" "/usr/sbin/$1" "/usr/bin/$1"; do
        [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

# --- nginx ------------------------------------------------------------------
if nginx=$(tool nginx); then
    i=0
    cp "$dir/nginx.conf" "$tmp/nginx.conf"
    for host in $(grep -oE 'server +[A-Za-z][A-Za-z0-9-]*:[0-9]+' "$dir/nginx.conf" | awk '{print $2}' | cut -d: -f1 | sort -u); do
        i=$((i + 1))
        sed -i -E "s/(server +)$host:/\\1127.0.0.$i:/" "$tmp/nginx.conf"
    done
    if out=$("$nginx" -t -q -e stderr -p "$tmp" -c "$tmp/nginx.conf" -g "pid $tmp/nginx.pid;" 2>&1); then
        ok "nginx -t deploy/nginx.conf ($i upstream host names mapped to 127.0.0.x)"
    else
        fail "nginx -t deploy/nginx.conf: $out"
    fi
else
    fail "nginx is not installed (scripts/setup.sh)"
fi

# --- HAProxy ------------------------------------------------------------------
if haproxy=$(tool haproxy); then
    if out=$("$haproxy" -c -f "$dir/haproxy.cfg" 2>&1); then
        unexpected=$(echo "$out" | grep -E '\[(WARNING|ALERT)\]' | grep -v 'could not resolve address' || true)
        if [ -n "$unexpected" ]; then
            fail "haproxy -c deploy/haproxy.cfg warned: $unexpected"
        else
            ok "haproxy -c deploy/haproxy.cfg"
        fi
    else
        fail "haproxy -c deploy/haproxy.cfg: $out"
    fi
else
    fail "haproxy is not installed (scripts/setup.sh)"
fi

# --- Prometheus -------------------------------------------------------------
if promtool=$(tool promtool); then
    for f in prometheus.yml prometheus.cluster.yml; do
        if out=$("$promtool" check config "$dir/prometheus/$f" 2>&1); then
            ok "promtool check config prometheus/$f"
        else
            fail "promtool check config prometheus/$f: $out"
        fi
    done
    if out=$("$promtool" check rules "$dir/prometheus/alerts.yml" 2>&1); then
        ok "promtool check rules prometheus/alerts.yml"
    else
        fail "promtool check rules prometheus/alerts.yml: $out"
    fi
    # Relative paths: the test file names alerts.yml beside it.
    if out=$(cd "$dir/prometheus" && "$promtool" test rules alerts.test.yml 2>&1); then
        ok "promtool test rules prometheus/alerts.test.yml"
    else
        fail "promtool test rules prometheus/alerts.test.yml: $out"
    fi
else
    fail "promtool is not installed (Debian package prometheus; scripts/setup.sh)"
fi

# --- Redis --------------------------------------------------------------------
if redis_server=$(tool redis-server) && redis_cli=$(tool redis-cli); then
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$redis_server" "$dir/redis.conf" --port "$port" --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 50); do
        "$redis_cli" -p "$port" ping >/dev/null 2>&1 && break
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    got=$("$redis_cli" -p "$port" config get maxmemory-policy appendonly appendfsync bind 2>&1 | paste -sd' ' || true)
    want="maxmemory-policy noeviction appendonly yes appendfsync everysec bind 127.0.0.1"
    # CONFIG GET answers in its own order: compare as sets of pairs.
    norm() { echo "$1" | xargs -n2 | sort | paste -sd' '; }
    if [ "$(norm "$got")" = "$(norm "$want")" ]; then
        ok "redis-server deploy/redis.conf ($want)"
    else
        fail "redis-server deploy/redis.conf: got '$got', want '$want'; log: $(tail -5 "$tmp/redis.log")"
    fi
    # SHUTDOWN, not a signal: a caller may have handed us SIGTERM blocked
    # (Foundation's Process does), and redis-server would inherit that.
    "$redis_cli" -p "$port" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        [ "$(awk '{print $3}' "/proc/$redis_pid/stat" 2>/dev/null || echo Z)" != Z ] || break  # gone or a zombie
        sleep 0.1
    done
    kill -9 "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=""
else
    fail "redis-server/redis-cli are not installed (scripts/setup.sh)"
fi

# --- Compose files and the Grafana dashboard ----------------------------------
if out=$(/usr/bin/python3 "$here/check_compose.py" "$dir" 2>&1); then
    ok "compose files: $out"
else
    fail "compose files: $out"
fi

exit $failed
