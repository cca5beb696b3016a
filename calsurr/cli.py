"""The `calsurr` command: thin wiring over `training` and `service`.

Training commands import torch lazily, so `calsurr serve` runs from the base install, which has no torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from calsurr import offline
from calsurr.events.command import events as events_command
from calsurr.offline import fail

if TYPE_CHECKING:
    from calsurr.training.data import PhaseSpaceDomain

DEMO_PROCESSES = ("gg_ggg", "gg_gg")
# the demo's size (calsurr/demo.py): 30k gg -> ggg events, 4 members of 3 x 64, 60 epochs of batches of 512;
# ~1 % accurate, with error bars that hold as learned (seeds 0-2: 68 % covers 67-69 %, 95 % covers 94-96 %)
DEMO_BATCH_SIZE = 512

# Plain click output: an error is one line "Error: ..." (a usage error of click's own parser adds the usage
# above it), never a panel; help text shows "[default: ...]" as written; an unexpected exception, a bug, prints
# Python's own traceback rather than a panel of locals. A user's mistake exits 2, a failure of the work 1.
app = typer.Typer(
    help="Calibrated neural-network surrogates: train, export, serve.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="CALSURR_CONFIG",
            help="YAML file of settings (the names below with underscores, e.g. 'max_batch_size: 4096'); "
            "options given here override environment variables, which override the file",
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            help="model repository folder: a folder per model, a folder per integer version in it (env CALSURR_REPO)"
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="address to bind, gRPC and metrics (env CALSURR_HOST; default 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="gRPC port; 0 picks a free one (env CALSURR_PORT; default 8001)")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            help="onnxruntime execution provider, repeat in order of preference; CPU is always the fallback "
            "(env CALSURR_PROVIDERS as a JSON list; default CUDAExecutionProvider, then CPUExecutionProvider)"
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="onnxruntime threads per session; 0 automatic (env CALSURR_INTRA_OP_THREADS; default 0)"),
    ] = None,
    spinning: Annotated[
        bool | None,
        typer.Option(
            "--spinning/--no-spinning",
            help="onnxruntime threads spin between runs; only where its cores are its own (env CALSURR_SPINNING; "
            "default off)",
        ),
    ] = None,
    event_loop: Annotated[
        str | None,
        typer.Option(help="uvloop or asyncio (env CALSURR_EVENT_LOOP; default uvloop)"),
    ] = None,
    instances: Annotated[
        int | None,
        typer.Option(help="onnxruntime runs of one model at once (env CALSURR_INSTANCES; default 1)"),
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching",
            help="merge concurrent requests into one run; off for benchmarks (env CALSURR_BATCHING; default on)",
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help="most rows in one run; larger requests get INVALID_ARGUMENT (env CALSURR_MAX_BATCH_SIZE; "
            "default 65536)"
        ),
    ] = None,
    preferred_batch_size: Annotated[
        int | None,
        typer.Option(
            help="rows the batcher merges into one run at most; a larger lone request still runs "
            "(env CALSURR_PREFERRED_BATCH_SIZE; default 4096)"
        ),
    ] = None,
    inline_max_rows: Annotated[
        int | None,
        typer.Option(
            help="a lone request of at most this many rows that finds the model idle runs on the event loop "
            "thread; 0 never "
            "(env CALSURR_INLINE_MAX_ROWS; default 8)"
        ),
    ] = None,
    max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            help="microseconds a batch may wait for more requests; 0 runs what queued at once "
            "(env CALSURR_MAX_QUEUE_DELAY_US; default 0)"
        ),
    ] = None,
    max_queue_size: Annotated[
        int | None,
        typer.Option(
            help="requests queued per model; beyond, RESOURCE_EXHAUSTED (env CALSURR_MAX_QUEUE_SIZE; default 1024)"
        ),
    ] = None,
    metrics: Annotated[
        bool | None,
        typer.Option("--metrics/--no-metrics", help="Prometheus metrics over HTTP (env CALSURR_METRICS; default on)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="metrics port (/metrics); 0 picks a free one (env CALSURR_METRICS_PORT; default 8002)"),
    ] = None,
    max_message_bytes: Annotated[
        int | None,
        typer.Option(help="largest gRPC message (env CALSURR_MAX_MESSAGE_BYTES; default 67108864)"),
    ] = None,
    grace_seconds: Annotated[
        float | None,
        typer.Option(help="on SIGTERM/SIGINT, time to finish accepted requests (env CALSURR_GRACE_SECONDS; default 5)"),
    ] = None,
    version_policy: Annotated[
        str | None,
        typer.Option(
            help="versions each model serves: latest (the newest ready), latest:N, all or specific:1,3; per model "
            'as JSON, {"default": "latest", "models": {"gg_ggg": "all"}} (env CALSURR_VERSION_POLICY; default latest)'
        ),
    ] = None,
    repository_poll_seconds: Annotated[
        float | None,
        typer.Option(
            help="seconds between scans of the repository: new versions load, deleted ones go, broken ones are "
            "reported and never replace a working one; 0 off (env CALSURR_REPOSITORY_POLL_SECONDS; default 0)"
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="PEM certificate chain: serve gRPC over TLS, with --tls-key; rotated files reach new connections "
            "without a restart (env CALSURR_TLS_CERT)"
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert (env CALSURR_TLS_KEY)")] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(help="PEM CA: require client certificates it signed, mutual TLS (env CALSURR_TLS_CLIENT_CA)"),
    ] = None,
    metrics_tls: Annotated[
        bool | None,
        typer.Option(
            "--metrics-tls/--no-metrics-tls",
            help="serve /metrics over HTTPS with the same certificate and client CA (env CALSURR_METRICS_TLS; "
            "default off)",
        ),
    ] = None,
    auth_tokens: Annotated[
        Path | None,
        typer.Option(
            help="token file of 'ROLE sha256:HEX' lines (`calsurr token new`): every RPC but health checks needs "
            "'authorization: Bearer <token>' of its role, infer or admin; re-read when it changes "
            "(env CALSURR_AUTH_TOKENS)"
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error (env CALSURR_LOG_LEVEL; default info)"),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="text, or json for one JSON object per line (env CALSURR_LOG_FORMAT; default text)"),
    ] = None,
) -> None:
    """Serve every model in a repository over the Open Inference Protocol (gRPC), metrics over HTTP.

    A setting comes from its option, else its CALSURR_* variable, else the --config file, else its default.

    All are checked before anything starts; an error names the setting.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from calsurr.service.config import ConfigFileError, ServerSettings, describe_errors
    from calsurr.service.logs import configure_logging
    from calsurr.service.server import run_server

    given = {
        "repo": repo,
        "host": host,
        "port": port,
        "providers": tuple(provider) if provider else None,
        "intra_op_threads": threads,
        "spinning": spinning,
        "event_loop": event_loop,
        "instances": instances,
        "batching": batching,
        "max_batch_size": max_batch_size,
        "preferred_batch_size": preferred_batch_size,
        "inline_max_rows": inline_max_rows,
        "max_queue_delay_us": max_queue_delay_us,
        "max_queue_size": max_queue_size,
        "metrics": metrics,
        "metrics_port": metrics_port,
        "max_message_bytes": max_message_bytes,
        "grace_seconds": grace_seconds,
        "version_policy": version_policy,
        "repository_poll_seconds": repository_poll_seconds,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_client_ca": tls_client_ca,
        "metrics_tls": metrics_tls,
        "auth_tokens": auth_tokens,
        "log_level": log_level,
        "log_format": log_format,
    }
    try:
        settings = ServerSettings.load(config, **{k: v for k, v in given.items() if v is not None})
    except ConfigFileError as exc:
        fail(f"--config: {exc}")
    except ValidationError as exc:
        fail(f"invalid setting {describe_errors(exc).replace('Value error, ', '')}; see `calsurr serve --help`")
    except SettingsError as exc:  # a CALSURR_* variable pydantic-settings cannot parse
        fail(f"invalid setting: {exc}; see `calsurr serve --help`")
    configure_logging(settings.log_level, settings.log_format)
    try:
        run_server(settings)
    except OSError as exc:  # a port taken, a repository gone: say so in one line, in the log format asked for
        logging.getLogger("calsurr").error("serve failed: %s", exc)
        raise typer.Exit(1) from None


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="where the model repository goes; a rerun publishes the next version [default: a temp dir]"),
    ] = None,
    process: Annotated[
        str, typer.Option(help="gg_ggg, or gg_gg (1-D: its errors follow the angle, so its pulls are not Gaussian)")
    ] = "gg_ggg",
    events: Annotated[int, typer.Option(help="events generated (70 % train)")] = 30_000,
    members: Annotated[int, typer.Option(help="ensemble members")] = 4,
    epochs: Annotated[int, typer.Option(help="maximum training epochs")] = 60,
    rows: Annotated[int, typer.Option(min=0, help="phase-space points printed")] = 10,
    seed: Annotated[int, typer.Option(help="seed of data, initialisation and shuffling")] = 0,
) -> None:
    """Train a small gg -> ggg deep ensemble, export it, serve it, query it, print predictions."""
    if process not in DEMO_PROCESSES:
        fail(f"--process must be one of {', '.join(DEMO_PROCESSES)}, got '{process}'")
    if workdir is not None:
        for folder in (workdir, workdir / "repository", workdir / "repository" / process):
            offline.check_folder(folder, "--workdir")
    from pydantic import ValidationError

    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig

    options = {"n_events": "--events", "members": "--members", "seed": "--seed", "epochs": "--epochs"}
    try:
        fit = FitConfig(epochs=epochs, batch_size=DEMO_BATCH_SIZE, seed=seed)
        config = TrainingConfig(process=process, n_events=events, members=members, seed=seed, fit=fit)
    except ValidationError as exc:  # FitConfig's errors name epochs and seed, TrainingConfig's its own fields
        fail(offline.describe_validation(exc, options))
    if workdir is not None:
        offline.make_folder(workdir / "repository", "--workdir")
    from calsurr.demo import run_demo

    run_demo(config, workdir, rows)


