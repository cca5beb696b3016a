"""`calsurr events` refuses a user's mistake in one line with exit 2 before any work (exit 1 for a server
that is not there), and refuses a phase-space domain the model was not trained on."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from calsurr.cli import app
from tests.conftest import TINY_MODEL


def _invoke(*args):
    return CliRunner().invoke(app, ["events", *[str(a) for a in args]])


def _error(result, *words, code=2):
    assert result.exit_code == code, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    import calsurr.events.run

    def forbidden(*_args, **_kwargs):
        raise AssertionError("event generation started before the arguments were checked")

    monkeypatch.setattr(calsurr.events.run, "run_events", forbidden)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["gg_qq", "--events", 10, "--out", "x.lhe", "--method", "standard"], ["PROCESS", "gg_ggg"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "fast"], ["--method", "two-stage"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "standard", "--sampler", "mc"], ["--sampler"]),
        (["gg_gg", "--events", 10, "--out", "x.txt", "--method", "standard"], ["--out", ".lhe"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe"], ["two-stage needs a surrogate", "--server"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "gated"], ["gated needs a surrogate"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--model-name", "m"], ["--model-name", "--server"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--server", "nowhere"], ["--server", "HOST:PORT"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--server", "127.0.0.1:1"], ["--model-name"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "standard", "--max-quantile", 0], ["--max-quantile"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "standard", "--gate-threshold", 0.1], ["gated only"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "standard", "--min-sij-over-s", 2], ["(0, 1)"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--model", "nowhere"], ["--model", "not a folder"]),
        (["gg_gg", "--events", 10, "--out", "x.lhe", "--method", "standard", "--adapt-on", "surrogate"], ["needs a"]),
    ],
)
def test_bad_arguments(tmp_path, monkeypatch, no_work, args, words):
    monkeypatch.chdir(tmp_path)
    _error(_invoke(*args), *words)


def test_an_existing_out_is_refused_unless_overwrite(tmp_path, no_work):
    (tmp_path / "x.lhe").write_text("")
    _error(
        _invoke("gg_gg", "--events", 10, "--out", tmp_path / "x.lhe", "--method", "standard"), "exists", "--overwrite"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["gg_ggg"], ["gg_gg model, not gg_ggg"]),
        (["gg_gg", "--sqrt-s", 2000], ["--sqrt-s 2000", "outside the domain", "1000"]),
        (["gg_gg", "--min-sij-over-s", 0.001], ["--min-sij-over-s 0.001", "looser", "0.01"]),
    ],
)
def test_a_domain_the_model_was_not_trained_on_is_refused(tiny_repository, tmp_path, no_work, args, words):
    model = tiny_repository / TINY_MODEL / "1"
    _error(_invoke(*args, "--events", 10, "--out", tmp_path / "x.lhe", "--model", model), *words)


def test_a_tighter_cut_is_inside_the_domain(tiny_repository, tmp_path):
    model = tiny_repository / TINY_MODEL / "1"
    out = tmp_path / "x.lhe"
    args = ["gg_gg", "--events", 20, "--out", out, "--model", model, "--min-sij-over-s", 0.05]
    result = _invoke(*args, "--optimisation-points", 2000)
    assert result.exit_code == 0, result.output
    assert "every s_ij > 0.05 s" in out.read_text()


def test_a_server_that_is_not_there_is_exit_1(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    result = _invoke(
        "gg_gg", "--events", 10, "--out", tmp_path / "x.lhe", "--server", f"127.0.0.1:{port}", "--model-name", "gg_gg"
    )
    _error(result, "cannot reach the server", code=1)
    assert not (tmp_path / "x.lhe").exists()
