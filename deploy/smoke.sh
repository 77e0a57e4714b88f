#!/usr/bin/env bash
# Smoke run without Kubernetes: build the six images (missing ones; REBUILD=1 for all), render the chart with
# deploy/smoke-values.yaml, run its Deployments with `podman kube play` on the host network (every service on
# 127.0.0.1), push a phantom DCE study to the listener with dcmtk's storescu and wait for the job to end.
# Prints the timings, each image's size and the job; exit 0 when the job ends DONE (or NEEDS_REVIEW with a
# model reason). KEEP=1 leaves the pods running (stop: podman kube down deploy/.smoke/manifests.yaml).
# Needs: root, podman + catatonit (deploy/README.md), .venv (oncohabitat CLI), .tools/bin/helm, dcmtk (storescu).
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/containers.conf}
export TCP_NODELAY=1   # dcmtk: no Nagle delay on loopback
START=$SECONDS
TAG=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
services=(listener orchestrator segmentation regions features scoring)
work=deploy/.smoke
mkdir -p "$work"
log() { printf '[smoke %4ds] %s\n' $((SECONDS - START)) "$*"; }

# 1. images
missing=()
for svc in "${services[@]}"; do
  if [ "${REBUILD:-0}" = 1 ] || ! podman image exists "localhost/oncohabitat-$svc:$TAG"; then missing+=("$svc"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "building images: ${missing[*]}"
  JOBS=${JOBS:-2} bash deploy/build-images.sh "${missing[@]}"
fi
log "images ready"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^localhost/oncohabitat-" | sort

# 2. manifests: the chart's Deployments (podman kube play runs Deployments; Services, NetworkPolicies, PDBs are
# cluster objects). The PVCs become pre-created podman volumes owned by the pods' UID.
.tools/bin/helm template oncohabitat charts/oncohabitat -n oncohabitat -f deploy/smoke-values.yaml >"$work/chart.yaml"
.venv/bin/python - "$work/chart.yaml" "$work/manifests.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
for doc in docs:  # host network: podman refuses port mappings there (the services bind 127.0.0.1 themselves)
    for container in doc["spec"]["template"]["spec"]["containers"]:
        container.pop("ports", None)
yaml.safe_dump_all(docs, open(sys.argv[2], "w"), sort_keys=False)
print(f"{len(docs)} Deployments")
PY
podman kube down "$work/manifests.yaml" >/dev/null 2>&1 || true
for claim in listener-store study-store jobs models; do
  volume="oncohabitat-$claim"
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  podman volume create "$volume" >/dev/null
  mountpoint=$(podman volume inspect "$volume" --format '{{.Mountpoint}}')
  if [ "$claim" = models ]; then
    # the committed bundle root (bundles.lock.json pins every manifest)
    git archive HEAD models | tar -x --strip-components=1 -C "$mountpoint"
  fi
  chown -R 10001:10001 "$mountpoint"
done

# 3. run
log "podman kube play"
podman kube play --network host "$work/manifests.yaml" >"$work/play.log" 2>&1 || { cat "$work/play.log"; exit 1; }
for _ in $(seq 1 90); do
  if .venv/bin/oncohabitat status >"$work/status.txt" 2>&1; then break; fi
  sleep 2
done
cat "$work/status.txt"
.venv/bin/oncohabitat status >/dev/null || { podman pod ps; for c in $(podman ps -a --format '{{.Names}}' | grep -v infra); do echo "== $c"; podman logs --tail 20 "$c"; done; exit 1; }
log "all services SERVING"

# 4. a phantom DCE study over C-STORE
rm -rf "$work/study" && .venv/bin/oncohabitat phantom --out "$work/study" --size small >/dev/null
files=$(find "$work/study" -name '*.dcm' | wc -l)
sent_at=$SECONDS
storescu -aec ONCOHABITAT -aet SMOKE +sd +r +sp "*.dcm" 127.0.0.1 11112 "$work/study/dicom" >"$work/storescu.log" 2>&1 || { cat "$work/storescu.log"; exit 1; }
log "sent $files instances in $((SECONDS - sent_at)) s"

# 5. the job
state=""
for _ in $(seq 1 300); do
  .venv/bin/oncohabitat jobs --json >"$work/jobs.json" 2>/dev/null || true
  state=$(.venv/bin/python -c "
import json, sys
try:
    jobs = json.load(open('$work/jobs.json'))
except Exception:
    sys.exit()
jobs = jobs.get('jobs', jobs) if isinstance(jobs, dict) else jobs
ended = [j for j in jobs if str(j.get('state', '')).replace('JOB_STATE_', '') in ('DONE', 'NEEDS_REVIEW', 'FAILED', 'CANCELLED')]
print(str(ended[0].get('state')).replace('JOB_STATE_', '') + ' ' + ended[0]['job_id'] if ended else '')
")
  [ -n "$state" ] && break
  sleep 2
done
job_id=${state#* }
state=${state%% *}
cat "$work/jobs.json"; echo
log "job ended $state, $((SECONDS - sent_at)) s after the first instance was sent"
if [ -n "$job_id" ]; then .venv/bin/oncohabitat result "$job_id" | tee "$work/result.txt" | head -60 || true; fi
if [ "${KEEP:-0}" != 1 ]; then podman kube down "$work/manifests.yaml" >/dev/null 2>&1 || true; fi
log "total $((SECONDS - START)) s"
case "$state" in
  DONE) exit 0 ;;
  NEEDS_REVIEW) grep -qi "model" "$work/result.txt" && exit 0 || exit 1 ;;
  *) exit 1 ;;
esac
