#!/usr/bin/env bash
# Install Triton's load generator, perf_analyzer (C++), as .venv/bin/perf_analyzer; the tests and
# bench/serving.py drive calsurr with it. Idempotent. Needs .venv (scripts/setup.sh) and, once, root for apt.
#
# perf_analyzer ships inside the tritonclient Linux wheel; 2.51.0 is the newest whose binary runs on this glibc.
# It links libb64.so.0d (Debian's libb64-0d) and libcudart.so.12 (PyPI's nvidia-cuda-runtime-cu12; no GPU is
# needed to run it). Both wheels are only unpacked here, never installed into the venv: tritonclient 2.73
# stays the venv's Python client.
set -euo pipefail
cd "$(dirname "$0")/.."
TRITONCLIENT_VERSION=2.51.0
CUDA_RUNTIME_VERSION=12.9.79
PREFIX=.venv/opt/perf_analyzer
WRAPPER=.venv/bin/perf_analyzer

if [ -x "$WRAPPER" ] && "$WRAPPER" --version >/dev/null 2>&1; then
  exit 0
fi
[ -x .venv/bin/python ] || { echo "install_perf_analyzer: run scripts/setup.sh first (no .venv)" >&2; exit 1; }

if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
  echo "install_perf_analyzer: installing Debian's libb64-0d (perf_analyzer links libb64.so.0d)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_perf_analyzer: not root; run 'apt-get install -y libb64-0d' as root, then this again" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq libb64-0d >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libb64-0d; }
fi

echo "install_perf_analyzer: unpacking perf_analyzer from tritonclient $TRITONCLIENT_VERSION and libcudart.so.12" \
  "from nvidia-cuda-runtime-cu12 $CUDA_RUNTIME_VERSION into $PREFIX" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps -d "$work" \
  "tritonclient==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDA_RUNTIME_VERSION"
mkdir -p "$PREFIX/bin" "$PREFIX/lib"
.venv/bin/python - "$work" "$PREFIX" <<'PY'
import sys, zipfile
from pathlib import Path

work, prefix = Path(sys.argv[1]), Path(sys.argv[2])
wanted = {"data/bin/perf_analyzer": prefix / "bin" / "perf_analyzer", "cuda_runtime/lib/libcudart.so.12": prefix / "lib" / "libcudart.so.12"}
for wheel in work.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            for suffix, target in wanted.items():
                if name.endswith(suffix):
                    target.write_bytes(archive.read(name))
                    target.chmod(0o755)
missing = [str(t) for t in wanted.values() if not t.exists()]
if missing:
    sys.exit(f"install_perf_analyzer: not found in the wheels: {missing}")
PY
cat > "$WRAPPER" <<SH
#!/usr/bin/env bash
# Triton's perf_analyzer (tritonclient $TRITONCLIENT_VERSION), with the libcudart.so.12 it links; see scripts/install_perf_analyzer.sh.
here="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")/.." && pwd)/opt/perf_analyzer"
LD_LIBRARY_PATH="\$here/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/bin/perf_analyzer" "\$@"
SH
chmod +x "$WRAPPER"
"$WRAPPER" --version >/dev/null 2>&1 || { echo "install_perf_analyzer: $WRAPPER does not run" >&2; exit 1; }
echo "install_perf_analyzer: $WRAPPER ready" >&2
