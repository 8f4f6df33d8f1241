#!/usr/bin/python3
"""Parses deploy/docker-compose*.yml and checks the services and flags
Docs/deployment.md promises. Exits non-zero with one line per problem.

    /usr/bin/python3 deploy/check_compose.py [DEPLOY_DIR]

No Docker engine is needed (none runs in CI): this is a structural check of
what `docker compose` would be given, not a run of it.
"""
import json
import os
import sys

import yaml

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def load(path):
    with open(path) as f:
        data = yaml.safe_load(f)   # resolves the x-* anchors and `<<` merges
    check(isinstance(data, dict) and isinstance(data.get("services"), dict), f"{path}: no services")
    return data


def command(service):
    c = service.get("command", [])
    return c if isinstance(c, list) else str(c).split()


def flag(cmd, name):
    """The value after `name` in a command list, or None."""
    for i, arg in enumerate(cmd[:-1]):
        if arg == name:
            return cmd[i + 1]
    return None


def check_redis(name, svc, cluster=False):
    cmd = command(svc)
    check(svc.get("image", "").startswith("redis:7"), f"{name}: image is not Redis 7 ({svc.get('image')})")
    check(flag(cmd, "--appendonly") == "yes", f"{name}: needs --appendonly yes")
    check(flag(cmd, "--maxmemory-policy") == "noeviction", f"{name}: needs --maxmemory-policy noeviction")
    check("allkeys-lru" not in cmd, f"{name}: allkeys-lru can evict unpersisted streams")
    check(flag(cmd, "--appendfsync") in ("everysec", "always"), f"{name}: --appendfsync everysec|always")
    if cluster:
        check(flag(cmd, "--cluster-enabled") == "yes", f"{name}: needs --cluster-enabled yes")
    check(svc.get("volumes"), f"{name}: the AOF needs a volume")


