"""The uncertainty methods: Bayesian network, repulsive ensemble, and one path through export for all."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.training import pipeline
from calsurr.training.export import FLOAT32_MEMBER_RTOL, export_to_repository
from calsurr.training.fit import FitConfig, refit_widths
from calsurr.training.models import StackedMLP, VariationalMLP, function_space_repulsion
from calsurr.training.pipeline import TrainingConfig, predict, train_surrogate


def _bnn(prior_sigma=0.7):
    return VariationalMLP(
        n_inputs=3, hidden=5, layers=2, generator=torch.Generator().manual_seed(0), prior_sigma=prior_sigma
    )


def test_kl_divergence_matches_torch_distributions():
    bnn = _bnn()
    with torch.no_grad():
        for rho in bnn.rhos:
            rho.uniform_(-3.0, 0.5)
    expected = 0.0
    for mean, rho in [*zip(bnn.means, bnn.rhos), *zip(bnn.bias_means, bnn.bias_rhos)]:
        q = Normal(mean, torch.nn.functional.softplus(rho))
        expected += kl_divergence(q, Normal(torch.zeros_like(mean), 0.7 * torch.ones_like(mean))).sum()
    assert bnn.kl_divergence().item() == pytest.approx(expected.item(), rel=1e-5)


def test_posterior_draws_are_seeded_distinct_and_centred_on_the_means():
    bnn = _bnn()
    with torch.no_grad():
        for rho in bnn.rhos:
            rho.fill_(-2.0)  # softplus(-2) = 0.127
    a, b = bnn.sample_members(200, seed=5), bnn.sample_members(200, seed=5)
    for wa, wb in zip(a.weights, b.weights):
        assert torch.equal(wa, wb)
    first = a.weights[0].detach()
    assert not torch.allclose(first[0], first[1])
    np.testing.assert_allclose(first.mean(0).numpy(), bnn.means[0].detach().numpy(), atol=0.04)
    np.testing.assert_allclose(first.std(0).numpy(), 0.127, rtol=0.2)


def test_training_draws_per_example_match_weight_draws_in_distribution():
    """Local reparameterisation: for one input, drawing each layer's pre-activations is drawing the weights."""
    bnn = _bnn()
    with torch.no_grad():
        for rho in [*bnn.rhos, *bnn.bias_rhos]:
            rho.fill_(-1.5)  # wide enough that the output spread is far from zero
    x = torch.tensor([[0.3, -1.2, 0.8]])
    torch.manual_seed(1)
    with torch.no_grad():
        local = bnn(x.expand(20_000, 3))[0]  # (20000, 2): one draw per copy of the input
        weights = bnn.sample_members(4_000, seed=2)(x)[:, 0]  # (4000, 2): one per weight draw
    assert local.std(0).min() > 0.05
    np.testing.assert_allclose(local.mean(0).numpy(), weights.mean(0).numpy(), atol=0.03)
    np.testing.assert_allclose(local.std(0).numpy(), weights.std(0).numpy(), rtol=0.06)


def test_repulsion_pushes_members_apart():
    functions = torch.tensor([[0.0, 0.1, 0.2], [0.05, 0.1, 0.25]], requires_grad=True)
    function_space_repulsion(functions).backward()
    descent = -functions.grad  # where gradient descent moves each member's function
    separation = functions.detach()[0] - functions.detach()[1]
    assert torch.dot(descent[0], separation) > 0  # member 0 moves away from member 1
    assert torch.dot(descent[1], -separation) > 0  # and member 1 away from member 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["deep_ensemble", "repulsive_ensemble", "bayesian"])
def test_every_method_trains_exports_and_reproduces_torch(method, tmp_path, monkeypatch):
    refits = []

    def recording_refit(network, x, y, fit):
        refits.append((type(network), len(y)))
        return refit_widths(network, x, y, fit)

    monkeypatch.setattr(pipeline, "refit_widths", recording_refit)
    config = TrainingConfig(
        process="gg_gg",
        n_events=1_500,
        method=method,
        members=3,
        hidden=16,
        layers=2,
        fit=FitConfig(epochs=4, seed=2),
        seed=2,
    )
    run = train_surrogate(config, show_progress=False)
    # every method's widths refit on the validation split (the Bayesian network's on its drawn members)
    assert refits == [(StackedMLP, int(pipeline.SPLIT_FRACTIONS[1] * config.n_events))]
    assert len(run.history.width_loss) > 1 and run.history.width_loss[-1] <= run.history.width_loss[0]
    mean, sigma_stat, sigma_syst, _ = predict(run.model, run.test.momenta)
    assert np.isfinite(mean).all() and (sigma_stat > 0).all() and (sigma_syst > 0).all()
    folder = export_to_repository(run, tmp_path, f"gg_gg_{method}", version=1)
    card = ModelCard.read(folder / CARD_FILENAME)
    assert card.uncertainty.method == method and card.uncertainty.members == 3
    session = ort.InferenceSession(str(folder / MODEL_FILENAME))
    onnx_mean, onnx_stat = session.run(["mean", "sigma_stat"], {"momenta": run.test.momenta})
    assert card.uncertainty.member_dtype == "float32"  # the default: torch within FLOAT32_MEMBER_RTOL
    np.testing.assert_allclose(onnx_mean, mean, rtol=FLOAT32_MEMBER_RTOL["mean"])
    np.testing.assert_allclose(onnx_stat, sigma_stat, rtol=FLOAT32_MEMBER_RTOL["sigma_stat"])
