"""Surrogate doubles for the event-generation tests, built from the exact |M|^2."""

from __future__ import annotations

import numpy as np

from calsurr.events.surrogates import SurrogateAnswer
from calsurr.training.physics.processes import get_process


def beam_angle_factor(momenta: np.ndarray) -> np.ndarray:
    """A smooth factor from 1 to 3 across phase space: 2 + cos(theta) of the first final-state gluon."""
    first = momenta[:, 2]
    return 2.0 + first[:, 3] / np.linalg.norm(first[:, 1:], axis=1)


class DistortedSurrogate:
    """A deliberately poor surrogate: the exact |M|^2 times `beam_angle_factor` (x3 across phase space), with a
    relative uncertainty that grows with the distortion, so that the gate has something to find."""

    card = None
    where = "test double: exact |M|^2 x (2 + cos theta_3)"

    def __init__(self, process: str):
        self.exact = get_process(process).squared_amplitude

    def predict(self, momenta: np.ndarray) -> SurrogateAnswer:
        factor = beam_angle_factor(momenta)
        mean = self.exact(momenta) * factor
        return SurrogateAnswer(mean, mean * 0.02 * factor**2)

    def close(self) -> None:
        pass
