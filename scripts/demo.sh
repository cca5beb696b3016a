#!/usr/bin/env bash
# The main job on its embedded default: set up, then train, export, serve and query a gg -> ggg surrogate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/calsurr demo "$@"
