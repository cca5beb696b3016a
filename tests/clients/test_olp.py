"""libcalsurr_olp, the BLHA2 one-loop provider, loaded with dlopen/dlsym the way Herwig and Whizard load an OLP
(clients/olp/olp_driver.c) against a live `calsurr serve`: the contract file answers every order-file line,
rval[0] equals onnxruntime's mean bit for bit and acc its sigma_tot/|mean|, CALSURR_SERVER overrides the order
file, and what it cannot serve is refused in the contract rather than accepted."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.clients.conftest import closed_port, phase_space, start_server, stop_server
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
N_LEGS = 4
DBL_MAX = sys.float_info.max
PROJECT_VERSION = "0.1.0"  # clients/CMakeLists.txt


def _order_file(path: Path, server: str, *process_lines: str, head: tuple[str, ...] = ()) -> Path:
    lines = [
        "# calsurr as a BLHA2 one-loop provider",
        "InterfaceVersion BLHA2",
        *head,
        "AmplitudeType Tree",
        "CorrectionType QCD",
        "IRregularisation CDR",
        f"Extra CalsurrServer {server}",
        f"Extra CalsurrModel {TINY_MODEL}",
        *process_lines,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _blha_momenta(momenta: np.ndarray) -> np.ndarray:
    """(N, n, 4) -> BLHA's (N, n, 5): (E, px, py, pz, m), massless gluons."""
    return np.concatenate([momenta, np.zeros(momenta.shape[:2] + (1,))], axis=2)


def _drive(client_build, order: Path, momenta: np.ndarray, *flags: str, env=None) -> tuple:
    """Run the dlopen driver on the installed library; (result, rval[0], acc) per point."""
    source, out = order.with_suffix(".momenta"), order.with_suffix(".out")
    np.ascontiguousarray(_blha_momenta(momenta)).tofile(source)
    out.unlink(missing_ok=True)
    command = [str(client_build.program("olp_driver")), str(client_build.library("libcalsurr_olp.so")), str(order)]
    result = subprocess.run(
        [*command, str(source), str(N_LEGS), str(out), *flags], capture_output=True, text=True, timeout=300, env=env
    )
    if not out.exists():
        return result, None, None
    values = np.fromfile(out, dtype=np.float64).reshape(-1, 2)
    return result, values[:, 0], values[:, 1]


