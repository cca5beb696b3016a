"""The model repository: broken versions are recorded and skipped, never fatal, never shadowing good ones."""

import asyncio
import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.service.errors import ModelNotFound
from calsurr.service.repository import (
    IndexEntry,
    ModelLoadFailed,
    ModelRepository,
    RepositoryChange,
    RepositoryPolicy,
    massless_event,
)
from calsurr.service.runtime import OnnxModel
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tiny_repository, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(tiny_repository, copy)
    return copy


def _add_version(repo, version, corrupt_file):
    folder = repo / TINY_MODEL / str(version)
    shutil.copytree(repo / TINY_MODEL / "1", folder)
    card = (folder / CARD_FILENAME).read_text().replace('"version": 1', f'"version": {version}')
    (folder / CARD_FILENAME).write_text(card)
    if corrupt_file == MODEL_FILENAME:
        (folder / MODEL_FILENAME).write_bytes(b"not an onnx graph")
    elif corrupt_file == CARD_FILENAME:
        (folder / CARD_FILENAME).write_text('{"name": "gg_gg"}')
    else:
        (folder / corrupt_file).unlink()


@pytest.mark.parametrize("corrupt_file", [MODEL_FILENAME, CARD_FILENAME, "missing-model"])
def test_a_broken_newer_version_never_replaces_the_working_one(repo, corrupt_file):
    target = MODEL_FILENAME if corrupt_file == "missing-model" else corrupt_file
    _add_version(repo, 2, corrupt_file if corrupt_file != "missing-model" else target)
    repository = ModelRepository(repo)
    repository.load_all()
    assert repository.get(TINY_MODEL).card.version == 1  # the newest *ready* version
    assert repository.is_ready(TINY_MODEL, "1") and not repository.is_ready(TINY_MODEL, "2")
    with pytest.raises(ModelNotFound, match="failed to load"):
        repository.get(TINY_MODEL, "2")
    assert 2 in repository.entry(TINY_MODEL).failed


def test_a_version_folder_copied_under_a_new_number_serves_as_that_number(repo, caplog):
    shutil.copytree(repo / TINY_MODEL / "1", repo / TINY_MODEL / "3")  # Triton-style promotion: card says 1
    repository = ModelRepository(repo, policy=RepositoryPolicy.model_validate("all"))
    with caplog.at_level("WARNING", logger="calsurr.service.repository"):
        repository.load_all()
    entry = repository.entry(TINY_MODEL)
    assert sorted(entry.ready) == [1, 3] and not entry.failed
    assert repository.get(TINY_MODEL).card.version == 3 and repository.get(TINY_MODEL, "1").card.version == 1
    assumed = [r.getMessage() for r in caplog.records if "the folder's number" in r.getMessage()]
    assert assumed == [
        "model gg_gg: the card in folder gg_gg/3 says version 1; serving it as version 3, the folder's number"
    ]
    asyncio.run(repository.reload())  # files unchanged: nothing reloaded, nothing said again
    assert len([r for r in caplog.records if "the folder's number" in r.getMessage()]) == 1


def test_a_card_of_another_model_is_refused(repo):
    shutil.copytree(repo / TINY_MODEL / "1", repo / "gg_ggg" / "1")
    repository = ModelRepository(repo)
    repository.load_all()
    assert "is the card of model 'gg_gg'" in repository.entry("gg_ggg").failed[1]
    assert not repository.is_ready("gg_ggg") and repository.is_ready(TINY_MODEL)


# -- version policies, the check before a swap, load / unload by name ---------------------------------------------


def _copy_as(repo, version):
    folder = repo / TINY_MODEL / str(version)
    shutil.copytree(repo / TINY_MODEL / "1", folder)
    card = json.loads((folder / CARD_FILENAME).read_text())
    (folder / CARD_FILENAME).write_text(json.dumps({**card, "version": version}))
    return folder


@pytest.mark.parametrize(
    ("policy", "ready", "failed"),
    [
        ("latest", [3], []),
        ("latest:2", [2, 3], []),
        ("all", [1, 2, 3], []),
        ("specific:1,3", [1, 3], []),
        ("specific:1,4", [1], [4]),
        ({"default": "latest", "models": {TINY_MODEL: {"all": {}}}}, [1, 2, 3], []),
        ({"latest": {"num_versions": 2}}, [2, 3], []),
    ],
)
def test_version_policies_choose_the_versions_served(repo, policy, ready, failed):
    _copy_as(repo, 2)
    _copy_as(repo, 3)
    repository = ModelRepository(repo, policy=RepositoryPolicy.model_validate(policy))
    repository.load_all()
    entry = repository.entry(TINY_MODEL)
    assert sorted(entry.ready) == ready and sorted(entry.failed) == failed
    assert repository.get(TINY_MODEL).card.version == max(ready)  # no version asked: the newest ready one


@pytest.mark.parametrize(
    ("text", "complaint"), [("newest", "expected 'latest'"), ("specific:", "versions >= 1"), ("latest:0", "num")]
)
def test_a_bad_version_policy_is_refused_saying_what_is_expected(text, complaint):
    with pytest.raises(ValidationError, match=complaint):
        RepositoryPolicy.model_validate(text)


