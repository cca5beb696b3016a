"""The calorimeter test bench: reproducible, physical, and its stated spread is the real conditional spread."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from pydantic import ValidationError

from calsurr.training.physics.calorimeter import (
    FEATURE_NAMES,
    CalorimeterConfig,
    CalorimeterSample,
    conditional_response,
    draw_response,
    simulate_clusters,
)

N_LARGE = 1_000_000
PULL_TOLERANCE = 0.02  # std of pulls in a bin of >= 1e4 clusters: statistical error <= 0.7 %
ROW_STD_TOLERANCE = 0.055  # per-row std from 5000 draws: statistical error ~1 %, so this is > 5 sigma
ROW_STD_MEAN_TOLERANCE = 0.005  # the average over 400 rows: error ~0.05 %


@pytest.fixture(scope="module")
def sample() -> CalorimeterSample:
    return simulate_clusters(N_LARGE, np.random.default_rng(20241204))


def pulls(s: CalorimeterSample) -> np.ndarray:
    return (s.target - s.target_mean) / s.target_sigma


def fit_resolution(
    energy: np.ndarray, relative: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit var(relative) = a^2 <1/E> + b^2 <1/E^2> + c^2 over energy bins (E in GeV).

    Returns (a, b, c), fit / data - 1 per bin, and the binned relative resolution.
    """
    idx = np.digitize(energy, edges) - 1
    design, var, counts = [], [], []
    for k in range(len(edges) - 1):
        m = idx == k
        design.append([np.mean(1 / energy[m]), np.mean(1 / energy[m] ** 2), 1.0])
        var.append(relative[m].var())
        counts.append(m.sum())
    x, y = np.array(design), np.array(var)
    weight = np.sqrt(np.array(counts) / 2.0) / y  # 1 / statistical error of each variance
    coef, *_ = np.linalg.lstsq(x * weight[:, None], y * weight, rcond=None)
    return np.sqrt(np.clip(coef, 0, None)), x @ coef / y - 1.0, np.sqrt(y)


def mixed(w: np.ndarray, em: float, had: float) -> float:
    """The documented mixing of EM and hadronic terms by EM-like energy share w, averaged over the sample."""
    w = np.clip(w, 0, 1)
    return float(np.sqrt(np.mean(w * em**2 + (1 - w) * had**2)))


# --- shapes, reproducibility, validation -------------------------------------------------------------------------


def test_shapes_dtypes_and_columns() -> None:
    s = simulate_clusters(2000, np.random.default_rng(1))
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 11
    assert s.feature_names == FEATURE_NAMES
    assert s.features.shape == (2000, len(FEATURE_NAMES)) and s.features.dtype == np.float64
    for arr in (s.target, s.target_mean, s.target_sigma, s.energy_em, s.energy_dep, s.energy_true, s.em_fraction_true):
        assert arr.shape == (2000,) and arr.dtype == np.float64 and np.all(np.isfinite(arr))
    assert s.is_electron.dtype == bool and len(s) == 2000
    assert np.all(np.isfinite(s.features))
    cfg = CalorimeterConfig()
    np.testing.assert_allclose(np.exp(s.column("log_energy_em")), s.energy_em)
    np.testing.assert_allclose(s.energy_dep * s.target, s.energy_em)
    assert np.all(s.energy_em >= cfg.energy_em_min_gev) and np.all(s.target >= cfg.response_floor)
    assert np.all(np.abs(s.column("eta")) <= cfg.eta_max)
    for name in ("eng_frac_em", "eng_frac_core", "lateral", "longitudinal", "isolation"):
        assert np.all((s.column(name) > 0) & (s.column(name) < 1)), name
    assert np.all(s.column("n_pv") >= 1) and np.all(s.target_sigma > 0)
    with pytest.raises(KeyError, match="unknown feature"):
        s.column("pt")
    empty = simulate_clusters(0, np.random.default_rng(1))
    assert empty.features.shape == (0, len(FEATURE_NAMES)) and empty.target.shape == (0,)


