"""A hand-built surrogate graph that exports per-member outputs, for the `members` request parameter.

Input `x` (batch, K): column k is member k's mean; each member's width is 0.1 |mu_k|. The graph aggregates
them as DESIGN.md says (mean, sigma_stat, sigma_syst, sigma_tot) and also exports `member_mean` and
`member_sigma`, which no trained export has yet. Built with `onnx.helper`, in seconds, without torch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from calsurr.service.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    Domain,
    ModelCard,
    Provenance,
    TensorSpec,
    UncertaintySpec,
)

TOY_MODEL = "toy_members"
TOY_MEMBERS = 3
WIDTH_FRACTION = 0.1  # member_sigma = WIDTH_FRACTION * |member_mean|


def _graph(members: int):
    import onnx
    from onnx import TensorProto, helper

    fp64 = TensorProto.DOUBLE
    constants = [
        helper.make_tensor("fraction", fp64, [], [WIDTH_FRACTION]),
        helper.make_tensor("dof", fp64, [], [members - 1.0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Identity", ["x"], ["member_mean"]),
        helper.make_node("Abs", ["x"], ["abs_x"]),
        helper.make_node("Mul", ["abs_x", "fraction"], ["member_sigma"]),
        helper.make_node("ReduceMean", ["x"], ["mean_kept"], axes=[1], keepdims=1),
        helper.make_node("Squeeze", ["mean_kept", "axis1"], ["mean"]),
        helper.make_node("Sub", ["x", "mean_kept"], ["spread"]),
        helper.make_node("ReduceSumSquare", ["spread"], ["spread2"], axes=[1], keepdims=0),
        helper.make_node("Div", ["spread2", "dof"], ["stat2"]),
        helper.make_node("Sqrt", ["stat2"], ["sigma_stat"]),
        helper.make_node("Mul", ["member_sigma", "member_sigma"], ["width2"]),
        helper.make_node("ReduceMean", ["width2"], ["syst2"], axes=[1], keepdims=0),
        helper.make_node("Sqrt", ["syst2"], ["sigma_syst"]),
        helper.make_node("Add", ["stat2", "syst2"], ["tot2"]),
        helper.make_node("Sqrt", ["tot2"], ["sigma_tot"]),
    ]
    batch = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "toy_members",
        [batch("x", fp64, ["batch", members])],
        [batch(n, fp64, ["batch"]) for n in ("mean", "sigma_stat", "sigma_syst", "sigma_tot")]
        + [batch(n, fp64, ["batch", members]) for n in ("member_mean", "member_sigma")],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def toy_card(version: int = 1, members: int = TOY_MEMBERS) -> ModelCard:
    def spec(name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(name=name, datatype="FP64", shape=shape, unit="1")

    return ModelCard(
        name=TOY_MODEL,
        version=version,
        task="calibration",
        process="toy",
        inputs=(spec("x", (-1, members)),),
        outputs=tuple(spec(n, (-1,)) for n in ("mean", "sigma_stat", "sigma_syst", "sigma_tot"))
        + tuple(spec(n, (-1, members)) for n in ("member_mean", "member_sigma")),
        uncertainty=UncertaintySpec(method="deep_ensemble", members=members, target_transform="identity"),
        domain=Domain(description="any finite x"),
        provenance=Provenance(
            dataset_sha256="0" * 64, seed=0, code_version="test", created=datetime.now(UTC), training_seconds=0.0
        ),
    )


def write_toy_model(repo: Path, version: int = 1) -> Path:
    """`<repo>/toy_members/<version>/{model.onnx, card.json}`; returns the version folder."""
    import onnx

    folder = repo / TOY_MODEL / str(version)
    folder.mkdir(parents=True)
    onnx.save(_graph(TOY_MEMBERS), folder / MODEL_FILENAME)
    toy_card(version).write(folder / CARD_FILENAME)
    return folder


def toy_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """What the graph computes, in numpy."""
    width = WIDTH_FRACTION * np.abs(x)
    mean = x.mean(axis=1)
    stat2 = ((x - mean[:, None]) ** 2).sum(axis=1) / (x.shape[1] - 1)
    syst2 = (width**2).mean(axis=1)
    return {
        "mean": mean,
        "sigma_stat": np.sqrt(stat2),
        "sigma_syst": np.sqrt(syst2),
        "sigma_tot": np.sqrt(stat2 + syst2),
        "member_mean": x,
        "member_sigma": width,
    }