def _phase_space_domain(cuts: dict[str, float]) -> PhaseSpaceDomain:
    """The PhaseSpaceDomain of `generate`'s options, a bad value reported under its option's name."""
    from pydantic import ValidationError

    from calsurr.training.data import PhaseSpaceDomain

    try:
        return PhaseSpaceDomain(**cuts)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"sqrt_s_gev": "--sqrt-s", "min_sij_over_s": "--min-sij-over-s"}[str(error["loc"][0])]
        fail(f"{option} {error['input']}: {error['msg']}")


@app.command()
def generate(
    process: Annotated[str, typer.Argument(help="gg_gg, gg_ggg, gg_gggg or calorimeter")],
    events: Annotated[int, typer.Option(min=1, help="events to generate")],
    out: Annotated[Path, typer.Option(help="output file: .h5 / .hdf5 (HDF5) or .parquet")],
    noise: Annotated[float | None, typer.Option(help="relative noise injected into the target, e.g. 0.1")] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the events (and, independently, of the noise)")] = 0,
    sqrt_s: Annotated[float | None, typer.Option(help="partonic CM energy in GeV [default: 1000]")] = None,
    min_sij_over_s: Annotated[float | None, typer.Option(help="cut: every s_ij > X s [default: 0.01]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
) -> None:
    """Generate a dataset file: phase-space points with exact |M|^2, or calorimeter clusters with R = E_EM/E_dep."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from calsurr.training.data import (
        CALORIMETER_PROCESS,
        check_relative_noise,
        file_format,
        generate_dataset,
        write_dataset,
    )
    from calsurr.training.physics.processes import PROCESSES

    known = [*PROCESSES, CALORIMETER_PROCESS]
    if process not in known:
        fail(f"PROCESS: expected one of {', '.join(known)}, got '{process}'")
    if noise is not None:
        try:
            check_relative_noise(noise)
        except ValueError as exc:
            fail(f"--noise: {exc}")
    cuts = {k: v for k, v in {"sqrt_s_gev": sqrt_s, "min_sij_over_s": min_sij_over_s}.items() if v is not None}
    if process == CALORIMETER_PROCESS and cuts:
        fail("--sqrt-s and --min-sij-over-s apply to amplitude processes only, not to calorimeter")
    domain = None if process == CALORIMETER_PROCESS else _phase_space_domain(cuts)
    offline.check_output_file(out, "--out", overwrite)
    fmt = file_format(out)
    offline.make_folder(out.parent, "--out")

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task(f"{process}: {events} events", total=events)
        dataset = generate_dataset(
            process,
            events,
            seed,
            domain=domain,
            noise=noise,
            progress=lambda done: progress.update(task, completed=done),
        )
    try:
        write_dataset(out, dataset)
    except OSError as exc:
        fail(f"could not write --out {out} ({exc})", offline.FAILED)
    level = f", relative noise {noise:g} injected" if noise is not None else ""
    console.print(f"wrote {len(dataset)} {process} events to {out} ({fmt}){level}")


for command in (offline.train, offline.export, offline.report, offline.predict):
    app.command()(command)
app.command(name="events")(events_command)

token_app = typer.Typer(help="Bearer tokens for `calsurr serve --auth-tokens FILE`.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(
    role: Annotated[str, typer.Option(help="infer (inference, metadata, the card) or admin (also repository, stats)")],
    file: Annotated[Path, typer.Option(help="token file to append the token's hash to (created, mode 0600)")],
) -> None:
    """Make a token: its hash is appended to FILE, the token itself printed once, alone on standard output
    (`TOKEN=$(calsurr token new --role infer --file tokens)`); a running server picks it up within a second."""
    from calsurr.service.auth import ROLES, TokenFileError, new_token

    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}, got '{role}'")
    try:
        token = new_token(role, file)
    except TokenFileError as exc:
        fail(f"--file: {exc}")
    except OSError as exc:
        fail(f"--file {file}: cannot write ({exc.strerror or exc})", offline.FAILED)
    typer.echo(f"appended a {role} token's hash to {file}; the token is printed once, on standard output", err=True)
    typer.echo(token)


def main() -> None:
    app()
