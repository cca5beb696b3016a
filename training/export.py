"""Export a trained surrogate as one ONNX graph plus its card into a model repository.

The graph is checked against the torch model it came from before it is published, and the version folder
appears atomically (written beside, then renamed), so a server never sees a half-written model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
import torch

from calsurr.service.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    Domain,
    ModelCard,
    Provenance,
    TensorSpec,
    UncertaintySpec,
)
from calsurr.training import __version__
from calsurr.training.physics.processes import get_process
from calsurr.training.pipeline import TrainedSurrogate, predict
from calsurr.training.surrogate import Surrogate

EXPORT_RTOL = 1e-5  # ONNX against torch, relative, on every output (issue acceptance)
# With float32 members (features and aggregation in float64) the graph is checked against the float64 torch
# model within these relative bounds, per output: the mean moves by float32 rounding of log|M|^2 (~1e-7);
# sigma_stat, a small spread of member means, by more, and 1e-2 of an uncertainty is physically irrelevant.
# sigma_stat and sigma_syst are held to their bounds relative to sigma_tot, the error bar they make up: with
# few members the spread passes near zero at some points (K = 2: |m_1 - m_2| / 2), where float32 rounding of
# the means is a large share of a sigma_stat that is itself a negligible part of sigma_tot.
FLOAT32_MEMBER_RTOL = {"mean": 1e-5, "sigma_stat": 5e-2, "sigma_syst": 1e-3, "sigma_tot": 1e-2}
PARTS_OF_THE_TOTAL = ("sigma_stat", "sigma_syst")
MemberDtype = Literal["float64", "float32"]
OUT_OF_DOMAIN_FACTOR = 5.0  # a prediction 5x less certain than 99 % of held-out ones is counted as out of domain
EXAMPLE_ROWS = 4  # held-out rows in the card, which the server runs to check a version before serving it
AMPLITUDE_INPUT = "momenta"
CALORIMETER_INPUT = "features"


class ExportMismatch(RuntimeError):
    """The exported graph does not reproduce the torch model."""


def input_name(model: Surrogate) -> str:
    return AMPLITUDE_INPUT if model.target_transform == "log" else CALORIMETER_INPUT


def io_numpy_dtype(model: Surrogate) -> np.dtype:
    return np.dtype(np.float32) if model.io_dtype == torch.float32 else np.dtype(np.float64)


def datatype_of(model: Surrogate) -> str:
    return "FP32" if model.io_dtype == torch.float32 else "FP64"


def export_onnx(model: Surrogate, path: Path, example: np.ndarray) -> None:
    """Trace the whole surrogate with torch's ONNX exporter; the batch dimension stays dynamic."""
    model.eval()
    batch = torch.export.Dim("batch")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns of optional torchvision ops we do not use
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            model,
            (torch.from_numpy(example.astype(io_numpy_dtype(model))),),
            input_names=[input_name(model)],
            output_names=list(model.output_names),
            dynamic_shapes=({0: batch},),
            dynamo=True,
            optimize=True,
        )
        program.save(str(path))
    exporter_log.setLevel(level)


def relative_differences(
    model: Surrogate,
    path: Path,
    inputs: np.ndarray,
    reference: tuple[np.ndarray, ...] | None = None,
    parts_against_total: bool = False,
) -> dict[str, float]:
    """Largest |onnx - torch| / |torch| per output over every point; `reference`: torch's outputs computed
    beforehand (the float64 model, when the graph was exported with float32 members). `parts_against_total`:
    sigma_stat and sigma_syst differences over torch's sigma_tot instead (PARTS_OF_THE_TOTAL)."""
    inputs = inputs.astype(io_numpy_dtype(model))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(list(model.output_names), {input_name(model): inputs})
    torch_out = dict(zip(model.output_names, reference if reference is not None else predict(model, inputs)))
    differences = {}
    for name, got in zip(model.output_names, onnx_out, strict=True):
        scale = torch_out["sigma_tot"] if parts_against_total and name in PARTS_OF_THE_TOTAL else torch_out[name]
        differences[name] = float(np.max(np.abs(got - torch_out[name]) / np.abs(scale)))
    return differences


