"""Unweighting: standard (exact |M|^2 alone), two-stage (surrogate first, exact second) and uncertainty-gated.

Every method keeps a trial point x with a probability P(x) and gives the kept event the weight W(x) = w(x) / P(x)
(w the exact weight in pb), so that E[W 1_kept] = w(x) point by point and the events estimate every
distribution without bias, whatever the surrogate. The overweights max(1, .) are that 1 / P: kept, never dropped.

- standard: P = min(1, w / w_max), W = max(w_max, w).
- two-stage (Danziger et al., arXiv:2109.11964): stage 1 keeps x with p_1 = min(1, s / s_max), s the surrogate's
  weight; stage 2 computes w for the survivors alone and keeps them with p_2 = min(1, r / r_max), r = w / s;
  W = s_max r_max max(1, s / s_max) max(1, r / r_max).
- gated (ours): points whose served sigma_tot / |mean| is above a threshold, or above the card's out-of-domain
  threshold, skip stage 1 and are kept with min(1, w / W_max), W_max = s_max r_max, the weight every other
  event has, so that the sample stays of one weight where no overweight occurs. The gate is a function of x
  alone, so the sample stays unbiased. A point with a surrogate weight that is not a positive finite number is
  gated in both surrogate methods: stage 1 would never keep it, and dropping it would bias the sample.

Maxima: the reduction rule of `reduced_maximum`, on an optimisation sample drawn before generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from calsurr.events.bookkeeping import CostModel, Estimate, RunningMean, kish_factor, weight_normalisation
from calsurr.events.phase_space import FlatSampler, VegasSampler
from calsurr.events.surrogates import Surrogate, relative_sigma

METHODS = ("standard", "two-stage", "gated")
MAX_BATCHES = 10  # the optimisation sample is split into this many batches, one maximum per batch
DEFAULT_MAX_QUANTILE = 0.5  # w_max = the median of the batch maxima
DEFAULT_GATE_QUANTILE = 0.98  # default gate: the 2 % of points with the largest sigma_tot/|mean| skip stage 1
DEFAULT_BATCH_POINTS = 16_384  # trial points per batch: one surrogate request, one vectorised |M|^2 call
DEFAULT_OPTIMISATION_POINTS = 50_000


def reduced_maximum(values: np.ndarray, quantile: float = DEFAULT_MAX_QUANTILE, batches: int = MAX_BATCHES) -> float:
    """The reduction rule for w_max: split `values` into `batches` equal batches (fewer if there are fewer
    values), take each batch's maximum, and return the `quantile` of those maxima (linear interpolation).

    quantile 1 is the plain maximum; the median (0.5) of 10 batch maxima of a sample of m values sits near
    the (1 - 0.7 / (m / 10)) quantile of the values, so that a few overweights are traded for efficiency.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) == 0:
        raise ValueError("no positive weights in the optimisation sample to take a maximum of")
    parts = np.array_split(values, min(batches, len(values)))
    return float(np.quantile([part.max() for part in parts], quantile))


@dataclass
class UnweightingSetup:
    """What the optimisation phase fixed: the maxima (pb per trial point, r_max dimensionless) and the gate."""

    method: str
    w_max: float | None = None
    s_max: float | None = None
    r_max: float | None = None
    gate_threshold: float | None = None  # sigma_tot/|mean| above which a point skips stage 1
    out_of_domain_threshold: float | None = None  # the card's, also gating
    optimisation_points: int = 0
    seconds: float = 0.0  # optimisation, and VEGAS adaptation where it ran

    @property
    def event_weight(self) -> float:
        """W_max: the weight of an event without overweight, pb per trial point."""
        return self.w_max if self.method == "standard" else self.s_max * self.r_max


@dataclass
class Clock:
    """Seconds and points spent per kind of work, for the per-point times t_ps, t_surr, t_exact."""

    seconds: dict[str, float] = field(default_factory=lambda: {"ps": 0.0, "surrogate": 0.0, "exact": 0.0})
    points: dict[str, int] = field(default_factory=lambda: {"ps": 0, "surrogate": 0, "exact": 0})

    def timed(self, kind: str, function: Callable, argument: np.ndarray, points: int):
        start = time.perf_counter()
        result = function(argument)
        self.seconds[kind] += time.perf_counter() - start
        self.points[kind] += points
        return result

    def per_point(self, kind: str) -> float:
        return self.seconds[kind] / self.points[kind] if self.points[kind] else math.nan


