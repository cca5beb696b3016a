"""Request parameters and output selection, and the statistics counters: unit tests, no server."""

from __future__ import annotations

import pytest

from calsurr.service.errors import InvalidInput
from calsurr.service.request_options import KNOWN_PARAMETERS, InferOptions, parse_parameters, select_outputs
from calsurr.service.statistics import Duration, StatisticsBook
from tests.service.toy_model import toy_card

UNCERTAINTY = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]


def test_known_parameters_parse():
    assert parse_parameters(None) == InferOptions()
    assert parse_parameters({"members": True, "timeout": 250}) == InferOptions(members=True, timeout_us=250)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"priority": 1}, "unknown request parameters ['priority']"),
        ({"members": 1}, "'members' expects a bool"),
        ({"members": None}, "'members' expects a bool"),
        ({"timeout": -5}, "'timeout' expects a non-negative int"),
        ({"timeout": True}, "'timeout' expects a non-negative int"),
        ({"timeout": 1.5}, "'timeout' expects a non-negative int"),
    ],
)
def test_bad_parameters_are_refused(parameters, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        parse_parameters(parameters)
    if "unknown" in message:
        assert all(f"'{name}'" in str(error.value) for name in KNOWN_PARAMETERS)


def test_per_member_outputs_only_on_request():
    card = toy_card()
    assert select_outputs(card, None, members=False) == UNCERTAINTY
    assert select_outputs(card, None, members=True) == [*UNCERTAINTY, "member_mean", "member_sigma"]
    assert select_outputs(card, ["sigma_tot"], members=True) == ["sigma_tot", "member_mean", "member_sigma"]
    assert select_outputs(card, ["member_sigma"], members=False) == ["member_sigma"]
    with pytest.raises(InvalidInput, match=r"no outputs \['sigma_model'\]"):
        select_outputs(card, ["sigma_model"], members=False)


def test_members_on_a_graph_without_them_names_the_parameter():
    card = toy_card()
    plain = card.model_copy(update={"outputs": card.outputs[:4]})
    with pytest.raises(InvalidInput, match="parameter 'members'.*exports no per-member outputs"):
        select_outputs(plain, None, members=True)


def test_statistics_count_requests_runs_and_batch_sizes():
    book = StatisticsBook()
    recorder = book.recorder("m", "1")
    recorder.record_queue(1e-6)
    recorder.record_queue(3e-6)
    recorder.record_run(rows=8, requests=2, seconds=2e-6)
    recorder.record_request(True, rows=5, seconds=1e-5)
    recorder.record_request(True, rows=3, seconds=1e-5)
    recorder.record_request(False, rows=0, seconds=2e-5)
    stats = book.snapshot("m", "1")
    assert (stats.inference_count, stats.execution_count) == (8, 1)
    assert stats.success == Duration(2, 20_000) and stats.fail == Duration(1, 20_000)
    assert stats.queue == Duration(2, 4_000) and stats.compute_infer == Duration(2, 4_000)
    assert stats.batches == {8: Duration(1, 2_000)} and stats.last_inference_ms > 0
    assert book.snapshot("m", "2").success == Duration()  # never used: zeros
