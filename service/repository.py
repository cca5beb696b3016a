"""The model repository on disk: `<root>/<model>/<version>/{model.onnx, card.json}` with integer versions.

The repository owns loaded models. Which versions a model serves is its version policy (the newest N that
load, all, or named ones); a request without a version gets the newest ready one. Scans happen at start,
on every poll (`repository_poll_seconds`) and on the repository RPCs (`load_model`, `unload_model`,
`reload`), one at a time, in a worker thread, while the server goes on answering.

A version is loaded, then checked on a sample input built from its card; only then is it swapped in, by
replacing the whole name -> entry dict at once, so a reader sees the old state or the new, never half of
one. A version that fails (corrupt ONNX, a card that fails validation, a half-copied folder) is recorded
with its reason and never replaces a working one; it is not retried until its files change, so a poll does
not log and count the same failure forever. Versions that leave the served set (a newer one took over,
their folder was deleted, the model was unloaded) are reported to the listeners, which drain their
in-flight requests (`DataPlane.release`) and update health checking.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.service.errors import CalsurrError, ModelNotFound
from calsurr.service.runtime import DATATYPE_TO_NUMPY, OnnxModel, RuntimeOptions

log = logging.getLogger(__name__)

# sigma_tot^2 = sigma_stat^2 + sigma_syst^2 (shared/DESIGN.md), checked on the sample input to this relative
# tolerance: loose enough for an FP32 graph, tight enough to catch outputs wired to the wrong names.
QUADRATURE_RTOL = 1e-3
Fingerprint = tuple[tuple[str, int, int], ...]  # (file name, size, mtime_ns) of every file in a version folder


class ModelLoadFailed(CalsurrError):
    """A load asked for by name left versions that failed: the repository, not the request, needs fixing."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


# -- version policy -------------------------------------------------------------------------------------------


