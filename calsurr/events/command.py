"""`calsurr events`: unweighted events of an amplitude process into a Les Houches file, a surrogate deciding first.

Wiring only: every check of what the user gave runs before the work (a mistake is one line and exit 2, a
failure of the work exit 1, as in calsurr/offline.py), then the library in calsurr/events does the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from calsurr.offline import (
    FAILED,
    _check_address,
    _server_failed,
    check_folder,
    check_model_folder,
    fail,
    make_folder,
)

SAMPLERS = ("flat", "vegas")
ADAPT_ON = ("exact", "surrogate")


def _domain(card, sqrt_s: float | None, min_sij_over_s: float | None, process: str, where: str) -> tuple[float, float]:
    """The energy and cut to generate at: the card's unless given; refused outside the card's domain."""
    from calsurr.training.physics.processes import PROCESSES

    n = PROCESSES[process].n_particles
    if card.task != "amplitude":
        fail(f"{where} is a {card.task} model, not an amplitude surrogate; give a {process} model")
    if card.process != process:
        fail(f"{where} is a {card.process} model, not {process}; give a {process} model or PROCESS {card.process}")
    shape = tuple(card.inputs[0].shape)
    if len(shape) != 3 or shape[1:] != (n, 4):
        fail(f"{where} takes inputs of shape {list(shape)}, {process} events are [-1, {n}, 4]")
    trained_sqrt_s, trained_cut = card.domain.sqrt_s_gev, card.domain.min_sij_over_s
    if trained_sqrt_s is None or trained_cut is None:
        fail(f"{where}: its card states no phase-space domain (sqrt_s_gev, min_sij_over_s); it cannot be trusted here")
    if sqrt_s is not None and abs(sqrt_s - trained_sqrt_s) > 1e-9 * trained_sqrt_s:
        fail(
            f"--sqrt-s {sqrt_s:g} is outside the domain {where} was trained on (sqrt(s) = {trained_sqrt_s:g} GeV); "
            f"generate at {trained_sqrt_s:g} GeV or train a model for {sqrt_s:g} GeV"
        )
    if min_sij_over_s is not None and min_sij_over_s < trained_cut:
        fail(
            f"--min-sij-over-s {min_sij_over_s:g} is looser than the domain {where} was trained on "
            f"(every s_ij > {trained_cut:g} s); give a cut of at least {trained_cut:g}"
        )
    return trained_sqrt_s, min_sij_over_s if min_sij_over_s is not None else trained_cut


def events(
    process: Annotated[str, typer.Argument(help="gg_gg, gg_ggg or gg_gggg")],
    events: Annotated[int, typer.Option("--events", min=1, help="unweighted events to write")],
    out: Annotated[Path, typer.Option(help="Les Houches Event file to write (.lhe)")],
    server: Annotated[str | None, typer.Option(help="HOST:PORT of a calsurr server serving the surrogate")] = None,
    model_name: Annotated[str | None, typer.Option(help="model name on the server")] = None,
    model_version: Annotated[str, typer.Option(help="model version on the server; empty: the newest ready")] = "",
    model: Annotated[
        Path | None, typer.Option(help="exported model folder <repo>/<model>/<version>, run in-process")
    ] = None,
    method: Annotated[
        str, typer.Option(help="standard (exact |M|^2 alone), two-stage (surrogate first) or gated")
    ] = "two-stage",
    sampler: Annotated[str, typer.Option(help="flat (RAMBO) or vegas (adaptive, 3n-4 dimensions)")] = "flat",
    seed: Annotated[int, typer.Option(min=0, help="seed of phase space, unweighting and colour flows")] = 0,
    sqrt_s: Annotated[float | None, typer.Option(help="partonic CM energy, GeV [default: the card's]")] = None,
    min_sij_over_s: Annotated[
        float | None, typer.Option(help="cut: every s_ij > X s; at least the card's [default: the card's]")
    ] = None,
    max_quantile: Annotated[
        float, typer.Option(help="maxima: this quantile of the maxima of 10 batches of the optimisation sample")
    ] = 0.5,
    optimisation_points: Annotated[
        int, typer.Option(min=1000, help="trial points of the optimisation sample that fixes the maxima")
    ] = 50_000,
    gate_threshold: Annotated[
        float | None,
        typer.Option(help="gated: sigma_tot/|mean| above which a point skips stage 1 [default: the 98th percentile]"),
    ] = None,
    adapt_on: Annotated[str, typer.Option(help="vegas: adapt on the exact |M|^2 or on the surrogate")] = "exact",
    vegas_iterations: Annotated[int, typer.Option(min=1, help="vegas: adaptation iterations")] = 5,
    vegas_points: Annotated[int, typer.Option(min=100, help="vegas: trial points per adaptation iteration")] = 20_000,
    batch_points: Annotated[int, typer.Option(min=16, help="trial points per batch (one surrogate request)")] = 16_384,
    beam_energy: Annotated[float, typer.Option(help="proton beam energy in the LHE init block, GeV")] = 6500.0,
    compare: Annotated[
        bool, typer.Option("--compare", help="also run standard unweighting (seed + 1): closure figures and f_eff")
    ] = False,
    plots: Annotated[
        Path | None, typer.Option(help="folder for observable plots against a standard run (implies --compare)")
    ] = None,
    summary: Annotated[Path | None, typer.Option(help="also write the summary figures to this JSON file")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
) -> None:
    """Unweighted events with a surrogate-assisted (or standard) unweighting, written as LHE v3.

    Two-stage: the surrogate's weight decides first, the exact |M|^2 of the survivors corrects; gated: points
    the surrogate is unsure of skip the first stage. Overweights stay as event weights, so the sample is unbiased.
    """
    from calsurr.events.unweighting import METHODS
    from calsurr.training.physics.processes import PROCESSES

    if process not in PROCESSES:
        fail(f"PROCESS: expected one of {', '.join(PROCESSES)}, got '{process}'")
    if method not in METHODS:
        fail(f"--method: expected one of {', '.join(METHODS)}, got '{method}'")
    if sampler not in SAMPLERS:
        fail(f"--sampler: expected one of {', '.join(SAMPLERS)}, got '{sampler}'")
    if adapt_on not in ADAPT_ON:
        fail(f"--adapt-on: expected one of {', '.join(ADAPT_ON)}, got '{adapt_on}'")
    if not 0.0 < max_quantile <= 1.0:
        fail(f"--max-quantile {max_quantile:g}: a quantile in (0, 1], e.g. 0.5 for the median of the batch maxima")
    if gate_threshold is not None and not gate_threshold > 0:
        fail(f"--gate-threshold {gate_threshold:g}: a relative uncertainty sigma_tot/|mean| > 0, e.g. 0.05")
    if gate_threshold is not None and method != "gated":
        fail("--gate-threshold applies to --method gated only")
    if sqrt_s is not None and not sqrt_s > 0:
        fail(f"--sqrt-s {sqrt_s:g}: an energy in GeV > 0")
    if min_sij_over_s is not None and not 0 < min_sij_over_s < 1:
        fail(f"--min-sij-over-s {min_sij_over_s:g}: a fraction of s in (0, 1)")
    if out.suffix.lower() != ".lhe":
        fail(f"--out {out}: give a Les Houches Event file name ending in .lhe")
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        fail(f"--out {out} exists; pass --overwrite to replace it, or choose another file")
    check_folder(out.parent, "--out")
    if plots is not None:
        if plots.exists() and not plots.is_dir():
            fail(f"--plots {plots} is a file; give a folder for the plots")
        check_folder(plots, "--plots")
    if summary is not None:
        if summary.is_dir():
            fail(f"--summary {summary} is a folder; give a file name")
        check_folder(summary.parent, "--summary")
    needs_surrogate = method != "standard" or adapt_on == "surrogate"
    if server is not None and model is not None:  # --model <repo>/<name>/<version> names the served model
        model_name = model_name or model.parent.name
        model_version = model_version or (model.name if model.name.isascii() and model.name.isdigit() else "")
    if server is None and model_name is not None:
        fail("--model-name names a model on a server: give --server HOST:PORT too, or --model MODEL_DIR alone")
    if server is not None:
        _check_address(server)
        if model_name is None:
            fail("with --server, name the model: --model-name NAME")
    elif model is not None:
        check_model_folder(model, "--model")
    elif needs_surrogate:
        what = f"--method {method}" if method != "standard" else "--adapt-on surrogate"
        fail(f"{what} needs a surrogate: give --server HOST:PORT --model-name NAME, or --model MODEL_DIR")
    if adapt_on == "surrogate" and sampler != "vegas":
        fail("--adapt-on applies to --sampler vegas only")

    surrogate = _open_surrogate(server, model_name, model_version, model) if (server or model) else None
    try:
        if surrogate is not None:
            where = f"model '{model_name}' on {server}" if server else f"--model {model}"
            sqrt_s, min_sij_over_s = _domain(surrogate.card, sqrt_s, min_sij_over_s, process, where)
        else:
            sqrt_s = 1000.0 if sqrt_s is None else sqrt_s
            min_sij_over_s = 0.01 if min_sij_over_s is None else min_sij_over_s
        if sqrt_s > 2.0 * beam_energy:
            fail(f"--sqrt-s {sqrt_s:g} GeV exceeds the two beams' 2 x {beam_energy:g} GeV; raise --beam-energy")
        make_folder(out.parent, "--out")
        from calsurr.events.run import EventRunOptions, run_events

        options = EventRunOptions(
            process=process,
            n_events=events,
            method=method,
            sampler=sampler,
            seed=seed,
            sqrt_s=sqrt_s,
            min_sij_over_s=min_sij_over_s,
            max_quantile=max_quantile,
            optimisation_points=optimisation_points,
            gate_threshold=gate_threshold,
            adapt_on=adapt_on,
            vegas_iterations=vegas_iterations,
            vegas_points=vegas_points,
            batch_points=batch_points,
            beam_energy=beam_energy,
            compare=compare or plots is not None,
        )
        try:
            result = run_events(options, surrogate, out, plots)
        except ValueError as exc:  # e.g. no point of the optimisation sample inside the cuts
            fail(f"event generation failed: {exc}", FAILED)
        except OSError as exc:
            fail(f"could not write {out} ({exc})", FAILED)
        except Exception as exc:
            import grpc

            if isinstance(exc, grpc.RpcError) and server is not None:
                _server_failed(exc, server, model_name)
            raise
    finally:
        if surrogate is not None:
            surrogate.close()
    if summary is not None:
        try:
            summary.write_text(json.dumps(result, indent=2, default=str) + "\n")
        except OSError as exc:
            fail(f"could not write --summary {summary} ({exc})", FAILED)


def _open_surrogate(server: str | None, model_name: str | None, version: str, model: Path | None):
    """The surrogate of --server/--model-name or --model; a server that fails to answer is exit 1 (2 if the
    model is not there)."""
    if server is not None:
        import grpc

        from calsurr.events.surrogates import ServedSurrogate

        try:
            return ServedSurrogate(server, model_name, version)
        except grpc.RpcError as exc:
            _server_failed(exc, server, model_name)
    from calsurr.events.surrogates import LocalSurrogate

    try:
        return LocalSurrogate(model)
    except Exception as exc:  # onnxruntime's load errors have no common base class but Exception
        fail(f"--model {model}: the model does not load ({exc})", FAILED)
