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
    assert (float(model.spread_weight), float(model.spread_prior_share)) == (
        share.spread_weight,
        share.spread_prior_share,
    )
    assert share.spread_prior_share == pytest.approx(np.mean(spread / width), rel=1e-12)
    assert 0 < share.spread_weight < 1
    fraction = np.minimum(share.share * (width / share.reference_width) ** share.power, 1.0)
    alpha, rho = share.spread_weight, share.spread_prior_share
    np.testing.assert_allclose(mean, np.exp(mu.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(
        sigma_stat, 1.5 * mean * np.sqrt((alpha * spread + (1 - alpha) * rho * width) / k), rtol=1e-10
    )
    np.testing.assert_allclose(sigma_syst, 1.5 * mean * np.sqrt(fraction * width), rtol=1e-10)
    np.testing.assert_allclose(sigma_tot, np.hypot(sigma_stat, sigma_syst), rtol=1e-12)
    # the fit is the likelihood's optimum over the 40 points: any other (c, g, alpha) fits them worse
    residual = mu.mean(0) - np.log(target.numpy())

    def nll(c: float, g: float, a: float) -> float:
        scatter = a * spread + (1 - a) * rho * width
        variance = np.minimum(c * (width / share.reference_width) ** g, 1.0) * width + scatter / k
        logit = np.log(a / (1 - a))
        return 0.5 * float(np.mean(np.log(variance) + residual**2 / variance)) + 0.5 * (g**2 + logit**2) / len(width)

    best = nll(share.share, share.power, alpha)
    logit = np.log(alpha / (1 - alpha))
    assert best == pytest.approx(share.nll + 0.5 * (share.power**2 + logit**2) / 40, rel=1e-9)
    for dc, dg, da in ((1.05, 0, 0), (0.95, 0, 0), (1, 0.05, 0), (1, -0.05, 0), (1, 0, 0.05), (1, 0, -0.05)):
        assert nll(share.share * dc, share.power + dg, 1 / (1 + np.exp(-logit - da))) > best


def _shared_and_own(rng, width, share, k):
    """Members' errors m_k - y whose widths are calibrated (E[(m_k - y)^2] = width), `share` of it shared."""
    n = len(width)
    bias = np.sqrt(share * width) * rng.standard_normal(n)
    return bias + np.sqrt((1 - share) * width) * rng.standard_normal((k, n))


def _fit(members, width):
    spread, error = members.var(0, ddof=1), members.mean(0)
    t = (torch.from_numpy(a) for a in (error, spread, width))
    return fit_shared_share(*t, len(members)), spread, error


def _variance(share, spread, width, k):
    """sigma_tot^2 in the fitted aggregation: the shared share of the widths plus the shrunk spread over K."""
    fraction = np.minimum(share.share * (width / share.reference_width) ** share.power, 1.0)
    scatter = share.spread_weight * spread + (1 - share.spread_weight) * share.spread_prior_share * width
    return fraction * width + scatter / k


def test_ambiguity_makes_calibrated_members_give_a_calibrated_average():
    """Members whose widths are their own rms errors: sigma_tot is the rms error of their average, in every
    regime of shared error against scatter, and the spread added on top of the widths is too wide. The
    widths know each point's scatter exactly here, so V from K values adds only its sampling noise: alpha
    comes out near 0, where alpha = 1 (the spread itself) leaves the pulls Student-t-like and too wide."""
    rng = np.random.default_rng(0)
    k, n = 8, 200_000
    # shared^2 / scatter^2 from 2.8 to 0.01 (gg -> ggg: 0.37 for the K = 8 ensemble, 1.9-3.9 for smaller runs)
    for shared, scatter in ((1.0, 0.6), (0.6, 1.0), (0.1, 1.0)):
        width = np.full(n, shared**2 + scatter**2)  # E[(m_k - y)^2], what each member's likelihood fits
        members = _shared_and_own(rng, width, shared**2 / width, k)
        share, spread, error = _fit(members, width)
        assert share.share == pytest.approx(shared**2 / width[0], rel=0.02) and abs(share.power) < 0.05
        if scatter > shared:  # where the shared error dominates, V / K hardly counts and alpha hardly matters
            assert share.spread_weight < 0.1, (shared, scatter)
        assert np.mean(error**2) == pytest.approx(shared**2 + scatter**2 / k, rel=0.01)
        pull = error / np.sqrt(_variance(share, spread, width, k))
        assert np.std(pull) == pytest.approx(1.0, abs=0.02), (shared, scatter)
        assert np.mean(np.abs(pull) < 1) == pytest.approx(0.6827, abs=0.01), (shared, scatter)
        assert np.std(error / np.sqrt(spread + width)) < 0.8  # the spread on top of the widths counts it twice
    unshrunk = error / np.sqrt(share.share * width + spread / k)
    assert np.std(unshrunk) > 1.1  # b^2 / v = 0.01: V's sampling noise, taken at its word, widens the pulls


def test_the_spread_is_believed_where_it_knows_what_the_widths_do_not():
    """Members whose own scatter varies from point to point by a factor the widths do not see (one width for
    all points, the scatter log-normal about it): V holds what the likelihood needs, alpha comes out near 1,
    and the 68 % interval covers 68 % in every fifth of V; the widths' expectation alone (alpha = 0) covers too
    much where V is small and too little where it is large."""
    rng = np.random.default_rng(3)
    k, n = 8, 200_000
    scatter = 0.8 * np.exp(rng.normal(-0.5, 1.0, n))  # v, mean 0.8
    members = 0.2 * rng.standard_normal(n) + np.sqrt(scatter) * rng.standard_normal((k, n))
    width = np.full(n, 1.0)
    share, spread, error = _fit(members, width)
    assert share.spread_weight > 0.8  # short of 1: V from 8 values is still noisy about a v that varies
    covered = _coverage_by_width(error, np.sqrt(_variance(share, spread, width, k)), spread)
    assert all(0.65 < c < 0.72 for c in covered), covered
    widths_only = np.sqrt(share.share * width + share.spread_prior_share * width / k)
    covered = _coverage_by_width(error, widths_only, spread)
    assert covered[0] > 0.85 and covered[-1] < 0.60, covered


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
    covered = _coverage_by_width(error, np.sqrt(_variance(share, spread, width, k)), width)
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
    model.set_shared_share(share)
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
