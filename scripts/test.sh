#!/usr/bin/env bash
# The project's test command (README command 2; .ci/run calls it). Installs what it needs, then runs:
# stub freshness, ruff, mypy, import contracts (lint-imports), unit tests, deployment checks (chart, alerts),
# integration tests (real dcmtk peers, Orthanc, gRPC services).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export TCP_NODELAY=1   # dcmtk tools use Nagle's algorithm otherwise (x100 slower on loopback)

echo "== generated stubs"; python scripts/gen_protos.py --check
echo "== ruff";            ruff check . && ruff format --check .
echo "== mypy";            mypy
echo "== imports";         lint-imports   # package boundaries: [tool.importlinter] in pyproject.toml
echo "== unit tests";      python -m pytest -q tests/unit -p no:cacheprovider
echo "== deployment";      python -m pytest -q tests/integration/test_deploy_chart.py -p no:cacheprovider  # helm lint/template, kubernetes-validate, checkov, promtool
echo "== integration";     python -m pytest -q tests/integration -p no:cacheprovider --ignore=tests/integration/test_deploy_chart.py
