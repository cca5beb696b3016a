"""The clients build, pass their ctest unit tests and install a package a generator's build can use: a CMake
project with find_package(calsurr_client), and a plain compile with pkg-config."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.clients.conftest import BUILD_JOBS, CLIENTS

pytestmark = pytest.mark.slow


def test_ctest_unit_tests_pass(client_build):
    ctest = client_build.ctest
    assert ctest["returncode"] == 0 and not ctest["failed"], (
        f"ctest: {ctest['summary']}; failed: {ctest['failed']} (log: {client_build.root / 'build.log'})"
    )
    assert ctest["total"] >= 27, ctest


def test_install_layout(client_build):
    prefix = client_build.prefix
    lib = next(p for p in (prefix / "lib", prefix / "lib64") if p.exists())
    assert (prefix / "include" / "calsurr" / "calsurr.h").is_file()
    assert (prefix / "include" / "calsurr" / "client.hpp").is_file()
    assert (lib / "libcalsurr_client.so").exists()
    for name in ("calsurr_clientConfig.cmake", "calsurr_clientConfigVersion.cmake", "calsurr_clientTargets.cmake"):
        assert (lib / "cmake" / "calsurr_client" / name).is_file(), name
    assert (lib / "pkgconfig" / "calsurr_client.pc").is_file()
    # Only calsurr's API leaves the library: no generated protocol class, no gRPC symbol of ours.
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", "-C", str(lib / "libcalsurr_client.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "calsurr_predict" in symbols and "calsurr::Client::predict" in symbols
    assert "inference::" not in symbols, "the generated protocol classes must stay hidden"


def test_find_package_consumer_builds_and_runs(client_build, served, tmp_path):
    """The examples as a project of their own, against the installed package only (a generator's build)."""
    build = tmp_path / "consumer"
    subprocess.run(
        ["cmake", "-S", str(CLIENTS / "examples"), "-B", str(build), f"-DCMAKE_PREFIX_PATH={client_build.prefix}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    subprocess.run(
        ["cmake", "--build", str(build), f"-j{BUILD_JOBS}"], check=True, capture_output=True, text=True, timeout=600
    )
    for program in ("calsurr_predict", "calsurr_predict_c"):
        result = subprocess.run(
            [str(build / program), served.address, "gg_gg", "8"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("|M|^2 =") == 8, result.stdout


def test_pkg_config_consumer_compiles_and_runs(client_build, served, tmp_path):
    pc_path = next(client_build.prefix.glob("lib*/pkgconfig"))
    env = {**os.environ, "PKG_CONFIG_PATH": str(pc_path)}
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "calsurr_client"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    program = tmp_path / "predict_c"
    subprocess.run(
        ["cc", "-o", str(program), str(CLIENTS / "examples" / "predict.c"), *flags, "-lm"], check=True, timeout=120
    )
    result = subprocess.run([str(program), served.address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("|M|^2 =") == 8
