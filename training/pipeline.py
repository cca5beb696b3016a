"""A surrogate from data to calibrated model: build, fit by the chosen uncertainty method, check, measure.

One entry point for every method and task: amplitudes (four-momenta in, |M|^2 out, fitted in log space) and
calorimeter response (cluster features in, R = E_reco / E_dep out).

The uncertainties are served as learned (training/surrogate.py derives the aggregation). A recalibration
factor f (pulls on the calibration split with unit RMS under sigma -> f sigma) is still fitted, as a check:
calibrated as learned, it comes out near 1; it is applied only when the config asks (`recalibrate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calsurr.service.card import CalibrationReport
from calsurr.training import data
from calsurr.training.calibration import (
    CONDITIONAL_BINS,
    calibration_report,
    conditioning_variables,
    fit_recalibration_factor,
)
from calsurr.training.fit import FitConfig, FitHistory, Method, fit_network, refit_widths
from calsurr.training.models import Activation, LorentzTransformerEnsemble, StackedMLP, VariationalMLP
from calsurr.training.physics.processes import PROCESSES
from calsurr.training.surrogate import (
    Aggregation,
    InvariantFeatures,
    MomentumFeatures,
    ParkeTaylorPrefactor,
    Standardisation,
    Surrogate,
    Symmetry,
)

# train, validation (early stopping), calibration (recalibration factor), test (calibration report)
SPLIT_FRACTIONS = (0.7, 0.1, 0.1, 0.1)
CALORIMETER = "calorimeter"
# "parke_taylor": amplitudes learn log(|M|^2 / P), P the Parke-Taylor sum (training/surrogate.py); from 6 gluons
TargetPrefactor = Literal["none", "parke_taylor"]
# "mlp": StackedMLP on the pair invariants; "lgatr": LorentzTransformerEnsemble on the momenta (training/models.py)
Network = Literal["mlp", "lgatr"]
MIN_PARKE_TAYLOR_PARTICLES = 6  # for 4 and 5 gluons P is |M|^2 itself: nothing would be left to learn


class TrainingConfig(BaseModel):
    """Everything a training run depends on; YAML files map onto it field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    process: str = Field(default="gg_gg", description="gg_gg, gg_ggg, gg_gggg or calorimeter")
    n_events: int = Field(default=20_000, ge=100, description="events generated, split 70/10/10/10")
    domain: data.PhaseSpaceDomain = data.PhaseSpaceDomain()
    noise: float = Field(default=0.0, ge=0, lt=1, description="relative label noise injected into generated data")
    method: Method = "deep_ensemble"
    members: int = Field(default=4, ge=2, description="ensemble members, or posterior draws exported")
    hidden: int = Field(default=64, ge=1)
    layers: int = Field(default=3, ge=1)
    prior_sigma: float = Field(default=1.0, gt=0, description="Bayesian network: width of the weight prior")
    activation: Activation = Field(default="silu", description="the members' activation: silu or gelu")
    symmetry: Symmetry = Field(
        default="none",
        description="amplitudes: 'canonical' orders the identical gluons before the invariants are formed "
        "(final state by energy, beams by the leading gluon's hemisphere), so the network sees one point per orbit",
    )
    target_prefactor: TargetPrefactor = Field(
        default="none",
        description="amplitudes from 6 gluons: 'parke_taylor' fits log(|M|^2 / P), P the Parke-Taylor sum holding "
        "the soft and collinear poles; the graph multiplies P back",
    )
    fit: FitConfig = FitConfig()
    aggregation: Aggregation = Field(
        default="ambiguity",
        description="how member means and widths become sigma_stat and sigma_syst (training/surrogate.py): "
        "'ambiguity', the error of the members' average; 'spread_plus_width', the spread on top of the widths",
    )
    recalibrate: bool = Field(
        default=False,
        description="apply the factor fitted on the calibration split (calibration-split pulls with unit RMS); "
        "it is fitted and reported either way, as a check of the calibration as learned",
    )
    network: Network = Field(
        default="mlp",
        description="amplitudes: the members' network, 'mlp' on the pair invariants or 'lgatr', a Lorentz-"
        "equivariant transformer (L-GATr-slim) on the four-momenta: `hidden` scalar channels (hidden // 4 vectors) "
        "per particle, `layers` blocks; deep and repulsive ensembles",
    )
    seed: int = Field(default=0, ge=0, description="seed of generated data, split and initialisation")

    @field_validator("process")
    @classmethod
    def _known_process(cls, value: str) -> str:
        known = (*PROCESSES, CALORIMETER)
        if value not in known:
            raise ValueError(f"expected one of {', '.join(known)}, got '{value}'")
        return value

    @model_validator(mode="after")
    def _levers_fit_the_task(self) -> TrainingConfig:
        if self.process == CALORIMETER and (
            self.symmetry != "none" or self.target_prefactor != "none" or self.network != "mlp"
        ):
            raise ValueError("symmetry, target_prefactor and network apply to amplitudes, not to the calorimeter")
        if self.network == "lgatr" and self.method == "bayesian":
            raise ValueError("network lgatr trains as a deep or repulsive ensemble; the Bayesian network is an MLP")
        if self.target_prefactor == "parke_taylor" and PROCESSES[self.process].n_particles < MIN_PARKE_TAYLOR_PARTICLES:
            raise ValueError(
                f"target_prefactor parke_taylor needs at least {MIN_PARKE_TAYLOR_PARTICLES} gluons: for "
                f"{self.process} the Parke-Taylor sum is the exact |M|^2, leaving nothing to learn"
            )
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> TrainingConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})

    @property
    def task(self) -> str:
        return "calibration" if self.process == CALORIMETER else "amplitude"


