"""Amplitude surrogate from scratch: generate data, fit the ensemble, measure its calibration."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from service.card import CalibrationReport
from training.calibration import calibration_report, fit_recalibration_factor
from training.data import AmplitudeDataset, PhaseSpaceDomain, generate_amplitudes, split
from training.fit import FitConfig, FitHistory, fit_ensemble
from training.physics.processes import get_process
from training.surrogate import AmplitudeSurrogate

# train, validation (early stopping), calibration (recalibration factor), test (calibration report)
SPLIT_FRACTIONS = (0.7, 0.1, 0.1, 0.1)


class AmplitudeTrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    process: str = "gg_gg"
    n_events: int = Field(default=20_000, ge=100, description="events generated, split 70/10/10/10")
    domain: PhaseSpaceDomain = PhaseSpaceDomain()
    members: int = Field(default=4, ge=2)
    hidden: int = Field(default=64, ge=1)
    layers: int = Field(default=3, ge=1)
    fit: FitConfig = FitConfig()
    recalibrate: bool = Field(default=True, description="scale sigma so calibration-split pulls have unit RMS")
    seed: int = 0


@dataclass
class TrainedSurrogate:
    config: AmplitudeTrainingConfig
    model: AmplitudeSurrogate
    test: AmplitudeDataset
    history: FitHistory
    calibration: CalibrationReport
    uncalibrated: CalibrationReport
    dataset_sha256: str
    training_seconds: float


def predict(model: AmplitudeSurrogate, momenta: np.ndarray) -> tuple[np.ndarray, ...]:
    """mean, sigma_stat, sigma_syst, sigma_tot of the torch model, as float64 numpy arrays."""
    model.eval()
    with torch.no_grad():
        return tuple(t.numpy() for t in model(torch.from_numpy(momenta)))


def train_amplitude_surrogate(config: AmplitudeTrainingConfig, show_progress: bool = True) -> TrainedSurrogate:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    process = get_process(config.process)
    data = generate_amplitudes(config.process, config.n_events, config.seed, config.domain)
    train, val, calib, test = split(data, SPLIT_FRACTIONS, config.seed)
    model = AmplitudeSurrogate(process.n_particles, config.members, config.hidden, config.layers, config.seed)
    p_train, p_val = torch.from_numpy(train.momenta), torch.from_numpy(val.momenta)
    model.fit_standardisation(p_train, torch.from_numpy(train.target))
    with torch.no_grad():
        x_train, x_val = (model.features(p).float() for p in (p_train, p_val))
        y_train, y_val = (model.standardise_target(torch.from_numpy(d.target)).float() for d in (train, val))
    history = fit_ensemble(model.ensemble, x_train, y_train, x_val, y_val, config.fit, show_progress)
    model.double()  # evaluate, calibrate and export the trained members in float64 (see network_dtype)
    mean, _, _, sigma_tot = predict(model, test.momenta)
    uncalibrated = calibration_report(mean, sigma_tot, test.target)
    if config.recalibrate:
        calib_mean, _, _, calib_sigma = predict(model, calib.momenta)
        model.recalibration.fill_(fit_recalibration_factor(calib_mean, calib_sigma, calib.target))
        mean, _, _, sigma_tot = predict(model, test.momenta)
    report = calibration_report(mean, sigma_tot, test.target, float(model.recalibration))
    return TrainedSurrogate(
        config, model, test, history, report, uncalibrated, data.sha256(), time.perf_counter() - started
    )
