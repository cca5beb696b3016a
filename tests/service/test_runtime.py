"""onnxruntime session options and the server's event loop: what the tuning settings change, and that the
answers do not change with them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import uvloop

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.service.client import InferenceClient
from calsurr.service.config import ServerSettings
from calsurr.service.runtime import OnnxModel, RuntimeOptions
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL

SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


@pytest.mark.parametrize(("spinning", "entry"), [(False, "0"), (True, "1")])
def test_the_spinning_option_reaches_both_thread_pools_of_the_session(tiny_repository, spinning, entry):
    folder = tiny_repository / TINY_MODEL / "1"
    model = OnnxModel(
        folder / MODEL_FILENAME,
        ModelCard.read(folder / CARD_FILENAME),
        RuntimeOptions(providers=("CPUExecutionProvider",), spinning=spinning),
    )
    options = model.session.get_session_options()
    assert [options.get_session_config_entry(key) for key in SPINNING_KEYS] == [entry, entry]


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_uvloop_and_asyncio_servers_give_identical_answers(tiny_repository):
    folder = tiny_repository / TINY_MODEL / "1"
    card = ModelCard.read(folder / CARD_FILENAME)
    name = card.inputs[0].name
    x = np.asarray(card.example_inputs[name], dtype=np.float64)
    answers, loops = {}, {}
    for kind in ("uvloop", "asyncio"):
        settings = ServerSettings(repo=tiny_repository, port=0, metrics=False, event_loop=kind, batching=False)
        with BackgroundServer(settings) as server, InferenceClient(server.address) as client:
            loops[kind] = server.call(_running_loop())
            answers[kind], _ = client.infer(TINY_MODEL, {name: x})
    assert isinstance(loops["uvloop"], uvloop.Loop)
    assert not isinstance(loops["asyncio"], uvloop.Loop)
    for output in ("mean", "sigma_stat", "sigma_syst", "sigma_tot"):
        np.testing.assert_array_equal(answers["uvloop"][output], answers["asyncio"][output])
