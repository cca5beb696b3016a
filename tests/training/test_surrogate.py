import numpy as np
import pytest
import torch

from calsurr.training.models import StackedMLP, gaussian_nll
from calsurr.training.physics.phase_space import sample_cut_phase_space
from calsurr.training.surrogate import InvariantFeatures, Surrogate


def _momenta(n=64, n_final=2, seed=0):
    return torch.from_numpy(sample_cut_phase_space(n_final, 1000.0, n, 0.01, np.random.default_rng(seed)))


def test_gaussian_nll_matches_torch_reference_up_to_its_constant():
    torch.manual_seed(0)
    output = torch.randn(3, 50, 2)
    target = torch.randn(50)
    reference = torch.nn.GaussianNLLLoss(full=False, reduction="mean")
    expected = sum(reference(output[k, :, 0], target, torch.exp(output[k, :, 1]) ** 2) for k in range(3))
    assert gaussian_nll(output, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_stacked_members_are_independent_networks():
    net = StackedMLP(members=3, n_inputs=4, hidden=8, layers=2, generator=torch.Generator().manual_seed(0))
    out = net(torch.randn(10, 4))
    assert out.shape == (3, 10, 2)
    out[1].sum().backward()  # only member 1's parameters may receive gradient
    for weight in net.weights:
        assert weight.grad[0].abs().sum() == 0 and weight.grad[2].abs().sum() == 0
        assert weight.grad[1].abs().sum() > 0
    assert not torch.allclose(out[0], out[1])  # differently initialised


def test_features_are_lorentz_invariant_and_standardised():
    p = _momenta(256, n_final=3)
    features = InvariantFeatures(5)
    features.fit(p)
    x = features(p)
    np.testing.assert_allclose(x.mean(0).numpy(), 0, atol=1e-10)
    varying = x.std(0) > 0
    np.testing.assert_allclose(x.std(0)[varying].numpy(), 1, rtol=1e-10)
    rapidity = 0.4
    boost = torch.eye(4, dtype=torch.float64)
    boost[0, 0] = boost[3, 3] = np.cosh(rapidity)
    boost[0, 3] = boost[3, 0] = np.sinh(rapidity)
    np.testing.assert_allclose(features(p @ boost.T).numpy(), x.numpy(), atol=1e-9)


def test_aggregation_follows_the_uncertainty_contract():
    network = StackedMLP(members=5, n_inputs=6, hidden=8, layers=2, generator=torch.Generator().manual_seed(3))
    model = Surrogate(InvariantFeatures(4), network, "log").double()
    p = _momenta(40)
    target = torch.rand(40, dtype=torch.float64) * 100 + 10
    model.fit_standardisation(p, target)
    model.recalibration.fill_(1.5)
    with torch.no_grad():
        mean, sigma_stat, sigma_syst, sigma_tot = (t.numpy() for t in model(p))
        mu, s = (t.numpy() for t in model.members_transformed(p))
    np.testing.assert_allclose(mean, np.exp(mu.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(sigma_stat, 1.5 * mean * mu.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(sigma_syst, 1.5 * mean * np.sqrt((s**2).mean(0)), rtol=1e-10)
    np.testing.assert_allclose(sigma_tot, np.hypot(sigma_stat, sigma_syst), rtol=1e-12)
