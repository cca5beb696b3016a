"""A surrogate from data to calibrated model: build, fit by the chosen uncertainty method, recalibrate, measure.

One entry point for every method and task: amplitudes (four-momenta in, |M|^2 out, fitted in log space) and
calorimeter response (cluster features in, R = E_reco / E_dep out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from calsurr.service.card import CalibrationReport
from calsurr.training import data
from calsurr.training.calibration import calibration_report, fit_recalibration_factor
from calsurr.training.fit import FitConfig, FitHistory, Method, fit_network
from calsurr.training.models import StackedMLP, VariationalMLP
from calsurr.training.physics.processes import PROCESSES
from calsurr.training.surrogate import InvariantFeatures, Standardisation, Surrogate

# train, validation (early stopping), calibration (recalibration factor), test (calibration report)
SPLIT_FRACTIONS = (0.7, 0.1, 0.1, 0.1)
CALORIMETER = "calorimeter"


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
    fit: FitConfig = FitConfig()
    recalibrate: bool = Field(default=True, description="scale sigma so calibration-split pulls have unit RMS")
    seed: int = Field(default=0, ge=0, description="seed of generated data, split and initialisation")

    @field_validator("process")
    @classmethod
    def _known_process(cls, value: str) -> str:
        known = (*PROCESSES, CALORIMETER)
        if value not in known:
            raise ValueError(f"expected one of {', '.join(known)}, got '{value}'")
        return value

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
    calibration: CalibrationReport
    uncalibrated: CalibrationReport
    dataset_sha256: str
    training_seconds: float


def predict(model: Surrogate, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    """mean, sigma_stat, sigma_syst, sigma_tot of the torch model, as float64 numpy arrays."""
    model.eval()
    with torch.no_grad():
        return tuple(t.numpy() for t in model(torch.from_numpy(np.ascontiguousarray(inputs))))


def build_surrogate(config: TrainingConfig, inputs: np.ndarray, trained: bool = False) -> Surrogate:
    """An untrained surrogate for `config`; `trained=True` gives the shape of a finished one (a Bayesian
    network is then its K posterior draws), ready to load saved weights into."""
    generator = torch.Generator().manual_seed(config.seed)
    if config.task == "amplitude":
        features, transform = InvariantFeatures(inputs.shape[1]), "log"
    else:
        features, transform = Standardisation(inputs.shape[1]), "identity"
    if config.method == "bayesian" and not trained:
        network = VariationalMLP(features.n_features, config.hidden, config.layers, generator, config.prior_sigma)
    else:
        network = StackedMLP(config.members, features.n_features, config.hidden, config.layers, generator)
    return Surrogate(features, network, transform)


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
        domain = None if config.task == "calibration" else config.domain
        noise = config.noise or None
        dataset = data.generate_dataset(config.process, config.n_events, config.seed, domain=domain, noise=noise)
    train, val, calib, test = data.split(dataset, SPLIT_FRACTIONS, config.seed)
    model = build_surrogate(config, train.inputs)
    p_train, p_val = (torch.from_numpy(d.inputs) for d in (train, val))
    model.fit_standardisation(p_train, torch.from_numpy(train.target))
    with torch.no_grad():
        x_train, x_val = (model.features(p).float() for p in (p_train, p_val))
        y_train, y_val = (model.standardise_target(torch.from_numpy(d.target)).float() for d in (train, val))
    history = fit_network(
        model.ensemble, config.method, x_train, y_train, x_val, y_val, config.fit, show_progress, checkpoint
    )
    if isinstance(model.ensemble, VariationalMLP):
        model.ensemble = model.ensemble.sample_members(config.members, config.seed)
    model.double()  # evaluate, calibrate and export the trained members in float64 (see network_dtype)
    mean, _, _, sigma_tot = predict(model, test.inputs)
    uncalibrated = calibration_report(mean, sigma_tot, test.target)
    if config.recalibrate:
        calib_mean, _, _, calib_sigma = predict(model, calib.inputs)
        model.recalibration.fill_(fit_recalibration_factor(calib_mean, calib_sigma, calib.target))
        mean, _, _, sigma_tot = predict(model, test.inputs)
    report = calibration_report(mean, sigma_tot, test.target, float(model.recalibration))
    elapsed = time.perf_counter() - started
    return TrainedSurrogate(config, model, test, history, report, uncalibrated, dataset.sha256(), elapsed)
