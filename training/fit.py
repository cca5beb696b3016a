"""Training by the heteroscedastic Gaussian likelihood, for every uncertainty method, with early stopping.

- deep ensemble: K members, each on its own shuffling of the data, loss = Gaussian NLL;
- repulsive ensemble: K members on shared batches, NLL + a function-space repulsion / N_train;
- Bayesian network: one variational network, loss = NLL + KL / N_train (the negative ELBO per point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from calsurr.training.models import (
    LorentzTransformerEnsemble,
    StackedMLP,
    VariationalMLP,
    function_space_repulsion,
    gaussian_nll,
)

Method = Literal["deep_ensemble", "bayesian", "repulsive_ensemble"]
Device = Literal["auto", "cpu", "cuda"]
# learning rate over the run: "cosine" from the peak down to 0; "warmup_cosine" a linear rise over the first
# `warmup` of the steps, then the cosine; "one_cycle" torch's OneCycleLR (from peak / 25 up to the peak over
# `warmup`, then a cosine down to peak / 25 / 1e4, with beta_1 cycled between 0.85 and `beta1` against it)
Schedule = Literal["cosine", "warmup_cosine", "one_cycle"]
Autocast = Literal["none", "bfloat16"]
BAYESIAN_VALIDATION_DRAWS = 4  # weight draws averaged in the Bayesian network's validation loss
# the held-out width refit (`refit_widths`): L-BFGS iterations of a convex problem on cached features, each
# costing one pass of a linear head over the validation split; it stops earlier once converged
WIDTH_ITERATIONS = 1500


class DeviceUnavailable(RuntimeError):
    """The config asks for CUDA and torch sees no GPU."""


def resolve_device(device: Device) -> torch.device:
    """`auto`: CUDA when torch sees a GPU, else the CPU; `cuda` without one is an error, not a silent CPU run."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device 'cuda' asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class FitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=30, ge=1, description="epochs without validation improvement before stopping")
    repulsion: float = Field(default=1.0, ge=0, description="strength of the repulsive ensemble's repulsion")
    schedule: Schedule = Field(default="cosine", description="learning-rate schedule: cosine, warmup_cosine, one_cycle")
    warmup: float = Field(default=0.05, gt=0, lt=1, description="share of the steps the rise to the peak takes")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="AdamW's beta_1 (momentum of the gradient average)")
    seed: int = 0
    device: Device = Field(
        default="auto",
        description="where to train: auto (CUDA when torch sees a GPU), cpu or cuda; the data are held on it",
    )
    width_iterations: int = Field(
        default=WIDTH_ITERATIONS,
        ge=0,
        description="after the fit, each member's log-sigma head refits alone, the means and features frozen, on the "
        "validation split (`refit_widths`): at most this many L-BFGS iterations of a convex problem; the widths then "
        "describe the error on points the means were not fitted to; 0 keeps the widths of the fit",
    )
    autocast: Autocast = Field(
        default="none",
        description="'bfloat16': forward passes under torch.autocast in bfloat16 (weights, gradients and the "
        "optimiser stay float32); 'none' (default): float32 throughout. bench/science.py's levers_gg_ggg measures "
        "what bfloat16 costs in accuracy",
    )


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    width_loss: list[float] = field(default_factory=list)  # validation NLL per point over the width refit


def _step_loss(network: torch.nn.Module, method: Method, x, y, order, step, config: FitConfig, n: int):
    batch = slice(step * config.batch_size, (step + 1) * config.batch_size)
    if method == "deep_ensemble":
        index = order[:, batch]  # (K, B): every member its own batch
        return gaussian_nll(network(x[index]), y[index]) / network.members
    index = order[0, batch]  # one batch shared by all members (the repulsion compares functions on it)
    output = network(x[index])
    loss = gaussian_nll(output, y[index]) / network.members
    if method == "repulsive_ensemble":
        loss = loss + config.repulsion * function_space_repulsion(output[..., 0]) / (n * network.members)
    elif method == "bayesian":
        loss = loss + network.kl_divergence() / n
    return loss


