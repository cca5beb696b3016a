"""Parametrised sampling-calorimeter response to single charged pions and electrons: one topo-cluster per event.

A test bench for regression with learned uncertainties, modelled on the ATLAS topo-cluster calibration with
Bayesian networks (arXiv:2412.04370): features x like the ATLAS cluster moments, target R = E_EM / E_dep
(EM-scale cluster energy over true deposited energy), and for every cluster the exact conditional mean and
standard deviation of R given x, `target_mean` and `target_sigma`, which a perfect heteroscedastic regression
would learn. Energies in GeV, depths in mm, eta dimensionless.

Causal order, and why `target_sigma` is the true conditional spread:
1. Latent truth: particle type, true energy E_true (log-uniform), eta, pile-up mu, the hadronic shower's EM
   fraction f_em (Groom mean, Beta fluctuations) and its first-interaction depth.
2. Forward shower: E_EM = E_true * R_fwd with R_fwd drawn from the response model evaluated at the latent
   truth (so E_EM carries non-compensation, dead material, sampling, noise and pile-up), and the shower moments
   from the latent quantities with their own noise. This only shapes a realistic p(x).
3. Selection E_EM >= `energy_em_min_gev`: a cut on x alone, so it cannot bias p(R | x).
4. Target: R ~ Normal(m(x), s(x)) truncated to R >= `response_floor`, with m and s functions of the features
   only; then E_dep := E_EM / R.
Step 4 reads nothing but x, so R is independent of every latent quantity given x and p(R | x) is exactly the
stated truncated normal; `target_mean`/`target_sigma` are its analytic moments (equal to m, s unless the floor
bites, i.e. at low energy). R_fwd is discarded. The price: E_dep is fixed by step 4 rather than by E_true, so
E_dep / E_true scatters around 1 with about sqrt(2) times the resolution; `energy_true` is kept for diagnostics.

R depends on x only through log_energy_em, eta, eng_frac_em, eng_frac_core and mu; the other moments are
correlated but redundant, as many real cluster moments are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

FEATURE_NAMES: tuple[str, ...] = (
    "log_energy_em",  # ln(E_EM / GeV), EM-scale cluster energy
    "eta",  # cluster pseudorapidity
    "center_lambda",  # mm, depth of the shower centre from the calorimeter front face (ATLAS CENTER_LAMBDA)
    "eng_frac_em",  # fraction of cluster energy in the EM calorimeter layers (ATLAS ENG_FRAC_EM)
    "eng_frac_core",  # fraction in high-density, EM-like cells: the H1/ATLAS local-hadronic-weighting observable
    "log_energy_density",  # log10 of the first moment of cell energy density / (GeV cm^-3) (FIRST_ENG_DENS)
    "lateral",  # normalised second lateral moment in (0, 1) (ATLAS LATERAL)
    "longitudinal",  # normalised second longitudinal moment in (0, 1) (ATLAS LONGITUDINAL)
    "isolation",  # fraction of the cluster perimeter not adjacent to other clusters (ATLAS ISOLATION)
    "n_pv",  # number of reconstructed primary vertices
    "mu",  # average number of interactions per bunch crossing
)
_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Shower-shape constants for the feature model. They only shape p(x); chosen to give ATLAS-like ranges.
EM_CENTROID_OFFSET_X0 = 0.9  # PDG calorimetry review: t_max = ln(E/E_c) - 0.5 (electrons), centroid ~1.4 X0 later
HAD_MAX_LOG_SLOPE = 0.2  # PDG: hadronic t_max / lambda_I ~ 0.2 ln(E/GeV) + 0.7
HAD_MAX_OFFSET_LAMBDA = 0.7  # PDG, as above
HAD_CENTROID_OFFSET_LAMBDA = 0.3  # centroid somewhat beyond the maximum of the long-tailed profile
EM_START_X0 = 9.0 / 7.0  # photon conversion length; mean depth of the first EM interaction, in X0
CENTRE_LOG_SPREAD = 0.12  # event-by-event spread of the shower centre (relative)
EM_BOUNDARY_WIDTH_MM = 40.0  # smearing of the EM/hadronic boundary for compact EM showers
HAD_BOUNDARY_WIDTH_LAMBDA = 0.7  # same for hadronic showers, which spread over several lambda_I
FRAC_EM_LOGIT_NOISE = 0.3  # measurement noise of eng_frac_em, in logit units
CORE_LOGIT_NOISE = 0.35  # how well the high-density-cell fraction tracks f_em, in logit units
ELECTRON_CORE_LOGIT = 4.6  # electrons: ~99 % of the energy in EM-like cells
EM_FRACTION_CLIP = 1e-3  # keeps Beta parameters and logits finite
RADIUS_EM_MM = 40.0  # ~ 2 Moliere radii in Pb/LAr: 90 % lateral containment
RADIUS_HAD_MM = 120.0  # hadronic lateral extent ~ lambda_I / 2
LENGTH_EM_X0 = 8.0  # longitudinal extent of the dense part of an EM shower
LENGTH_HAD_LAMBDA = 1.5  # same for a hadronic shower
MM3_PER_CM3 = 1000.0
DENSITY_LOG10_NOISE = 0.15
LATERAL_LOGIT = (-1.2, 2.0, 0.35)  # offset, slope in the hadronic fraction 1 - f_em, noise
LONGITUDINAL_LOGIT = (-0.8, 1.6, 0.6, 0.35)  # offset, slope in 1 - f_em, slope in first-interaction depth, noise
ISOLATION_LOGIT = (2.5, 1.2, 0.025, 0.5)  # offset, slope in 1 - f_em, slope in mu, noise

MAX_UPSTREAM_LOSS = 0.9  # beyond this the mean response nears zero and the model stops making sense
TRUNCATION_TAIL = 8.0  # standardised distance below which the floor's effect on the moments is < 1e-14
MAX_REJECTION_ROUNDS = 2000
MAX_SELECTION_ROUNDS = 100
SELECTION_OVERSAMPLING = 1.1


class CalorimeterConfig(BaseModel):
    """Every physics ingredient as a named parameter, with its source. Energies in GeV."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Sample domain
    energy_min_gev: float = Field(1.0, gt=0, description="log-uniform true energy, lower edge")
    energy_max_gev: float = Field(1000.0, gt=0, description="log-uniform true energy, upper edge")
    eta_max: float = Field(2.5, gt=0, le=4.9, description="|eta| < 2.5: ATLAS tracking/precision-EM acceptance")
    electron_fraction: float = Field(0.5, ge=0, le=1, description="fraction of events that are electrons")
    mu_min: float = Field(0.0, ge=0, description="uniform <mu>; ATLAS Run 2 spans roughly 0-70")
    mu_max: float = Field(60.0, ge=0)
    vertex_efficiency: float = Field(0.6, gt=0, le=1, description="reconstructed vertices per interaction")
    energy_em_min_gev: float = Field(0.5, gt=0, description="cluster selection on E_EM (a cut on x only)")

    # Non-compensation
    e_over_h: float = Field(1.36, ge=1.0, le=3.0, description="ATLAS TileCal test beam: e/h ~ 1.3-1.4")
    groom_e0_gev: float = Field(1.0, gt=0, description="PDG: f_em = 1 - (E/E0)^(k-1), E0 ~ 1 GeV for pions")
    groom_k: float = Field(0.82, gt=0, lt=1, description="PDG (Groom): k ~ 0.82 for pion showers")
    em_fraction_concentration: float = Field(
        12.0, gt=0, description="Beta concentration of f_em fluctuations: std ~0.14 at f_em = 0.5 (PDG: large)"
    )

    # Resolution: s/m = a/sqrt(E) (+) sqrt(b^2 + p^2 mu)/E (+) c, EM and hadronic parts mixed by energy share
    stochastic_em: float = Field(0.10, gt=0, description="GeV^1/2; ATLAS LAr EM barrel test beam ~10%/sqrt(E)")
    stochastic_had: float = Field(
        0.52, gt=0, description="GeV^1/2, for the hadronic share; ATLAS LAr+Tile barrel test beam ~52%/sqrt(E)"
    )
    constant_em: float = Field(0.007, ge=0, description="ATLAS LAr EM design constant term 0.7 %")
    constant_had: float = Field(0.03, ge=0, description="ATLAS LAr+Tile combined test beam ~3 %")
    noise_gev: float = Field(0.15, ge=0, description="electronic noise of a topo-cluster: tens of cells in quadrature")
    pileup_noise_gev: float = Field(0.035, ge=0, description="pile-up noise per sqrt(mu): ~0.25 GeV at mu = 50")
    pileup_offset_gev: float = Field(0.002, ge=0, description="residual pile-up energy per unit mu (threshold bias)")

    # Dead material and eta dependence
    upstream_x0_at_eta0: float = Field(2.0, ge=0, description="ATLAS: ~2 X0 in front of the EM calorimeter at eta 0")
    upstream_x0_per_eta: float = Field(1.2, ge=0, description="material rises with |eta| (ATLAS material maps)")
    upstream_loss_per_x0: float = Field(0.006, ge=0, lt=0.2, description="energy lost per X0 after presampler")
    upstream_loss_energy_gev: float = Field(2.0, ge=0, description="losses grow as (1 + E_up/E) at low energy")
    crack_eta: float = Field(1.45, gt=0, description="ATLAS barrel-endcap transition 1.37 < |eta| < 1.52")
    crack_width: float = Field(0.05, gt=0, description="Gaussian half-width of the crack in |eta|")
    crack_depth: float = Field(0.25, ge=0, lt=1, description="fractional response loss at the crack centre")
    crack_resolution: float = Field(0.08, ge=0, description="extra constant term at the crack centre")
    cryostat_loss: float = Field(
        0.08, ge=0, lt=1, description="loss k sqrt(f (1-f)) between EM and hadronic calorimeters (ATLAS: E_EM3 E_Tile1)"
    )

    # Geometry for the shower moments
    radiation_length_mm: float = Field(21.0, gt=0, description="ATLAS accordion: >22 X0 in ~470 mm")
    critical_energy_gev: float = Field(0.010, gt=0, description="Pb/LAr mixture, ~7-10 MeV")
    interaction_length_mm: float = Field(300.0, gt=0, description="effective lambda_I of the EM+hadronic stack")
    em_depth_mm: float = Field(470.0, gt=0, description="depth of the EM calorimeter (~1.5 lambda_I)")

    response_floor: float = Field(0.05, ge=0, lt=0.5, description="R >= floor: E_dep is at most E_EM / floor")

    @model_validator(mode="after")
    def _check_ranges(self) -> CalorimeterConfig:
        if self.energy_min_gev >= self.energy_max_gev:
            raise ValueError(
                f"energy_min_gev must be below energy_max_gev, got {self.energy_min_gev} >= {self.energy_max_gev}"
            )
        if self.mu_min > self.mu_max:
            raise ValueError(f"mu_min must not exceed mu_max, got {self.mu_min} > {self.mu_max}")
        if self.energy_em_min_gev >= self.energy_max_gev:
            raise ValueError(
                f"energy_em_min_gev must be below energy_max_gev, got {self.energy_em_min_gev} >= {self.energy_max_gev}"
            )
        lowest = min(self.energy_min_gev, self.energy_em_min_gev)  # the forward step evaluates at E_true
        worst_loss = upstream_loss(np.array([self.eta_max]), np.array([lowest]), self)[0]
        if worst_loss >= MAX_UPSTREAM_LOSS:
            raise ValueError(
                f"upstream loss reaches {worst_loss:.2f} of the energy at |eta| = {self.eta_max}, E = {lowest} GeV;"
                f" expected < {MAX_UPSTREAM_LOSS}"
            )
        return self