class VersionPolicy(BaseModel):
    """Which versions on disk a model serves, as Triton's `version_policy`.

    `latest` N: the N highest versions that load and pass their check (a broken newest version leaves the
    one below it serving); `all`: every version; `specific`: the versions named. Written in YAML as
    `latest`, `latest:2`, `all`, `specific:1,3`, or Triton's `{latest: {num_versions: 2}}`,
    `{all: {}}`, `{specific: {versions: [1, 3]}}`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = Field(default=1, ge=1, description="how many versions `latest` serves")
    versions: tuple[int, ...] = Field(default=(), description="the versions `specific` serves")

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_short_policy(value)
        if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("latest", "all", "specific"):
            kind, body = next(iter(value.items()))
            if kind == "latest":
                return {"kind": kind, "num_versions": body["num_versions"] if isinstance(body, Mapping) else body}
            if kind == "specific":
                return {"kind": kind, "versions": body["versions"] if isinstance(body, Mapping) else body}
            return {"kind": "all"}
        return value

    @model_validator(mode="after")
    def _versions_match_kind(self) -> VersionPolicy:
        if self.kind == "specific" and (not self.versions or min(self.versions) < 1):
            raise ValueError(f"a 'specific' version policy needs versions >= 1, got {list(self.versions)}")
        if self.kind != "specific" and self.versions:
            raise ValueError(f"versions {list(self.versions)} only go with kind 'specific', not '{self.kind}'")
        return self

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return "all"

    def candidates(self, on_disk: list[int]) -> list[int]:
        """Versions to try, in order of preference (newest first); `latest` stops once N are ready."""
        if self.kind == "specific":
            return sorted(self.versions, reverse=True)
        return sorted(on_disk, reverse=True)


def _parse_short_policy(text: str) -> dict[str, Any]:
    kind, _, argument = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind == "latest":
        return {"kind": kind, "num_versions": int(argument) if argument.strip() else 1}
    if kind == "all" and not argument.strip():
        return {"kind": kind}
    if kind == "specific":
        return {"kind": kind, "versions": [int(v) for v in argument.split(",") if v.strip()]}
    raise ValueError(f"version policy '{text}': expected 'latest', 'latest:N', 'all' or 'specific:V1,V2'")


class RepositoryPolicy(BaseModel):
    """The version policy of every model: a default and per-model overrides.

    In YAML either a bare policy (the default for all), or `{default: latest:1, models: {gg_ggg: all}}`;
    in CALSURR_VERSION_POLICY the same as a short form or JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: VersionPolicy = VersionPolicy()
    models: dict[str, VersionPolicy] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_policy_is_the_default(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = json.loads(value)
        if isinstance(value, str) or (isinstance(value, Mapping) and not {"default", "models"} & set(value)):
            return {"default": value}
        return value

    def of(self, model: str) -> VersionPolicy:
        return self.models.get(model, self.default)

    def __str__(self) -> str:
        overrides = "".join(f", {name}: {policy}" for name, policy in sorted(self.models.items()))
        return f"{self.default}{overrides}"


# -- entries and changes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One model's served state: the ready versions and those that failed, with why.

    Never changed once published: a scan builds a new entry and swaps it in, so `ready` may be read from any
    thread (the metrics scrape reads it from its own).
    """

    name: str
    ready: dict[int, OnnxModel] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    policy: VersionPolicy = VersionPolicy()

    def newest_ready(self) -> int | None:
        return max(self.ready, default=None)


@dataclass(frozen=True)
class RepositoryChange:
    """What one scan changed: listeners update health, drain `removed` versions and count `failed` ones."""

    loaded: tuple[tuple[str, int], ...] = ()
    removed: tuple[tuple[str, int], ...] = ()
    failed: tuple[tuple[str, int, str], ...] = ()  # attempts made in this scan that failed
    models: tuple[str, ...] = ()  # names whose entry changed or went away

    def __bool__(self) -> bool:
        return bool(self.loaded or self.removed or self.failed or self.models)


@dataclass(frozen=True)
class IndexEntry:
    """A row of the repository index (RepositoryIndex): a model version on disk or served, and its state."""

    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str = ""


Listener = Callable[[RepositoryChange], Awaitable[None]]


@dataclass
class _VersionRecord:
    """What the last scan saw of a version folder: its files, and the model loaded or the failure."""

    fingerprint: Fingerprint | None
    model: OnnxModel | None = None
    failure: str | None = None


# -- the repository ---------------------------------------------------------------------------------------------


class ModelRepository:
    def __init__(self, root: Path, options: RuntimeOptions | None = None, policy: RepositoryPolicy | None = None):
        self.root = Path(root)
        self.options = options or RuntimeOptions()
        self.policy = policy or RepositoryPolicy()
        self._models: dict[str, ModelEntry] = {}  # replaced whole, never mutated: readers need no lock
        self._records: dict[tuple[str, int], _VersionRecord] = {}  # touched by one scan at a time
        self._unloaded: set[str] = set()  # unloaded by name; polls leave them alone until loaded by name
        self._failure_totals: dict[str, int] = {}  # failed load attempts per model since start
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()  # one scan at a time: polls and repository RPCs

    # -- reading (any thread) --

    def names(self) -> list[str]:
        return sorted(self._models)

    def entry(self, name: str) -> ModelEntry:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(f"unknown model '{name}'; this server has {self.names()}") from None

    def get(self, name: str, version: str = "") -> OnnxModel:
        """The model to run: a given version (protocol versions are strings) or the newest ready one."""
        entry = self.entry(name)
        if not version:
            newest = entry.newest_ready()
            if newest is None:
                raise ModelNotFound(f"model '{name}' has no ready version; failed: {entry.failed}")
            return entry.ready[newest]
        if not _is_version(version) or int(version) not in entry.ready:
            failure = entry.failed.get(int(version)) if _is_version(version) else None
            detail = f" (failed to load: {failure})" if failure else ""
            raise ModelNotFound(
                f"model '{name}' has no ready version '{version}'{detail}; ready versions: {sorted(entry.ready)} "
                f"(version policy {entry.policy})"
            )
        return entry.ready[int(version)]

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except ModelNotFound:
            return False
        return True

    def load_failure_totals(self) -> dict[str, int]:
        """Failed load attempts per model since start (a broken version is retried only when its files change)."""
        return dict(self._failure_totals)

    def model_folders(self) -> list[str]:
        """Names of the model folders on disk, loaded or not."""
        return _model_names_on_disk(self.root)

    def index(self) -> list[IndexEntry]:
        """Every model version on disk or served, READY or UNAVAILABLE with the reason (RepositoryIndex)."""
        models = self._models
        on_disk = {name: _versions_on_disk(self.root / name) for name in self.model_folders()}
        rows = []
        for name in sorted(set(on_disk) | set(models)):
            entry = models.get(name)
            versions = set(on_disk.get(name, [])) | (set(entry.ready) | set(entry.failed) if entry else set())
            if not versions:
                rows.append(IndexEntry(name, "", "UNAVAILABLE", f"no version folder in {self.root / name}"))
            for version in sorted(versions):
                if entry is not None and version in entry.ready:
                    rows.append(IndexEntry(name, str(version), "READY"))
                    continue
                if entry is not None and version in entry.failed:
                    reason = f"failed to load: {entry.failed[version]}"
                elif name in self._unloaded:
                    reason = "unloaded; RepositoryModelLoad loads it"
                elif entry is None:
                    reason = "not loaded; RepositoryModelLoad loads it"
                else:
                    reason = f"not served under version policy {entry.policy}"
                rows.append(IndexEntry(name, str(version), "UNAVAILABLE", reason))
        return rows

    # -- changing: one scan at a time (a lock), loads in a worker thread while the event loop serves --

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(change)` on the event loop after every scan or unload that changed something."""
        self._listeners.append(listener)

    def load_all(self) -> None:
        """The first scan, before serving: every model and version found, failures recorded. Blocking."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        self._rescan()

    async def reload(self) -> RepositoryChange:
        """Rescan the whole folder: new models and versions load, deleted ones go, broken ones are recorded.

        Models unloaded by name stay unloaded. A repository folder that vanished (an unmounted volume) changes
        nothing: serving what is loaded beats serving nothing.
        """
        change = await asyncio.to_thread(self._rescan)
        await self.notify(change)
        return change

    async def load_model(self, name: str) -> ModelEntry:
        """Load, or reload, one model by name (RepositoryModelLoad): its versions under its policy.

        New versions join, loaded ones whose files did not change stay as they are, versions gone from disk
        or from the policy leave; versions that failed before are tried again even if their files did not
        change. Raises ModelNotFound when `<root>/<name>` is not a model folder, and ModelLoadFailed when a
        version failed (the versions that did load, or were loaded before, go on serving).
        """
        if not _is_model_name(name) or not (self.root / name).is_dir():
            raise ModelNotFound(f"no model folder '{name}' in repository {self.root}; it has {self.model_folders()}")
        change = await asyncio.to_thread(self._load_one, name)
        await self.notify(change)
        entry = self._models.get(name) or ModelEntry(name, policy=self.policy.of(name))
        if entry.failed or not entry.ready:
            detail = "; ".join(f"version {v}: {r}" for v, r in sorted(entry.failed.items())) or "no version folder"
            serving = f"versions {sorted(entry.ready)} go on serving" if entry.ready else "nothing serves"
            raise ModelLoadFailed(f"model '{name}' failed to load ({detail}); {serving}")
        return entry

    async def unload_model(self, name: str) -> None:
        """Stop serving a model (RepositoryModelUnload); returns once its in-flight requests are answered (the
        listeners drain them). It stays unloaded, polls included, until loaded by name again."""
        change = await asyncio.to_thread(self._unload_one, name)
        await self.notify(change)

    async def poll(self, interval: float) -> None:
        """Rescan every `interval` seconds until cancelled; a failed scan is logged and the next one tried."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:  # a bug in one scan must not end hot reload for the server's lifetime
                log.exception("repository scan of %s failed", self.root)

    async def notify(self, change: RepositoryChange) -> None:
        """Hand a change to every listener at once (health need not wait for a drain); one that fails is
        logged and the others still hear of it."""
        if change:
            await asyncio.gather(*(self._tell(listener, change) for listener in self._listeners))

    @staticmethod
    async def _tell(listener: Listener, change: RepositoryChange) -> None:
        try:
            await listener(change)
        except Exception:
            log.exception("repository listener %r failed", listener)

    # -- internals --

    def _rescan(self) -> RepositoryChange:
        with self._lock:
            if not self.root.is_dir():
                log.error(
                    "model repository %s is not a directory; keeping the %d models loaded", self.root, len(self._models)
                )
                return RepositoryChange()
            names = [n for n in _model_names_on_disk(self.root) if n not in self._unloaded]
            names += [n for n in self._models if n not in names]  # folders deleted: their entries go
            return self._scan_and_publish(names, force=False)

    def _load_one(self, name: str) -> RepositoryChange:
        with self._lock:
            self._unloaded.discard(name)
            return self._scan_and_publish([name], force=True)

    def _unload_one(self, name: str) -> RepositoryChange:
        with self._lock:
            entry = self._models.get(name)
            if entry is None and not (_is_model_name(name) and (self.root / name).is_dir()):
                raise ModelNotFound(f"unknown model '{name}'; this server has {self.names()}")
            self._unloaded.add(name)
            self._models = {n: e for n, e in self._models.items() if n != name}
            for key in [k for k in self._records if k[0] == name]:
                del self._records[key]
            log.info("model %s unloaded", name)
            removed = tuple((name, v) for v in sorted(entry.ready)) if entry else ()
            return RepositoryChange(removed=removed, models=(name,))

    def _scan_and_publish(self, names: list[str], force: bool) -> RepositoryChange:
        models, change = self._scan(names, dict(self._models), force)
        self._models = models  # the atomic swap: one reference assignment
        for name, _, _ in change.failed:
            self._failure_totals[name] = self._failure_totals.get(name, 0) + 1
        for name, version in change.loaded:
            log.info("model %s version %d is serving", name, version)
        for name, version in change.removed:
            log.info("model %s version %d no longer serves", name, version)
        return change

    def _scan(
        self, names: list[str], current: dict[str, ModelEntry], force: bool
    ) -> tuple[dict[str, ModelEntry], RepositoryChange]:
        """The new name -> entry dict for `names` (others kept as they are), and what changed. Blocking."""
        models = dict(current)
        loaded: list[tuple[str, int]] = []
        removed: list[tuple[str, int]] = []
        failed: list[tuple[str, int, str]] = []
        touched: list[str] = []
        for name in names:
            old = current.get(name)
            new = self._scan_model(name, force, failed) if (self.root / name).is_dir() else None
            old_ready = old.ready if old else {}
            new_ready = new.ready if new else {}
            loaded += [(name, v) for v, m in new_ready.items() if old_ready.get(v) is not m]
            removed += [(name, v) for v in old_ready if v not in new_ready]
            if new is None or (not new.ready and not new.failed):
                if old is not None:
                    del models[name]
                    touched.append(name)
                for key in [k for k in self._records if k[0] == name]:
                    del self._records[key]
                continue
            if old is None or new.ready != old.ready or new.failed != old.failed:
                touched.append(name)
            models[name] = new
        return models, RepositoryChange(tuple(loaded), tuple(removed), tuple(failed), tuple(touched))

    def _scan_model(self, name: str, force: bool, failed: list[tuple[str, int, str]]) -> ModelEntry:
        """One model under its policy. Loaded versions whose files did not change are kept as they are; a
        version that failed is tried again only when its files changed, or when `force`."""
        policy = self.policy.of(name)
        folder = self.root / name
        on_disk = _versions_on_disk(folder)
        ready: dict[int, OnnxModel] = {}
        failures: dict[int, str] = {}
        for version in policy.candidates(on_disk):
            if policy.kind == "latest" and len(ready) >= policy.num_versions:
                break
            if version not in on_disk:
                failures[version] = f"version {version} named by the version policy is not in {folder}"
                continue
            record = self._version(name, version, folder / str(version), force, failed)
            if record.model is not None:
                ready[version] = record.model
            if record.failure is not None:  # with a model too: changed files failed, the old model serves on
                failures[version] = record.failure
        for key in [k for k in self._records if k[0] == name and k[1] not in ready]:
            record = self._records[key]
            if key[1] not in on_disk or record.failure is None:
                del self._records[key]  # folder gone, or no longer served: its session is freed
            else:
                record.model = None  # keep only the memory of the failure, so it is not retried unchanged
        return ModelEntry(name, ready, failures, policy)

    def _version(
        self, name: str, version: int, folder: Path, force: bool, failed: list[tuple[str, int, str]]
    ) -> _VersionRecord:
        key = (name, version)
        before = _fingerprint(folder)
        record = self._records.get(key)
        if record is not None and record.fingerprint == before and (record.model is not None or not force):
            return record  # unchanged since the last scan: neither reload a good one nor retry a bad one
        try:
            model = self._load_version(name, version, folder)
        except Exception as exc:  # any broken version is recorded, never fatal
            reason = f"{type(exc).__name__}: {exc}"
            log.error("model %s version %d failed to load: %s", name, version, reason)
            failed.append((name, version, reason))
            new = _VersionRecord(before, failure=reason)
            if record is not None and record.model is not None:  # changed files that fail: keep the old model
                new.model = record.model
            self._records[key] = new
            return new
        if _fingerprint(folder) != before:  # still being copied: try again when it settles
            reason = f"files in {folder} changed while loading"
            log.warning("model %s version %d: %s; trying again on the next scan", name, version, reason)
            new = _VersionRecord(None, model=record.model if record else None, failure=reason)
            self._records[key] = new
            return new
        self._records[key] = new = _VersionRecord(before, model=model)
        return new

    def _load_version(self, name: str, version: int, folder: Path) -> OnnxModel:
        card = folder_card(ModelCard.read(folder / CARD_FILENAME), name, version)
        model = OnnxModel(folder / MODEL_FILENAME, card, self.options)
        check_model(model)
        return model


def folder_card(card: ModelCard, name: str, version: int) -> ModelCard:
    """The card as served from `<name>/<version>/`: the folder's number is the version, as in Triton.

    Users promote a model by copying its version folder under a new number (`cp -r gg_gg/1 gg_gg/2`); that
    copy serves as version 2, with metadata, ModelConfig, the card service and metrics saying 2, and the
    log says once (per load) what was assumed. A card for another model is refused: that is a mistake, not a
    promotion.
    """
    if card.name != name:
        raise ValueError(
            f"card.json in {name}/{version} is the card of model '{card.name}'; a model folder serves only its own "
            f"model (move it to {card.name}/, or export it under the name '{name}')"
        )
    if card.version != version:
        log.warning(
            "model %s: the card in folder %s/%d says version %d; serving it as version %d, the folder's number",
            name,
            name,
            version,
            card.version,
            version,
        )
        card = card.model_copy(update={"version": version})
    return card


# -- the check before a version is swapped in -----------------------------------------------------------------


class ModelCheckFailed(ValueError):
    """A loaded graph gave an answer on its sample input that no working surrogate gives."""


def sample_inputs(card: ModelCard) -> tuple[dict[str, np.ndarray], bool]:
    """An input the model must answer, and whether it is valid physics (so outputs must be finite).

    The card's `example_inputs` when export stored them; else, for an amplitude model on four-momenta,
    a massless event at the card's sqrt(s): beams along +z and -z, the n-2 outgoing momenta of equal energy
    evenly spread in the transverse plane (every s_ij >= 0.055 s for up to five outgoing, inside the default
    cut); else a row of ones, which checks that the graph runs but not what it answers.
    """
    examples = getattr(card, "example_inputs", None)
    if examples:
        return {s.name: np.asarray(examples[s.name], dtype=DATATYPE_TO_NUMPY[s.datatype]) for s in card.inputs}, True
    if card.task == "amplitude" and len(card.inputs) == 1 and _is_momenta(card.inputs[0].shape):
        spec = card.inputs[0]
        sqrt_s = card.domain.sqrt_s_gev or 1000.0
        event = massless_event(spec.shape[1], sqrt_s)
        return {spec.name: event[None].astype(DATATYPE_TO_NUMPY[spec.datatype])}, True
    inputs = {}
    for spec in card.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        inputs[spec.name] = np.ones(shape, dtype=DATATYPE_TO_NUMPY[spec.datatype])
    return inputs, False


def _is_momenta(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] == -1 and shape[1] >= 4 and shape[2] == 4


def massless_event(n_particles: int, sqrt_s: float) -> np.ndarray:
    """(n, 4) four-momenta (E, px, py, pz) in GeV: 2 -> n-2 massless, momentum conserved, partonic CM frame."""
    outgoing = n_particles - 2
    beam = sqrt_s / 2
    energy = sqrt_s / outgoing
    angles = 2 * math.pi * np.arange(outgoing) / outgoing + math.pi / 7  # off the axes: no zero components
    event = np.zeros((n_particles, 4))
    event[0] = (beam, 0.0, 0.0, beam)
    event[1] = (beam, 0.0, 0.0, -beam)
    event[2:, 0] = energy
    event[2:, 1] = energy * np.cos(angles)
    event[2:, 2] = energy * np.sin(angles)
    return event


def check_model(model: OnnxModel) -> None:
    """Run the sample input: every output there with one value per row; for valid inputs finite, the sigmas
    non-negative and in quadrature, and a log-fitted mean positive. Raises ModelCheckFailed."""
    card = model.card
    inputs, physical = sample_inputs(card)
    rows = len(next(iter(inputs.values())))
    try:
        outputs = model.run(inputs)
    except Exception as exc:
        raise ModelCheckFailed(f"the graph failed on its sample input: {type(exc).__name__}: {exc}") from exc
    for spec in card.outputs:
        got = np.shape(outputs[spec.name])
        if not got or got[0] != rows:
            raise ModelCheckFailed(f"output '{spec.name}' has shape {list(got)} for {rows} sample rows")
    if not physical:
        log.warning(
            "model %s v%d: no example inputs in its card; checked that it runs, not what it answers",
            card.name,
            card.version,
        )
        return
    values = {
        name: np.asarray(outputs[name], dtype=np.float64) for name in ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
    }
    bad = [name for name, v in values.items() if not np.isfinite(v).all()]
    if bad:
        raise ModelCheckFailed(f"outputs {bad} are not finite on the sample input")
    negative = [name for name in ("sigma_stat", "sigma_syst", "sigma_tot") if (values[name] < 0).any()]
    if negative:
        raise ModelCheckFailed(f"outputs {negative} are negative on the sample input")
    quadrature = np.hypot(values["sigma_stat"], values["sigma_syst"])
    if not np.allclose(values["sigma_tot"], quadrature, rtol=QUADRATURE_RTOL, atol=0):
        raise ModelCheckFailed(
            f"sigma_tot {values['sigma_tot'].tolist()} is not sigma_stat and sigma_syst in quadrature "
            f"{quadrature.tolist()}"
        )
    if card.uncertainty.target_transform == "log" and (values["mean"] <= 0).any():
        raise ModelCheckFailed(f"mean {values['mean'].tolist()} of a log-fitted model is not positive")


# -- the folder -------------------------------------------------------------------------------------------------


def _is_model_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name


def _model_names_on_disk(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_model_name(p.name))
    except OSError:
        return []


def _versions_on_disk(folder: Path) -> list[int]:
    """Integer folder names without leading zeros (export stages in hidden `.N.staging` folders)."""
    try:
        names = [p.name for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(int(n) for n in names if _is_version(n) and not n.startswith("0"))


def _is_version(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" or "٣", on which int() fails or means another number."""
    return text.isascii() and text.isdigit()


def _fingerprint(folder: Path) -> Fingerprint | None:
    try:
        return tuple(sorted(_stat_files(folder)))
    except OSError:
        return None


def _stat_files(folder: Path) -> Iterator[tuple[str, int, int]]:
    for path in folder.iterdir():
        if path.is_file():
            stat = path.stat()
            yield path.name, stat.st_size, stat.st_mtime_ns
