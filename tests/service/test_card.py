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


OLD_CALIBRATION = {  # a card's calibration block as written before the conditional calibration existed
    "n_points": 30000,
    "pull_mean": -0.02,
    "pull_width": 1.0,
    "coverage_68": 0.68,
    "coverage_95": 0.95,
    "median_abs_rel_deviation": 3.4e-4,
    "q90_abs_rel_deviation": 1.4e-3,
    "q99_abs_rel_deviation": 4.9e-3,
    "recalibration_factor": 0.53,
}


def test_a_card_written_before_the_ambiguity_aggregation_reads_as_it_meant():
    card = ModelCard.model_validate(_card_dict(calibration=OLD_CALIBRATION))
    assert card.uncertainty.aggregation == "spread_plus_width"  # sigma_stat = spread, sigma_syst = <s_k^2>
    assert card.calibration.recalibration_applied and card.calibration.recalibration_factor == 0.53
    assert card.calibration.conditional is None


def test_conditional_calibration_round_trips_and_is_checked(tmp_path):
    bin_ = {"low": 0.01, "high": 0.02, "n_points": 6000, "pull_mean": 0.01, "pull_width": 0.98}
    bin_ |= {"coverage_68": 0.69, "coverage_95": 0.95}
    calibration = OLD_CALIBRATION | {
        "recalibration_factor": 1.01,
        "recalibration_applied": False,
        "conditional": [{"variable": "min s_ij / s", "bins": [bin_, bin_ | {"low": 0.02, "high": 0.2}]}],
    }
    uncertainty = {"method": "deep_ensemble", "members": 8, "target_transform": "log", "aggregation": "ambiguity"}
    card = ModelCard.model_validate(_card_dict(calibration=calibration, uncertainty=uncertainty))
    card.write(tmp_path / "card.json")
    assert ModelCard.read(tmp_path / "card.json") == card
    assert card.calibration.conditional[0].bins[1].high == 0.2
    with pytest.raises(ValidationError, match="coverage_68"):
        bad = calibration | {"conditional": [{"variable": "x", "bins": [bin_ | {"coverage_68": 1.5}]}]}
        ModelCard.model_validate(_card_dict(calibration=bad))
    with pytest.raises(ValidationError, match="aggregation"):
        ModelCard.model_validate(_card_dict(uncertainty=uncertainty | {"aggregation": "sum"}))