def max_relative_difference(model: Surrogate, path: Path, inputs: np.ndarray) -> float:
    """Largest |onnx - torch| / |torch| over every output and point."""
    return max(relative_differences(model, path, inputs).values())


def _check_export(differences: dict[str, float], member_dtype: MemberDtype) -> None:
    if member_dtype == "float64":
        limits = dict.fromkeys(differences, EXPORT_RTOL)
    else:  # per-member outputs are float32 values: held to the mean's bound
        limits = {name: FLOAT32_MEMBER_RTOL.get(name, FLOAT32_MEMBER_RTOL["mean"]) for name in differences}
    over = {name: value for name, value in differences.items() if value > limits[name]}
    if over:
        detail = ", ".join(f"{name} by {value:.2e} (limit {limits[name]:.0e})" for name, value in over.items())
        raise ExportMismatch(f"ONNX with {member_dtype} members differs from torch: {detail}")


def shared_share_fields(model: Surrogate) -> dict[str, float]:
    """The card's record of sigma_syst's shared share (c, g, W_0) and of sigma_stat's shrunk spread (alpha,
    rho), under the ambiguity aggregation."""
    if model.aggregation != "ambiguity":
        return {}
    return {
        "shared_share": float(model.shared_share),
        "share_power": float(model.share_power),
        "share_reference_width": float(model.share_reference_width),
        "spread_weight": float(model.spread_weight),
        "spread_prior_share": float(model.spread_prior_share),
    }


OUTPUT_DOC = {
    "mean": "the surrogate's prediction",
    "sigma_stat": "uncertainty from the finite training set (spread of the members)",
    "sigma_syst": "learned per-point uncertainty (average of the members' widths)",
    "sigma_stat ambiguity": "the part of the mean's error that more members would average away: the members' "
    "scatter at the point, their spread shrunk toward what their widths expect of it, over sqrt(K)",
    "sigma_syst ambiguity": "the part of the mean's error the members share (label noise, network bias): the "
    "share of their learned widths that the average's residuals on held-out points showed them to share",
    "sigma_tot": "sqrt(sigma_stat^2 + sigma_syst^2)",
    "member_mean": "each member's prediction, shape (batch, members)",
    "member_sigma": "each member's learned width, shape (batch, members), before recalibration",
}


def _input_spec(run: TrainedSurrogate) -> tuple[TensorSpec, str, str]:
    """The graph input, the output unit and a description of the task."""
    config = run.config
    if config.task == "calibration":
        names = tuple(run.test.feature_names)
        spec = TensorSpec(
            name=CALORIMETER_INPUT,
            datatype=datatype_of(run.model),
            shape=(-1, len(names)),
            unit="mixed",
            description="topo-cluster features at EM scale, columns as listed (units in the data schema)",
            columns=names,
        )
        return spec, "1", "calorimeter response R = E_reco / E_dep of single-particle clusters"
    process = get_process(config.process)
    spec = TensorSpec(
        name=AMPLITUDE_INPUT,
        datatype=datatype_of(run.model),
        shape=(-1, process.n_particles, 4),
        unit="GeV",
        description="(E, px, py, pz) per particle in process order, incoming first, partonic CM frame",
    )
    description = (
        f"|M|^2 of {config.process} at tree level, summed over final and averaged over initial colours and "
        "helicities, g_s = 1"
    )
    return spec, process.unit, description


def out_of_domain_threshold(run: TrainedSurrogate) -> float:
    """sigma_tot/|mean| above which the server counts a prediction as out of the training domain."""
    mean, _, _, sigma_tot = predict(run.model, run.test.inputs)[:4]
    return OUT_OF_DOMAIN_FACTOR * float(np.quantile(sigma_tot / np.abs(mean), 0.99))