def _one_at_a_time(reference, momenta: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime on each point alone, as the server runs one OLP call (batch 1): onnxruntime's GEMM rounds a
    row alone and a row in a batch differently in the last bit, so this is the bit-for-bit reference."""
    rows = [reference(momenta[i : i + 1]) for i in range(len(momenta))]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def _contract(order: Path) -> list[str]:
    return Path(f"{order}.olc").read_text().splitlines()


def test_library_exports_exactly_the_four_blha_entry_points(client_build):
    library = client_build.library("libcalsurr_olp.so")
    listing = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    assert exported == {"OLP_Start", "OLP_Info", "OLP_SetParameter", "OLP_EvalSubProcess2"}, listing


def test_contract_answers_each_line_and_rval_equals_onnxruntime(client_build, served, reference, tmp_path):
    order = _order_file(
        tmp_path / "order.lh", served.address, "21 21 -> 21 21", "CouplingPower QCD 2", "21 21 -> 21 21  # again"
    )
    momenta = phase_space(300, seed=31)
    result, rval, acc = _drive(client_build, order, momenta, "--set", "alpha=0.0072973525693", "--id", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _contract(order) == [
        "# calsurr as a BLHA2 one-loop provider",
        "InterfaceVersion BLHA2 | OK",
        "AmplitudeType Tree | OK",
        "CorrectionType QCD | OK",
        "IRregularisation CDR | OK",
        f"Extra CalsurrServer {served.address} | OK",
        f"Extra CalsurrModel {TINY_MODEL} | OK",
        "21 21 -> 21 21 | 1 1",
        "CouplingPower QCD 2 | OK",
        "21 21 -> 21 21 | 1 2 # again",
    ]
    lines = result.stdout.splitlines()
    assert lines[0] == "OLP_Start ierr 1"
    assert lines[1].startswith(f"OLP_Info name calsurr version {PROJECT_VERSION} message calsurr: ")
    assert "OLP_SetParameter alpha ierr 2" in lines  # ignored: the served processes are pure QCD
    expected = _one_at_a_time(reference, momenta)
    np.testing.assert_array_equal(rval, expected["mean"])  # g_s = 1 while alpha_s is not set
    np.testing.assert_array_equal(acc, expected["sigma_tot"] / np.abs(expected["mean"]))
    assert result.stderr == ""


def test_alpha_s_puts_the_couplings_in(client_build, served, reference, tmp_path):
    order = _order_file(tmp_path / "order.lh", served.address, "21 21 -> 21 21")
    momenta = phase_space(50, seed=32)
    alpha_s = 0.118
    result, rval, acc = _drive(client_build, order, momenta, "--set", f"alpha_s={alpha_s}")
    assert result.returncode == 0, result.stderr
    assert "OLP_SetParameter alpha_s ierr 1" in result.stdout.splitlines()
    expected = _one_at_a_time(reference, momenta)
    g_squared = 4 * math.pi * alpha_s
    np.testing.assert_array_equal(rval, expected["mean"] * (g_squared * g_squared))  # g_s^4 for gg -> gg
    np.testing.assert_array_equal(acc, expected["sigma_tot"] / np.abs(expected["mean"]))

    (tmp_path / "stripped").mkdir()
    stripped = _order_file(
        tmp_path / "stripped" / "order.lh",
        served.address,
        "21 21 -> 21 21",
        head=("OperationMode CouplingsStrippedOff",),
    )
    result, rval, _ = _drive(client_build, stripped, momenta, "--set", f"alpha_s={alpha_s}", "--set", "alpha_s=-1")
    assert result.returncode == 0, result.stderr
    assert "OperationMode CouplingsStrippedOff | OK" in _contract(stripped)
    assert "OLP_SetParameter alpha_s ierr 0" in result.stdout.splitlines()  # a negative alpha_s is an error
    np.testing.assert_array_equal(rval, expected["mean"])


def test_many_threads_each_get_their_own_point(client_build, served, reference, tmp_path):
    """One point per call from 16 threads at once: the client's coalescer merges them, each gets its own row."""
    order = _order_file(tmp_path / "order.lh", served.address, "21 21 -> 21 21")
    momenta = phase_space(2_000, seed=33)
    result, rval, acc = _drive(client_build, order, momenta, "--threads", "16")
    assert result.returncode == 0, result.stderr
    assert "OLP_EvalSubProcess2 points 2000 threads 16" in result.stdout
    # Merged requests run in batches of whatever size the threads made, and onnxruntime's last bit depends on a
    # row's place in its batch (_one_at_a_time): equal to 1e-14, while neighbouring points differ by far more,
    # so each thread got its own row.
    expected = reference(momenta)
    np.testing.assert_allclose(rval, expected["mean"], rtol=1e-14, atol=0)
    np.testing.assert_allclose(acc, expected["sigma_tot"] / np.abs(expected["mean"]), rtol=1e-14, atol=0)
    assert np.min(np.abs(np.diff(expected["mean"])) / expected["mean"][1:]) > 1e-12


def test_unsupported_amplitude_types_are_refused_in_the_contract(client_build, served, tmp_path):
    order = tmp_path / "loop.lh"
    order.write_text(
        "InterfaceVersion BLHA2\nAmplitudeType Loop\nCorrectionType QCD\n"
        f"Extra CalsurrServer {served.address}\nExtra CalsurrModel {TINY_MODEL}\n21 21 -> 21 21\n"
        "AmplitudeType ccTree\nAmplitudeType scTree\n21 21 -> 21 21\nAmplitudeType Tree\n21 21 -> 21 21\n"
    )
    result, rval, _ = _drive(client_build, order, phase_space(2, seed=34))
    assert result.returncode == 2 and result.stdout.splitlines() == ["OLP_Start ierr 0"], result.stdout
    assert rval is None
    assert _contract(order) == [
        "InterfaceVersion BLHA2 | OK",
        "AmplitudeType Loop | Error: unsupported",
        "CorrectionType QCD | OK",
        f"Extra CalsurrServer {served.address} | OK",
        f"Extra CalsurrModel {TINY_MODEL} | OK",
        "21 21 -> 21 21 | Error: unsupported AmplitudeType Loop",
        "AmplitudeType ccTree | Error: unsupported",
        "AmplitudeType scTree | Error: unsupported",
        "21 21 -> 21 21 | Error: unsupported AmplitudeType scTree",
        "AmplitudeType Tree | OK",
        "21 21 -> 21 21 | 1 1",
    ]
    assert "see its '| Error' lines" in result.stderr


def test_processes_that_do_not_match_the_model_get_an_error_line(client_build, served, tmp_path):
    order = _order_file(
        tmp_path / "order.lh",
        served.address,
        "21 21 -> 21 21 21",
        "1 -1 -> 21 21",
        "CouplingPower QCD 3",
        "21 21 -> 21 21",
        "CouplingPower QCD 2",
        "Extra CalsurrModel gg_qq",
        "21 21 -> 21 21",
    )
    result, _, _ = _drive(client_build, order, phase_space(2, seed=35))
    assert result.returncode == 2 and "OLP_Start ierr 0" in result.stdout
    about = f"model {TINY_MODEL} (process gg_gg, 4 particles)"
    answers = _contract(order)[7:]
    assert answers[:5] == [
        f"21 21 -> 21 21 21 | Error: the process has 5 legs, {about}",
        f"1 -1 -> 21 21 | Error: the process is not 21 21 -> 21 21 of {about}",
        "CouplingPower QCD 3 | OK",
        "21 21 -> 21 21 | Error: CouplingPower QCD 3, a tree of 4 gluons has 2",
        "CouplingPower QCD 2 | OK",
    ]
    assert answers[5] == "Extra CalsurrModel gg_qq | OK"
    assert answers[6].startswith(f"21 21 -> 21 21 | Error: model gg_qq on {served.address}: NOT_FOUND (5): ")
    assert "gg_qq" in answers[6].split("NOT_FOUND (5): ", 1)[1]


def test_calsurr_server_overrides_the_order_file(client_build, served, reference, tmp_path):
    nowhere = f"127.0.0.1:{closed_port()}"
    order = _order_file(tmp_path / "order.lh", nowhere, "21 21 -> 21 21")
    momenta = phase_space(20, seed=36)
    result, rval, _ = _drive(client_build, order, momenta, env={**os.environ, "CALSURR_SERVER": served.address})
    assert result.returncode == 0, result.stderr
    assert _contract(order)[-1] == "21 21 -> 21 21 | 1 1"
    np.testing.assert_array_equal(rval, _one_at_a_time(reference, momenta)["mean"])

    environment = {k: v for k, v in os.environ.items() if k != "CALSURR_SERVER"}
    result, _, _ = _drive(client_build, order, momenta, env=environment)  # the order file's server is down
    assert result.returncode == 2 and "OLP_Start ierr 0" in result.stdout
    assert _contract(order)[-1].startswith(f"21 21 -> 21 21 | Error: model {TINY_MODEL} on {nowhere}: UNAVAILABLE (14)")


def test_evaluation_errors_give_nan_and_a_huge_acc_never_a_crash(client_build, served, tmp_path):
    order = _order_file(tmp_path / "order.lh", served.address, "21 21 -> 21 21")
    momenta = phase_space(3, seed=37)
    result, rval, acc = _drive(client_build, order, momenta, "--id", "9")
    assert result.returncode == 0, result.stderr
    assert np.isnan(rval).all() and (acc == DBL_MAX).all()
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all("OLP_EvalSubProcess2(id 9): no such subprocess" in line for line in lines), lines

    momenta[1, 2, 3] = np.nan
    result, rval, acc = _drive(client_build, order, momenta)
    assert result.returncode == 0, result.stderr
    assert np.isfinite(rval[[0, 2]]).all() and np.isnan(rval[1]) and acc[1] == DBL_MAX
    assert result.stderr.count("\n") == 1 and "INVALID_ARGUMENT (3)" in result.stderr, result.stderr


def test_a_server_that_goes_away_after_olp_start(client_build, tiny_repository, tmp_path):
    """OLP_Start against a live server, which then stops: each evaluation fails alone, after the retries."""
    server = start_server(tiny_repository, tmp_path / "serve.log")
    try:
        order = _order_file(tmp_path / "order.lh", server.address, "21 21 -> 21 21")
        source, out, go = tmp_path / "p.bin", tmp_path / "out.bin", tmp_path / "go"
        np.ascontiguousarray(_blha_momenta(phase_space(2, seed=38))).tofile(source)
        command = [str(client_build.program("olp_driver")), str(client_build.library("libcalsurr_olp.so"))]
        driver = subprocess.Popen(
            [*command, str(order), str(source), str(N_LEGS), str(out), "--wait-for", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert driver.stdout.readline().strip() == "OLP_Start ierr 1"
    finally:
        stop_server(server)
    go.touch()
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 0, stderr
    values = np.fromfile(out, dtype=np.float64).reshape(-1, 2)
    assert np.isnan(values[:, 0]).all() and (values[:, 1] == DBL_MAX).all()
    assert stderr.count("UNAVAILABLE (14)") == 2, stderr


def test_order_file_unit_tests_ran_under_ctest(client_build):
    failed = client_build.ctest["failed"]
    assert "olp_order_file" not in failed and "olp_dlopen_refuses_loops" not in failed, client_build.ctest