@dataclass(frozen=True)
class CalorimeterSample:
    """Clusters with their features (N, F) float64, target R (N,) and the exact conditional moments of R.

    `energy_true`, `is_electron` and `em_fraction_true` are latent truth: the network never sees them.
    """

    features: np.ndarray
    target: np.ndarray  # R = E_EM / E_dep
    target_mean: np.ndarray  # E[R | x]
    target_sigma: np.ndarray  # std[R | x]
    energy_em: np.ndarray  # GeV, EM-scale cluster energy (= exp of column log_energy_em)
    energy_dep: np.ndarray  # GeV, true deposited energy = energy_em / target
    energy_true: np.ndarray  # GeV, latent particle energy
    is_electron: np.ndarray  # bool
    em_fraction_true: np.ndarray  # latent shower EM fraction (1 for electrons)
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __len__(self) -> int:
        return len(self.target)

    def column(self, name: str) -> np.ndarray:
        """One feature column by name."""
        if name not in _COL:
            raise KeyError(f"unknown feature {name!r}; expected one of {FEATURE_NAMES}")
        return self.features[:, _COL[name]]


# ---------------------------------------------------------------------------------------------------------------
# Physics ingredients (vectorised, energies in GeV)


def groom_em_fraction(energy_gev: np.ndarray, config: CalorimeterConfig) -> np.ndarray:
    """Mean EM fraction of a pion shower, f_em = 1 - (E/E0)^(k-1) (Groom; PDG calorimetry review), 0 below E0."""
    ratio = np.maximum(energy_gev / config.groom_e0_gev, 1.0)
    return 1.0 - ratio ** (config.groom_k - 1.0)


