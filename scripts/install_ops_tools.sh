#!/usr/bin/env bash
# Install the operations tools the deploy tests need: Debian's `prometheus` package (prometheus and promtool) for
# tests/deploy/ (promtool check/test rules, and a real Prometheus scraping a real server). Idempotent.
# Needs root for apt-get; run as another user it says what to install and fails (the tests would fail without it).
# The Python side (helm-python-sdk, kubernetes-validate, dask[distributed]) comes with `pip install -e .[ops]`.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_ops_tools: prometheus/promtool missing and not root; run 'apt-get install -y prometheus' as root" \
    "(Debian's package has both): the deploy tests need them" >&2
  exit 1
fi
echo "install_ops_tools: installing Debian's prometheus package (prometheus, promtool) as root" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }
# The package's service (where an init system runs one) is not what the tests use: they start their own,
# bound to loopback, on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
command -v promtool >/dev/null 2>&1 || { echo "install_ops_tools: promtool still missing" >&2; exit 1; }
echo "install_ops_tools: $(prometheus --version 2>&1 | head -1)" >&2
