"""Training runs saved and reloaded, and the calorimeter task through the same path as amplitudes."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.training.export import EXPORT_RTOL, export_to_repository
from calsurr.training.fit import FitConfig
from calsurr.training.physics.calorimeter import FEATURE_NAMES
from calsurr.training.pipeline import TrainingConfig, predict, train_surrogate
from calsurr.training.runs import SURROGATE_FILE, load_run, save_run

pytestmark = pytest.mark.slow


def test_a_saved_run_reloads_to_identical_predictions(tiny_run, tmp_path):
    save_run(tiny_run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.config == tiny_run.config and loaded.calibration == tiny_run.calibration
    np.testing.assert_array_equal(loaded.test.momenta, tiny_run.test.momenta)
    for a, b in zip(predict(loaded.model, loaded.test.momenta), predict(tiny_run.model, tiny_run.test.momenta)):
        np.testing.assert_array_equal(a, b)


def test_a_run_saved_with_the_scatter_share_reloads_sharing_the_rest_of_every_width(tiny_run, tmp_path):
    """Runs saved before the shared share was fitted hold rho, the scatter's share measured without labels;
    they served sigma_syst^2 = (1 - rho) <s_k^2> and sigma_stat^2 = V / K, and reload to serve the same."""
    folder = save_run(tiny_run, tmp_path / "run")
    saved = torch.load(folder / SURROGATE_FILE, weights_only=True)
    for key in ("shared_share", "share_power", "share_reference_width", "spread_weight", "spread_prior_share"):
        del saved["state"][key]
    saved["state"]["scatter_share"] = torch.tensor(0.3, dtype=torch.float64)
    torch.save(saved, folder / SURROGATE_FILE)
    model = load_run(folder).model
    assert (float(model.shared_share), float(model.share_power)) == pytest.approx((0.7, 0.0), abs=1e-15)
    momenta = tiny_run.test.momenta
    with torch.no_grad():
        mu, sigma = model.members_transformed(torch.from_numpy(momenta))
    mean, sigma_stat, sigma_syst, _ = predict(model, momenta)
    np.testing.assert_allclose(sigma_syst, mean * np.sqrt(0.7 * (sigma.numpy() ** 2).mean(0)), rtol=1e-12)
    np.testing.assert_allclose(sigma_stat, mean * np.sqrt(mu.numpy().var(0, ddof=1) / len(mu)), rtol=1e-12)


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
