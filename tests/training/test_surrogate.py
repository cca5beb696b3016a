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


def _members_model(aggregation="ambiguity", members=5):
    network = StackedMLP(members=members, n_inputs=6, hidden=8, layers=2, generator=torch.Generator().manual_seed(3))
    model = Surrogate(InvariantFeatures(4), network, "log", aggregation).double()
    p = _momenta(40)
    target = torch.rand(40, dtype=torch.float64) * 100 + 10
    model.fit_standardisation(p, target)
    return model, p


def test_aggregation_is_the_error_of_the_members_average():
    model, p = _members_model()
    model.recalibration.fill_(1.5)
    rho = model.measure_scatter_share(p)
    with torch.no_grad():
        mean, sigma_stat, sigma_syst, sigma_tot = (t.numpy() for t in model(p))
        mu, s = (t.numpy() for t in model.members_transformed(p))
    k = len(mu)
    spread = mu.var(0, ddof=1)
    width = (s**2).mean(0)
    assert rho == pytest.approx(np.mean(spread / width), rel=1e-12) and 0 < rho < 1
    assert float(model.scatter_share) == rho
    np.testing.assert_allclose(mean, np.exp(mu.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(sigma_stat, 1.5 * mean * np.sqrt(spread / k), rtol=1e-10)
    np.testing.assert_allclose(sigma_syst, 1.5 * mean * np.sqrt((1 - rho) * width), rtol=1e-10)
    np.testing.assert_allclose(sigma_tot, np.hypot(sigma_stat, sigma_syst), rtol=1e-12)
    # relative to each point's width, sigma_tot^2 is on average the ambiguity estimate <s_k^2> - (1 - 1/K) V
    ambiguity = width - (1 - 1 / k) * spread
    relative = (sigma_tot / (1.5 * mean)) ** 2 / width
    assert np.mean(relative) == pytest.approx(np.mean(ambiguity / width), rel=1e-10)


def test_ambiguity_makes_calibrated_members_give_a_calibrated_average():
    """Members whose widths are their own rms errors: sigma_tot is the rms error of their average, in every
    regime of shared error against scatter, and the spread added on top of the widths is too wide."""
    rng = np.random.default_rng(0)
    k, n = 8, 200_000
    # shared^2 / scatter^2 from 2.8 to 0.36 (gg -> ggg: 0.37 for the K = 8 ensemble, 1.9-3.9 for smaller runs);
    # where the scatter dominates further, V / K from K values makes the pulls Student-t-like (width 1.13 at 0.01)
    for shared, scatter in ((1.0, 0.6), (0.6, 1.0)):
        bias = shared * rng.standard_normal(n)
        members = bias + scatter * rng.standard_normal((k, n))  # m_k - y
        width = np.full(n, shared**2 + scatter**2)  # E[(m_k - y)^2], what each member's likelihood fits
        spread = members.var(0, ddof=1)
        rho = np.mean(spread / width)
        sigma_tot2 = spread / k + (1 - rho) * width
        error = members.mean(0)
        assert np.mean(error**2) == pytest.approx(shared**2 + scatter**2 / k, rel=0.01)
        pull = error / np.sqrt(sigma_tot2)
        assert np.std(pull) == pytest.approx(1.0, abs=0.02), (shared, scatter)
        assert np.mean(np.abs(pull) < 1) == pytest.approx(0.6827, abs=0.01), (shared, scatter)
        assert np.std(error / np.sqrt(spread + width)) < 0.8  # the spread on top of the widths counts it twice


def test_scatter_share_averaged_point_by_point_holds_where_widths_span_orders_of_magnitude():
    """Widths over orders of magnitude, the scatter's share 0.75 except in the top tenth of the widths (0.2, as
    on gg -> gggg): the share averaged point by point calibrates the pulls, a ratio of averages (which the
    largest widths dominate) makes them far too narrow."""
    rng = np.random.default_rng(1)
    k, n = 8, 200_000
    width = np.exp(rng.normal(0.0, 1.5, n))  # E[(m_k - y)^2], what each member's likelihood fits
    share = np.where(width > np.quantile(width, 0.9), 0.2, 0.75)
    members = np.sqrt((1 - share) * width) * rng.standard_normal(n) + np.sqrt(share * width) * rng.standard_normal(
        (k, n)
    )
    spread, error = members.var(0, ddof=1), members.mean(0)

    def pull_width(rho: float) -> float:
        return float(np.std(error / np.sqrt(spread / k + (1 - rho) * width)))

    assert pull_width(np.mean(spread / width)) == pytest.approx(1.0, abs=0.04)
    assert pull_width(spread.mean() / width.mean()) < 0.85


def test_legacy_aggregation_adds_the_spread_to_the_widths():
    model, p = _members_model("spread_plus_width")
    with torch.no_grad():
        mean, sigma_stat, sigma_syst, _ = (t.numpy() for t in model(p))
        mu, s = (t.numpy() for t in model.members_transformed(p))
    np.testing.assert_allclose(sigma_stat, mean * mu.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(sigma_syst, mean * np.sqrt((s**2).mean(0)), rtol=1e-10)
    with pytest.raises(ValueError, match="aggregation"):
        Surrogate(InvariantFeatures(4), model.ensemble, "log", "average")
