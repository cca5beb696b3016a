"""The Lorentz-equivariant members (`network: lgatr`): invariance of what they predict under boosts and
rotations, the momentum features' covariance, the width refit on their heads, and the whole surrogate
through training, saving and ONNX export against torch."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.training.data import generate_amplitudes
from calsurr.training.export import EXPORT_RTOL, export_to_repository
from calsurr.training.fit import FitConfig, refit_widths
from calsurr.training.models import LorentzTransformerEnsemble
from calsurr.training.pipeline import TrainingConfig, build_surrogate, predict, train_surrogate
from calsurr.training.runs import load_run, save_run
from calsurr.training.surrogate import METRIC, MomentumFeatures


def _lorentz_transformation(rapidity: np.ndarray, angles: tuple[float, float, float]) -> np.ndarray:
    """A boost of the given rapidity vector after a rotation by Euler angles (z, y, z): a general proper
    orthochronous Lorentz transformation, (4, 4) acting on (E, px, py, pz)."""
    a, b, c = angles

    def rotation(axis: int, angle: float) -> np.ndarray:
        m = np.eye(4)
        i, j = [k for k in (1, 2, 3) if k != axis]
        m[i, i] = m[j, j] = math.cos(angle)
        m[i, j], m[j, i] = -math.sin(angle), math.sin(angle)
        return m

    eta = float(np.linalg.norm(rapidity))
    n = rapidity / eta
    boost = np.eye(4)
    boost[0, 0] = math.cosh(eta)
    boost[0, 1:] = boost[1:, 0] = math.sinh(eta) * n
    boost[1:, 1:] += (math.cosh(eta) - 1.0) * np.outer(n, n)
    return boost @ rotation(3, a) @ rotation(2, b) @ rotation(3, c)


TRANSFORMATION = _lorentz_transformation(np.array([0.3, -0.5, 0.8]), (0.4, 1.1, -2.0))


def _config(**update) -> TrainingConfig:
    fields = {"process": "gg_ggg", "n_events": 1_000, "members": 2, "hidden": 16, "layers": 1, "network": "lgatr"}
    return TrainingConfig(**{**fields, **update})


def test_the_transformation_is_a_lorentz_transformation():
    metric = np.diag(METRIC)
    np.testing.assert_allclose(TRANSFORMATION.T @ metric @ TRANSFORMATION, metric, atol=1e-12)
    assert abs(np.linalg.det(TRANSFORMATION) - 1.0) < 1e-12 and TRANSFORMATION[0, 0] > 1.5  # a real boost


@pytest.mark.parametrize("symmetry", ["none", "canonical"])
def test_members_predict_the_same_for_boosted_and_rotated_momenta(symmetry):
    momenta = generate_amplitudes("gg_ggg", 200, seed=5).momenta
    moved = momenta @ TRANSFORMATION.T
    model = build_surrogate(_config(symmetry=symmetry), momenta).double()
    target = torch.from_numpy(generate_amplitudes("gg_ggg", 200, seed=5).target)  # sets the target's scale
    model.fit_standardisation(torch.from_numpy(momenta), target)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # weights far from their near-constant initialisation: a function that varies
        for parameter in model.ensemble.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
        mu, sigma = model.members_transformed(torch.from_numpy(momenta))
        mu_moved, sigma_moved = model.members_transformed(torch.from_numpy(moved))
        features, features_moved = (model.features(torch.from_numpy(p)) for p in (momenta, moved))
    assert mu.shape == (2, len(momenta)) and float(mu.std(dim=1).min()) > 1e-3  # not a constant function
    assert float((features - features_moved).abs().max()) > 0.1  # the inputs themselves do move
    np.testing.assert_allclose(mu_moved.numpy(), mu.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sigma_moved.numpy(), sigma.numpy(), rtol=1e-10)


def test_momentum_features_transform_as_the_momenta():
    momenta = generate_amplitudes("gg_ggg", 50, seed=6).momenta
    features = MomentumFeatures(5)
    features.fit(torch.from_numpy(momenta))
    s = 2.0 * (momenta[:, 0] * momenta[:, 1] * np.array(METRIC)).sum(-1)
    np.testing.assert_allclose(features.scale.numpy(), math.sqrt(s.mean()))  # one scale, sqrt(<s_12>)
    assert float(features.shift.abs().max()) == 0.0
    with torch.no_grad():
        x = features(torch.from_numpy(momenta)).numpy().reshape(-1, 5, 4)
        moved = features(torch.from_numpy(momenta @ TRANSFORMATION.T)).numpy().reshape(-1, 5, 4)
    np.testing.assert_allclose(moved, x @ TRANSFORMATION.T, rtol=1e-12, atol=1e-12)


def test_width_refit_moves_only_log_sigma_of_every_member():
    network = LorentzTransformerEnsemble(2, 4, 8, 1, torch.Generator().manual_seed(0)).double()
    x = torch.randn(300, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(300, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    trainable = [p.requires_grad for p in network.parameters()]  # lgatr freezes its dead and empty ones
    with torch.no_grad():
        before = network(x)
    losses = refit_widths(network, x, y, FitConfig(width_iterations=200))
    with torch.no_grad():
        after = network(x)
    torch.testing.assert_close(after[..., 0], before[..., 0], rtol=0, atol=0)  # the means frozen
    assert float((after[..., 1] - before[..., 1]).abs().min()) > 0  # every member's width moved
    assert len(losses) > 2 and losses[-1] < losses[0]
    # stationary in each member's log-sigma bias at the optimum: squared pulls average 1 on the refit points
    pulls2 = ((y - after[..., 0]) * torch.exp(-after[..., 1])) ** 2
    np.testing.assert_allclose(pulls2.mean(dim=1).numpy(), 1.0, atol=1e-6)
    assert [p.requires_grad for p in network.parameters()] == trainable  # left as they were


def test_lgatr_surrogate_trains_saves_and_exports_to_onnx_matching_torch(tmp_path):
    config = _config(process="gg_gg", n_events=1_500, members=2, hidden=8, fit=FitConfig(epochs=3, seed=1))
    run = train_surrogate(config, show_progress=False)
    assert isinstance(run.model.ensemble, LorentzTransformerEnsemble)
    assert len(run.history.width_loss) > 1  # the refit ran on these heads too
    mean, sigma_stat, sigma_syst, _ = predict(run.model, run.test.momenta)
    assert np.isfinite(mean).all() and (sigma_stat > 0).all() and (sigma_syst > 0).all()
    loaded = load_run(save_run(run, tmp_path / "run"))
    for a, b in zip(predict(loaded.model, run.test.momenta), (mean, sigma_stat, sigma_syst), strict=False):
        np.testing.assert_array_equal(a, b)
    for member_dtype in ("float64", "float32"):  # export checks the graph against torch before publishing
        folder = export_to_repository(run, tmp_path / "repo", f"lgatr_{member_dtype}", 1, member_dtype=member_dtype)
        assert ModelCard.read(folder / CARD_FILENAME).uncertainty.member_dtype == member_dtype
    session = ort.InferenceSession(str(tmp_path / "repo" / "lgatr_float64" / "1" / MODEL_FILENAME))
    fresh = generate_amplitudes("gg_gg", 300, seed=97).momenta
    names = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]
    for name, got, expected in zip(names, session.run(names, {"momenta": fresh}), predict(run.model, fresh)):
        np.testing.assert_allclose(got, expected, rtol=EXPORT_RTOL, err_msg=name)
        if name == "mean":  # to rounding: no constant of the graph went through float32 (the norms' epsilon)
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"method": "bayesian"}, "deep or repulsive ensemble"),
        ({"process": "calorimeter"}, "apply to amplitudes"),
    ],
)
def test_lgatr_is_refused_where_it_does_not_apply(update, message):
    with pytest.raises(ValidationError, match=message):
        _config(**update)
