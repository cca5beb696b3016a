"""A training run on disk, so that `calsurr train` and `calsurr export` can be separate steps.

<run>/surrogate.pt    torch state of the trained (float64) surrogate, its config and calibration
<run>/test.h5         the held-out split, in the dataset schema (export checks ONNX against torch on it)
<run>/checkpoint.pt   the best weights while training (early stopping), kept for inspection
"""

from __future__ import annotations

from pathlib import Path

import torch

from calsurr.service.card import CalibrationReport
from calsurr.training.data import read_dataset, write_dataset
from calsurr.training.fit import FitHistory
from calsurr.training.pipeline import TrainedSurrogate, TrainingConfig, build_surrogate

SURROGATE_FILE = "surrogate.pt"
TEST_FILE = "test.h5"
LEGACY_AGGREGATION = "spread_plus_width"


def save_run(run: TrainedSurrogate, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "config": run.config.model_dump(mode="json"),
            "state": run.model.state_dict(),
            "calibration": run.calibration.model_dump(mode="json"),
            "uncalibrated": run.uncalibrated.model_dump(mode="json"),
            "history": {
                "train": run.history.train_loss,
                "val": run.history.val_loss,
                "best": run.history.best_epoch,
                "width": run.history.width_loss,
            },
            "dataset_sha256": run.dataset_sha256,
            "training_seconds": run.training_seconds,
        },
        folder / SURROGATE_FILE,
    )
    write_dataset(folder / TEST_FILE, run.test)
    return folder


LEGACY_WIDTH_FIELDS = ("width_epochs", "width_learning_rate")


def _with_shared_share(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A saved state in today's terms: runs saved before the shared share was fitted hold rho, the scatter's
    share measured without labels, and shared 1 - rho of every width (rho 0 in runs saved before it existed);
    runs saved before the spread was shrunk toward the widths served the spread itself (alpha = 1)."""
    state = dict(state)
    if "shared_share" not in state:
        rho = state.pop("scatter_share", torch.zeros((), dtype=torch.float64))
        state["shared_share"] = 1.0 - rho
        state["share_power"] = torch.zeros((), dtype=torch.float64)
        state["share_reference_width"] = torch.ones((), dtype=torch.float64)
    if "spread_weight" not in state:
        state["spread_weight"] = torch.ones((), dtype=torch.float64)
        state["spread_prior_share"] = torch.zeros((), dtype=torch.float64)
    return state


def load_run(folder: Path) -> TrainedSurrogate:
    folder = Path(folder)
    saved = torch.load(folder / SURROGATE_FILE, weights_only=True)
    # runs saved before the aggregation was a setting used the spread on top of the widths (and its factor)
    fields = {"aggregation": LEGACY_AGGREGATION, **saved["config"]}
    # runs saved before the width refit was a convex solve set its Adam epochs; their widths are as refit then
    fields["fit"] = {k: v for k, v in fields.get("fit", {}).items() if k not in LEGACY_WIDTH_FIELDS}
    config = TrainingConfig.model_validate(fields)
    test = read_dataset(folder / TEST_FILE)
    model = build_surrogate(config, test.inputs, trained=True).double()
    model.load_state_dict(_with_shared_share(saved["state"]))
    past = saved["history"]
    history = FitHistory(past["train"], past["val"], past["best"], past.get("width", []))  # no width refit before
    return TrainedSurrogate(
        config,
        model,
        test,
        history,
        CalibrationReport.model_validate(saved["calibration"]),
        CalibrationReport.model_validate(saved["uncalibrated"]),
        saved["dataset_sha256"],
        saved["training_seconds"],
    )