@dataclass
class EventSample:
    """N unweighted events and the bookkeeping of the run that made them."""

    method: str
    sampler: str
    momenta: np.ndarray  # (N, 2 + n, 4) GeV
    weights: np.ndarray  # (N,) pb per trial: W = W_max times the overweight; sum / n_trials = sigma
    overweights: np.ndarray  # (N,) W / W_max >= 1
    gated: np.ndarray  # (N,) bool: the event skipped stage 1
    setup: UnweightingSetup
    n_trials: int = 0
    n_inside: int = 0
    n_surrogate: int = 0
    n_exact: int = 0
    n_gated: int = 0  # trial points inside the cuts that skipped stage 1
    n_stage1: int = 0  # ungated points kept by stage 1
    n_kept_gated: int = 0
    sigma_weighted: Estimate = Estimate(0.0, 0.0)  # from every exact weight computed (Horvitz-Thompson)
    sigma_events: Estimate = Estimate(0.0, 0.0)  # from the events' weights over the trials
    t_ps: float = math.nan  # seconds per trial point inside the cuts (all trials' phase space counted)
    t_surr: float = math.nan  # seconds per surrogate point, batched
    t_exact: float = math.nan  # seconds per exact |M|^2 point, batched
    seconds: float = 0.0  # generation, setup not included

    @property
    def n_events(self) -> int:
        return len(self.weights)

    @property
    def lhe_weights(self) -> np.ndarray:
        """Event weights in pb whose average is sigma_events: W N_trials^-1 N_events."""
        return self.weights * self.n_events / max(self.n_trials, 1)

    @property
    def kish(self) -> float:
        return kish_factor(self.weights)

    @property
    def efficiencies(self) -> dict[str, float]:
        """eps_cut per trial; every other efficiency per trial point inside the cuts (what |M|^2 would see)."""
        inside = max(self.n_inside, 1)
        ungated = max(self.n_inside - self.n_gated, 1)
        out = {"eps_cut": self.n_inside / max(self.n_trials, 1), "eps": self.n_events / inside}
        if self.method == "standard":
            out["eps_std"] = self.n_events / inside
        else:
            out["eps_1"] = self.n_stage1 / ungated
            out["eps_2"] = (self.n_events - self.n_kept_gated) / max(self.n_stage1, 1)
            out["gated_fraction"] = self.n_gated / inside
            if self.n_gated:
                out["eps_gated"] = self.n_kept_gated / self.n_gated
        return out

    @property
    def overweight_fraction(self) -> float:
        return float(np.mean(self.overweights > 1.0)) if self.n_events else 0.0

    def cost_model(self) -> CostModel:
        inside = max(self.n_inside, 1)
        return CostModel(self.n_surrogate / inside, self.n_exact / inside, self.n_events / inside, self.kish)


