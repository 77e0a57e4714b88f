#!/usr/bin/env bash
# Builds every service image (one per service) with podman against the local debootstrap base image.
# Usage: deploy/build-images.sh [SERVICE...]      (default: all six)
# Env: BASE_IMAGE (default localhost/oncohabitat-base:bookworm, built by deploy/build-base.sh when missing;
#      set BASE_IMAGE=python:3.11-slim-bookworm where a registry can be reached), TAG (default: the
#      pyproject version), REGISTRY_PREFIX (default localhost/oncohabitat-), JOBS (parallel builds, default 1),
#      SOURCE (head: the committed tree, default; worktree: the working tree, uncommitted edits included).
# Writes build logs to deploy/.build/<service>.log and prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/containers.conf}
BASE_IMAGE=${BASE_IMAGE:-localhost/oncohabitat-base:bookworm}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
TAG=${TAG:-$VERSION}
PREFIX=${REGISTRY_PREFIX:-localhost/oncohabitat-}
REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(listener orchestrator segmentation regions features scoring)

if [[ $BASE_IMAGE == localhost/oncohabitat-base:* ]] && ! podman image exists "$BASE_IMAGE"; then
  bash deploy/build-base.sh "$BASE_IMAGE"
fi
# The build context holds only what the images need (no .venv, tests, data): pyproject, README, services/.
ctx=$(mktemp -d /var/tmp/oncohabitat-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
# From the committed HEAD (reproducible; matches the revision label) unless SOURCE=worktree.
if [ "${SOURCE:-head}" = worktree ]; then
  tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md services | tar -x -C "$ctx"
  REVISION="$REVISION-dirty"
else
  git archive HEAD pyproject.toml README.md services | tar -x -C "$ctx"
fi
# pip inside the build verifies TLS with the host's CA bundle (networks that intercept TLS add their CA there)
ca=/etc/ssl/certs/ca-certificates.crt
ca_args=()
[ -f "$ca" ] && ca_args=(--volume "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
mkdir -p deploy/.build
build_one() {
  local svc=$1 start=$SECONDS
  if podman build --network host --layers=false --format oci \
      --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
      "${ca_args[@]}" -f "$PWD/deploy/Containerfile.$svc" -t "$PREFIX$svc:$TAG" "$ctx" \
      >"deploy/.build/$svc.log" 2>&1; then
    echo "built $PREFIX$svc:$TAG in $((SECONDS - start)) s"
  else
    echo "FAILED $svc (deploy/.build/$svc.log):"; tail -20 "deploy/.build/$svc.log"; return 1
  fi
}
status=0
# at most JOBS builds at once (pip downloads overlap; the features build compiles pyradiomics)
running=0
for svc in "${services[@]}"; do
  if [ "$running" -ge "${JOBS:-1}" ]; then wait -n || status=1; running=$((running - 1)); fi
  build_one "$svc" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^$PREFIX" || true
exit $status
