"""The distribution owns one import name: its wheel installs `calsurr` (with calsurr.service and
calsurr.training inside) and nothing else at the top level, so no other project's `service` or `training`
module can shadow it or be shadowed by it."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BUILD_SECONDS = 300
SOURCES = ("pyproject.toml", "README.md", "calsurr", "service", "training")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources: setuptools leaves a build/ folder beside them, whose stale files
    would otherwise end up in the next wheel built from the tree."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w"]
    built = subprocess.run(
        [*pip_wheel, str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("calsurr-*.whl")
    return path


def test_the_wheel_holds_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(archive.read(record).decode().splitlines()))
    top = {row[0].split("/", 1)[0] for row in rows if not row[0].split("/", 1)[0].endswith(".dist-info")}
    assert top == {"calsurr"}, top
    for module in (
        "calsurr/service/server.py",
        "calsurr/service/protocol/grpc_service_pb2.py",
        "calsurr/training/export.py",
        "calsurr/training/physics/phase_space.py",
        "calsurr/cli.py",
    ):
        assert module in names, f"{module} missing from the wheel"


def test_installed_only_calsurr_is_importable(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # find_spec imports the parents only (calsurr/__init__ needs nothing installed), so no dependency is needed.
    probe = (
        "import importlib.util as u, json\n"
        "names = ['calsurr', 'calsurr.service', 'calsurr.service.protocol', 'calsurr.training',\n"
        "         'service', 'training']\n"
        "print(json.dumps({n: u.find_spec(n) is not None for n in names}))\n"
    )
    found = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == (
        '{"calsurr": true, "calsurr.service": true, "calsurr.service.protocol": true, "calsurr.training": true, '
        '"service": false, "training": false}'
    )


def test_no_module_imports_the_folders_by_their_tree_names():
    """Run from the source tree, `import service` would still work (the tree is on sys.path) and hide a
    module that breaks once installed; so the sources themselves are read."""
    pattern = re.compile(r"^\s*(from|import)\s+(service|training)\b", re.M)
    sources = [
        p
        for folder in ("calsurr", "service", "training", "tests", "bench", "scripts")
        for p in (ROOT / folder).rglob("*.py")
    ]
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in sources for m in pattern.finditer(p.read_text())
    ]
    assert not offenders, offenders