def test_reproducible_by_seed() -> None:
    a = simulate_clusters(5000, np.random.default_rng(7))
    b = simulate_clusters(5000, np.random.default_rng(7))
    c = simulate_clusters(5000, np.random.default_rng(8))
    for name in ("features", "target", "target_sigma", "energy_dep", "is_electron"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.target, c.target)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"energy_min_gev": 10.0, "energy_max_gev": 5.0}, "energy_min_gev must be below energy_max_gev"),
        ({"mu_min": 50.0, "mu_max": 10.0}, "mu_min must not exceed mu_max"),
        ({"e_over_h": 0.8}, "e_over_h"),
        ({"groom_k": 1.2}, "groom_k"),
        ({"electron_fraction": 1.5}, "electron_fraction"),
        ({"upstream_loss_per_x0": 0.15}, "upstream loss reaches"),
        ({"stochastik_em": 0.1}, "stochastik_em"),
    ],
)
def test_invalid_config_raises_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalorimeterConfig(**kwargs)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        simulate_clusters(-1, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        simulate_clusters(10, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"features expects shape \[-1, 11\]"):
        conditional_response(np.zeros((3, 4)))


# --- physics -------------------------------------------------------------------------------------------------------


def test_electron_response_near_one(sample: CalorimeterSample) -> None:
    central = sample.is_electron & (np.abs(sample.column("eta")) < 0.8) & (sample.energy_em > 10)
    assert abs(sample.target[central].mean() - 1.0) < 0.03


def test_pion_response_below_one_and_rising(sample: CalorimeterSample) -> None:
    """Non-compensation: pi/e = f_em + (1 - f_em) h/e < 1, rising as f_em grows ~ log E."""
    pion = ~sample.is_electron
    edges = np.geomspace(1.0, 1000.0, 7)
    means = [
        sample.target[pion & (sample.energy_em >= lo) & (sample.energy_em < hi)].mean() for lo, hi in pairwise(edges)
    ]
    assert np.all(np.diff(means) > 0.005), means
    assert means[-1] < 0.95 and means[0] < 0.8
    electron_high = sample.target[sample.is_electron & (sample.energy_em > 100) & (np.abs(sample.column("eta")) < 0.8)]
    assert electron_high.mean() - means[-1] > 0.08


def test_electron_resolution_follows_stochastic_term() -> None:
    cfg = CalorimeterConfig(electron_fraction=1.0, mu_min=0.0, mu_max=0.0, eta_max=0.5)
    s = simulate_clusters(300_000, np.random.default_rng(3), cfg)
    (a, b, c), residual, resolution = fit_resolution(s.energy_em, s.target / s.target_mean, np.geomspace(1, 600, 13))
    w = s.column("eng_frac_core")
    assert np.all(np.diff(resolution) < 0), "relative resolution must fall with energy"
    assert np.max(np.abs(residual)) < 0.03
    assert a == pytest.approx(mixed(w, cfg.stochastic_em, cfg.stochastic_had), rel=0.03)
    assert b == pytest.approx(cfg.noise_gev, rel=0.1)
    assert c == pytest.approx(mixed(w, cfg.constant_em, cfg.constant_had), rel=0.1)


def test_pion_resolution_follows_stochastic_term() -> None:
    """At fixed EM-like share (narrow band of eng_frac_core) the hadronic stochastic term is constant."""
    cfg = CalorimeterConfig(electron_fraction=0.0, mu_min=0.0, mu_max=0.0, eta_max=0.5)
    s = simulate_clusters(400_000, np.random.default_rng(3), cfg)
    w = s.column("eng_frac_core")
    band = (w > 0.45) & (w < 0.55)
    (a, _, c), residual, resolution = fit_resolution(
        s.energy_em[band], (s.target / s.target_mean)[band], np.geomspace(3, 600, 11)
    )
    assert np.all(np.diff(resolution) < 0)
    assert np.max(np.abs(residual)) < 0.05
    assert a == pytest.approx(mixed(w[band], cfg.stochastic_em, cfg.stochastic_had), rel=0.05)
    assert c == pytest.approx(mixed(w[band], cfg.constant_em, cfg.constant_had), rel=0.2)
    assert a > 3 * cfg.stochastic_em


def test_crack_degrades_response(sample: CalorimeterSample) -> None:
    abs_eta = np.abs(sample.column("eta"))
    electrons = sample.is_electron & (sample.energy_true > 20)
    crack = electrons & (abs_eta > 1.42) & (abs_eta < 1.48)
    central = electrons & (abs_eta < 0.8)
    assert sample.target[central].mean() - sample.target[crack].mean() > 0.15
    assert sample.target[crack].std() > 2 * sample.target[central].std()


def test_upstream_material_grows_with_eta(sample: CalorimeterSample) -> None:
    abs_eta = np.abs(sample.column("eta"))
    electrons = sample.is_electron & (sample.energy_em > 20)
    central = sample.target[electrons & (abs_eta < 0.5)].mean()
    forward = sample.target[electrons & (abs_eta > 2.0)].mean()
    assert central - forward > 0.01


def test_pileup_broadens_resolution_at_low_energy(sample: CalorimeterSample) -> None:
    mu = sample.column("mu")
    relative = sample.target / sample.target_mean
    base = sample.is_electron & (np.abs(sample.column("eta")) < 0.8)
    low = base & (sample.energy_em > 1) & (sample.energy_em < 4)
    high = base & (sample.energy_em > 200)
    assert relative[low & (mu > 50)].std() / relative[low & (mu < 10)].std() > 1.2
    assert relative[high & (mu > 50)].std() / relative[high & (mu < 10)].std() == pytest.approx(1.0, abs=0.05)


# --- the key property: target_sigma is the true conditional spread -----------------------------------------------


def test_stated_moments_are_those_of_the_features(sample: CalorimeterSample) -> None:
    mean, sigma = conditional_response(sample.features[:1000])
    np.testing.assert_array_equal(mean, sample.target_mean[:1000])
    np.testing.assert_array_equal(sigma, sample.target_sigma[:1000])


def test_repeated_draws_at_fixed_features_match_sigma(sample: CalorimeterSample) -> None:
    """Zero-width feature bins: redraw R 5000 times at each of 400 feature vectors (low energies included)."""
    rng = np.random.default_rng(11)
    rows = rng.choice(len(sample), 400, replace=False)
    n_draws = 5000
    features = np.repeat(sample.features[rows], n_draws, axis=0)
    draws = draw_response(features, rng).reshape(400, n_draws)
    std_ratio = draws.std(axis=1) / sample.target_sigma[rows]
    mean_shift = (draws.mean(axis=1) - sample.target_mean[rows]) / sample.target_sigma[rows]
    assert np.max(np.abs(std_ratio - 1)) < ROW_STD_TOLERANCE
    assert abs(std_ratio.mean() - 1) < ROW_STD_MEAN_TOLERANCE
    assert np.max(np.abs(mean_shift)) < 5 / np.sqrt(n_draws)


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_pulls_are_standard_in_feature_deciles(sample: CalorimeterSample, name: str) -> None:
    z = pulls(sample)
    column = sample.column(name)
    edges = np.unique(np.quantile(column, np.linspace(0, 1, 11)))
    idx = np.clip(np.digitize(column, edges) - 1, 0, len(edges) - 2)
    for k in range(len(edges) - 1):
        zk = z[idx == k]
        if len(zk) < 10_000:  # n_pv is discrete: merged deciles
            continue
        assert abs(zk.mean()) < PULL_TOLERANCE and abs(zk.std() - 1) < PULL_TOLERANCE, (name, k)


def test_pulls_are_standard_given_hidden_truth(sample: CalorimeterSample) -> None:
    """R is independent of the latent truth given x, so pulls stay standard in bins of what the network never sees."""
    z = pulls(sample)
    selections = {
        "electron": sample.is_electron,
        "pion": ~sample.is_electron,
        "pion low f_em": ~sample.is_electron & (sample.em_fraction_true < 0.3),
        "pion high f_em": ~sample.is_electron & (sample.em_fraction_true > 0.6),
        "E_true < 3 GeV": sample.energy_true < 3,
        "E_true > 300 GeV": sample.energy_true > 300,
        "sigma in top decile": sample.target_sigma > np.quantile(sample.target_sigma, 0.9),
        "sigma in bottom decile": sample.target_sigma < np.quantile(sample.target_sigma, 0.1),
    }
    for label, sel in selections.items():
        assert abs(z[sel].mean()) < PULL_TOLERANCE and abs(z[sel].std() - 1) < PULL_TOLERANCE, label


def test_spread_in_narrow_bins_obeys_total_variance(sample: CalorimeterSample) -> None:
    """In narrow (log E, eta, eng_frac_core) bins, std(R) = sqrt(<sigma^2> + var(mean)) within a few per cent.

    Quantile bins, so pion-like clusters get as many narrow bins as the electrons' tight core fractions.
    """
    keys = []
    for name, n_bins in (("log_energy_em", 10), ("eta", 6), ("eng_frac_core", 8)):
        inner_edges = np.quantile(sample.column(name), np.linspace(0, 1, n_bins + 1))[1:-1]
        keys.append(np.digitize(sample.column(name), inner_edges))
    cell = np.ravel_multi_index(keys, (10, 6, 8))
    order = np.argsort(cell, kind="stable")
    ratios, within, counts, electron_share = [], [], [], []
    for members in np.split(order, np.flatnonzero(np.diff(cell[order])) + 1):
        if len(members) < 1500:
            continue
        stated = np.sqrt(np.mean(sample.target_sigma[members] ** 2) + np.var(sample.target_mean[members]))
        ratios.append(sample.target[members].std() / stated)
        within.append(np.sqrt(np.mean(sample.target_sigma[members] ** 2)) / stated)
        counts.append(len(members))
        electron_share.append(sample.is_electron[members].mean())
    ratios = np.array(ratios)
    significance = (ratios - 1) * np.sqrt(2 * np.array(counts))  # std of a sample std is ~ sigma / sqrt(2 n)
    assert len(ratios) > 300 and np.sum(np.array(electron_share) < 0.5) > 100
    assert np.max(np.abs(ratios - 1)) < 0.06 and np.max(np.abs(significance)) < 5
    assert 0.8 < significance.std() < 1.25
    assert abs(ratios.mean() - 1) < 0.005
    assert np.median(within) > 0.9, "bins should be narrow enough for sigma_R_true to dominate the spread"
