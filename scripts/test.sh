#!/usr/bin/env bash
# Set up, then run the whole test suite (what CI runs, through .ci/run).
# Besides the venv (scripts/setup.sh) the tests need Triton's perf_analyzer, which
# scripts/install_perf_analyzer.sh unpacks into .venv (and Debian's libb64-0d, which it installs with apt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_perf_analyzer.sh
exec .venv/bin/python -m pytest "$@"
