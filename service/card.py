"""The model card: what an exported surrogate is, written by training beside `model.onnx`, read by the service.

One pydantic model, so that training and serving cannot disagree about a field. A client reads it before it
trusts a number: units, the domain the model was trained on, and how well its error bars were calibrated.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

CARD_FILENAME = "card.json"
MODEL_FILENAME = "model.onnx"
CARD_SCHEMA_VERSION = 1

Datatype = Literal["FP32", "FP64"]
UNCERTAINTY_OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
MAX_EXAMPLE_ROWS = 16  # example inputs in a card: enough to check a graph, few enough to keep the card readable
# Optional per-member outputs, shape [batch, K] in the units of `mean`: member k's mean mu_k and width s_k.
# A graph that exports them serves them on request (inference parameter `members`), never by default.
MEMBER_OUTPUTS = ("member_mean", "member_sigma")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output as the protocol sees it; -1 marks the batch (or any variable) dimension."""

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: tuple[int, ...]
    unit: str = Field(description="physical unit, e.g. 'GeV' or 'GeV^-2'; '1' for dimensionless")
    description: str = ""
    columns: tuple[str, ...] | None = Field(
        default=None, description="names of the last dimension's entries, e.g. a calorimeter cluster's features"
    )

    @model_validator(mode="after")
    def _dims_valid(self) -> TensorSpec:
        if any(d < -1 or d == 0 for d in self.shape):
            raise ValueError(f"tensor '{self.name}': dimensions must be positive or -1, got {self.shape}")
        return self


class UncertaintySpec(_Strict):
    """How the K members' (mu_k, s_k) become mean, sigma_stat and sigma_syst (shared/DESIGN.md)."""

    method: Literal["deep_ensemble", "bayesian", "repulsive_ensemble"]
    members: int = Field(ge=2)
    target_transform: Literal["log", "identity"] = Field(
        description="'log': members fit log(target); mean = exp(mean of mu_k) and each sigma is the "
        "log-space width times mean (first-order propagation), so sigma/mean is a relative uncertainty"
    )
    member_dtype: Literal["float64", "float32"] = Field(
        default="float64",
        description="precision the members run in inside the graph (float32 by default in new exports; "
        "cards without the field were float64); features and the aggregation stay float64",
    )
    aggregation: Literal["ambiguity", "spread_plus_width"] = Field(
        default="spread_plus_width",
        description="'ambiguity': sigma_tot is the error of the members' average, sigma_stat^2 = (alpha V + "
        "(1 - alpha) rho W) / K (what more members would average away), sigma_syst^2 = min(c (W / W_0)^g, 1) W "
        "(the error the members share), V the members' variance at the point, W = <s_k^2> their mean squared "
        "width, c, g, W_0, alpha and rho fitted by the likelihood of the average's residuals on the validation "
        "split; 'spread_plus_width' (cards written before it): sigma_stat^2 = V, sigma_syst^2 = <s_k^2>",
    )
    shared_share: float | None = Field(
        default=None,
        ge=0,
        description="'ambiguity': c, the share of the members' mean squared width that they share at W_0 "
        "(cards written before it was fitted: absent)",
    )
    share_power: float | None = Field(default=None, description="'ambiguity': g, the share's power in W / W_0")
    share_reference_width: float | None = Field(
        default=None, gt=0, description="'ambiguity': W_0, the validation split's median W (target-transform units)"
    )
    spread_weight: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="'ambiguity': alpha, the weight of the members' variance V at the point against what their "
        "widths expect of it, rho W (cards written before it: absent, and the graph served V itself, alpha = 1)",
    )
    spread_prior_share: float | None = Field(
        default=None, ge=0, description="'ambiguity': rho = <V / W> over the validation split"
    )


class Domain(_Strict):
    """Where the model was trained; outside it the error bars promise nothing."""

    description: str
    sqrt_s_gev: float | None = Field(default=None, gt=0)
    min_sij_over_s: float | None = Field(default=None, ge=0)


class CalibrationBin(_Strict):
    """Calibration of the held-out points with `low` <= variable < `high` (the last bin includes its top)."""

    low: float
    high: float
    n_points: int = Field(ge=1)
    pull_mean: float
    pull_width: float = Field(ge=0)
    coverage_68: float = Field(ge=0, le=1)
    coverage_95: float = Field(ge=0, le=1)


