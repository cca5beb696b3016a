"""The build of clients/ (CMake), once per source hash, for the tests and the benchmarks alike.

    .venv/bin/python bench/client_build.py         # build (or reuse) and print the install prefix

`build_clients()` configures, builds with -j2, runs ctest and installs clients/ into build/clients/<hash>/
(`build/`, `prefix/`, `build.log`, `complete.json`); the hash covers every file under clients/ and protos/ and
the versions of the tools that compile them, so a build is reused until one of them changes. A lock file per
hash lets concurrent runs (two pytest sessions, a benchmark beside them) wait for one build instead of racing;
older builds beyond the newest KEEP_BUILDS are pruned. tests/clients/conftest.py turns a BuildFailed into a
test failure, bench/clients.py into a row marked unavailable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "clients"
PROTOS = ROOT / "protos"
BUILDS = ROOT / "build" / "clients"
DEBIAN_PACKAGES = "cmake g++ libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler gfortran pkg-config"
BUILD_JOBS = 2  # CI and the shared development hosts have two cores
KEEP_BUILDS = 3  # older builds of other source hashes are removed
STEP_TIMEOUT_SECONDS = 1800
GRPC_CONFIGS = (
    "/usr/lib/*/cmake/grpc/gRPCConfig.cmake",
    "/usr/lib/cmake/grpc/gRPCConfig.cmake",
    "/usr/local/lib*/cmake/grpc/gRPCConfig.cmake",
)


class BuildFailed(RuntimeError):
    """A step of the build failed; the message names it and ends with the log's tail."""


def missing_toolchain() -> list[str]:
    """What the C++ build needs and this host lacks (empty when all is there)."""
    missing = [
        tool for tool in ("cmake", "c++", "protoc", "grpc_cpp_plugin", "pkg-config") if shutil.which(tool) is None
    ]
    if not any(Path("/").glob(pattern.lstrip("/")) for pattern in GRPC_CONFIGS):
        missing.append("gRPCConfig.cmake (libgrpc++-dev)")
    if not Path("/usr/include/google/protobuf/message.h").exists() and not list(
        Path("/usr/local/include").glob("google/protobuf/message.h")
    ):
        missing.append("protobuf headers (libprotobuf-dev)")
    return missing


def _tool_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return f"{command[0]}: absent"
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).strip().splitlines()[0] if result.stdout + result.stderr else ""


def tree_digest(digest, folders: tuple[Path, ...]) -> None:
    """Every file under `folders` (path and bytes) into `digest`."""
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")


def source_hash() -> str:
    """A hash of every file under clients/ and protos/ and of the tools that compile them."""
    digest = hashlib.sha256()
    tree_digest(digest, (CLIENTS, PROTOS))
    for command in (["c++", "--version"], ["cmake", "--version"], ["protoc", "--version"], ["gfortran", "--version"]):
        digest.update(_tool_version(command).encode() + b"\0")
    for pattern in GRPC_CONFIGS:
        for config in sorted(Path("/").glob(pattern.lstrip("/"))):
            version = config.with_name("gRPCConfigVersion.cmake")
            digest.update(version.read_bytes() if version.exists() else str(config).encode())
    return digest.hexdigest()[:16]


@dataclass
class ClientBuild:
    """One build of clients/: its folders, what ctest said and how long each step took (seconds)."""

    root: Path
    build_dir: Path
    prefix: Path
    ctest: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    reused: bool = False

    def program(self, name: str) -> Path:
        """A program built in this build (build/bin/, else anywhere in the build tree)."""
        direct = self.build_dir / "bin" / name
        if direct.is_file():
            return direct
        found = [p for p in self.build_dir.rglob(name) if p.is_file() and os.access(p, os.X_OK)]
        if not found:
            raise FileNotFoundError(f"no program {name} in {self.build_dir}")
        return found[0]

    def library(self, name: str) -> Path:
        """A shared library of this build by file name ("libcalsurr_olp.so"), from the install if there."""
        for folder in (self.prefix / "lib", self.build_dir / "lib"):
            if (folder / name).exists():
                return folder / name
        found = [p for p in self.build_dir.rglob(name) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"no library {name} in {self.build_dir} or {self.prefix}")
        return found[0]


