"""The `calsurr` command: thin wiring over `training` and `service`.

Training commands import torch lazily, so `calsurr serve` runs from the base install, which has no torch.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Calibrated neural-network surrogates: train, export, serve.", no_args_is_help=True)


@app.command()
def serve(
    repo: Annotated[
        Path | None, typer.Option(help="model repository: <repo>/<model>/<version>/ [env: CALSURR_REPO]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port; 0 picks a free one [default: 8001]")] = None,
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime threads per session; 0 automatic")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve every model in a repository over the Open Inference Protocol (gRPC).

    Options not given fall back to CALSURR_* environment variables (CALSURR_PORT, ...), then to defaults.
    """
    from pydantic import ValidationError

    from service.config import ServerSettings
    from service.server import serve_forever

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    given = {"repo": repo, "port": port, "host": host, "intra_op_threads": threads}
    try:
        settings = ServerSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    asyncio.run(serve_forever(settings))


@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(help="where the model repository goes [default: a temp dir]")] = None,
    events: Annotated[int, typer.Option(help="gg -> gg events generated (70 % train)")] = 20_000,
    members: Annotated[int, typer.Option(help="ensemble members")] = 4,
    epochs: Annotated[int, typer.Option(help="maximum training epochs")] = 150,
    rows: Annotated[int, typer.Option(help="phase-space points printed")] = 10,
    seed: Annotated[int, typer.Option(help="seed of data, initialisation and shuffling")] = 0,
) -> None:
    """Train a small gg -> gg deep ensemble, export it, serve it, query it, print predictions."""
    from calsurr.demo import run_demo
    from training.fit import FitConfig
    from training.pipeline import TrainingConfig

    config = TrainingConfig(
        process="gg_gg", n_events=events, members=members, seed=seed, fit=FitConfig(epochs=epochs, seed=seed)
    )
    run_demo(config, workdir, rows)


def main() -> None:
    app()