def build_card(run: TrainedSurrogate, name: str, version: int, member_dtype: MemberDtype = "float64") -> ModelCard:
    config = run.config
    input_spec, unit, description = _input_spec(run)
    domain = (
        Domain(description="simulated single-particle clusters (training/physics/calorimeter.py defaults)")
        if config.task == "calibration"
        else Domain(
            description=config.domain.describe(),
            sqrt_s_gev=config.domain.sqrt_s_gev,
            min_sij_over_s=config.domain.min_sij_over_s,
        )
    )
    return ModelCard(
        name=name,
        version=version,
        task=config.task,
        process=config.process,
        description=description,
        inputs=(input_spec,),
        outputs=tuple(
            TensorSpec(
                name=o,
                datatype=datatype_of(run.model),
                shape=(-1, config.members) if o.startswith("member_") else (-1,),
                unit=unit,
                description=OUTPUT_DOC.get(f"{o} {run.model.aggregation}", OUTPUT_DOC[o]),
            )
            for o in run.model.output_names
        ),
        uncertainty=UncertaintySpec(
            method=config.method,
            members=config.members,
            target_transform=run.model.target_transform,
            member_dtype=member_dtype,
            aggregation=run.model.aggregation,
            **shared_share_fields(run.model),
        ),
        domain=domain,
        calibration=run.calibration,
        example_inputs={input_spec.name: run.test.inputs[:EXAMPLE_ROWS].tolist()},
        out_of_domain_relative_sigma=out_of_domain_threshold(run),
        provenance=Provenance(
            dataset_sha256=run.dataset_sha256,
            seed=config.seed,
            code_version=__version__,
            created=datetime.now(UTC),
            training_seconds=run.training_seconds,
        ),
    )


def export_to_repository(
    run: TrainedSurrogate,
    repo: Path,
    name: str,
    version: int,
    with_members: bool = False,
    io_datatype: Literal["FP64", "FP32"] = "FP64",
    member_dtype: MemberDtype = "float32",
) -> Path:
    """Write `<repo>/<name>/<version>/{model.onnx, card.json}` after checking ONNX against torch.

    `with_members`: the graph also outputs `member_mean` and `member_sigma`, (batch, K), for clients that
    want the members themselves (e.g. to reweight events by posterior draws). `io_datatype` "FP32": the
    graph takes and returns float32 (a client's choice; it is cast to float64 at the graph's entry).
    `member_dtype` "float32" (default): the members run in float32, several times faster on a CPU
    (bench/member_precision.py: 6.6x at batch 1024 on the K = 8 gg_ggg ensemble), while the invariants and
    the aggregation stay float64; the graph is checked against the float64 torch model within
    FLOAT32_MEMBER_RTOL (sigma_stat and sigma_syst relative to sigma_tot; the mean moves by ~1e-6
    relative, a hundredth of the best accuracy reached). Its price: float32 kernels round a row differently
    by ~1e-7 relative depending on the batch it runs in, so a row merged into a larger batch is no longer
    bit for bit the same row sent alone. "float64" keeps that and reproduces torch to EXPORT_RTOL in every
    output. The card says which precision the members run in.
    """
    final = Path(repo) / name / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable, export a new version")
    staging = final.parent / f".{version}.staging"
    run.model.with_members = with_members
    run.model.io_dtype = torch.float32 if io_datatype == "FP32" else torch.float64
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # restored afterwards: casting the members to float32 and back would leave them rounded
    float64_members = {k: v.clone() for k, v in run.model.ensemble.state_dict().items()}
    try:
        inputs = run.test.inputs
        reference = predict(run.model, inputs.astype(io_numpy_dtype(run.model)))  # the float64 members
        if member_dtype == "float32":
            run.model.ensemble.to(torch.float32)
        export_onnx(run.model, staging / MODEL_FILENAME, inputs[:16])
        differences = relative_differences(
            run.model, staging / MODEL_FILENAME, inputs, reference, parts_against_total=member_dtype == "float32"
        )
        _check_export(differences, member_dtype)
        build_card(run, name, version, member_dtype).write(staging / CARD_FILENAME)
        staging.rename(final)
    finally:
        run.model.with_members, run.model.io_dtype = False, torch.float64
        run.model.ensemble.to(torch.float64)
        run.model.ensemble.load_state_dict(float64_members)
        shutil.rmtree(staging, ignore_errors=True)
    return final
