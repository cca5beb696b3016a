"""Shared fixtures: a small trained and exported gg -> gg surrogate in a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

TINY_MODEL = "gg_gg"


def missing_tool(what: str, install: str) -> NoReturn:
    """A system tool some tests need is absent: fail, saying what installs it. Not a skip: `bash scripts/test.sh`
    (what CI runs) installs every one, so a missing tool is a broken setup, never a check quietly left out."""
    pytest.fail(f"{what} missing: {install} (bash scripts/test.sh installs it, as root)", pytrace=False)


@pytest.fixture(scope="session")
def tiny_run():
    """A quickly trained 3-member gg -> gg ensemble (seconds); accuracy is beside the point here."""
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    config = TrainingConfig(
        process="gg_gg", n_events=2_000, members=3, hidden=16, layers=2, fit=FitConfig(epochs=5, seed=1), seed=1
    )
    return train_surrogate(config, show_progress=False)


@pytest.fixture(scope="session")
def tiny_repository(tiny_run, tmp_path_factory) -> Path:
    """`<repo>/gg_gg/1/` holding the exported tiny surrogate, with float64 members."""
    from calsurr.training.export import export_to_repository

    repo = tmp_path_factory.mktemp("repository")
    # float64 members: the serving tests check that a row merged into a batch is bit for bit the row served
    # alone, which float32 members (the default) hold only to ~1e-7 (training/export.py)
    export_to_repository(tiny_run, repo, TINY_MODEL, version=1, member_dtype="float64")
    return repo
