"""Training runs saved and reloaded, and the calorimeter task through the same path as amplitudes."""

import numpy as np
import onnxruntime as ort
import pytest

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.training.export import EXPORT_RTOL, export_to_repository
from calsurr.training.fit import FitConfig
from calsurr.training.physics.calorimeter import FEATURE_NAMES
from calsurr.training.pipeline import TrainingConfig, predict, train_surrogate
from calsurr.training.runs import load_run, save_run

pytestmark = pytest.mark.slow


def test_a_saved_run_reloads_to_identical_predictions(tiny_run, tmp_path):
    save_run(tiny_run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.config == tiny_run.config and loaded.calibration == tiny_run.calibration
    np.testing.assert_array_equal(loaded.test.momenta, tiny_run.test.momenta)
    for a, b in zip(predict(loaded.model, loaded.test.momenta), predict(tiny_run.model, tiny_run.test.momenta)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["deep_ensemble", "bayesian"])
def test_calorimeter_response_trains_and_exports_with_named_features(method, tmp_path):
    config = TrainingConfig(
        process="calorimeter",
        n_events=3_000,
        method=method,
        members=3,
        hidden=16,
        layers=2,
        fit=FitConfig(epochs=4),
        seed=4,
    )
    run = train_surrogate(config, show_progress=False)
    assert run.model.target_transform == "identity"
    folder = export_to_repository(run, tmp_path, "calo", version=1)
    card = ModelCard.read(folder / CARD_FILENAME)
    assert card.task == "calibration" and card.inputs[0].name == "features"
    assert card.inputs[0].columns == FEATURE_NAMES and card.inputs[0].shape == (-1, len(FEATURE_NAMES))
    features = run.test.inputs
    (mean,) = ort.InferenceSession(str(folder / MODEL_FILENAME)).run(["mean"], {"features": features})
    np.testing.assert_allclose(mean, predict(run.model, features)[0], rtol=EXPORT_RTOL)
    assert 0.3 < np.median(mean) < 1.2  # a response, not a stray scale