def upstream_material_x0(abs_eta: np.ndarray, config: CalorimeterConfig) -> np.ndarray:
    """Material in front of the calorimeter, in radiation lengths, growing with |eta|."""
    return config.upstream_x0_at_eta0 + config.upstream_x0_per_eta * abs_eta


def upstream_loss(abs_eta: np.ndarray, energy_gev: np.ndarray, config: CalorimeterConfig) -> np.ndarray:
    """Fraction of the energy lost in dead material upstream, larger at low energy (early shower start)."""
    scale = 1.0 + config.upstream_loss_energy_gev / energy_gev
    return config.upstream_loss_per_x0 * upstream_material_x0(abs_eta, config) * scale


def crack_profile(abs_eta: np.ndarray, config: CalorimeterConfig) -> np.ndarray:
    """Gaussian weight in [0, 1] of the barrel-endcap transition region."""
    return np.exp(-0.5 * ((abs_eta - config.crack_eta) / config.crack_width) ** 2)


def response_core(
    energy_em: np.ndarray,
    eta: np.ndarray,
    eng_frac_em: np.ndarray,
    em_likeness: np.ndarray,
    mu: np.ndarray,
    config: CalorimeterConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean m and width s of the Gaussian core of R, before the floor; inputs inside the configured domain.

    m = [w + (1 - w) h/e] (1 - upstream)(1 - crack)(1 - cryostat)(1 + offset mu / E), with w the EM-like energy
    share; s/m adds the EM and hadronic sampling terms by energy share, noise, pile-up, constant and crack terms.
    """
    abs_eta = np.abs(eta)
    w = np.clip(em_likeness, 0.0, 1.0)
    shower = w + (1.0 - w) / config.e_over_h
    crack = crack_profile(abs_eta, config)
    cryostat = config.cryostat_loss * np.sqrt(np.clip(eng_frac_em * (1.0 - eng_frac_em), 0.0, None))
    pileup = 1.0 + config.pileup_offset_gev * mu / energy_em
    mean = (
        shower
        * (1.0 - upstream_loss(abs_eta, energy_em, config))
        * (1.0 - config.crack_depth * crack)
        * (1.0 - cryostat)
        * pileup
    )
    stochastic2 = w * config.stochastic_em**2 + (1.0 - w) * config.stochastic_had**2
    constant2 = w * config.constant_em**2 + (1.0 - w) * config.constant_had**2
    noise2 = config.noise_gev**2 + config.pileup_noise_gev**2 * mu
    relative2 = stochastic2 / energy_em + noise2 / energy_em**2 + constant2 + (config.crack_resolution * crack) ** 2
    return mean, mean * np.sqrt(relative2)


# ---------------------------------------------------------------------------------------------------------------
# The conditional p(R | x): truncated normal with analytic moments

_erfc = np.frompyfunc(math.erfc, 1, 1)


def truncated_normal_moments(
    core_mean: np.ndarray, core_sigma: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of Normal(core_mean, core_sigma) truncated to >= floor (exact; erfc only where it matters)."""
    alpha = (floor - core_mean) / core_sigma
    mean, sigma = core_mean.astype(np.float64, copy=True), core_sigma.astype(np.float64, copy=True)
    idx = np.flatnonzero(alpha > -TRUNCATION_TAIL)
    if idx.size:
        a = alpha[idx]
        survival = 0.5 * _erfc(a / math.sqrt(2.0)).astype(np.float64)
        hazard = np.exp(-0.5 * a**2) / math.sqrt(2.0 * math.pi) / survival
        mean[idx] += core_sigma[idx] * hazard
        sigma[idx] *= np.sqrt(np.clip(1.0 + a * hazard - hazard**2, 0.0, None))
    return mean, sigma


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise ValueError(
            f"features expects shape [-1, {len(FEATURE_NAMES)}] ({FEATURE_NAMES}), got {list(features.shape)}"
        )
    return features


def _core_from_features(features: np.ndarray, config: CalorimeterConfig) -> tuple[np.ndarray, np.ndarray]:
    f = _check_features(features)
    return response_core(
        np.exp(f[:, _COL["log_energy_em"]]),
        f[:, _COL["eta"]],
        f[:, _COL["eng_frac_em"]],
        f[:, _COL["eng_frac_core"]],
        f[:, _COL["mu"]],
        config,
    )


def conditional_response(
    features: np.ndarray, config: CalorimeterConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact E[R | x] and std[R | x] for features (N, F): what a perfect heteroscedastic regression learns."""
    config = config or CalorimeterConfig()
    core_mean, core_sigma = _core_from_features(features, config)
    return truncated_normal_moments(core_mean, core_sigma, config.response_floor)


def _draw_truncated_normal(
    core_mean: np.ndarray, core_sigma: np.ndarray, floor: float, rng: np.random.Generator
) -> np.ndarray:
    """Rejection sampling; acceptance is the surviving mass, never small for this model's core widths."""
    values = rng.normal(core_mean, core_sigma)
    redo = np.flatnonzero(values < floor)
    for _ in range(MAX_REJECTION_ROUNDS):
        if redo.size == 0:
            return values
        values[redo] = rng.normal(core_mean[redo], core_sigma[redo])
        redo = redo[values[redo] < floor]
    raise RuntimeError(f"{redo.size} responses stayed below the floor {floor} after {MAX_REJECTION_ROUNDS} rounds")


def draw_response(
    features: np.ndarray, rng: np.random.Generator, config: CalorimeterConfig | None = None
) -> np.ndarray:
    """R ~ p(R | x), reading nothing but the features: this is what makes `target_sigma` the true spread."""
    config = config or CalorimeterConfig()
    core_mean, core_sigma = _core_from_features(features, config)
    return _draw_truncated_normal(core_mean, core_sigma, config.response_floor, rng)


# ---------------------------------------------------------------------------------------------------------------
# Forward model for the features


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _draw_latent(n: int, rng: np.random.Generator, config: CalorimeterConfig) -> dict[str, np.ndarray]:
    """Particle type, E_true (GeV), eta, mu, reconstructed vertices, f_em and first-interaction depth (mm)."""
    is_electron = rng.random(n) < config.electron_fraction
    energy = np.exp(rng.uniform(math.log(config.energy_min_gev), math.log(config.energy_max_gev), n))
    eta = rng.uniform(-config.eta_max, config.eta_max, n)
    mu = rng.uniform(config.mu_min, config.mu_max, n)
    n_pv = 1.0 + rng.poisson(config.vertex_efficiency * mu)
    f_mean = np.clip(groom_em_fraction(energy, config), EM_FRACTION_CLIP, 1.0 - EM_FRACTION_CLIP)
    kappa = config.em_fraction_concentration
    f_em = np.clip(rng.beta(kappa * f_mean, kappa * (1.0 - f_mean)), EM_FRACTION_CLIP, 1.0 - EM_FRACTION_CLIP)
    f_em = np.where(is_electron, 1.0, f_em)
    start_scale = np.where(is_electron, EM_START_X0 * config.radiation_length_mm, config.interaction_length_mm)
    start = rng.exponential(start_scale)
    return dict(is_electron=is_electron, energy_true=energy, eta=eta, mu=mu, n_pv=n_pv, f_em=f_em, start=start)


def _shower_centre_and_boundary(
    latent: dict[str, np.ndarray], config: CalorimeterConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Mean shower-centre depth (mm) and the logit of the energy share in front of the EM/hadronic boundary."""
    energy, is_e = latent["energy_true"], latent["is_electron"]
    em_centre = config.radiation_length_mm * (np.log(energy / config.critical_energy_gev) + EM_CENTROID_OFFSET_X0)
    had_centre = latent["start"] + config.interaction_length_mm * (
        HAD_MAX_LOG_SLOPE * np.log(energy) + HAD_MAX_OFFSET_LAMBDA + HAD_CENTROID_OFFSET_LAMBDA
    )
    centre = np.where(is_e, em_centre, had_centre)
    width = np.where(is_e, EM_BOUNDARY_WIDTH_MM, HAD_BOUNDARY_WIDTH_LAMBDA * config.interaction_length_mm)
    return centre, (config.em_depth_mm - centre) / width


def _shower_moments(
    latent: dict[str, np.ndarray], energy_em: np.ndarray, rng: np.random.Generator, config: CalorimeterConfig
) -> np.ndarray:
    """Feature matrix (N, F) from the latent shower and the EM-scale energy, each moment with its own noise."""
    n = len(energy_em)
    f_em, is_e = latent["f_em"], latent["is_electron"]
    hadronic = 1.0 - f_em
    centre = latent["centre"] * np.exp(CENTRE_LOG_SPREAD * rng.standard_normal(n))
    eng_frac_em = _sigmoid(latent["boundary_logit"] + FRAC_EM_LOGIT_NOISE * rng.standard_normal(n))
    core_logit = np.where(is_e, ELECTRON_CORE_LOGIT, _logit(np.clip(f_em, EM_FRACTION_CLIP, 1 - EM_FRACTION_CLIP)))
    eng_frac_core = _sigmoid(core_logit + CORE_LOGIT_NOISE * rng.standard_normal(n))
    radius2 = f_em * RADIUS_EM_MM**2 + hadronic * RADIUS_HAD_MM**2
    length = (
        f_em * LENGTH_EM_X0 * config.radiation_length_mm + hadronic * LENGTH_HAD_LAMBDA * config.interaction_length_mm
    )
    density = energy_em / (math.pi * radius2 * length) * MM3_PER_CM3
    log_density = np.log10(density) + DENSITY_LOG10_NOISE * rng.standard_normal(n)
    lat0, lat1, lat_noise = LATERAL_LOGIT
    lateral = _sigmoid(lat0 + lat1 * hadronic + lat_noise * rng.standard_normal(n))
    lon0, lon1, lon_start, lon_noise = LONGITUDINAL_LOGIT
    depth_lambda = latent["start"] / config.interaction_length_mm
    longitudinal = _sigmoid(lon0 + lon1 * hadronic + lon_start * depth_lambda + lon_noise * rng.standard_normal(n))
    iso0, iso1, iso_mu, iso_noise = ISOLATION_LOGIT
    isolation = _sigmoid(iso0 - iso1 * hadronic - iso_mu * latent["mu"] + iso_noise * rng.standard_normal(n))
    columns = dict(
        log_energy_em=np.log(energy_em),
        eta=latent["eta"],
        center_lambda=centre,
        eng_frac_em=eng_frac_em,
        eng_frac_core=eng_frac_core,
        log_energy_density=log_density,
        lateral=lateral,
        longitudinal=longitudinal,
        isolation=isolation,
        n_pv=latent["n_pv"],
        mu=latent["mu"],
    )
    features = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    for name, i in _COL.items():
        features[:, i] = columns[name]
    return features


def _simulate_selected(n: int, rng: np.random.Generator, config: CalorimeterConfig) -> dict[str, np.ndarray]:
    """Steps 1-3: latent truth, forward EM-scale energy and moments, then the E_EM selection."""
    latent = _draw_latent(n, rng, config)
    latent["centre"], latent["boundary_logit"] = _shower_centre_and_boundary(latent, config)
    fwd_mean, fwd_sigma = response_core(
        latent["energy_true"], latent["eta"], _sigmoid(latent["boundary_logit"]), latent["f_em"], latent["mu"], config
    )
    energy_em = latent["energy_true"] * _draw_truncated_normal(fwd_mean, fwd_sigma, config.response_floor, rng)
    features = _shower_moments(latent, energy_em, rng, config)
    keep = energy_em >= config.energy_em_min_gev
    return dict(
        features=features[keep],
        energy_em=energy_em[keep],
        energy_true=latent["energy_true"][keep],
        is_electron=latent["is_electron"][keep],
        em_fraction_true=latent["f_em"][keep],
    )


def _select_n(n_events: int, rng: np.random.Generator, config: CalorimeterConfig) -> dict[str, np.ndarray]:
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    for _ in range(MAX_SELECTION_ROUNDS):
        if have >= n_events:
            break
        batch = _simulate_selected(math.ceil((n_events - have) * SELECTION_OVERSAMPLING) + 16, rng, config)
        parts.append(batch)
        have += len(batch["energy_em"])
    else:
        if have < n_events:
            raise RuntimeError(
                f"selection E_EM >= {config.energy_em_min_gev} GeV kept only {have} of {n_events} clusters"
            )
    if not parts:
        parts = [_simulate_selected(0, rng, config)]
    return {key: np.concatenate([p[key] for p in parts])[:n_events] for key in parts[0]}


def simulate_clusters(
    n_events: int, rng: np.random.Generator, config: CalorimeterConfig | None = None
) -> CalorimeterSample:
    """`n_events` selected single-particle clusters; see the module docstring for the causal order."""
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 0:
        raise ValueError(f"n_events expects a non-negative integer, got {n_events!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng expects a numpy.random.Generator, got {type(rng).__name__}")
    config = config or CalorimeterConfig()
    sel = _select_n(int(n_events), rng, config)
    core_mean, core_sigma = _core_from_features(sel["features"], config)
    target = _draw_truncated_normal(core_mean, core_sigma, config.response_floor, rng)
    target_mean, target_sigma = truncated_normal_moments(core_mean, core_sigma, config.response_floor)
    return CalorimeterSample(
        features=sel["features"],
        target=target,
        target_mean=target_mean,
        target_sigma=target_sigma,
        energy_em=sel["energy_em"],
        energy_dep=sel["energy_em"] / target,
        energy_true=sel["energy_true"],
        is_electron=sel["is_electron"],
        em_fraction_true=sel["em_fraction_true"],
    )