def check_fi(name, svc, kind, queue_flag):
    cmd = command(svc)
    check(cmd[:1] == [kind], f"{name}: command should start with {kind}: {cmd}")
    check(queue_flag in cmd, f"{name}: needs {queue_flag}")
    check(flag(cmd, "--storage") == "/srv/fi/storage", f"{name}: --storage /srv/fi/storage")
    check("storage:/srv/fi/storage" in svc.get("volumes", []), f"{name}: needs the named storage volume")
    check(svc.get("environment", {}).get("HDF5_USE_FILE_LOCKING") == "FALSE", f"{name}: HDF5_USE_FILE_LOCKING=FALSE")
    check(svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile", f"{name}: built from deploy/Dockerfile")
    if kind == "fi-server":
        check(flag(cmd, "--host") == "0.0.0.0" and flag(cmd, "--port") == "7001", f"{name}: --host 0.0.0.0 --port 7001")
    else:
        check("--all" in cmd, f"{name}: fi-worker needs --all")
        check(flag(cmd, "--metrics-port") == "9464" and flag(cmd, "--metrics-host") == "0.0.0.0",
              f"{name}: --metrics-host 0.0.0.0 --metrics-port 9464 for Prometheus")
        check(flag(cmd, "--consumer"), f"{name}: needs its own --consumer")
        check("healthcheck" in svc, f"{name}: needs a healthcheck (the image's checks fi-server's port)")


def check_prometheus(name, svc, deploy_dir, config, servers, workers):
    mounts = svc.get("volumes", [])
    check(f"./prometheus/{config}:/etc/prometheus/prometheus.yml:ro" in mounts, f"{name}: mounts prometheus/{config}")
    check("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts, f"{name}: mounts alerts.yml")
    with open(os.path.join(deploy_dir, "prometheus", config)) as f:
        prom = yaml.safe_load(f)
    targets = {}
    for job in prom.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            targets.setdefault(job["job_name"], []).extend(sc.get("targets", []))
        check(job.get("metrics_path", "/metrics") == "/metrics", f"{config}: {job['job_name']} scrapes /metrics")
    check(sorted(targets.get("fi-server", [])) == sorted(f"{s}:7001" for s in servers),
          f"{config}: fi-server targets {targets.get('fi-server')} != {servers}")
    check(sorted(targets.get("fi-worker", [])) == sorted(f"{w}:9464" for w in workers),
          f"{config}: fi-worker targets {targets.get('fi-worker')} != {workers}")


def check_grafana(name, svc, deploy_dir):
    mounts = svc.get("volumes", [])
    check("./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts, f"{name}: provisioning mount")
    check("./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts, f"{name}: dashboards mount")
    with open(os.path.join(deploy_dir, "grafana", "dashboards", "fi-scale.json")) as f:
        dash = json.load(f)
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for needed in ["fi_http_requests_total", "histogram_quantile(0.95", "histogram_quantile(0.99",
                   "fi_http_request_duration_seconds_bucket", "fi_queue_backlog",
                   "fi_worker_events_persisted_total", "fi_worker_dead_letters_total"]:
        check(needed in exprs, f"fi-scale.json: no panel uses {needed}")


def main(deploy_dir):
    # Phase 1: one node.
    path = os.path.join(deploy_dir, "docker-compose.yml")
    single = load(path)["services"]
    servers = sorted(s for s in single if s.startswith("fi-server-"))
    workers = sorted(s for s in single if s.startswith("fi-worker"))
    check(len(servers) >= 2, f"{path}: at least two fi-server replicas")
    check(len(workers) >= 1, f"{path}: a fi-worker")
    for s in ["redis", "nginx", "prometheus", "grafana"]:
        check(s in single, f"{path}: missing service {s}")
    if problems:
        return
    check_redis("redis", single["redis"])
    for s in servers:
        check_fi(s, single[s], "fi-server", "--redis-url")
    for w in workers:
        check_fi(w, single[w], "fi-worker", "--redis-url")
    nginx = single["nginx"]
    check("./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx.get("volumes", []), "nginx: mounts deploy/nginx.conf")
    with open(os.path.join(deploy_dir, "nginx.conf")) as f:
        conf = f.read()
    check("least_conn;" in conf, "nginx.conf: least_conn")
    for s in servers:
        check(f"server {s}:7001" in conf, f"nginx.conf: no upstream server {s}:7001")
    check_prometheus("prometheus", single["prometheus"], deploy_dir, "prometheus.yml", servers, workers)
    check_grafana("grafana", single["grafana"], deploy_dir)
    check("storage" in load(path).get("volumes", {}), f"{path}: named volume storage")

    # Phase 2: three nodes.
    path = os.path.join(deploy_dir, "docker-compose.cluster.yml")
    cluster = load(path)["services"]
    servers = sorted(s for s in cluster if s.startswith("fi-server-"))
    workers = sorted(s for s in cluster if s.startswith("fi-worker-"))
    redis = sorted(s for s in cluster if s.startswith("redis-") and s[6:].isdigit())
    check(len(servers) == 3 and len(workers) == 3 and len(redis) == 3, f"{path}: three servers, workers and Redis nodes")
    for s in ["redis-cluster-create", "haproxy", "prometheus", "grafana"]:
        check(s in cluster, f"{path}: missing service {s}")
    if problems:
        return
    for r in redis:
        check_redis(r, cluster[r], cluster=True)
    create = cluster["redis-cluster-create"]
    script = " ".join(command(create))
    check("--cluster create" in script and "--cluster-replicas 0" in script, "redis-cluster-create: redis-cli --cluster create")
    check(create.get("restart") == "no", "redis-cluster-create: a one-shot (restart: no)")
    seeds = ",".join(f"{r}:6379" for r in redis)
    for s in servers:
        check_fi(s, cluster[s], "fi-server", "--redis-cluster")
        check(flag(command(cluster[s]), "--redis-cluster") == seeds, f"{s}: --redis-cluster {seeds}")
        check(cluster[s]["depends_on"].get("redis-cluster-create", {}).get("condition") == "service_completed_successfully",
              f"{s}: starts after redis-cluster-create completed")
    consumers = set()
    for w in workers:
        check_fi(w, cluster[w], "fi-worker", "--redis-cluster")
        consumers.add(flag(command(cluster[w]), "--consumer"))
    check(len(consumers) == len(workers), f"{path}: every worker needs its own --consumer")
    haproxy = cluster["haproxy"]
    check("./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy.get("volumes", []), "haproxy: mounts deploy/haproxy.cfg")
    with open(os.path.join(deploy_dir, "haproxy.cfg")) as f:
        conf = f.read()
    check("balance roundrobin" in conf, "haproxy.cfg: balance roundrobin")
    check("option httpchk GET /health" in conf, "haproxy.cfg: option httpchk GET /health")
    for s in servers:
        check(f"{s}:7001 check" in conf, f"haproxy.cfg: no checked server {s}:7001")
    check_prometheus("prometheus", cluster["prometheus"], deploy_dir, "prometheus.cluster.yml", servers, workers)
    check_grafana("grafana", cluster["grafana"], deploy_dir)
    check("storage" in load(path).get("volumes", {}), f"{path}: named volume storage")


if __name__ == "__main__":
    deploy_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    try:
        main(deploy_dir)
    except (OSError, KeyError, TypeError, yaml.YAMLError, json.JSONDecodeError) as error:
        problems.append(f"cannot check: {error!r}")
    for p in problems:
        print(f"check_compose: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("check_compose: docker-compose.yml and docker-compose.cluster.yml OK")
