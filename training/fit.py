"""Training by the heteroscedastic Gaussian likelihood, all members at once, with early stopping."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from training.models import gaussian_nll


class FitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=30, ge=1, description="epochs without validation improvement before stopping")
    seed: int = 0


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def fit_ensemble(
    ensemble: torch.nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: FitConfig,
    show_progress: bool = True,
) -> FitHistory:
    """Fit standardised inputs (N, F) to standardised targets (N,); every member gets its own shuffling.

    The learning rate follows a cosine schedule; the weights of the best validation epoch are kept.
    """
    members = ensemble.members
    n = len(y_train)
    steps = math.ceil(n / config.batch_size)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(ensemble.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs * steps)
    history = FitHistory()
    best_state, best_loss, stale = copy.deepcopy(ensemble.state_dict()), math.inf, 0
    columns = [
        TextColumn("training {task.fields[members]} members"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("val NLL {task.fields[val]:.4f}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("fit", total=config.epochs, members=members, val=math.nan)
        for epoch in range(config.epochs):
            ensemble.train()
            order = torch.argsort(torch.rand(members, n, generator=generator), dim=1)
            total = 0.0
            for step in range(steps):
                index = order[:, step * config.batch_size : (step + 1) * config.batch_size]
                loss = gaussian_nll(ensemble(x_train[index]), y_train[index]) / members
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item()
            ensemble.eval()
            with torch.no_grad():
                val = gaussian_nll(ensemble(x_val), y_val).item() / members
            history.train_loss.append(total / steps)
            history.val_loss.append(val)
            if val < best_loss:
                best_state, best_loss, stale, history.best_epoch = copy.deepcopy(ensemble.state_dict()), val, 0, epoch
            else:
                stale += 1
            progress.update(task, advance=1, val=val)
            if stale >= config.patience:
                break
    ensemble.load_state_dict(best_state)
    return history
