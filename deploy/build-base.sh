#!/usr/bin/env bash
# Builds the base image every service image starts from when registries cannot be reached:
# debootstrap bookworm (minbase + python3.11 + venv + CA certificates) -> `podman import`.
# Usage: deploy/build-base.sh [TAG]   (default localhost/oncohabitat-base:bookworm)
# Needs root, debootstrap, podman (see deploy/README.md). Takes ~3-5 min; reuses the tag when it exists
# unless REBUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/oncohabitat-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/containers.conf}

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$TAG"; then
  echo "build-base: $TAG exists (REBUILD=1 to rebuild)"; exit 0
fi
work=$(mktemp -d /var/tmp/oncohabitat-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tzdata \
  bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }
# slim it: apt lists, docs, man pages, locales (the python:*-slim images drop the same)
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.UTF-8' -exec rm -rf {} + 2>/dev/null || true
# python:3.11-slim puts python at /usr/local/bin; Containerfiles call `python3`, present in both.
tar -C "$rootfs" -c . | podman import \
  --change 'ENV LANG=C.UTF-8' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' --message "debootstrap bookworm minbase + python3" - "$TAG"
podman image ls "$TAG"
