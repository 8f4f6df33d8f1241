#!/usr/bin/python3
"""Parses deploy/docker-compose*.yml and checks the services and settings
Docs/deployment.md and Docs/operations.md promise, the Prometheus targets, the
Grafana dashboard and the alerts' runbook links. Exits non-zero with one line
per problem.

    /usr/bin/python3 deploy/check_compose.py [DEPLOY_DIR]

No Docker engine is needed (none runs in CI): this is a structural check of
what `docker compose` would be given, not a run of it.

fi-server and fi-worker take each setting from its flag or from FI_<FLAG>
(Docs/operations.md); a setting is read here from the service's command, else
its environment. When DEPLOY_DIR/../Docs/operations.md exists (the repository,
not a copy of deploy/ alone), every FI_* variable a service sets must be one of
its binary's settings in the reference tables there, and every alert's runbook
must name a section of that file.
"""
import json
import os
import re
import sys

import yaml

problems = []

WORKER_HTTP_PORT = 7002   # fi-worker's default --http-port
SERVER_PORT = 7001


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


def environment(service):
    env = service.get("environment", {})
    if isinstance(env, list):   # the KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def env_name(setting):
    """FI_ + the long flag in upper case, - as _ (OptionSpec.environmentVariable)."""
    return "FI_" + setting.upper().replace("-", "_")


def setting(service, name):
    """A fi-server/fi-worker setting as the service gives it: flag, else FI_ variable, else None."""
    value = flag(command(service), "--" + name)
    if value is None:
        value = environment(service).get(env_name(name))
    return value


def bool_setting(service, name):
    if "--" + name in command(service):
        return True
    value = environment(service).get(env_name(name))
    return value is not None and value.lower() in ("true", "yes", "1", "on")


def seconds(text):
    """Compose/HAProxy durations: 5s, 1500ms, 1m30s, or a plain number of seconds."""
    if text is None:
        return None
    text = str(text).strip()
    if re.fullmatch(r"[0-9.]+", text):
        return float(text)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for amount, unit in re.findall(r"([0-9.]+)(ms|us|h|m|s)", text):
        total += float(amount) * units[unit]
    return total


def reference_settings(deploy_dir):
    """{binary: set of FI_* variables} from the generated tables in Docs/operations.md, or None."""
    path = os.path.join(deploy_dir, "..", "Docs", "operations.md")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    out = {}
    for binary in ("fi-server", "fi-worker"):
        m = re.search(rf"<!-- BEGIN {binary} config --reference -->\n(.*?)<!-- END {binary} config --reference -->", text, re.S)
        check(m is not None, f"Docs/operations.md: no {binary} config --reference block")
        out[binary] = set(re.findall(r"`(FI_[A-Z0-9_]+)`", m.group(1))) if m else set()
    return out


def markdown_anchors(path):
    """The GitHub anchors of a Markdown file's headings."""
    anchors, seen = set(), {}
    in_code = False
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            m = re.match(r"#{1,6} +(.*?) *#*\s*$", line)
            if not m:
                continue
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower().replace("`", "")).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def healthcheck_url(svc):
    test = svc.get("healthcheck", {}).get("test", [])
    text = " ".join(test) if isinstance(test, list) else str(test)
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", text)
    return (int(m.group(1)), m.group(2)) if m else None


