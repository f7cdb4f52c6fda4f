#!/usr/bin/env bash
# Install everything the tests need (venv, pinned packages, Debian chromium) and run
# lint, the import contract and the whole test suite (engine, pages, real browser, benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (sudo apt-get install chromium): browser tests will be skipped" >&2
  fi
fi
bash scripts/install.sh dev
. .venv/bin/activate
echo "== ruff"
ruff check .
ruff format --check .
echo "== import contract"
lint-imports
echo "== tests"
python -m pytest -p no:cacheprovider --timeout=900 -ra "$@"
