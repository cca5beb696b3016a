"""Request parameters and output selection, and the statistics counters: unit tests, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from calsurr.service.errors import InvalidInput
from calsurr.service.request_options import REQUEST_PARAMETERS, InferOptions, parse_parameters, select_outputs
from calsurr.service.statistics import ComputeDurations, Duration, RunSeconds, StatisticsBook
from tests.service.toy_model import toy_card

UNCERTAINTY = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]


def test_known_parameters_parse():
    assert parse_parameters(None) == InferOptions()
    assert parse_parameters({"members": True, "timeout": 250}) == InferOptions(members=True, timeout_us=250)


# What tritonclient (sync, asyncio, streaming) and perf_analyzer put on a request as a matter of course.
TRITON_CLIENT_PARAMETERS = [
    {"triton_enable_empty_final_response": True},  # perf_analyzer, every mode
    {"triton_enable_empty_final_response": False},
    {"priority": 3},
    {"sequence_id": 7, "sequence_start": True, "sequence_end": False},
    {"sequence_id": "chain-a", "sequence_start": False, "sequence_end": True},
    {"timeout": 1_000_000, "priority": 1, "binary_data_output": True},
]


@pytest.mark.parametrize("parameters", TRITON_CLIENT_PARAMETERS)
def test_what_tritons_clients_send_is_accepted_and_changes_nothing(parameters):
    options = parse_parameters(parameters)
    assert options.members is False and options.timeout_us == parameters.get("timeout")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"my_setting": 1}, "unknown request parameters ['my_setting']"),
        ({"triton_new_feature": True}, "unknown request parameters ['triton_new_feature']"),
        ({"headers": "x"}, "request parameter 'headers' is refused: reserved for Triton's forwarding"),
        ({"members": 1}, "'members' expects a bool"),
        ({"members": None}, "'members' expects a bool"),
        ({"timeout": -5}, "'timeout' expects an int, microseconds"),
        ({"timeout": True}, "'timeout' expects an int, microseconds"),
        ({"timeout": 1.5}, "'timeout' expects an int, microseconds"),
        ({"priority": -1}, "'priority' expects an int >= 0"),
        ({"sequence_id": 1.5}, "'sequence_id' expects an int >= 0 or str"),
        ({"triton_enable_empty_final_response": "yes"}, "'triton_enable_empty_final_response' expects a bool"),
    ],
)
def test_bad_parameters_are_refused(parameters, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        parse_parameters(parameters)
    if "unknown" in message:
        assert all(f"'{p.name}'" in str(error.value) for p in REQUEST_PARAMETERS if p.handling != "refused")


def test_the_readme_table_lists_every_request_parameter_as_handled():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[1]
    for parameter in REQUEST_PARAMETERS:
        assert rows.get(parameter.name) == parameter.handling, f"README row for '{parameter.name}'"


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
    recorder.record_run(rows=8, requests=2, seconds=RunSeconds(input=1e-6, infer=2e-6, output=3e-6))
    recorder.record_request(True, rows=5, seconds=1e-5)
    recorder.record_request(True, rows=3, seconds=1e-5)
    recorder.record_request(False, rows=0, seconds=2e-5)
    stats = book.snapshot("m", "1")
    assert (stats.inference_count, stats.execution_count) == (8, 1)
    assert stats.success == Duration(2, 20_000) and stats.fail == Duration(1, 20_000)
    assert stats.queue == Duration(2, 4_000)
    assert stats.compute == ComputeDurations(Duration(2, 2_000), Duration(2, 4_000), Duration(2, 6_000))
    assert stats.batches == {8: ComputeDurations(Duration(1, 1_000), Duration(1, 2_000), Duration(1, 3_000))}
    assert stats.last_inference_ms > 0
    assert book.snapshot("m", "2").success == Duration()  # never used: zeros