def check_fi(name, svc, kind, queue_setting, known):
    cmd = command(svc)
    env = environment(svc)
    check(cmd[:1] == [kind], f"{name}: command should start with {kind}: {cmd}")
    check(setting(svc, queue_setting), f"{name}: needs --{queue_setting} ({env_name(queue_setting)})")
    other = "redis-cluster" if queue_setting == "redis-url" else "redis-url"
    check(not setting(svc, other), f"{name}: --{other} and --{queue_setting} exclude each other")
    check(setting(svc, "storage") == "/srv/fi/storage", f"{name}: --storage (FI_STORAGE) /srv/fi/storage")
    check("storage:/srv/fi/storage" in svc.get("volumes", []), f"{name}: needs the named storage volume")
    check(env.get("HDF5_USE_FILE_LOCKING") == "FALSE", f"{name}: HDF5_USE_FILE_LOCKING=FALSE")
    check(svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile", f"{name}: built from deploy/Dockerfile")
    check(setting(svc, "log-format") in (None, "text", "json"), f"{name}: --log-format text|json")
    if known is not None:
        for variable in env:
            if variable.startswith("FI_"):
                check(variable in known[kind], f"{name}: {variable} is no setting of {kind} (Docs/operations.md reference)")
    health = healthcheck_url(svc)
    if kind == "fi-server":
        check(setting(svc, "host") == "0.0.0.0" and setting(svc, "port") == str(SERVER_PORT),
              f"{name}: --host 0.0.0.0 --port {SERVER_PORT} (FI_HOST, FI_PORT)")
        check(health == (SERVER_PORT, "/health/ready"), f"{name}: healthcheck on http://127.0.0.1:{SERVER_PORT}/health/ready, not {health}")
        delay = seconds(setting(svc, "shutdown-delay")) or 0
        check(delay > 0, f"{name}: behind a balancer it needs --shutdown-delay (FI_SHUTDOWN_DELAY) > 0")
        grace = seconds(svc.get("stop_grace_period", "10s"))
        check(grace > delay + 5, f"{name}: stop_grace_period {grace}s must leave time after the {delay}s shutdown delay")
    else:
        check(bool_setting(svc, "all"), f"{name}: fi-worker needs --all (FI_ALL=true)")
        for old, new in (("--metrics-host", "--http-host"), ("--metrics-port", "--http-port")):
            check(old not in cmd, f"{name}: {old} is the old name of {new}")
        for variable in ("FI_METRICS_HOST", "FI_METRICS_PORT", "METRICS_PORT"):
            check(variable not in env, f"{name}: {variable} is read by nothing (FI_HTTP_HOST, FI_HTTP_PORT)")
        check(setting(svc, "http-host") == "0.0.0.0", f"{name}: --http-host 0.0.0.0 (FI_HTTP_HOST) for Prometheus")
        port = int(setting(svc, "http-port") or WORKER_HTTP_PORT)
        check(port == WORKER_HTTP_PORT, f"{name}: its HTTP endpoint on the default port {WORKER_HTTP_PORT}, not {port}")
        check(setting(svc, "consumer"), f"{name}: needs its own --consumer (FI_CONSUMER)")
        check(health == (port, "/health/ready"), f"{name}: healthcheck on http://127.0.0.1:{port}/health/ready, not {health}")


def check_prometheus(name, svc, deploy_dir, config, servers, workers, services):
    mounts = svc.get("volumes", [])
    check(f"./prometheus/{config}:/etc/prometheus/prometheus.yml:ro" in mounts, f"{name}: mounts prometheus/{config}")
    check("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts, f"{name}: mounts alerts.yml")
    with open(os.path.join(deploy_dir, "prometheus", config)) as f:
        prom = yaml.safe_load(f)
    targets, jobs = {}, {}
    for job in prom.get("scrape_configs", []):
        jobs[job["job_name"]] = job
        for sc in job.get("static_configs", []):
            targets.setdefault(job["job_name"], []).extend(sc.get("targets", []))
        if job["job_name"] != "fi-ready":
            check(job.get("metrics_path", "/metrics") == "/metrics", f"{config}: {job['job_name']} scrapes /metrics")
    check(sorted(targets.get("fi-server", [])) == sorted(f"{s}:{SERVER_PORT}" for s in servers),
          f"{config}: fi-server targets {targets.get('fi-server')} != {servers}")
    check(sorted(targets.get("fi-worker", [])) == sorted(f"{w}:{WORKER_HTTP_PORT}" for w in workers),
          f"{config}: fi-worker targets {targets.get('fi-worker')} != {workers} on :{WORKER_HTTP_PORT}")
    # Readiness through the blackbox exporter: every server and worker, relabelled to the exporter.
    ready = jobs.get("fi-ready")
    check(ready is not None, f"{config}: no fi-ready job (blackbox probes of /health/ready)")
    if ready:
        want = [f"http://{s}:{SERVER_PORT}/health/ready" for s in servers] + \
               [f"http://{w}:{WORKER_HTTP_PORT}/health/ready" for w in workers]
        check(sorted(targets.get("fi-ready", [])) == sorted(want), f"{config}: fi-ready targets {targets.get('fi-ready')} != {want}")
        check(ready.get("metrics_path") == "/probe" and ready.get("params", {}).get("module") == ["http_2xx"],
              f"{config}: fi-ready scrapes /probe with module http_2xx")
        relabel = ready.get("relabel_configs", [])
        check(any(r.get("target_label") == "__address__" and r.get("replacement") == "blackbox:9115" for r in relabel),
              f"{config}: fi-ready relabels __address__ to blackbox:9115")
        check(any(r.get("target_label") == "__param_target" for r in relabel), f"{config}: fi-ready sets __param_target")
        check("blackbox" in services and str(services["blackbox"].get("image", "")).startswith("prom/blackbox-exporter:"),
              f"{name}: the fi-ready job needs the blackbox service (prom/blackbox-exporter)")


def check_grafana(name, svc, deploy_dir):
    mounts = svc.get("volumes", [])
    check("./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts, f"{name}: provisioning mount")
    check("./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts, f"{name}: dashboards mount")
    with open(os.path.join(deploy_dir, "grafana", "provisioning", "datasources", "prometheus.yml")) as f:
        uid = yaml.safe_load(f)["datasources"][0]["uid"]
    with open(os.path.join(deploy_dir, "grafana", "dashboards", "fi-scale.json")) as f:
        dash = json.load(f)
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    check(len(ids) == len(set(ids)), f"fi-scale.json: panel ids repeat: {ids}")
    for p in panels:
        where = f"fi-scale.json: panel {p.get('id')} {p.get('title')!r}"
        check(p.get("type") in ("timeseries", "table", "stat", "bargauge", "gauge"), f"{where}: type {p.get('type')}")
        grid = p.get("gridPos", {})
        check(all(isinstance(grid.get(k), int) for k in "xywh") and grid["x"] + grid["w"] <= 24, f"{where}: gridPos {grid}")
        check(p.get("datasource", {}).get("uid") == uid, f"{where}: datasource uid is not {uid}")
        refs = [t.get("refId") for t in p.get("targets", [])]
        check(refs and len(refs) == len(set(refs)), f"{where}: targets need distinct refIds: {refs}")
        for t in p.get("targets", []):
            check(t.get("datasource", {}).get("uid") == uid and t.get("expr"), f"{where}: target {t.get('refId')} needs expr and datasource")
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needed in ["fi_http_requests_total", "histogram_quantile(0.95", "histogram_quantile(0.99",
                   "fi_http_request_duration_seconds_bucket", "fi_queue_backlog",
                   "fi_worker_events_persisted_total", "fi_worker_dead_letters_total",
                   "fi_worker_pending_entries", "fi_worker_oldest_pending_seconds", "fi_worker_dead_letter_entries",
                   "max by (partition) (fi_worker_lease_held) == 0", "fi_build_info",
                   "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"]:
        check(needed in exprs, f"fi-scale.json: no panel uses {needed}")


def check_alerts(deploy_dir):
    with open(os.path.join(deploy_dir, "prometheus", "alerts.yml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    docs = os.path.join(deploy_dir, "..", "Docs", "operations.md")
    anchors = markdown_anchors(docs) if os.path.exists(docs) else None
    text = open(docs).read() if anchors is not None else ""
    for rule in rules:
        runbook = rule.get("annotations", {}).get("runbook", "")
        check(runbook.startswith("Docs/operations.md#"), f"alerts.yml: {rule['alert']} needs a runbook annotation Docs/operations.md#…")
        if anchors is not None and "#" in runbook:
            check(runbook.split("#", 1)[1] in anchors, f"alerts.yml: {rule['alert']}: {runbook} names no section of Docs/operations.md")
        if anchors is not None:
            check(rule["alert"] in text, f"Docs/operations.md does not mention the alert {rule['alert']}")


def main(deploy_dir):
    known = reference_settings(deploy_dir)

    # Phase 1: one node.
    path = os.path.join(deploy_dir, "docker-compose.yml")
    single = load(path)["services"]
    servers = sorted(s for s in single if s.startswith("fi-server-"))
    workers = sorted(s for s in single if s.startswith("fi-worker"))
    before = len(problems)
    check(len(servers) >= 2, f"{path}: at least two fi-server replicas")
    check(len(workers) >= 1, f"{path}: a fi-worker")
    for s in ["redis", "nginx", "prometheus", "grafana", "blackbox"]:
        check(s in single, f"{path}: missing service {s}")
    if len(problems) > before:
        return
    check_redis("redis", single["redis"])
    for s in servers:
        check_fi(s, single[s], "fi-server", "redis-url", known)
    for w in workers:
        check_fi(w, single[w], "fi-worker", "redis-url", known)
    nginx = single["nginx"]
    check("./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx.get("volumes", []), "nginx: mounts deploy/nginx.conf")
    for s in servers:
        check(nginx.get("depends_on", {}).get(s, {}).get("condition") == "service_healthy",
              f"nginx: starts once {s} is ready (depends_on condition service_healthy)")
    with open(os.path.join(deploy_dir, "nginx.conf")) as f:
        conf = f.read()
    check("least_conn;" in conf, "nginx.conf: least_conn")
    for s in servers:
        check(re.search(rf"server {s}:{SERVER_PORT} max_fails=\d+ fail_timeout=\w+;", conf),
              f"nginx.conf: no upstream server {s}:{SERVER_PORT} with max_fails and fail_timeout (its passive check)")
    check_prometheus("prometheus", single["prometheus"], deploy_dir, "prometheus.yml", servers, workers, single)
    check_grafana("grafana", single["grafana"], deploy_dir)
    check("storage" in load(path).get("volumes", {}), f"{path}: named volume storage")

    # Phase 2: three nodes.
    path = os.path.join(deploy_dir, "docker-compose.cluster.yml")
    cluster = load(path)["services"]
    servers = sorted(s for s in cluster if s.startswith("fi-server-"))
    workers = sorted(s for s in cluster if s.startswith("fi-worker-"))
    redis = sorted(s for s in cluster if s.startswith("redis-") and s[6:].isdigit())
    before = len(problems)
    check(len(servers) == 3 and len(workers) == 3, f"{path}: three servers and workers")
    check(len(redis) == 6, f"{path}: six Redis nodes (3 masters, 3 replicas), not {len(redis)}")
    for s in ["redis-cluster-create", "haproxy", "prometheus", "grafana", "blackbox"]:
        check(s in cluster, f"{path}: missing service {s}")
    if len(problems) > before:
        return
    for r in redis:
        check_redis(r, cluster[r], cluster=True)
    create = cluster["redis-cluster-create"]
    script = " ".join(command(create))
    check("--cluster create" in script, "redis-cluster-create: redis-cli --cluster create")
    check("--cluster-replicas 1" in script, "redis-cluster-create: --cluster-replicas 1 (a replica for every master)")
    for r in redis:
        check(re.search(rf"\b{r}\b", script), f"redis-cluster-create: does not join {r}")
        check(create.get("depends_on", {}).get(r, {}).get("condition") == "service_healthy",
              f"redis-cluster-create: starts once {r} is healthy")
    check(create.get("restart") == "no", "redis-cluster-create: a one-shot (restart: no)")
    seeds = ",".join(f"{r}:6379" for r in redis)
    with open(os.path.join(deploy_dir, "haproxy.cfg")) as f:
        conf = f.read()
    m = re.search(r"default-server\b.*\binter (\S+) .*\bfall (\d+)", conf)
    check(m is not None, "haproxy.cfg: default-server with inter and fall")
    check_window = seconds(m.group(1)) * int(m.group(2)) if m else 0
    for s in servers:
        check_fi(s, cluster[s], "fi-server", "redis-cluster", known)
        check(setting(cluster[s], "redis-cluster") == seeds, f"{s}: --redis-cluster {seeds}")
        check(cluster[s]["depends_on"].get("redis-cluster-create", {}).get("condition") == "service_completed_successfully",
              f"{s}: starts after redis-cluster-create completed")
        delay = seconds(setting(cluster[s], "shutdown-delay")) or 0
        check(delay > check_window, f"{s}: --shutdown-delay {delay}s must exceed HAProxy's inter × fall = {check_window}s")
    # With a replica per master, appends and leases wait for it (WAIT): else a failover can lose
    # accepted events. More than one replica per master is not run here, so N is 1.
    for s in servers + workers:
        n = setting(cluster[s], "redis-min-replicas")
        check(n == "1", f"{s}: --redis-min-replicas 1 (FI_REDIS_MIN_REPLICAS) with a replica per master, not {n}")
    consumers = set()
    for w in workers:
        check_fi(w, cluster[w], "fi-worker", "redis-cluster", known)
        check(setting(cluster[w], "redis-cluster") == seeds, f"{w}: --redis-cluster {seeds}")
        consumers.add(setting(cluster[w], "consumer"))
    check(len(consumers) == len(workers), f"{path}: every worker needs its own --consumer")
    haproxy = cluster["haproxy"]
    check("./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy.get("volumes", []), "haproxy: mounts deploy/haproxy.cfg")
    check("balance roundrobin" in conf, "haproxy.cfg: balance roundrobin")
    check(re.search(r"option httpchk GET /health/ready\s", conf), "haproxy.cfg: option httpchk GET /health/ready")
    check("http-check expect status 200" in conf, "haproxy.cfg: http-check expect status 200")
    for s in servers:
        check(f"{s}:{SERVER_PORT} check" in conf, f"haproxy.cfg: no checked server {s}:{SERVER_PORT}")
    check_prometheus("prometheus", cluster["prometheus"], deploy_dir, "prometheus.cluster.yml", servers, workers, cluster)
    check_grafana("grafana", cluster["grafana"], deploy_dir)
    check("storage" in load(path).get("volumes", {}), f"{path}: named volume storage")

    # The image: its HEALTHCHECK asks readiness.
    with open(os.path.join(deploy_dir, "Dockerfile")) as f:
        dockerfile = f.read()
    check(re.search(r"HEALTHCHECK[^\n]*(\\\n[^\n]*)*/health/ready", dockerfile), "Dockerfile: HEALTHCHECK on /health/ready")
    check("metrics-port" not in dockerfile, "Dockerfile: --metrics-port is the old name of --http-port")

    check_alerts(deploy_dir)


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


if __name__ == "__main__":
    deploy_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    try:
        main(deploy_dir)
    except (OSError, KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError, json.JSONDecodeError) as error:
        problems.append(f"cannot check: {error!r}")
    for p in problems:
        print(f"check_compose: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("check_compose: docker-compose.yml and docker-compose.cluster.yml OK"
          " (with their Prometheus targets, the dashboard and the alerts' runbooks)")
