"""Disk size of the serving install: a fresh venv with `pip install .` (no extras, so no torch), measured.

    .venv/bin/python bench/install_size.py          # prints a table, writes bench/results/install/results.json

The serving image and a bare `pip install calsurr` get exactly this; the largest packages are listed, so a
dependency that grows the install shows up by name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 400.0  # issue 5: the base install (no torch) at most 400 MB on disk
TOP = 12


def _size_mb(path: Path) -> float:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink()) / 2**20


def _site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def measure(venv: Path) -> dict:
    """Create `venv`, install the project without extras, and measure it."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)]
    subprocess.run(pip, check=True)
    site = _site_packages(venv)
    packages = {d.name: _size_mb(d) for d in site.iterdir() if d.is_dir() and not d.name.endswith(".dist-info")}
    has_torch = (site / "torch").exists()
    # pip itself and setuptools come with every venv; they are not the install's.
    tooling = sum(size for name, size in packages.items() if name in {"pip", "setuptools", "_distutils_hack"})
    total = _size_mb(venv)
    return {
        "venv_mb": round(total, 1),
        "without_pip_mb": round(total - tooling, 1),
        "site_packages_mb": round(_size_mb(site), 1),
        "torch_installed": has_torch,
        "largest": sorted(((n, round(s, 1)) for n, s in packages.items()), key=lambda p: -p[1])[:TOP],
        "target_mb": TARGET_MB,
        "met": (total - tooling) <= TARGET_MB and not has_torch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "install")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="calsurr-install-") as tmp:
        result = measure(Path(tmp) / "venv")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"base install (pip install ., no extras): {result['without_pip_mb']:.0f} MB without pip/setuptools "
        f"({result['venv_mb']:.0f} MB venv); torch installed: {result['torch_installed']}; "
        f"target <= {TARGET_MB:.0f} MB: {'met' if result['met'] else 'MISSED'}"
    )
    print("| package | MB |\n|---|---:|")
    for name, size in result["largest"]:
        print(f"| {name} | {size:.1f} |")
    print(f"wrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
