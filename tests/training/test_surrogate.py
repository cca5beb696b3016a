import numpy as np
import pytest
import torch

from calsurr.training.models import StackedMLP, gaussian_nll
from calsurr.training.physics.phase_space import sample_cut_phase_space
from calsurr.training.surrogate import InvariantFeatures, Surrogate, fit_shared_share


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
    target = torch.rand(40, dtype=torch.float64) * 100 + 10
    share = model.measure_shared_share(p, target)
    with torch.no_grad():
        mean, sigma_stat, sigma_syst, sigma_tot = (t.numpy() for t in model(p))
        mu, s = (t.numpy() for t in model.members_transformed(p))
    k = len(mu)
    spread = mu.var(0, ddof=1)
    width = (s**2).mean(0)
    assert share.reference_width == pytest.approx(np.quantile(width, 0.5, method="lower"), rel=1e-12)
    assert share.share > 0
    assert (float(model.shared_share), float(model.share_power)) == (share.share, share.power)
    fraction = np.minimum(share.share * (width / share.reference_width) ** share.power, 1.0)
    np.testing.assert_allclose(mean, np.exp(mu.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(sigma_stat, 1.5 * mean * np.sqrt(spread / k), rtol=1e-10)
    np.testing.assert_allclose(sigma_syst, 1.5 * mean * np.sqrt(fraction * width), rtol=1e-10)
    np.testing.assert_allclose(sigma_tot, np.hypot(sigma_stat, sigma_syst), rtol=1e-12)
    # the fitted share is the likelihood's optimum over the 40 points: any other (c, g) fits them worse
    residual = mu.mean(0) - np.log(target.numpy())

    def nll(c: float, g: float) -> float:
        variance = np.minimum(c * (width / share.reference_width) ** g, 1.0) * width + spread / k
        return 0.5 * float(np.mean(np.log(variance) + residual**2 / variance)) + 0.5 * g**2 / len(width)

    best = nll(share.share, share.power)
    assert best == pytest.approx(share.nll + 0.5 * share.power**2 / 40, rel=1e-9)
    for dc, dg in ((1.05, 0), (0.95, 0), (1, 0.05), (1, -0.05)):
        assert nll(share.share * dc, share.power + dg) > best


def _shared_and_own(rng, width, share, k):
    """Members' errors m_k - y whose widths are calibrated (E[(m_k - y)^2] = width), `share` of it shared."""
    n = len(width)
    bias = np.sqrt(share * width) * rng.standard_normal(n)
    return bias + np.sqrt((1 - share) * width) * rng.standard_normal((k, n))


def _fit(members, width):
    spread, error = members.var(0, ddof=1), members.mean(0)
    t = (torch.from_numpy(a) for a in (error, spread, width))
    return fit_shared_share(*t, len(members)), spread, error


def test_ambiguity_makes_calibrated_members_give_a_calibrated_average():
    """Members whose widths are their own rms errors: sigma_tot is the rms error of their average, in every
    regime of shared error against scatter, and the spread added on top of the widths is too wide."""
    rng = np.random.default_rng(0)
    k, n = 8, 200_000
    # shared^2 / scatter^2 from 2.8 to 0.36 (gg -> ggg: 0.37 for the K = 8 ensemble, 1.9-3.9 for smaller runs);
    # where the scatter dominates further, V / K from K values makes the pulls Student-t-like (width 1.13 at 0.01)
    for shared, scatter in ((1.0, 0.6), (0.6, 1.0)):
        width = np.full(n, shared**2 + scatter**2)  # E[(m_k - y)^2], what each member's likelihood fits
        members = _shared_and_own(rng, width, shared**2 / width, k)
        share, spread, error = _fit(members, width)
        # the share b^2 / W, up to what the fit takes on for the noise of V from K values (4 % where V dominates)
        assert share.share == pytest.approx(shared**2 / width[0], rel=0.05) and abs(share.power) < 0.05
        sigma_tot2 = spread / k + share.share * width
        assert np.mean(error**2) == pytest.approx(shared**2 + scatter**2 / k, rel=0.01)
        pull = error / np.sqrt(sigma_tot2)
        assert np.std(pull) == pytest.approx(1.0, abs=0.02), (shared, scatter)
        assert np.mean(np.abs(pull) < 1) == pytest.approx(0.6827, abs=0.01), (shared, scatter)
        assert np.std(error / np.sqrt(spread + width)) < 0.8  # the spread on top of the widths counts it twice


def _coverage_by_width(error, sigma, width, bins=5):
    edges = np.quantile(width, np.linspace(0, 1, bins + 1)[1:-1])
    index = np.digitize(width, edges)
    return [float(np.mean(np.abs(error[index == b]) < sigma[index == b])) for b in range(bins)]


def test_the_shared_share_follows_the_width_where_a_single_share_misses_the_bins():
    """Widths over orders of magnitude, the shared share rising with the width as on gg -> gggg (0.15 where
    the members are good, 0.4 where they are poor): the fitted power finds it and the 68 % interval covers
    68 % in every fifth of the widths; one share for all points (the scatter's average share, measured without
    labels) covers too much where the widths are small and too little where they are large."""
    rng = np.random.default_rng(1)
    k, n = 8, 200_000
    width = np.exp(rng.normal(0.0, 1.5, n))
    true_share = np.minimum(0.25 * width**0.2, 1.0)
    members = _shared_and_own(rng, width, true_share, k)
    share, spread, error = _fit(members, width)
    reference = np.median(width)
    # as in the flat case, the fit takes on a little for the noise of V from K values where V dominates
    assert share.power == pytest.approx(0.2, abs=0.04)
    assert share.share == pytest.approx(0.25 * reference**0.2, rel=0.08)
    fitted = np.minimum(share.share * (width / share.reference_width) ** share.power, 1.0)
    covered = _coverage_by_width(error, np.sqrt(fitted * width + spread / k), width)
    assert all(0.67 < c < 0.70 for c in covered), covered
    single = 1 - np.mean(spread / width)
    covered = _coverage_by_width(error, np.sqrt(single * width + spread / k), width)
    assert covered[0] > 0.72 and covered[-1] < 0.64, covered


def test_the_shared_share_is_at_most_each_members_width():
    """Members narrower than their errors (the average as wrong as each member): the share caps at 1, so
    sigma_syst is at most the members' rms width."""
    rng = np.random.default_rng(2)
    k, n = 4, 50_000
    width = np.exp(rng.normal(0.0, 1.0, n))
    error = 1.5 * np.sqrt(width) * rng.standard_normal(n)
    members = error + 1e-3 * np.sqrt(width) * rng.standard_normal((k, n))
    share, _, _ = _fit(members, width)
    model, p = _members_model()
    model.shared_share.fill_(share.share)
    model.share_power.fill_(share.power)
    model.share_reference_width.fill_(share.reference_width)
    fraction = model.shared_fraction(torch.from_numpy(width)).numpy()
    assert share.share > 1 and fraction.max() == 1.0 and np.mean(fraction == 1.0) > 0.5


def test_legacy_aggregation_adds_the_spread_to_the_widths():
    model, p = _members_model("spread_plus_width")
    with torch.no_grad():
        mean, sigma_stat, sigma_syst, _ = (t.numpy() for t in model(p))
        mu, s = (t.numpy() for t in model.members_transformed(p))
    np.testing.assert_allclose(sigma_stat, mean * mu.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(sigma_syst, mean * np.sqrt((s**2).mean(0)), rtol=1e-10)
    with pytest.raises(ValueError, match="aggregation"):
        Surrogate(InvariantFeatures(4), model.ensemble, "log", "average")
