#!/usr/bin/env bash
# README command 1: install (first run only) and start every service on localhost with embedded defaults
# (SQLite, local disk under .oncohabitat/). Extra arguments go to `oncohabitat up`.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_DEV=${WITH_DEV:-0} bash scripts/bootstrap.sh
exec .venv/bin/oncohabitat up "$@"
