"""The offline commands: train, export, report, predict. Wiring only; the work is in `training` and `service`.

Imports of torch-using modules stay inside the commands so that `calsurr serve` needs no torch.

Every check of what the user gave runs before the expensive work (training, generation, export, prediction),
and a mistake ends the command with one line on stderr, `Error: <what is wrong and what to do>`, and exit
code 2 (`USAGE`); a failure during the work (a server that cannot be reached, a disk that is full) exits 1
(`FAILED`). `fail` is that line; the checks below are shared with `calsurr generate`, `demo` and `serve`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pydantic import ValidationError

    from calsurr.service.card import ModelCard
    from calsurr.training.data import Dataset
    from calsurr.training.pipeline import TrainingConfig

console = Console()

USAGE = 2  # the user's mistake: a bad value, a missing input, an output that exists
FAILED = 1  # the work itself failed
RUN_FILES = ("surrogate.pt", "test.h5")  # training/runs.py: SURROGATE_FILE, TEST_FILE (importing it loads torch)
DEFAULT_PARTITION_ROWS = 262_144  # calsurr/batch.py: DEFAULT_PARTITION_ROWS (importing it loads pyarrow)
CONFIG_HELP = "fields as in calsurr/training/pipeline.py TrainingConfig, examples in configs/"
DEFAULT_DASK_WORKERS = 2  # `predict --scheduler`-less Dask runs without --workers (more files than one)


# ---------------------------------------------------------------------------------------------------------------
# Reporting a mistake, and the checks


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def fail(message: str, code: int = USAGE) -> NoReturn:
    """End the command: `Error: message` as one line on stderr, exit `code` (2 a usage error, 1 a failure)."""
    typer.echo(f"Error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def describe_validation(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """'field: problem (got value)' per error, joined by '; '; a field is named by its option where it has one."""
    parts: list[str] = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "config"
        field = (options or {}).get(field, field)
        if error["type"] == "extra_forbidden":
            part = f"{field}: unknown field"
        else:
            message = error["msg"].removeprefix("Value error, ")
            value = _short_repr(error.get("input"))
            named = isinstance(error.get("input"), str) and value in message  # "got 'foo'" already said
            got = "" if error["type"] == "missing" or named else f" (got {value})"
            part = f"{field}: {message}{got}"
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def published_versions(model_folder: Path) -> list[int]:
    """The integer versions published under `<repo>/<name>/` (hidden staging folders are not versions)."""
    try:
        return sorted(
            int(p.name) for p in Path(model_folder).iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit()
        )
    except OSError:
        return []


def next_version(model_folder: Path) -> int:
    return max(published_versions(model_folder), default=0) + 1


def check_model_name(name: str, option: str = "--name") -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
        fail(f"{option} '{name}' is not a model name: a folder name, not starting with '.', without '/'")


def check_folder(path: Path, option: str) -> None:
    """`path` can become a folder we write in: it is one, or it can be created, and it is writable."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(
            f"{option} {path} is a file, not a folder" if existing == path else f"{option} {path}: {existing} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{option} {path}: no permission to write in {existing}")


def make_folder(path: Path, option: str) -> None:
    check_folder(path, option)
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{option} {path}: cannot create the folder ({exc.strerror or exc})")


def check_dataset_suffix(path: Path, option: str) -> None:
    from calsurr.training.data import DatasetFormatError, file_format

    try:
        file_format(path)
    except DatasetFormatError as exc:
        fail(f"{option} {exc}")  # the message starts with the path


def check_input_file(path: Path, option: str) -> None:
    """A dataset file to read: the suffix of a format, and the file there."""
    check_dataset_suffix(path, option)
    if Path(path).is_dir():
        fail(f"{option} {path} is a folder; give a dataset file")
    if not Path(path).is_file():
        fail(f"{option} {path}: no such file")


def check_output_file(path: Path, option: str, overwrite: bool) -> None:
    """A dataset file to write: the suffix of a format, a folder for it, and no file there unless `overwrite`."""
    check_dataset_suffix(path, option)
    if Path(path).is_dir():
        fail(f"{option} {path} is a folder; give a file name")
    if Path(path).exists() and not overwrite:
        fail(f"{option} {path} exists; pass --overwrite to replace it, or choose another file")
    check_folder(Path(path).parent, option)


def read_input_dataset(path: Path, option: str = "--data") -> Dataset:
    from calsurr.training.data import DatasetFormatError, read_dataset

    check_input_file(path, option)
    try:
        return read_dataset(path)
    except DatasetFormatError as exc:
        fail(f"{option} {exc}")  # the message starts with the path


