"""The model repository on disk: `<root>/<model>/<version>/{model.onnx, card.json}` with integer versions.

The repository owns loaded models. A version that fails to load is recorded with its reason and never
shadows a working one; a request without a version gets the newest ready version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from service.errors import ModelNotFound
from service.runtime import OnnxModel, RuntimeOptions

log = logging.getLogger(__name__)


@dataclass
class ModelEntry:
    """All versions of one model name: the loaded ones and those that failed, with why."""

    name: str
    ready: dict[int, OnnxModel] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def newest_ready(self) -> int | None:
        return max(self.ready, default=None)


class ModelRepository:
    def __init__(self, root: Path, options: RuntimeOptions | None = None):
        self.root = Path(root)
        self.options = options or RuntimeOptions()
        self._models: dict[str, ModelEntry] = {}

    def load_all(self) -> None:
        """Scan the folder and load every version found; failures are recorded, not raised."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            entry = ModelEntry(model_dir.name)
            for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
                version = int(version_dir.name)
                try:
                    entry.ready[version] = self._load_version(model_dir.name, version, version_dir)
                except Exception as exc:  # noqa: BLE001 - any broken version is recorded, never fatal
                    entry.failed[version] = f"{type(exc).__name__}: {exc}"
                    log.error("model %s version %d failed to load: %s", model_dir.name, version, exc)
            if entry.ready or entry.failed:
                self._models[entry.name] = entry

    def _load_version(self, name: str, version: int, folder: Path) -> OnnxModel:
        card = ModelCard.read(folder / CARD_FILENAME)
        if card.name != name or card.version != version:
            raise ValueError(f"card says {card.name} v{card.version}, but it lies in {name}/{version}")
        return OnnxModel(folder / MODEL_FILENAME, card, self.options)

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
        if not version.isdigit() or int(version) not in entry.ready:
            failure = entry.failed.get(int(version)) if version.isdigit() else None
            detail = f" (failed to load: {failure})" if failure else ""
            raise ModelNotFound(
                f"model '{name}' has no ready version '{version}'{detail}; ready versions: {sorted(entry.ready)}"
            )
        return entry.ready[int(version)]

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except ModelNotFound:
            return False
        return True