def run_step(name: str, command: list[str], log: Path, timings: dict, check: bool = True):
    """Run one build step with its output appended to `log`; its seconds go to `timings[name]`."""
    start = time.monotonic()
    with log.open("a") as output:
        output.write(f"\n$ {' '.join(command)}\n")
        output.flush()
        result = subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, timeout=STEP_TIMEOUT_SECONDS
        )
    timings[name] = round(time.monotonic() - start, 2)
    if check and result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        raise BuildFailed(f"clients: {name} failed ({' '.join(command)}); log {log}:\n{tail}")
    return result


def _ctest_outcome(log_text: str, returncode: int) -> dict:
    summary = re.search(r"(\d+)% tests passed, (\d+) tests? failed out of (\d+)", log_text)
    failed = re.findall(r"^\s*\d+ - (\S+) \(", log_text.split("The following tests FAILED:")[-1], re.M)
    return {
        "returncode": returncode,
        "summary": summary.group(0) if summary else "",
        "total": int(summary.group(3)) if summary else 0,
        "failed": failed if "The following tests FAILED:" in log_text else [],
    }


def _prune(keep: Path) -> None:
    """Remove all but the newest builds of other hashes, skipping any another process holds."""
    builds = sorted((p for p in BUILDS.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    for old in builds[: max(0, len(builds) - (KEEP_BUILDS - 1))]:
        lock_path = old.with_suffix(".lock")
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(old, ignore_errors=True)
        lock_path.unlink(missing_ok=True)


def build_clients() -> ClientBuild:
    """Configure, build, test and install clients/ into build/clients/<hash>/, or reuse that build."""
    digest = source_hash()
    root = BUILDS / digest
    BUILDS.mkdir(parents=True, exist_ok=True)
    build = ClientBuild(root=root, build_dir=root / "build", prefix=root / "prefix")
    record = root / "complete.json"
    with (BUILDS / f"{digest}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same sources: wait for it, then reuse
        if record.exists():
            done = json.loads(record.read_text())
            build.ctest, build.seconds, build.reused = done["ctest"], done["seconds"], True
            os.utime(root)
            return build
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        log = root / "build.log"
        timings: dict[str, float] = {}
        run_step(
            "configure",
            ["cmake", "-S", str(CLIENTS), "-B", str(build.build_dir), "-DCMAKE_BUILD_TYPE=Release"]
            + [f"-DCMAKE_INSTALL_PREFIX={build.prefix}", "-DCALSURR_CLIENT_TESTS=ON", "-DCALSURR_CLIENT_EXAMPLES=ON"],
            log,
            timings,
        )
        run_step("build", ["cmake", "--build", str(build.build_dir), f"-j{BUILD_JOBS}"], log, timings)
        start = len(log.read_text())
        result = run_step(
            "ctest",
            ["ctest", "--test-dir", str(build.build_dir), "--output-on-failure", f"-j{BUILD_JOBS}", "--timeout", "120"],
            log,
            timings,
            check=False,
        )
        build.ctest = _ctest_outcome(log.read_text()[start:], result.returncode)
        run_step("install", ["cmake", "--install", str(build.build_dir)], log, timings)
        build.seconds = timings
        record.write_text(json.dumps({"hash": digest, "ctest": build.ctest, "seconds": timings}, indent=2))
    _prune(root)
    return build


def main() -> int:
    missing = missing_toolchain()
    if missing:
        print(f"C++ client toolchain missing ({', '.join(missing)}): install {DEBIAN_PACKAGES}", file=sys.stderr)
        return 1
    try:
        build = build_clients()
    except BuildFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    how = "reused" if build.reused else f"built in {sum(build.seconds.values()):.0f} s"
    print(f"{build.prefix} ({how}; ctest: {build.ctest.get('summary', '?')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