class ConditionalCalibration(_Strict):
    """Calibration in equal-population bins of one variable: a global pull width of 1 can hide 0.5 here and 2
    there."""

    variable: str = Field(description="e.g. 'min s_ij / s', 'mean' (the prediction), 'sigma_tot / |mean|'")
    bins: tuple[CalibrationBin, ...] = Field(min_length=1)


class CalibrationReport(_Strict):
    """Held-out calibration of the uncertainties: pull = (mean - truth) / sigma_tot."""

    n_points: int = Field(ge=1)
    pull_mean: float
    pull_width: float = Field(ge=0)
    coverage_68: float = Field(ge=0, le=1)
    coverage_95: float = Field(ge=0, le=1)
    median_abs_rel_deviation: float = Field(ge=0)
    q90_abs_rel_deviation: float = Field(ge=0)
    q99_abs_rel_deviation: float = Field(ge=0)
    recalibration_factor: float = Field(
        default=1.0,
        gt=0,
        description="f that gives calibration-split pulls unit RMS under sigma -> f sigma; near 1 when the "
        "uncertainties are calibrated as learned",
    )
    recalibration_applied: bool = Field(
        default=True,
        description="whether the served sigmas were multiplied by recalibration_factor (cards written before this "
        "field always were); false: the factor is only a check",
    )
    conditional: tuple[ConditionalCalibration, ...] | None = Field(
        default=None, description="the same calibration in bins of phase space, prediction and predicted sigma"
    )


class Provenance(_Strict):
    dataset_sha256: str
    seed: int
    code_version: str
    created: datetime
    training_seconds: float = Field(ge=0)


class ModelCard(_Strict):
    schema_version: Literal[1] = CARD_SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    task: Literal["amplitude", "calibration"]
    process: str
    description: str = ""
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    uncertainty: UncertaintySpec
    domain: Domain
    calibration: CalibrationReport | None = None
    provenance: Provenance
    out_of_domain_relative_sigma: float | None = Field(
        default=None,
        gt=0,
        description="sigma_tot/|mean| above which the server counts a prediction as out of domain "
        "(metric calsurr_out_of_domain_predictions_total); None: no counting",
    )
    example_inputs: dict[str, list] | None = Field(
        default=None,
        description=f"1 to {MAX_EXAMPLE_ROWS} valid input rows per input name (held-out data, written at export): "
        "the server runs them to check a version before it swaps it in; None: it builds a sample from the card",
    )

    @model_validator(mode="after")
    def _uncertainty_outputs_present(self) -> ModelCard:
        names = {o.name for o in self.outputs}
        missing = [n for n in UNCERTAINTY_OUTPUTS if n not in names]
        if missing:
            raise ValueError(f"outputs must include {list(UNCERTAINTY_OUTPUTS)}; missing {missing}")
        return self

    @model_validator(mode="after")
    def _example_inputs_fit_the_inputs(self) -> ModelCard:
        if self.example_inputs is None:
            return self
        specs = {spec.name: spec for spec in self.inputs}
        if set(self.example_inputs) != set(specs):
            raise ValueError(f"example_inputs must name the inputs {sorted(specs)}, got {sorted(self.example_inputs)}")
        for name, rows in self.example_inputs.items():
            try:
                shape = np.shape(np.asarray(rows, dtype=np.float64))
            except ValueError as exc:
                raise ValueError(f"example_inputs '{name}' is not a numeric array: {exc}") from None
            spec = specs[name].shape
            if len(shape) != len(spec) or any(s not in (-1, n) for s, n in zip(spec, shape)):
                raise ValueError(f"example_inputs '{name}' has shape {list(shape)}, the input {list(spec)}")
            if not 1 <= shape[0] <= MAX_EXAMPLE_ROWS or not np.isfinite(np.asarray(rows, dtype=np.float64)).all():
                raise ValueError(f"example_inputs '{name}' needs 1 to {MAX_EXAMPLE_ROWS} rows of finite values")
        return self

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        return cls.model_validate_json(Path(path).read_text())

    def write(self, path: Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")
