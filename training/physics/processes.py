"""The physics processes calsurr can generate: name -> final-state multiplicity, |M|^2 and its unit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calsurr.training.physics.gluon_amplitudes import gg_gg, gg_ggg, gg_gggg


@dataclass(frozen=True)
class Process:
    name: str
    n_final: int
    squared_amplitude: Callable[[np.ndarray], np.ndarray]

    @property
    def n_particles(self) -> int:
        return 2 + self.n_final

    @property
    def unit(self) -> str:
        """|M|^2 of a 2 -> n process has mass dimension 8 - 2(n + 2), so GeV^(4 - 2(n+2) + 4)."""
        power = 2 * self.n_particles - 8
        return "1" if power == 0 else f"GeV^-{power}"


PROCESSES: dict[str, Process] = {
    p.name: p
    for p in (
        Process("gg_gg", 2, gg_gg),
        Process("gg_ggg", 3, gg_ggg),
        Process("gg_gggg", 4, gg_gggg),
    )
}


def get_process(name: str) -> Process:
    try:
        return PROCESSES[name]
    except KeyError:
        raise ValueError(f"unknown process '{name}'; known: {sorted(PROCESSES)}") from None