class EventGenerator:
    """Draws trial points from `sampler`, unweights them by `method`, and counts what it spends.

    `squared_amplitude` is the exact |M|^2 (N, n, 4) -> (N,); `surrogate` is needed by two-stage and gated.
    """

    def __init__(
        self,
        squared_amplitude: Callable[[np.ndarray], np.ndarray],
        sampler: FlatSampler | VegasSampler,
        method: str,
        surrogate: Surrogate | None = None,
        *,
        max_quantile: float = DEFAULT_MAX_QUANTILE,
        gate_threshold: float | None = None,
        batch_points: int = DEFAULT_BATCH_POINTS,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}'; known: {', '.join(METHODS)}")
        if method != "standard" and surrogate is None:
            raise ValueError(f"method '{method}' needs a surrogate")
        self.squared_amplitude = squared_amplitude
        self.sampler, self.method, self.surrogate = sampler, method, surrogate
        self.max_quantile, self.gate_threshold, self.batch_points = max_quantile, gate_threshold, batch_points
        self.normalisation = weight_normalisation(sampler.sqrt_s, sampler.n_final)
        card = getattr(surrogate, "card", None)
        self.out_of_domain_threshold = card.out_of_domain_relative_sigma if card is not None else None
        self.clock = Clock()

    # -- weights ------------------------------------------------------------------------------------------------

    def exact_weights(self, momenta: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
        values = self.clock.timed("exact", self.squared_amplitude, momenta, len(momenta))
        return self.normalisation * values * jacobian

    def surrogate_weights(self, momenta: np.ndarray, jacobian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The surrogate's weight s (pb) and its sigma_tot/|mean| for points inside the cuts."""
        answer = self.clock.timed("surrogate", self.surrogate.predict, momenta, len(momenta))
        mean = np.asarray(answer.mean, dtype=np.float64)
        return self.normalisation * mean * jacobian, relative_sigma(answer)

    def _gate(self, s: np.ndarray, rel: np.ndarray, threshold: float | None) -> np.ndarray:
        gate = ~(np.isfinite(s) & (s > 0))
        if self.method == "gated":
            if threshold is not None:
                gate |= rel > threshold
            if self.out_of_domain_threshold is not None:
                gate |= rel > self.out_of_domain_threshold
        return gate

    def _sample(self, n_points: int, rng: np.random.Generator):
        return self.clock.timed("ps", lambda n: self.sampler.sample(n, rng), n_points, n_points)

    # -- setup --------------------------------------------------------------------------------------------------

    def adapt_sampler(
        self, iterations: int, points: int, rng: np.random.Generator, on: str = "exact", progress=None
    ) -> float:
        """VEGAS adaptation on the exact weight or on the surrogate's (`on`); seconds spent (a one-off cost)."""
        if not isinstance(self.sampler, VegasSampler):
            return 0.0
        if on == "surrogate":
            if self.surrogate is None:
                raise ValueError("adapting VEGAS on the surrogate needs a surrogate")

            def weight(momenta):
                return np.asarray(self.surrogate.predict(momenta).mean, dtype=np.float64)

        else:
            weight = self.squared_amplitude
        start = time.perf_counter()
        self.sampler.adapt(weight, iterations, points, rng, progress)
        return time.perf_counter() - start

    def optimise(self, n_points: int, rng: np.random.Generator) -> UnweightingSetup:
        """Fix the maxima (and the gate) on `n_points` trial points by the reduction rule."""
        start = time.perf_counter()
        setup = UnweightingSetup(self.method, optimisation_points=n_points)
        setup.out_of_domain_threshold = self.out_of_domain_threshold if self.method == "gated" else None
        batches = [
            self.sampler.sample(min(self.batch_points, n_points - k), rng)
            for k in range(0, n_points, self.batch_points)
        ]
        momenta = np.concatenate([b.momenta[b.inside] for b in batches])
        jacobian = np.concatenate([b.jacobian[b.inside] for b in batches])
        if len(jacobian) == 0:
            raise ValueError(f"none of {n_points} optimisation points passed the cuts")
        if self.method == "standard":
            setup.w_max = reduced_maximum(self.exact_weights(momenta, jacobian), self.max_quantile)
        else:
            s, rel = self.surrogate_weights(momenta, jacobian)
            if self.method == "gated":
                finite = rel[np.isfinite(rel)]
                threshold = self.gate_threshold
                if threshold is None:
                    threshold = float(np.quantile(finite, DEFAULT_GATE_QUANTILE)) if len(finite) else math.inf
                setup.gate_threshold = threshold
            gate = self._gate(s, rel, setup.gate_threshold)
            if np.all(gate):  # nothing for stage 1: W_max from the exact weights, as standard unweighting
                setup.s_max = reduced_maximum(self.exact_weights(momenta, jacobian), self.max_quantile)
                setup.r_max = 1.0
                setup.seconds = time.perf_counter() - start
                return setup
            setup.s_max = reduced_maximum(s[~gate], self.max_quantile)
            ungated = np.flatnonzero(~gate)
            survivors = ungated[rng.random(len(ungated)) < np.minimum(1.0, s[ungated] / setup.s_max)]
            w = self.exact_weights(momenta[survivors], jacobian[survivors])
            setup.r_max = reduced_maximum(w / s[survivors], self.max_quantile)
        setup.seconds = time.perf_counter() - start
        return setup

    # -- generation ---------------------------------------------------------------------------------------------

    def generate(
        self,
        n_events: int,
        setup: UnweightingSetup,
        rng: np.random.Generator,
        progress: Callable[[int], None] | None = None,
    ) -> EventSample:
        """Exactly `n_events` events: trial points in batches until enough are kept, the last batch cut after
        the point that completes the sample (the trials after it never happened)."""
        self.clock = Clock()
        start = time.perf_counter()
        sample = EventSample(self.method, self.sampler.name, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), setup)
        weighted, events = RunningMean(), RunningMean()
        kept: dict[str, list[np.ndarray]] = {"momenta": [], "weights": [], "overweights": [], "gated": []}
        have = 0
        while have < n_events:
            batch = self._sample(self.batch_points, rng)
            trial = self._unweight(batch, setup, rng)
            order = np.flatnonzero(trial["kept"])
            cut = len(batch)
            if have + len(order) > n_events:
                cut = int(order[n_events - have - 1]) + 1
            mask = np.arange(len(batch)) < cut
            kept_here = trial["kept"] & mask
            sample.n_trials += cut
            sample.n_inside += int(np.sum(batch.inside & mask))
            sample.n_surrogate += int(np.sum(trial["surrogate"] & mask))
            sample.n_exact += int(np.sum(trial["exact"] & mask))
            sample.n_gated += int(np.sum(trial["gated"] & mask))
            sample.n_stage1 += int(np.sum(trial["stage1"] & mask))
            sample.n_kept_gated += int(np.sum(kept_here & trial["gated"]))
            weighted.add(trial["horvitz_thompson"][mask], cut)
            events.add(trial["weight"][kept_here], cut)
            kept["momenta"].append(batch.momenta[kept_here])
            kept["weights"].append(trial["weight"][kept_here])
            kept["overweights"].append(trial["weight"][kept_here] / setup.event_weight)
            kept["gated"].append(trial["gated"][kept_here])
            have += int(np.sum(kept_here))
            if progress is not None:
                progress(have)
        sample.momenta = np.concatenate(kept["momenta"])
        sample.weights = np.concatenate(kept["weights"])
        sample.overweights = np.concatenate(kept["overweights"])
        sample.gated = np.concatenate(kept["gated"])
        sample.sigma_weighted, sample.sigma_events = weighted.estimate(), events.estimate()
        sample.t_ps = (
            self.clock.seconds["ps"] / max(self.clock.points["ps"], 1) * sample.n_trials / max(sample.n_inside, 1)
        )
        sample.t_surr = self.clock.per_point("surrogate")
        sample.t_exact = self.clock.per_point("exact")
        sample.seconds = time.perf_counter() - start
        return sample

    def _unweight(self, batch, setup: UnweightingSetup, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per trial point of the batch: which were kept and with what weight, and what they cost."""
        n = len(batch)
        inside = np.flatnonzero(batch.inside)
        out = {key: np.zeros(n, dtype=bool) for key in ("kept", "surrogate", "exact", "gated", "stage1")}
        out["weight"] = np.zeros(n)
        out["horvitz_thompson"] = np.zeros(n)  # w / P(exact computed): the weighted sample's estimator
        momenta, jacobian = batch.momenta[inside], batch.jacobian[inside]
        if self.method == "standard":
            w = self.exact_weights(momenta, jacobian)
            keep = rng.random(len(w)) * setup.w_max < w
            out["exact"][inside] = True
            out["kept"][inside] = keep
            out["weight"][inside] = np.maximum(setup.w_max, w)
            out["horvitz_thompson"][inside] = w
            return out
        s, rel = self.surrogate_weights(momenta, jacobian)
        out["surrogate"][inside] = True
        gate = self._gate(s, rel, setup.gate_threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            p1 = np.where(gate, 1.0, np.minimum(1.0, s / setup.s_max))
        stage1 = ~gate & (rng.random(len(s)) < p1)
        exact = gate | stage1
        w = np.zeros(len(s))
        w[exact] = self.exact_weights(momenta[exact], jacobian[exact])
        u2 = rng.random(len(s))
        keep = np.zeros(len(s), dtype=bool)
        weight = np.zeros(len(s))
        # gated: one stage against W_max
        w_max = setup.event_weight
        keep[gate] = u2[gate] * w_max < w[gate]
        weight[gate] = np.maximum(w_max, w[gate])
        # two stages
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(stage1, w / s, 0.0)
        keep[stage1] = u2[stage1] * setup.r_max < ratio[stage1]
        weight[stage1] = w_max * np.maximum(1.0, s[stage1] / setup.s_max) * np.maximum(1.0, ratio[stage1] / setup.r_max)
        out["exact"][inside] = exact
        out["gated"][inside] = gate
        out["stage1"][inside] = stage1
        out["kept"][inside] = keep
        out["weight"][inside] = weight
        out["horvitz_thompson"][inside[exact]] = w[exact] / p1[exact]
        return out
