#!/usr/bin/env bash
# Set up, then run the whole test suite (what CI runs, through .ci/run).
# Besides the venv (scripts/setup.sh) the tests need Triton's perf_analyzer, which
# scripts/install_perf_analyzer.sh unpacks into .venv (and Debian's libb64-0d, which it installs with apt), and
# the C++ toolchain of the clients (scripts/install_client_toolchain.sh: cmake, g++, gRPC, protobuf, gfortran), and
# Debian's prometheus (promtool too) for the deploy tests (scripts/install_ops_tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_perf_analyzer.sh
bash scripts/install_client_toolchain.sh
bash scripts/install_ops_tools.sh
exec .venv/bin/python -m pytest "$@"
