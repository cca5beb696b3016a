"""The Fortran module `calsurr_client` and the MadGraph-style SMATRIX_VEC example against a live `calsurr serve`:
values equal to onnxruntime in-process bit for bit, the failures a caller meets (wrong model, wrong nexternal,
NaN, server down) as status codes with messages and never a crash, and the installed module usable from a
makefile build (pkg-config) and a CMake one (find_package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.clients.conftest import BUILD_JOBS, CLIENTS, closed_port, phase_space
from tests.conftest import TINY_MODEL, missing_tool

pytestmark = pytest.mark.slow
GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_UNAVAILABLE = 3, 5, 14
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")


@pytest.fixture(autouse=True)
def fortran_compiler() -> None:
    """clients/CMakeLists.txt builds fortran/ only with a Fortran compiler: without one these tests fail."""
    if shutil.which("gfortran") is None:
        missing_tool(
            "Fortran compiler gfortran", "install the Debian package gfortran (scripts/install_client_toolchain.sh)"
        )


def _smatrix(program, momenta, workdir, *args, env=None) -> tuple[subprocess.CompletedProcess, np.ndarray | None]:
    """Run the example on momenta (N, 4, 4); its output is (ANS, mean, sigma_stat, sigma_syst, sigma_tot) x N."""
    source, out = workdir / "momenta.bin", workdir / "smatrix.bin"
    np.ascontiguousarray(momenta, dtype=np.float64).tofile(source)
    out.unlink(missing_ok=True)
    result = subprocess.run(
        [str(program), str(source), str(out), *args], capture_output=True, text=True, timeout=300, env=env
    )
    values = np.fromfile(out, dtype=np.float64).reshape(5, -1) if out.exists() else None
    return result, values


def _assert_equals_reference(values: np.ndarray, expected: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(values[0], expected["mean"], err_msg="SMATRIX_VEC's ANS")
    for row, name in enumerate(OUTPUTS, start=1):
        np.testing.assert_array_equal(values[row], expected[name], err_msg=name)


def test_smatrix_vec_equals_onnxruntime_bit_for_bit(client_build, served, reference, tmp_path):
    """10 000 events in one SMATRIX_VEC call: three requests of the server's 4096 rows, no copy of p.

    onnxruntime's GEMM works through a batch in small blocks of rows and rounds a row left alone at the end
    differently in the last bit; the client's chunks (4096, 4096, 1808 rows) start and end on block boundaries,
    so the reference is one batch of all the events."""
    momenta = phase_space(10_000, seed=21)
    result, values = _smatrix(client_build.program("smatrix_example"), momenta, tmp_path, served.address, TINY_MODEL)
    assert result.returncode == 0, result.stderr
    assert "10000 events" in result.stdout
    _assert_equals_reference(values, reference(momenta))
    assert np.all(values[1] > 0) and np.all(values[4] > 0)


def test_smatrix_vec_takes_server_and_model_from_the_environment(client_build, served, reference, tmp_path):
    momenta = phase_space(37, seed=22)
    env = {**os.environ, "CALSURR_SERVER": served.address, "CALSURR_MODEL": TINY_MODEL}
    result, values = _smatrix(client_build.program("smatrix_example"), momenta, tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    _assert_equals_reference(values, reference(momenta))


def test_smatrix_vec_reports_a_wrong_model_and_exits_with_its_code(client_build, served, tmp_path):
    result, values = _smatrix(
        client_build.program("smatrix_example"), phase_space(4, seed=23), tmp_path, served.address, "gg_qq"
    )
    assert result.returncode == GRPC_NOT_FOUND and values is None
    assert "SMATRIX_VEC: calsurr error 5: " in result.stderr and "gg_qq" in result.stderr


def _error_cases(client_build, served, tmp_path) -> tuple[dict[str, tuple[int, str]], dict]:
    """Run fortran_errors: one `<case> <ierr> <message>` line per case, and the card it fetched."""
    card = tmp_path / "card.json"
    down = f"127.0.0.1:{closed_port()}"
    result = subprocess.run(
        [str(client_build.program("fortran_errors")), served.address, TINY_MODEL, down, str(card)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"fortran_errors crashed ({result.returncode}): {result.stdout}{result.stderr}"
    cases = {}
    for line in result.stdout.splitlines():
        name, code, *message = line.split(" ", 2)
        cases[name] = (int(code) if name != "server_down_seconds" else float(code), " ".join(message).strip())
    return cases, json.loads(card.read_text())


def test_fortran_error_cases_give_the_status_and_a_message(client_build, served, tmp_path):
    cases, card = _error_cases(client_build, served, tmp_path)
    assert cases["connect"] == (0, "") and cases["predict"] == (0, "")
    code, message = cases["wrong_model"]
    assert code == GRPC_NOT_FOUND and "no_such_model" in message, cases["wrong_model"]
    code, message = cases["wrong_nexternal"]
    assert code == GRPC_INVALID_ARGUMENT and "4" in message and "5" in message, cases["wrong_nexternal"]
    code, message = cases["nan_input"]
    assert code == GRPC_INVALID_ARGUMENT and message, cases["nan_input"]
    assert cases["zero_events"][0] == 0
    assert cases["particles"][0] == 0 and cases["particles"][1] == "4"
    assert cases["card_wrong_model"][0] == GRPC_NOT_FOUND and cases["card_wrong_model"][1]
    assert cases["card"] == (0, "")
    assert card["process"] == "gg_gg" and card["name"] == TINY_MODEL
    code, message = cases["server_down"]
    assert code == GRPC_UNAVAILABLE and message, cases["server_down"]
    # three attempts with waits of 0.2 and 0.4 s (+-20 % jitter) in between, well inside the 20 s deadline
    assert 0.45 < cases["server_down_seconds"][0] < 15, cases["server_down_seconds"]


def test_fortran_module_unit_test_ran_under_ctest(client_build):
    assert "fortran_module" not in client_build.ctest["failed"], client_build.ctest
    assert (client_build.build_dir / "bin" / "test_fortran_module").exists()


def test_install_holds_the_module_library_and_package_files(client_build):
    prefix = client_build.prefix
    lib = next(p for p in (prefix / "lib", prefix / "lib64") if p.exists())
    assert (prefix / "include" / "calsurr_client.mod").is_file()
    assert (lib / "libcalsurr_fortran.so").exists()
    assert (lib / "pkgconfig" / "calsurr_fortran.pc").is_file()
    assert (prefix / "share" / "calsurr" / "fortran" / "calsurr_client.f90").is_file()
    assert (prefix / "share" / "calsurr" / "fortran" / "examples" / "smatrix_example.f90").is_file()
    targets = (lib / "cmake" / "calsurr_client" / "calsurr_clientTargets.cmake").read_text()
    assert "calsurr::fortran" in targets


def test_a_makefile_build_links_the_installed_module(client_build, served, reference, tmp_path):
    """What an MG5_aMC or POWHEG makefile does: gfortran with the flags pkg-config gives, nothing else."""
    pc_path = next(client_build.prefix.glob("lib*/pkgconfig"))
    env = {**os.environ, "PKG_CONFIG_PATH": str(pc_path)}
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "calsurr_fortran"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    program = tmp_path / "smatrix_example"
    source = client_build.prefix / "share" / "calsurr" / "fortran" / "examples" / "smatrix_example.f90"
    subprocess.run(["gfortran", "-O2", "-o", str(program), str(source), *flags], check=True, cwd=tmp_path, timeout=120)
    momenta = phase_space(16, seed=24)
    result, values = _smatrix(program, momenta, tmp_path, served.address, TINY_MODEL)
    assert result.returncode == 0, result.stderr
    _assert_equals_reference(values, reference(momenta))


def test_a_cmake_build_finds_calsurr_fortran(client_build, tmp_path):
    build = tmp_path / "consumer"
    subprocess.run(
        ["cmake", "-S", str(CLIENTS / "fortran" / "examples"), "-B", str(build)]
        + [f"-DCMAKE_PREFIX_PATH={client_build.prefix}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    subprocess.run(
        ["cmake", "--build", str(build), f"-j{BUILD_JOBS}"], check=True, capture_output=True, text=True, timeout=300
    )
    result = subprocess.run([str(build / "smatrix_example")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: smatrix_example" in result.stderr