@dataclass
class TrainedSurrogate:
    config: TrainingConfig
    model: Surrogate
    test: data.Dataset  # the held-out split
    history: FitHistory
    calibration: CalibrationReport  # of what is served: as learned, or recalibrated when the config asks
    uncalibrated: CalibrationReport  # as learned
    dataset_sha256: str
    training_seconds: float


def predict(model: Surrogate, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    """mean, sigma_stat, sigma_syst, sigma_tot of the torch model, as float64 numpy arrays."""
    model.eval()
    with torch.no_grad():
        return tuple(t.numpy() for t in model(torch.from_numpy(np.ascontiguousarray(inputs))))


def held_out_report(
    model: Surrogate, test: data.Dataset, factor: float, applied: bool, n_bins: int = CONDITIONAL_BINS
) -> CalibrationReport:
    """The calibration of `model` on `test`, globally and in bins (`conditioning_variables`); `factor` is the
    recalibration factor fitted on the calibration split, `applied` whether the model's sigmas include it."""
    mean, _, _, sigma_tot = predict(model, test.inputs)
    variables = conditioning_variables(test, mean, sigma_tot)
    return calibration_report(mean, sigma_tot, test.target, factor, applied=applied, variables=variables, n_bins=n_bins)


def build_surrogate(config: TrainingConfig, inputs: np.ndarray, trained: bool = False) -> Surrogate:
    """An untrained surrogate for `config`; `trained=True` gives the shape of a finished one (a Bayesian
    network is then its K posterior draws), ready to load saved weights into."""
    generator = torch.Generator().manual_seed(config.seed)
    prefactor = None
    if config.task == "amplitude":
        feature_type = MomentumFeatures if config.network == "lgatr" else InvariantFeatures
        features, transform = feature_type(inputs.shape[1], config.symmetry), "log"
        if config.target_prefactor == "parke_taylor":
            prefactor = ParkeTaylorPrefactor(inputs.shape[1])
    else:
        features, transform = Standardisation(inputs.shape[1]), "identity"
    shape = (features.n_features, config.hidden, config.layers, generator)
    if config.network == "lgatr":
        network = LorentzTransformerEnsemble(config.members, inputs.shape[1], config.hidden, config.layers, generator)
    elif config.method == "bayesian" and not trained:
        network = VariationalMLP(*shape, config.prior_sigma, config.activation)
    else:
        network = StackedMLP(config.members, *shape, config.activation)
    return Surrogate(features, network, transform, config.aggregation, prefactor)


def generate(config: TrainingConfig) -> data.Dataset:
    """The dataset a config generates (seeded, so the same config gives the same events)."""
    domain = None if config.task == "calibration" else config.domain
    return data.generate_dataset(
        config.process, config.n_events, config.seed, domain=domain, noise=config.noise or None
    )


def calibrate(
    model: Surrogate, config: TrainingConfig, val: data.Dataset, calib: data.Dataset, test: data.Dataset
) -> tuple[CalibrationReport, CalibrationReport]:
    """After training: fit the share of the widths the members share on the validation split (where the
    widths were refit), fit the recalibration factor on the calibration split (applied only if the config
    asks), report on the test split. Returns (served, as learned)."""
    model.recalibration.fill_(1.0)
    if model.aggregation == "ambiguity":
        model.measure_shared_share(torch.from_numpy(val.inputs), torch.from_numpy(val.target))
    calib_mean, _, _, calib_sigma = predict(model, calib.inputs)
    factor = fit_recalibration_factor(calib_mean, calib_sigma, calib.target)
    uncalibrated = held_out_report(model, test, factor, applied=False)
    if config.recalibrate:
        model.recalibration.fill_(factor)
    return held_out_report(model, test, factor, applied=config.recalibrate), uncalibrated


def train_surrogate(
    config: TrainingConfig,
    dataset: data.Dataset | None = None,
    show_progress: bool = True,
    checkpoint: Path | None = None,
) -> TrainedSurrogate:
    """Fit a surrogate on `dataset` (generated from the config when None) and measure its calibration.

    `checkpoint`: where the best weights so far are saved during training.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if dataset is None:
        dataset = generate(config)
    train, val, calib, test = data.split(dataset, SPLIT_FRACTIONS, config.seed)
    model = build_surrogate(config, train.inputs)
    p_train, p_val = (torch.from_numpy(d.inputs) for d in (train, val))
    model.fit_standardisation(p_train, torch.from_numpy(train.target))
    with torch.no_grad():
        x_train, x_val = (model.features(p).float() for p in (p_train, p_val))
        y_train, y_val = (
            model.standardise_target(torch.from_numpy(d.target), p).float() for d, p in ((train, p_train), (val, p_val))
        )
    history = fit_network(
        model.ensemble, config.method, x_train, y_train, x_val, y_val, config.fit, show_progress, checkpoint
    )
    if isinstance(model.ensemble, VariationalMLP):
        model.ensemble = model.ensemble.sample_members(config.members, config.seed)
    if config.fit.width_iterations:  # every method's members, the Bayesian network's as drawn
        history.width_loss = refit_widths(model.ensemble, x_val, y_val, config.fit)
    model.double()  # evaluate, calibrate and export the trained members in float64 (see network_dtype)
    report, uncalibrated = calibrate(model, config, val, calib, test)
    elapsed = time.perf_counter() - started
    return TrainedSurrogate(config, model, test, history, report, uncalibrated, dataset.sha256(), elapsed)


def reaggregate(
    run: TrainedSurrogate, aggregation: Aggregation, dataset: data.Dataset | None = None
) -> TrainedSurrogate:
    """The same trained members under another aggregation, calibrated anew on the splits of `dataset` (the
    config's generated events when None, which must be what the run was trained on: checked by hash)."""
    config = run.config.model_copy(update={"aggregation": aggregation})
    dataset = dataset if dataset is not None else generate(config)
    if dataset.sha256() != run.dataset_sha256:
        raise ValueError("the dataset is not the one the run was trained on (its sha256 differs)")
    _, val, calib, test = data.split(dataset, SPLIT_FRACTIONS, config.seed)
    run.model.aggregation = aggregation
    report, uncalibrated = calibrate(run.model, config, val, calib, test)
    return TrainedSurrogate(
        config, run.model, test, run.history, report, uncalibrated, run.dataset_sha256, run.training_seconds
    )