@pytest.mark.parametrize("particles", [4, 5, 6, 7])
def test_the_sample_event_is_massless_momentum_conserving_and_inside_the_default_cut(particles):
    event = massless_event(particles, 1000.0)
    metric = np.array([1.0, -1.0, -1.0, -1.0])
    assert np.allclose((event**2 * metric).sum(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(event[:2].sum(axis=0), event[2:].sum(axis=0), atol=1e-9)
    s = 1000.0**2
    pairs = [(i, j) for i in range(particles) for j in range(i + 1, particles)]
    assert min(((event[i] + event[j]) ** 2 * metric).sum() for i, j in pairs) > 0.01 * s


@pytest.mark.parametrize(
    ("spoil", "complaint"),
    [
        (lambda out: {**out, "mean": out["mean"] * np.nan}, "not finite"),
        (lambda out: {**out, "sigma_tot": out["sigma_tot"] * 2}, "quadrature"),
        (lambda out: {**out, "sigma_stat": -out["sigma_stat"]}, "negative"),
        (lambda out: {**out, "mean": -out["mean"]}, "not positive"),
    ],
)
def test_a_version_whose_sample_answer_is_wrong_is_refused(repo, monkeypatch, spoil, complaint):
    original = OnnxModel.run
    monkeypatch.setattr(OnnxModel, "run", lambda self, inputs, outputs=None: spoil(original(self, inputs, outputs)))
    repository = ModelRepository(repo)
    repository.load_all()
    assert not repository.is_ready(TINY_MODEL)
    assert (
        "ModelCheckFailed" in repository.entry(TINY_MODEL).failed[1]
        and complaint in repository.entry(TINY_MODEL).failed[1]
    )


def test_example_inputs_in_the_card_are_checked_and_run(repo, tiny_run, monkeypatch):
    card_path = repo / TINY_MODEL / "1" / CARD_FILENAME
    card = json.loads(card_path.read_text())
    examples = tiny_run.test.momenta[:3]
    card_path.write_text(json.dumps({**card, "example_inputs": {"momenta": examples.tolist()}}))
    seen = []
    original = OnnxModel.run
    monkeypatch.setattr(
        OnnxModel, "run", lambda self, inputs, outputs=None: seen.append(inputs) or original(self, inputs)
    )
    repository = ModelRepository(repo)
    repository.load_all()
    assert repository.is_ready(TINY_MODEL)
    np.testing.assert_array_equal(seen[0]["momenta"], examples)
    with pytest.raises(ValidationError, match="example_inputs 'momenta' has shape"):
        ModelCard.model_validate({**card, "example_inputs": {"momenta": [[1.0, 2.0]]}})


def test_changed_files_that_fail_leave_the_loaded_model_serving(repo):
    repository = ModelRepository(repo)
    repository.load_all()
    model = repository.get(TINY_MODEL, "1")
    (repo / TINY_MODEL / "1" / MODEL_FILENAME).write_bytes(b"overwritten by mistake")
    change = asyncio.run(repository.reload())
    assert repository.get(TINY_MODEL, "1") is model and not change.removed
    assert [(name, version) for name, version, _ in change.failed] == [(TINY_MODEL, 1)]


def test_load_and_unload_by_name_and_the_index(repo):
    repository = ModelRepository(repo)
    repository.load_all()
    heard: list[RepositoryChange] = []

    async def listen(change):
        heard.append(change)

    repository.subscribe(listen)

    async def scenario():
        await repository.unload_model(TINY_MODEL)
        assert repository.names() == [] and heard[-1].removed == ((TINY_MODEL, 1),)
        assert repository.index() == [
            IndexEntry(TINY_MODEL, "1", "UNAVAILABLE", "unloaded; RepositoryModelLoad loads it")
        ]
        await repository.reload()  # a poll does not bring an unloaded model back
        assert not repository.is_ready(TINY_MODEL)
        entry = await repository.load_model(TINY_MODEL)
        assert sorted(entry.ready) == [1] and heard[-1].loaded == ((TINY_MODEL, 1),)
        with pytest.raises(ModelNotFound, match="no model folder 'gg_qq'"):
            await repository.load_model("gg_qq")
        with pytest.raises(ModelNotFound):
            await repository.unload_model("gg_qq")
        _add_version(repo, 2, MODEL_FILENAME)
        with pytest.raises(ModelLoadFailed, match=r"version 2: .*versions \[1\] go on serving"):
            await repository.load_model(TINY_MODEL)

    asyncio.run(scenario())
    index = repository.index()
    assert index[0] == IndexEntry(TINY_MODEL, "1", "READY")
    assert index[1].version == "2" and index[1].state == "UNAVAILABLE" and "failed to load" in index[1].reason


@pytest.mark.parametrize("version", ["²", "٣", "1.0", "-1", "v1"])
def test_a_version_that_is_not_ascii_digits_is_not_found_not_a_crash(repo, version):
    repository = ModelRepository(repo)
    repository.load_all()
    with pytest.raises(ModelNotFound, match="has no ready version"):
        repository.get(TINY_MODEL, version)


def test_a_folder_named_with_other_digits_is_not_a_version(repo):
    shutil.copytree(repo / TINY_MODEL / "1", repo / TINY_MODEL / "²")
    repository = ModelRepository(repo)
    repository.load_all()
    assert sorted(repository.entry(TINY_MODEL).ready) == [1] and not repository.entry(TINY_MODEL).failed