def _validation_loss(network: torch.nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
    with torch.no_grad():
        if isinstance(network, VariationalMLP):
            draws = [gaussian_nll(network(x_val), y_val).item() for _ in range(BAYESIAN_VALIDATION_DRAWS)]
            return sum(draws) / len(draws)
        return gaussian_nll(network(x_val), y_val).item() / network.members


def fit_network(
    network: torch.nn.Module,
    method: Method,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: FitConfig,
    show_progress: bool = True,
    checkpoint: Path | None = None,
) -> FitHistory:
    """Fit standardised inputs (N, F) to standardised targets (N,) with AdamW and `config.schedule`, on
    `config.device` with the data held there.

    The weights of the best validation epoch are kept (and saved to `checkpoint` at each improvement); the
    network comes back on the CPU, where evaluation, calibration and export run.
    """
    device = resolve_device(config.device)
    network.to(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    try:
        return _fit(network, method, x_train, y_train, x_val, y_val, config, show_progress, checkpoint, device)
    finally:
        network.to("cpu")


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def learning_rate_schedule(
    optimiser: torch.optim.Optimizer, config: FitConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of `config.schedule`, stepped once per optimiser step over `total_steps`."""
    if config.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=config.learning_rate,
            total_steps=total_steps,
            pct_start=config.warmup,
            base_momentum=min(0.85, config.beta1),
            max_momentum=config.beta1,
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
    warmup = max(1, round(config.warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _train_epoch(network, method, x_train, y_train, config, generator, device, optimiser, schedule) -> float:
    """One pass over the training data in shuffled batches (each member its own shuffling); the summed loss.
    Leaves the network in eval mode."""
    n = len(y_train)
    network.train()
    order = torch.argsort(torch.rand(network.members, n, generator=generator), dim=1).to(device)
    total = 0.0
    for step in range(math.ceil(n / config.batch_size)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.autocast == "bfloat16"):
            loss = _step_loss(network, method, x_train, y_train, order, step, config, n)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total += loss.item()
    network.eval()
    return total


def _fit(network, method, x_train, y_train, x_val, y_val, config, show_progress, checkpoint, device) -> FitHistory:
    n = len(y_train)
    steps = math.ceil(n / config.batch_size)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(config.beta1, 0.999)
    )
    schedule = learning_rate_schedule(optimiser, config, config.epochs * steps)
    history = FitHistory()
    best_state, best_loss, stale = _on_cpu(network.state_dict()), math.inf, 0
    columns = [
        TextColumn(f"{method.replace('_', ' ')} ({network.members} x)"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("val NLL {task.fields[val]:.4f}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("fit", total=config.epochs, val=math.nan)
        for epoch in range(config.epochs):
            total = _train_epoch(network, method, x_train, y_train, config, generator, device, optimiser, schedule)
            val = _validation_loss(network, x_val, y_val)
            history.train_loss.append(total / steps)
            history.val_loss.append(val)
            if val < best_loss:
                best_state, best_loss, stale, history.best_epoch = _on_cpu(network.state_dict()), val, 0, epoch
                if checkpoint is not None:
                    torch.save({"epoch": epoch, "val_loss": val, "state": best_state}, checkpoint)
            else:
                stale += 1
            progress.update(task, advance=1, val=val)
            if stale >= config.patience:
                break
    network.load_state_dict(best_state)  # copied onto the network's device
    return history


def refit_widths(
    network: StackedMLP | LorentzTransformerEnsemble, x: torch.Tensor, y: torch.Tensor, config: FitConfig
) -> list[float]:
    """Refit every member's log-sigma head by the Gaussian likelihood on held-out points (x, y), the means and
    the features frozen, to convergence (at most `config.width_iterations` L-BFGS iterations); returns the NLL
    per point (averaged over members) along the way, every tenth evaluation and the last.

    Why held out: a width fitted with the means on their own training points describes the error there, which
    is smaller than on new points by as much as the means overfit (gg -> gggg: member pulls 0.99 on the
    training split, 1.08 on the test split), and under a cosine schedule the means improve to the last step,
    when the rate that would let the widths follow is gone (gg -> ggg: 0.85 on both).
    Why to convergence: the head is linear in the features h the network computes (`head_inputs`),
    eta = log s = h . w + c, and the NLL 1/2 r^2 exp(-2 eta) + eta is convex in eta, so with the residuals r
    and h frozen the refit is convex and has one optimum, which full-batch L-BFGS on cached h reaches. Ten
    epochs of Adam stopped short of it: on the K = 8 gg -> ggg precision ensemble the members' pulls in five
    bins of their own width were 0.79-1.12 (squared pulls averaged per bin; the widths too wide where small),
    and 0.96-1.03 at the optimum. The head has hidden + 1 parameters per member; against a small validation
    split (hundreds of points) the bare optimum can take large weights that cancel, which float32 members then
    round badly, so a unit Gaussian prior centred on the fit's head weights (a MAP estimate) keeps them near
    it there, and fades as 1 / N against the likelihood of a large split.
    """
    device = resolve_device(config.device)
    network.to(device)
    try:
        x, y = x.to(device), y.to(device)
        with torch.no_grad():  # in float64: the optimum of a smooth convex problem, not a float32 stopping point
            features, output = (t.to(torch.float64) for t in network.head_inputs(x))  # (K, N, F), (K, N, 2)
            mu, target = output[..., 0], y.to(torch.float64)
        start = [t.to(torch.float64) for t in network.width_parameters()]
        weight, bias = (t.clone().requires_grad_(True) for t in start)
        prior = 0.5 / len(target)  # a unit Gaussian prior about the fit's head, per point (see above)
        optimiser = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=config.width_iterations,
            max_eval=2 * config.width_iterations,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            history_size=50,
            line_search_fn="strong_wolfe",
        )
        losses: list[float] = []

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            eta = torch.einsum("knf,kf->kn", features, weight) + bias[:, None]
            nll = gaussian_nll(torch.stack([mu, eta], dim=-1), target)
            loss = nll + prior * ((weight - start[0]) ** 2).sum()
            loss.backward()
            losses.append(nll.item() / len(bias))
            return loss

        optimiser.step(closure)
        network.set_width_parameters(weight.detach(), bias.detach())
    finally:
        network.to("cpu")
    return losses[::10] + losses[-1:]
