import pytest
from pydantic import ValidationError

from calsurr.service.card import ModelCard


def _card_dict(**changes):
    card = {
        "name": "gg_gg",
        "version": 1,
        "task": "amplitude",
        "process": "gg_gg",
        "inputs": [{"name": "momenta", "datatype": "FP64", "shape": [-1, 4, 4], "unit": "GeV"}],
        "outputs": [
            {"name": n, "datatype": "FP64", "shape": [-1], "unit": "1"}
            for n in ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
        ],
        "uncertainty": {"method": "deep_ensemble", "members": 4, "target_transform": "log"},
        "domain": {"description": "sqrt(s) = 1000 GeV", "sqrt_s_gev": 1000.0, "min_sij_over_s": 0.01},
        "provenance": {
            "dataset_sha256": "0" * 64,
            "seed": 0,
            "code_version": "0.1.0",
            "created": "2026-11-23T00:00:00Z",
            "training_seconds": 1.0,
        },
    }
    card.update(changes)
    return card


def test_a_complete_card_validates_and_round_trips(tmp_path):
    card = ModelCard.model_validate(_card_dict())
    card.write(tmp_path / "card.json")
    assert ModelCard.read(tmp_path / "card.json") == card


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"outputs": [{"name": "mean", "datatype": "FP64", "shape": [-1], "unit": "1"}]}, "missing"),
        ({"version": 0}, "version"),
        ({"task": "classification"}, "task"),
        ({"name": "../escape"}, "name"),
        ({"inputs": [{"name": "momenta", "datatype": "INT8", "shape": [-1, 4, 4], "unit": "GeV"}]}, "datatype"),
        ({"inputs": [{"name": "momenta", "datatype": "FP64", "shape": [-1, 0, 4], "unit": "GeV"}]}, "dimensions"),
        ({"uncertainty": {"method": "deep_ensemble", "members": 1, "target_transform": "log"}}, "members"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_cards_are_refused_naming_the_field(changes, complaint):
    with pytest.raises(ValidationError, match=complaint):
        ModelCard.model_validate(_card_dict(**changes))
