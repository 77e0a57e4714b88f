#!/usr/bin/env bash
# Installs everything the platform and its tests need on a fresh Debian bookworm / Python 3.11 machine:
# Debian tools (dcmtk = real DICOM peer, dicom3tools = dciodvfy validator, orthanc = real PACS) and a
# virtualenv in .venv with the pinned Python dependencies. Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_DEV=${WITH_DEV:-1}

apt_packages=()
command -v storescu >/dev/null 2>&1 || apt_packages+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || apt_packages+=(dicom3tools)
command -v Orthanc >/dev/null 2>&1 || apt_packages+=(orthanc)
if [ "${#apt_packages[@]}" -gt 0 ] && [ "$WITH_DEV" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "bootstrap: installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  # The Debian orthanc package starts a system service on 4242/8042; tests run their own instance.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop orthanc >/dev/null 2>&1 || true; fi
  $SUDO service orthanc stop >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
requirements_digest=$( { cat pyproject.toml; if [ -f training/pyproject.toml ]; then cat training/pyproject.toml; fi; } | sha256sum | cut -c1-16)
stamp=.venv/.installed-$requirements_digest-$WITH_DEV
# pip warns about local index folders of this machine's pip.conf that do not exist; drop only that noise.
pip_install() { .venv/bin/python -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python dependencies into .venv"
  pip_install --upgrade pip==25.3
  if [ "$WITH_DEV" = 1 ]; then
    # the offline training package (torch CPU wheel from this machine's wheel cache, onnx) is tested too
    pip_install -e ".[dev]" -e ./training
  else
    pip_install -e ".[all]"
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
