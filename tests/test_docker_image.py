"""The serving image, kept honest without a Docker engine: the Dockerfile's own lines are replayed in a plain
venv. Its COPY lines build the context, its `pip install .` installs it, its ENV, ENTRYPOINT and HEALTHCHECK
start `calsurr serve` and probe it through gRPC health checking; torch must not be installed.

Only the ports, the repository and the bind address differ from the image: free loopback ports instead of
8001/8002, a tiny exported model instead of the mounted /models, 127.0.0.1 instead of 0.0.0.0.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calsurr.service.client import InferenceClient
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_SECONDS = 300  # pip against the local package index takes ~25 s; the limit only stops a hung install
START_SECONDS = 60


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list), f"expected the exec form (a JSON list), got {arguments}"
    return words


def _image(text: str) -> dict:
    """What the image does, read from the Dockerfile."""
    image: dict = {"copies": [], "env": {}, "run": [], "expose": [], "workdirs": []}
    for instruction, arguments in _instructions(text):
        if instruction == "WORKDIR":
            image["workdirs"].append(arguments.strip())
        elif instruction == "COPY":
            *sources, destination = shlex.split(arguments)
            image["copies"].append((sources, destination))
        elif instruction == "ENV":
            image["env"].update(word.split("=", 1) for word in shlex.split(arguments))
        elif instruction == "RUN":
            image["run"].append(arguments)
        elif instruction == "EXPOSE":
            image["expose"] += [int(port) for port in arguments.split()]
        elif instruction == "ENTRYPOINT":
            image["entrypoint"] = _exec_form(arguments)
        elif instruction == "HEALTHCHECK":
            image["healthcheck"] = _exec_form(arguments.split(" CMD ", 1)[1])
    return image


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _build_context(image: dict, workdir: Path) -> None:
    """The COPY lines, from the repository root into the image's WORKDIR (caches left out, as .dockerignore)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, destination in image["copies"]:
        for source in sources:
            target = workdir / destination / Path(source).name if destination.endswith("/") else workdir / destination
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=ignore)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)


def test_the_image_installs_without_torch_and_its_serve_command_starts(tiny_repository, tiny_run, tmp_path):
    image = _image(DOCKERFILE.read_text())
    assert image["entrypoint"] == ["calsurr", "serve"]
    assert image["healthcheck"][:3] == ["python", "-m", "calsurr.service.healthcheck"]
    image_port = int(image["env"]["CALSURR_PORT"])
    assert image["healthcheck"][3] == f"127.0.0.1:{image_port}" and image_port in image["expose"]
    install = [command for command in image["run"] if "pip install ." in command]
    assert install, f"the Dockerfile no longer runs `pip install .`: {image['run']}"
    assert "[" not in install[0].split("pip install .", 1)[1].split("&&")[0], "the image installs an extra"

    # The image builds in one folder and runs in another, where no source tree shadows the installed package.
    assert len(image["workdirs"]) >= 2 and image["workdirs"][-1] != image["workdirs"][0], image["workdirs"]
    workdir = tmp_path / "build-context"
    _build_context(image, workdir)
    rundir = tmp_path / "run"
    rundir.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, calsurr = venv / "bin" / "python", venv / "bin" / "calsurr"
    # The image's ENV, less PIP_NO_CACHE_DIR (a cache only makes a rerun faster), over this machine's pip setup.
    image_env = {k: v for k, v in image["env"].items() if k != "PIP_NO_CACHE_DIR"}
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "."],
        cwd=workdir,
        env={**os.environ, **image_env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=INSTALL_SECONDS,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    probe = "import importlib.util; print(importlib.util.find_spec('torch') is None)"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.strip() == "True"
    assert calsurr.exists()

    port, metrics_port = _free_port(), _free_port()
    serve_env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        **image["env"],
        "CALSURR_REPO": str(tiny_repository),
        "CALSURR_HOST": "127.0.0.1",
        "CALSURR_PORT": str(port),
        "CALSURR_METRICS_PORT": str(metrics_port),
    }
    healthcheck = [str(python), *image["healthcheck"][1:3], f"127.0.0.1:{port}"]
    log = tmp_path / "serve.log"
    with log.open("w") as output:  # a file, not a pipe: nobody reads a pipe while the server runs
        server = subprocess.Popen(
            [str(calsurr), *image["entrypoint"][1:]], cwd=rundir, env=serve_env, stdout=output, stderr=output
        )
    try:
        give_up = time.monotonic() + START_SECONDS
        while subprocess.run(healthcheck, cwd=rundir, env=serve_env, timeout=30).returncode != 0:
            assert server.poll() is None, f"`calsurr serve` exited {server.returncode}: {log.read_text()}"
            assert time.monotonic() < give_up, "the image's health check never passed"
            time.sleep(0.25)
        momenta = np.ascontiguousarray(tiny_run.test.momenta[:8])
        with InferenceClient(f"127.0.0.1:{port}") as client:
            prediction = client.predict(TINY_MODEL, momenta)
        assert prediction.model_version == "1" and (prediction.sigma_tot > 0).all()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
