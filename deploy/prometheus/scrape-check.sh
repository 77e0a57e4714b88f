#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus` package) scrapes `oncohabitat up` (six services on localhost, metrics
# 9100-9105) with the shipped alert rules, then this script checks through its HTTP API that: every target is
# up, every rule loaded and evaluates without error, and every service's own metrics are there.
# Usage: deploy/prometheus/scrape-check.sh     (needs .venv; ~1 min; everything on 127.0.0.1, stopped at exit)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus"; exit 1; }
work=$(mktemp -d /tmp/oncohabitat-scrape.XXXXXX)
PROM_PORT=${PROM_PORT:-19090}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

.venv/bin/oncohabitat up --data-dir "$work/data" >"$work/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do .venv/bin/oncohabitat status >/dev/null 2>&1 && break; sleep 1; done
.venv/bin/oncohabitat status

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $PWD/deploy/prometheus/alerts.yaml
scrape_configs:
EOF
port=9100
for svc in orchestrator listener segmentation regions features scoring; do
  printf '  - job_name: oncohabitat-%s\n    static_configs:\n      - targets: ["127.0.0.1:%d"]\n' "$svc" "$port" \
    >>"$work/prometheus.yml"
  port=$((port + 1))
done
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 &
pids+=($!)
sleep 12
.venv/bin/oncohabitat status >/dev/null   # health RPCs: every service's gRPC metrics get samples
sleep 6

.venv/bin/python - "$PROM_PORT" <<'PY'
import json, sys, urllib.parse, urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}/api/v1"


def get(path, **params):
    url = f"{base}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]


problems = []
targets = get("targets")["activeTargets"]
for t in sorted(targets, key=lambda t: t["labels"]["job"]):
    print(f"target {t['labels']['job']:<26} {t['health']:<5} {t['lastError'] or ''}")
    if t["health"] != "up":
        problems.append(f"target {t['labels']['job']} is {t['health']}")
rules = [r for g in get("rules")["groups"] for r in g["rules"]]
for r in rules:
    print(f"rule   {r['name']:<38} health={r['health']:<3} state={r.get('state', '-')} {r.get('lastError', '')}")
    if r["health"] != "ok":
        problems.append(f"rule {r['name']}: {r['health']} {r.get('lastError')}")
if len(rules) < 10:
    problems.append(f"only {len(rules)} rules loaded")
series = get("query", query='count by (job) ({job=~"oncohabitat-.+", __name__=~"oncohabitat_.+"})')["result"]
counts = {s["metric"]["job"]: int(s["value"][1]) for s in series}
expect = {
    "oncohabitat-listener": "oncohabitat_listener_disk_free_bytes",
    "oncohabitat-orchestrator": "oncohabitat_orchestrator_queue_oldest_age_seconds",
    "oncohabitat-segmentation": "oncohabitat_grpc_server_handled_total",
    "oncohabitat-regions": "oncohabitat_grpc_server_handled_total",
    "oncohabitat-features": "oncohabitat_grpc_server_handled_total",
    "oncohabitat-scoring": "oncohabitat_grpc_server_handled_total",
}
for job, metric in expect.items():
    found = get("query", query=f'count({metric}{{job="{job}"}})')["result"]
    print(f"metrics {job:<26} oncohabitat_* series={counts.get(job, 0):<4} {metric}: {'yes' if found else 'NO'}")
    if not found:
        problems.append(f"{job}: no {metric}")
print("RESULT:", "OK" if not problems else "FAILED\n  " + "\n  ".join(problems))
sys.exit(1 if problems else 0)
PY