def check_model_folder(model: Path, option: str = "MODEL_DIR") -> ModelCard:
    """An exported `<repo>/<name>/<version>` folder: its card, read and validated."""
    from pydantic import ValidationError

    from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard

    what = "give a <repo>/<name>/<version> folder written by `calsurr export`"
    if not Path(model).is_dir():
        fail(f"{option} {model} is not a folder; {what}")
    missing = [f for f in (CARD_FILENAME, MODEL_FILENAME) if not (Path(model) / f).is_file()]
    if missing:
        fail(f"{option} {model} is not an exported model (no {' and no '.join(missing)}); {what}")
    try:
        return ModelCard.read(Path(model) / CARD_FILENAME)
    except ValidationError as exc:
        fail(f"{option} {model}: {CARD_FILENAME} is not a valid model card: {describe_validation(exc)}")
    except (OSError, ValueError) as exc:
        fail(f"{option} {model}: {CARD_FILENAME} is not readable ({exc})")


def check_inputs_fit(shape, dataset: Dataset, data: Path, model: str) -> None:
    from calsurr.predict import input_mismatch

    problem = input_mismatch(shape, dataset.inputs)
    if problem:
        fail(f"--data {data} does not fit {model}: {problem}; give a {dataset.process} model or matching data")


def load_model(model: Path):
    """The in-process runner of an exported model whose folder passed `check_model_folder`."""
    from calsurr.predict import in_process_runner

    try:
        return in_process_runner(model)
    except Exception as exc:  # onnxruntime's load errors have no common base class but Exception
        fail(f"{model}: the model does not load ({exc})")


