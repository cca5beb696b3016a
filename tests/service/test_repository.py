"""The model repository: broken versions are recorded and skipped, never fatal, never shadowing good ones."""

import shutil

import pytest

from service.card import CARD_FILENAME, MODEL_FILENAME
from service.errors import ModelNotFound
from service.repository import ModelRepository
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


def test_a_card_that_lies_about_its_folder_is_refused(repo):
    folder = repo / TINY_MODEL / "3"
    shutil.copytree(repo / TINY_MODEL / "1", folder)  # card still says version 1
    repository = ModelRepository(repo)
    repository.load_all()
    assert "lies in gg_gg/3" in repository.entry(TINY_MODEL).failed[3]