def training_config(path: Path | None) -> TrainingConfig:
    """The TrainingConfig of a YAML file, or the defaults; every problem of the file named in one line."""
    import yaml
    from pydantic import ValidationError

    from calsurr.training.pipeline import TrainingConfig

    if path is None:
        return TrainingConfig()
    if not Path(path).is_file():
        fail(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--config {path} is not readable ({exc})")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        fail(f"--config {path} is not valid YAML: {where}{problem}")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        fail(f"--config {path} must map fields to values (e.g. 'members: 4'), got a {type(values).__name__}")
    try:
        return TrainingConfig.model_validate(values)
    except ValidationError as exc:
        fail(f"--config {path}: {describe_validation(exc)} ({CONFIG_HELP})")


def with_overrides(settings: TrainingConfig, overrides: dict, options: Mapping[str, str]) -> TrainingConfig:
    """`settings` with command-line values, validated; a bad value is named by its option."""
    from pydantic import ValidationError

    from calsurr.training.pipeline import TrainingConfig

    try:
        return TrainingConfig.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as exc:
        fail(describe_validation(exc, options))


def _minimum_events() -> int:
    from calsurr.training.pipeline import TrainingConfig

    return next(m.ge for m in TrainingConfig.model_fields["n_events"].metadata if getattr(m, "ge", None))


# ---------------------------------------------------------------------------------------------------------------
# The commands


def train(
    out: Annotated[Path, typer.Option(help="run folder: surrogate.pt, test.h5, checkpoint.pt")],
    config: Annotated[
        Path | None, typer.Option(help="YAML training config (calsurr.training.pipeline.TrainingConfig)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="dataset file (.h5/.parquet); generated from the config if absent")
    ] = None,
    process: Annotated[str | None, typer.Option(help="override the config's process")] = None,
    method: Annotated[str | None, typer.Option(help="deep_ensemble, repulsive_ensemble or bayesian")] = None,
    seed: Annotated[int | None, typer.Option(help="override the config's seed")] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto (CUDA when torch sees a GPU), cpu or cuda; overrides the config's fit.device"),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="train again into an --out that holds a finished run")
    ] = False,
) -> None:
    """Train a surrogate by the config's uncertainty method and save the run."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder for the run")
    if (out / RUN_FILES[0]).exists() and not overwrite:
        fail(
            f"--out {out} holds a finished run ({RUN_FILES[0]}); export it, choose another --out, "
            "or pass --overwrite to train it again"
        )
    check_folder(out, "--out")
    settings = training_config(config)
    overrides = {k: v for k, v in {"process": process, "method": method, "seed": seed}.items() if v is not None}
    settings = with_overrides(settings, overrides, {"process": "--process", "method": "--method", "seed": "--seed"})
    if device is not None:
        fit = {**settings.fit.model_dump(), "device": device}
        settings = with_overrides(settings, {"fit": fit}, {"fit.device": "--device"})
    from calsurr.training.fit import DeviceUnavailable, resolve_device

    try:
        resolve_device(settings.fit.device)
    except DeviceUnavailable as exc:
        fail(f"--device: {exc}")
    dataset = None
    if data is not None:
        dataset = read_input_dataset(data, "--data")
        if process is not None and dataset.process != process:
            fail(f"--process {process} disagrees with --data {data}, which holds {dataset.process} events")
        if len(dataset) < _minimum_events():
            fail(f"--data {data} holds {len(dataset)} events; training needs at least {_minimum_events()}")
        settings = with_overrides(settings, {"process": dataset.process}, {"process": "--data"})
    make_folder(out, "--out")

    from calsurr.training.pipeline import train_surrogate
    from calsurr.training.runs import save_run

    run = train_surrogate(settings, dataset, checkpoint=out / "checkpoint.pt")
    try:
        save_run(run, out)
    except OSError as exc:
        fail(f"could not save the run in {out} ({exc})", FAILED)
    raw, cal = run.uncalibrated, run.calibration
    console.print(
        f"trained {settings.method} on {settings.process} in {run.training_seconds:.0f} s; held-out median |Delta| "
        f"{100 * cal.median_abs_rel_deviation:.3f} %, pulls {raw.pull_mean:+.2f} / {raw.pull_width:.2f} as learned, "
        + (
            f"{cal.pull_mean:+.2f} / {cal.pull_width:.2f} after recalibration by {cal.recalibration_factor:.3f}"
            if cal.recalibration_applied
            else f"68 % interval covers {100 * raw.coverage_68:.0f} %; recalibration factor a calibration split "
            f"fits: {cal.recalibration_factor:.3f} (a check, not applied)"
        )
    )
    console.print(f"saved {out}")


def export(
    run: Annotated[Path, typer.Argument(help="run folder written by `calsurr train`")],
    repo: Annotated[Path, typer.Option(help="model repository")],
    name: Annotated[str, typer.Option(help="model name in the repository")],
    version: Annotated[int, typer.Option(min=1, help="integer version; existing versions are never overwritten")] = 1,
    members: Annotated[bool, typer.Option(help="also output member_mean and member_sigma, (batch, K)")] = False,
    fp32: Annotated[bool, typer.Option(help="float32 inputs and outputs (computed in float64 inside)")] = False,
    member_dtype: Annotated[
        str,
        typer.Option(
            help="float32 (default): the members run in float32 (several times faster), invariants and "
            "aggregation in float64, checked against torch within stated bounds; float64: torch to 1e-5 in every "
            "output and a row's answer independent of the batch it is served in"
        ),
    ] = "float32",
) -> None:
    """Export a trained run to <repo>/<name>/<version>/{model.onnx, card.json}, checked against torch."""
    if member_dtype not in ("float64", "float32"):
        fail(f"--member-dtype must be float64 or float32, got '{member_dtype}'")
    if not run.is_dir():
        fail(f"RUN {run} is not a folder; give the --out folder of a finished `calsurr train`")
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if missing:
        fail(f"RUN {run} is not a finished run (no {' and no '.join(missing)}); give the --out of `calsurr train`")
    check_model_name(name)
    check_folder(repo, "--repo")
    final = repo / name / str(version)
    if final.exists():
        fail(
            f"{final} exists; versions are immutable: export a new version, e.g. --version {next_version(final.parent)}"
        )

    from calsurr.training.export import ExportMismatch, export_to_repository
    from calsurr.training.runs import load_run

    try:
        trained = load_run(run)
    except Exception as exc:  # torch.load, the config's validation, the held-out file: all name the run
        fail(f"RUN {run} is not a readable run ({one_line(exc)}); train it again")
    datatype = "FP32" if fp32 else "FP64"
    try:
        folder = export_to_repository(
            trained, repo, name, version, with_members=members, io_datatype=datatype, member_dtype=member_dtype
        )
    except FileExistsError as exc:  # another export published it meanwhile
        fail(f"{exc}, e.g. --version {next_version(final.parent)}")
    except ExportMismatch as exc:
        hint = "; --member-dtype float64 keeps the members' precision" if member_dtype == "float32" else ""
        fail(f"export of {run} refused: {exc}{hint}", FAILED)
    except OSError as exc:
        fail(f"could not write {final} ({exc})", FAILED)
    console.print(f"exported {folder}")


def report(
    model: Annotated[Path, typer.Argument(help="exported model folder <repo>/<model>/<version>")],
    data: Annotated[Path, typer.Option(help="held-out dataset file (.h5/.parquet) with targets")],
    out: Annotated[Path, typer.Option(help="folder for summary.json and the PNG plots")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the report already in --out")] = False,
) -> None:
    """Calibration report of an exported model on a dataset: JSON summary and plots."""
    card = check_model_folder(model)
    check_input_file(data, "--data")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder for the report")
    if (out / "summary.json").exists() and not overwrite:
        fail(f"--out {out} holds a report (summary.json); pass --overwrite to replace it, or choose another folder")
    check_folder(out, "--out")
    dataset = read_input_dataset(data, "--data")
    check_inputs_fit(card.inputs[0].shape, dataset, data, str(model))

    from calsurr.predict import predict_dataset
    from calsurr.training.data import AmplitudeDataset
    from calsurr.training.physics.phase_space import pair_invariants
    from calsurr.training.report import write_calibration_report

    runner, card = load_model(model)
    predicted = predict_dataset(dataset, runner)
    variable, label = None, ""
    if isinstance(dataset, AmplitudeDataset):
        sij = pair_invariants(dataset.momenta)
        variable, label = sij.min(axis=1) / sij[:, 0], "min s_ij / s"
    factor = card.calibration.recalibration_factor if card.calibration else 1.0
    applied = card.calibration.recalibration_applied if card.calibration else False
    try:
        summary = write_calibration_report(
            out,
            dataset.target,
            predicted["mean"],
            predicted["sigma_stat"],
            predicted["sigma_syst"],
            variable,
            label,
            title=f"{card.name} v{card.version} ({card.uncertainty.method})",
            recalibration_factor=factor,
            recalibration_applied=applied,
        )
    except OSError as exc:
        fail(f"could not write the report in {out} ({exc})", FAILED)
    console.print(summary.model_dump_json(indent=2))
    console.print(f"wrote {out}")


def _check_address(server: str) -> None:
    """HOST:PORT, [IPv6]:PORT, or a gRPC target with a scheme (dns:///, unix:)."""
    if ":" in server and server.split(":", 1)[0] in ("dns", "unix", "unix-abstract", "ipv4", "ipv6"):
        return
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--server expects HOST:PORT (e.g. 127.0.0.1:8001), got '{server}'")


def _server_failed(exc, server: str, name: str) -> NoReturn:
    import grpc

    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        fail(f"cannot reach the server at {server} ({code.name}: {details}); is `calsurr serve` running there?", FAILED)
    if code == grpc.StatusCode.NOT_FOUND:
        fail(f"the server at {server} has no model '{name}' ready ({details}); check --model-name", USAGE)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fail(f"the server at {server} refused the request: {details}", USAGE)
    fail(f"the server at {server} failed: {code.name if code else 'error'}: {details}", FAILED)


def predict(
    data: Annotated[
        list[Path],
        typer.Option(metavar="FILE", help="input dataset file (.h5/.parquet); repeat for several (then on Dask)"),
    ],
    out: Annotated[
        Path, typer.Option(help="output file (.h5/.parquet): inputs plus mean and sigmas; on Dask a folder of parts")
    ],
    model: Annotated[Path | None, typer.Option(help="exported model folder <repo>/<model>/<version>")] = None,
    server: Annotated[str | None, typer.Option(help="HOST:PORT of a calsurr server instead of in-process")] = None,
    model_name: Annotated[str | None, typer.Option(help="model name on the server")] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per run or request")] = 16_384,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Dask: a LocalCluster of N worker processes; --out is a folder of Parquet parts"),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask: the scheduler of a running cluster (tcp://HOST:8786) instead")
    ] = None,
    partition_rows: Annotated[
        int, typer.Option(min=1, help="Dask: rows per partition (Parquet: whole row groups, merged up to it)")
    ] = DEFAULT_PARTITION_ROWS,
    threads: Annotated[int, typer.Option(min=1, help="Dask, in-process: onnxruntime threads per worker")] = 1,
) -> None:
    """Predict mean, sigma_stat, sigma_syst and sigma_tot for every event of a file, or of many files on Dask."""
    card = None
    if server is None:
        if model is None:
            fail("give --model MODEL_DIR (in-process), or --server HOST:PORT with --model-name NAME")
        if model_name is not None:
            fail("--model-name names a model on a server: give --server HOST:PORT too, or only --model MODEL_DIR")
        card = check_model_folder(model, "--model")
    else:
        from calsurr.predict import served_model

        _check_address(server)
        try:
            name, version = served_model(model, model_name)
        except ValueError as exc:
            fail(str(exc))
    if workers is not None or scheduler is not None or len(data) > 1:
        source = {"model_dir": model, "server": server, "chunk_rows": chunk_rows, "threads": threads}
        if server is not None:
            source |= {"model_name": name, "version": version}
        _predict_on_dask(data, out, card, source, overwrite, workers, scheduler, partition_rows)
        return
    data = data[0]
    check_input_file(data, "--data")
    check_output_file(out, "--out", overwrite)
    if out.resolve() == data.resolve():
        fail(f"--out {out} is the --data file; write the predictions to another file")
    dataset = read_input_dataset(data, "--data")

    import grpc

    from calsurr.predict import predict_dataset, server_runner
    from calsurr.training.data import write_dataset

    if card is not None:
        check_inputs_fit(card.inputs[0].shape, dataset, data, str(model))
        runner, _ = load_model(model)
        predictions = predict_dataset(dataset, runner, chunk_rows)
    else:
        try:
            runner, client, shape = server_runner(server, name, version)
            with client:
                check_inputs_fit(shape, dataset, data, f"model '{name}' on {server}")
                predictions = predict_dataset(dataset, runner, chunk_rows)
        except grpc.RpcError as exc:
            _server_failed(exc, server, name)
    make_folder(out.parent, "--out")
    try:
        write_dataset(out, dataset, extra_columns=predictions)
    except OSError as exc:
        fail(f"could not write --out {out} ({exc})", FAILED)
    console.print(f"wrote {len(predictions['mean'])} predictions to {out}")


def _predict_on_dask(
    data: list[Path],
    out: Path,
    card: ModelCard | None,
    source_options: dict,
    overwrite: bool,
    workers: int | None,
    scheduler: str | None,
    partition_rows: int,
) -> None:
    """`predict` over partitions on Dask (calsurr/batch.py): every check first, then the cluster."""
    if workers is not None and scheduler is not None:
        fail("give --workers N (a LocalCluster here) or --scheduler ADDRESS (a running cluster), not both")
    for path in data:
        check_input_file(path, "--data")
    if len({p.resolve() for p in data}) < len(data):
        fail("--data names a file twice; give each input file once")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; on Dask --out is a folder for the Parquet parts (e.g. --out predictions/)")
    if any(out.resolve() == p.resolve().parent for p in data):
        fail(f"--out {out} holds --data files; write the parts to a folder of their own")
    try:
        from calsurr import batch
    except ImportError as exc:
        fail(f"Dask batch prediction needs dask[distributed] ({exc.name} is missing): pip install 'calsurr[ops]'")
    left = batch.existing_parts(out)
    if left and not overwrite:
        fail(f"--out {out} holds {len(left)} parts of a previous run; pass --overwrite to replace them")
    check_folder(out, "--out")
    try:
        parts = batch.plan([p.resolve() for p in data], partition_rows)
    except batch.PlanError as exc:
        fail(f"--data {exc}")
    if not parts:
        fail(f"--data {', '.join(map(str, data))} hold no events")
    import numpy as np

    from calsurr.predict import input_mismatch

    first = parts[0].file
    if card is not None:
        shape, what = card.inputs[0].shape, str(source_options["model_dir"])
        source_options["model_dir"] = str(Path(source_options["model_dir"]).resolve())
    else:
        import grpc

        from calsurr.predict import server_runner

        server, name = source_options["server"], source_options["model_name"]
        try:
            _, client, shape = server_runner(server, name, source_options["version"])
            client.close()
        except grpc.RpcError as exc:
            _server_failed(exc, server, name)
        what = f"model '{name}' on {server}"
        source_options["model_dir"] = None
    problem = input_mismatch(shape, np.empty((0, *first.input_shape)))
    if problem:
        fail(f"--data {first.path} does not fit {what}: {problem}; give a {first.process} model or matching data")
    source = batch.Source(**source_options)

    for stale in left:
        stale.unlink()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    where = scheduler or f"a LocalCluster of {workers or DEFAULT_DASK_WORKERS} workers"
    total = sum(p.rows for p in parts)
    console.print(f"predicting {total} events of {len(data)} file(s) in {len(parts)} partitions on {where}")
    try:
        client = batch.connect(scheduler, workers or DEFAULT_DASK_WORKERS)
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the Dask scheduler at {scheduler} ({one_line(exc)}); is it running?", FAILED)
    columns = [TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        with client, Progress(*columns, console=console) as bar:
            task = bar.add_task("rows", total=total)
            report = batch.run_batch(client, parts, source, out, lambda r: bar.advance(task, r.rows))
    except Exception as exc:  # a task's error comes back as raised on the worker
        fail(f"batch prediction failed: {type(exc).__name__}: {one_line(exc)}", FAILED)
    finally:
        cluster = getattr(client, "cluster", None)
        if cluster is not None:
            cluster.close()
    console.print(
        f"wrote {report.rows} predictions in {report.parts} parts to {out} ({report.workers} workers, "
        f"{report.rows_per_second:,.0f} rows/s)"
    )
