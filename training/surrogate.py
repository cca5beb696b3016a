"""The whole surrogate as one torch module: raw physics inputs in, prediction with sigma_stat and sigma_syst out.

This module is what gets exported to ONNX, so pre-processing, every member, the aggregation and the
mapping back to physical units live in one graph and training and serving cannot drift apart.

Members fit a standardised y = T(target), T = log for amplitudes (they span orders of magnitude) and the
identity for calorimeter response; an amplitude surrogate may learn log(target / P) instead, P a known
function holding the target's singularities (`ParkeTaylorPrefactor`), added back inside the graph. Member k
gives a mean m_k(x) and a learned width s_k(x) in T-space; the served prediction is their average
mbar = <m_k> (<.> the average over the K members). Its error, in the default aggregation "ambiguity"
(`Aggregation`):

1. Each width is fitted by the Gaussian likelihood to its own member's squared error: E[s_k^2] estimates
   E[(m_k - y)^2], y the label (the truth, plus label noise where the labels carry it). For any K numbers the
   average squared error splits exactly (the ambiguity decomposition, Krogh and Vedelsby 1995),
       <(m_k - y)^2> = (mbar - y)^2 + <(m_k - mbar)^2>,   as <m_k - mbar> = 0,
   so the error of the average is
       E[(mbar - y)^2] = <s_k^2> - (1 - 1/K) E[V],   V = sum_k (m_k - mbar)^2 / (K - 1),
   the widths less the members' scatter: averaging removes the part of each member's error the others do
   not share. `spread_plus_width` (sigma_tot^2 = V + <s_k^2>) counts that part twice (pulls ~0.5 wide).
2. Write m_k = y + b + e_k: b the error all members share, e_k each member's own deviation, of variance v.
   Then E[s_k^2] = b^2 + v and the average's error is b^2 + v / K, which names the two parts:
       sigma_stat^2 = v / K                what more members would average away: their scatter at this point
                                           (estimated from V and the widths, 3.);
       sigma_syst^2 = min(c (W / W_0)^g, 1) W,  W = <s_k^2>: the error all members share, b^2 (label noise, and
                                           the bias of the infinite ensemble: what network and training data
                                           leave), which more members keep.
   The shared share of the widths, b^2 / W = 1 - v / W, is what the members' spread cannot tell: V measures v,
   but b^2 is a small difference of two larger numbers, and it varies over phase space. On the K = 8
   gg -> gggg precision ensemble it rises from 0.15 in the fifth of the points with the smallest widths to
   0.40 in the fifth with the largest (the network's bias dominates where it is poor, the members' own
   scatter where it is good). So the share is measured where it is defined, by the Gaussian likelihood of
   the average's own residuals, mbar - T(y) ~ N(0, sigma_syst^2 + sigma_stat^2), on the validation split after the
   widths are refit there (held out from the means' fit; `measure_shared_share`, `fit_shared_share`): two
   numbers, the share c at the validation split's median width W_0 and its power g in the width, held in
   the graph. The cap at 1 says the shared error is at most a member's. With g = 0 the share is one number
   for all points; measured without labels as 1 - <V / W> (the average of the scatter's share), it left
   that ensemble's pulls 0.93 wide and 68 % coverage at 77.5 % in the fifth with the smallest widths and
   67 % in the largest; with c and g from the validation likelihood (c 0.18, g 0.17), 67-73 % in
   every one of the fifteen conditional bins of the test split (bench/science.py).
3. Why not the V of each point in 1.: a width estimates its member's expected error,
   not the error this one ensemble happens to make; V at a point is one realisation of K members, and it
   varies across phase space in patches where they happen to disagree. Subtracting it point by point from
   the widths mixes an expectation with a realisation: on a K = 8 gg -> ggg ensemble the 68 % interval
   then covered 50 % of the points with the smallest predicted sigma (averaging V over the 10 nearest
   points changed nothing: the patches are larger), and 95 % covered 92 %. The realised V belongs in
   sigma_stat, where a point at which the members disagree more than usual (out of the training domain,
   say) gets a larger sigma_tot; but V from K values estimates v with a relative error sqrt(2 / (K - 1)),
   82 % at K = 4, and for Gaussian members the average's own deviation is independent of V, so V used as it
   is makes the pulls too narrow where V came out high and too wide where it came out low (the trained
   K = 4 gg -> ggg repulsive ensemble: pulls 0.965 wide, coverage 67-73 % over the bins of sigma_tot). The
   widths hold a second estimate, an expectation: v is on average rho W, rho = <V / W> over the split. So
   sigma_stat^2 = (alpha V + (1 - alpha) rho W) / K, the posterior mean of v when the widths' estimate is a
   conjugate prior worth nu_0 = (K - 1)(1 - alpha) / alpha members' scatter (`shrunk_spread`); alpha is
   fitted with c and g by the same likelihood, so it is 1 where V tells the likelihood what the widths
   cannot and 0 where V is pure sampling noise about rho W. On that ensemble alpha came out 0.46 (nu_0 3.5)
   and the test pulls 0.99 wide, 66-71 % in every bin. A Gaussian toy at K = 8 where the widths are exact
   fits alpha ~ 0 and unit pulls however much the scatter dominates the shared error; fixing alpha = 1
   there widens them (1.04 at b^2 / v = 0.09, 1.14 at 0.01).

Identity: mean = mbar and the sigmas as they are; log: mean = exp(mbar) and each sigma times mean
(first-order propagation, so sigma/mean is a relative uncertainty). Both sigmas are multiplied by
`recalibration`, 1 unless a run asked to apply its fitted factor (TrainingConfig.recalibrate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Literal

import torch
from torch import nn

from calsurr.service.card import MEMBER_OUTPUTS, UNCERTAINTY_OUTPUTS

MIN_FEATURE_SCALE = 1e-9  # a feature constant over the data (e.g. log s at fixed energy) is centred, not scaled
OUTPUT_NAMES = UNCERTAINTY_OUTPUTS
MEMBER_OUTPUT_NAMES = MEMBER_OUTPUTS  # optional: (batch, K) per-member values and widths
TargetTransform = Literal["log", "identity"]
# "ambiguity": sigma_stat^2 = (alpha V + (1 - alpha) rho W) / K, sigma_syst^2 = min(c (W / W_0)^g, 1) W, as
# derived above (the default);
# "spread_plus_width": sigma_stat^2 = V, sigma_syst^2 = <s_k^2>, the aggregation of runs trained before it
Aggregation = Literal["ambiguity", "spread_plus_width"]
AGGREGATIONS: tuple[Aggregation, ...] = ("ambiguity", "spread_plus_width")


@dataclass(frozen=True)
class SharedShare:
    """sigma_syst^2 = min(share (W / reference_width)^power, 1) W and sigma_stat^2 = (spread_weight V +
    (1 - spread_weight) spread_prior_share W) / K, W the members' mean squared width, V their variance."""

    share: float
    power: float
    reference_width: float
    spread_weight: float
    spread_prior_share: float
    nll: float  # per point, up to its constant, at the optimum


SHARE_ITERATIONS = 200


def shared_fraction(width: torch.Tensor, share, power, reference_width) -> torch.Tensor:
    """min(c (W / W_0)^g, 1): the share of the members' mean squared width W that they share (module docstring)."""
    return torch.clamp(share * torch.exp(power * torch.log(width / reference_width)), max=1.0)


def shrunk_spread(spread: torch.Tensor, width: torch.Tensor, weight, prior_share) -> torch.Tensor:
    """alpha V + (1 - alpha) rho W: the members' scatter at the point, V from K values, shrunk toward what
    their widths expect of it, rho W (module docstring, 3.); sigma_stat^2 is this over K."""
    return weight * spread + (1.0 - weight) * prior_share * width


def fit_shared_share(residual: torch.Tensor, spread: torch.Tensor, width: torch.Tensor, members: int) -> SharedShare:
    """The maximum-likelihood (c, g, alpha) of residual ~ N(0, min(c (W / W_0)^g, 1) W + (alpha V + (1 - alpha)
    rho W) / K) over held-out points, W_0 their median W (the lower middle value), rho = <V / W> their
    scatter's average share of the widths: the share of the widths the members share, which their spread V
    cannot measure (module docstring, 2.), and how far V at a point is to be believed over the widths
    (3.). Unit Gaussian priors on g and on logit alpha, fading as 1 / N, keep a split of a few hundred
    points from a steep power or a certain alpha that its handful of extreme points suggest; the start is the
    share without labels, 1 - rho, and alpha = 1/2."""
    residual, spread, width = (t.detach().to(torch.float64) for t in (residual, spread, width))
    reference = float(width.median())
    prior_share = float((spread / width).mean())
    start = min(max(1.0 - prior_share, 0.01), 1.0)
    log_share = torch.tensor(math.log(start), dtype=torch.float64, requires_grad=True)
    power = torch.zeros((), dtype=torch.float64, requires_grad=True)
    logit_weight = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_share, power, logit_weight],
        lr=1.0,
        max_iter=SHARE_ITERATIONS,
        tolerance_grad=1e-10,
        line_search_fn="strong_wolfe",
    )
    nll = torch.zeros((), dtype=torch.float64)

    def closure() -> torch.Tensor:
        nonlocal nll
        optimiser.zero_grad()
        scatter = shrunk_spread(spread, width, torch.sigmoid(logit_weight), prior_share)
        variance = shared_fraction(width, torch.exp(log_share), power, reference) * width + scatter / members
        nll = 0.5 * (torch.log(variance) + residual**2 / variance).mean()
        loss = nll + 0.5 * (power**2 + logit_weight**2) / len(residual)
        loss.backward()
        return loss

    optimiser.step(closure)
    weight = torch.sigmoid(logit_weight).item()
    return SharedShare(log_share.exp().item(), power.item(), reference, weight, prior_share, nll.item())


class Standardisation(nn.Module):
    """x -> (raw(x) - shift) / scale in float64, with shift and scale fitted on training inputs."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_features, dtype=torch.float64))

    @property
    def n_features(self) -> int:
        return len(self.shift)

    def raw(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs

    def fit(self, inputs: torch.Tensor) -> None:
        raw = self.raw(inputs)
        std = raw.std(0)
        self.shift.copy_(raw.mean(0))
        self.scale.copy_(torch.where(std > MIN_FEATURE_SCALE, std, torch.ones_like(std)))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (self.raw(inputs) - self.shift) / self.scale


METRIC = (1.0, -1.0, -1.0, -1.0)
# "none": the momenta as given; "canonical": the final-state gluons ordered by their energy in the partonic
# rest frame and the beams by the hemisphere of the leading gluon (`canonical_order`)
Symmetry = Literal["none", "canonical"]
SYMMETRIES: tuple[Symmetry, ...] = ("none", "canonical")


def minkowski_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a.b over the last axis (E, px, py, pz), metric (+, -, -, -)."""
    metric = torch.tensor(METRIC, dtype=a.dtype, device=a.device)
    return (a * b * metric).sum(-1)


def canonical_order(momenta: torch.Tensor) -> torch.Tensor:
    """One representative of the momenta's orbit under the symmetries of an all-gluon |M|^2: (B, n, 4) -> same.

    The (n - 2) final-state gluons are identical, and |M|^2 of all-gluon scattering is also symmetric under
    exchanging the two incoming gluons, so |M|^2 is constant on orbits of S_2 x S_(n-2) permutations. Ordering
    the final state by P.p_i (P = p_1 + p_2: the energy in the partonic rest frame, Lorentz invariant) and
    swapping the beams so that the leading gluon has the smaller invariant with beam 1 maps every point of an
    orbit to the same one: the network then learns |M|^2 on one 2 (n - 2)!-th of phase space. Ties (a set of
    measure zero) are harmless, as |M|^2 takes the same value on either side.
    """
    beams, final = momenta[:, :2], momenta[:, 2:]
    energy = minkowski_dot(final, (beams[:, 0] + beams[:, 1]).unsqueeze(1))  # (B, n - 2)
    order = torch.argsort(energy, dim=1, descending=True)
    final = torch.gather(final, 1, order.unsqueeze(-1).expand(-1, -1, 4))
    lead = final[:, 0]
    swap = (minkowski_dot(beams[:, 0], lead) > minkowski_dot(beams[:, 1], lead)).unsqueeze(-1)
    first = torch.where(swap, beams[:, 1], beams[:, 0])
    second = torch.where(swap, beams[:, 0], beams[:, 1])
    return torch.cat([first.unsqueeze(1), second.unsqueeze(1), final], dim=1)


def pair_invariants_torch(momenta: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """s_ij = 2 p_i.p_j (massless) of the pairs (i, j), shape (B, pairs), in the momenta's dtype."""
    return 2.0 * minkowski_dot(momenta[:, i], momenta[:, j])


class InvariantFeatures(Standardisation):
    """Lorentz-invariant inputs: log s_12 and log(s_ij / s_12) of every other pair, standardised, in float64.

    s_ij = 2 p_i.p_j (massless), computed in float64 because float32 loses them near collinear limits. With
    `symmetry="canonical"` the momenta are first brought to `canonical_order`.
    """

    def __init__(self, n_particles: int, symmetry: Symmetry = "none"):
        if symmetry not in SYMMETRIES:
            raise ValueError(f"symmetry must be one of {SYMMETRIES}, got '{symmetry}'")
        i, j = zip(*combinations(range(n_particles), 2))
        super().__init__(len(i))
        self.symmetry = symmetry
        self.register_buffer("i", torch.tensor(i))
        self.register_buffer("j", torch.tensor(j))
        self.register_buffer("metric", torch.tensor(METRIC, dtype=torch.float64))

    def raw(self, momenta: torch.Tensor) -> torch.Tensor:
        if self.symmetry == "canonical":
            momenta = canonical_order(momenta)
        sij = pair_invariants_torch(momenta, self.i, self.j)
        log_s = torch.log(sij[:, :1])
        return torch.cat([log_s, torch.log(sij[:, 1:]) - log_s], dim=1)


class MomentumFeatures(Standardisation):
    """The four-momenta themselves, for a Lorentz-equivariant network: (B, n, 4) -> (B, 4n) in float64,
    every component divided by one scale, sqrt(<s_12>) over the training inputs.

    One shift (0) and one scale for all components keep the map a multiple of the identity, so a Lorentz
    transformation of the momenta is the same transformation of the features (`LorentzTransformerEnsemble`
    relies on it); a per-component standardisation would break it. `symmetry` as in `InvariantFeatures`.
    """

    def __init__(self, n_particles: int, symmetry: Symmetry = "none"):
        if symmetry not in SYMMETRIES:
            raise ValueError(f"symmetry must be one of {SYMMETRIES}, got '{symmetry}'")
        super().__init__(4 * n_particles)
        self.symmetry = symmetry

    def raw(self, momenta: torch.Tensor) -> torch.Tensor:
        if self.symmetry == "canonical":
            momenta = canonical_order(momenta)
        return momenta.reshape(momenta.shape[0], -1)

    def fit(self, inputs: torch.Tensor) -> None:
        s = 2.0 * minkowski_dot(inputs[:, 0], inputs[:, 1])
        self.shift.zero_()
        self.scale.fill_(float(torch.sqrt(s.mean())))


class ParkeTaylorPrefactor(nn.Module):
    """log P(p): the soft and collinear singularities of n-gluon |M|^2, to divide out of the target.

        P = sum_{i<j} s_ij^4  *  sum_{sigma} 1 / (s_{sigma_1 sigma_2} s_{sigma_2 sigma_3} ... s_{sigma_n sigma_1})

    over the (n - 1)! / 2 orderings up to cyclic shifts and reflection. This is the helicity-summed squared
    Parke-Taylor (MHV) amplitude summed over colour orderings: every soft and collinear pole of the tree
    amplitudes sits in its denominators, where |M|^2 factorises onto the lower multiplicity. For n = 4, 5
    every non-vanishing helicity amplitude is MHV and the subleading-colour terms vanish, so there P is |M|^2
    itself up to a constant (tests/training/test_levers.py checks that); from n = 6 the ratio |M|^2 / P is
    what the network learns: the NMHV and subleading-colour share, a bounded function without the poles.
    Crossing signs cancel (even powers in the numerator, two or four crossed factors in each denominator), so
    the physical s_ij = 2 p_i.p_j > 0 serve. Computed in float64, in log space (logsumexp over orderings).
    """

    def __init__(self, n_particles: int):
        super().__init__()
        pairs = list(combinations(range(n_particles), 2))
        index = {pair: k for k, pair in enumerate(pairs)}
        cycles = [
            (0, *rest) for rest in permutations(range(1, n_particles)) if rest[0] < rest[-1]
        ]  # fix particle 0 first (cyclic shifts), keep one of each reflection
        edges = [[index[tuple(sorted((c[k], c[(k + 1) % n_particles])))] for k in range(n_particles)] for c in cycles]
        i, j = zip(*pairs)
        self.n_particles = n_particles
        self.register_buffer("i", torch.tensor(i), persistent=False)
        self.register_buffer("j", torch.tensor(j), persistent=False)
        self.register_buffer("edges", torch.tensor(edges), persistent=False)  # (orderings, n)

    @property
    def orderings(self) -> int:
        return len(self.edges)

    def forward(self, momenta: torch.Tensor) -> torch.Tensor:
        """log P, shape (B,), float64."""
        log_sij = torch.log(pair_invariants_torch(momenta.to(torch.float64), self.i, self.j))  # (B, pairs)
        numerator = torch.logsumexp(4.0 * log_sij, dim=1)
        denominators = log_sij[:, self.edges].sum(-1)  # (B, orderings)
        return numerator + torch.logsumexp(-denominators, dim=1)


class Surrogate(nn.Module):
    def __init__(
        self,
        features: Standardisation,
        network: nn.Module,
        target_transform: TargetTransform,
        aggregation: Aggregation = "ambiguity",
        prefactor: nn.Module | None = None,
    ):
        """`network` maps standardised features (B, F) to (K, B, 2) = (mu, log sigma) per member.

        `prefactor` (log-transformed targets only): a module giving log P(inputs), (B,), a known function the
        members' T-space output is added to, so that they learn log(target / P) (`ParkeTaylorPrefactor`).
        """
        super().__init__()
        if prefactor is not None and target_transform != "log":
            raise ValueError("a target prefactor needs the log target transform")
        self.prefactor = prefactor
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
        self.features = features
        self.ensemble = network
        self.target_transform = target_transform
        self.aggregation = aggregation
        self.register_buffer("target_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("target_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("recalibration", torch.ones((), dtype=torch.float64))
        # sigma_syst^2 = min(c (W / W_0)^g, 1) W (module docstring, 2.): c, g and W_0 as the likelihood fits them
        self.register_buffer("shared_share", torch.ones((), dtype=torch.float64))
        self.register_buffer("share_power", torch.zeros((), dtype=torch.float64))
        self.register_buffer("share_reference_width", torch.ones((), dtype=torch.float64))
        # sigma_stat^2 = (alpha V + (1 - alpha) rho W) / K (module docstring, 3.): alpha fitted with c and g, rho
        # = <V / W> on the same split; alpha = 1 serves the spread itself (runs saved before it was fitted)
        self.register_buffer("spread_weight", torch.ones((), dtype=torch.float64))
        self.register_buffer("spread_prior_share", torch.zeros((), dtype=torch.float64))
        self.with_members = False  # also output each member's prediction and learned width (export option)
        self.io_dtype = torch.float64  # dtype of the graph's inputs and outputs; inside, everything is float64

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES + MEMBER_OUTPUT_NAMES if self.with_members else OUTPUT_NAMES

    @property
    def members(self) -> int:
        return self.ensemble.members

    @property
    def network_dtype(self) -> torch.dtype:
        """float32 while training; float64 once trained, so that the exported graph reproduces the torch
        model to 1e-5 even in sigma_stat, a small difference of member means that float32 rounding blurs."""
        return next(self.ensemble.parameters()).dtype

    def transform(self, target: torch.Tensor) -> torch.Tensor:
        return torch.log(target) if self.target_transform == "log" else target

    def offset(self, inputs: torch.Tensor) -> torch.Tensor | float:
        """What the members' T-space output is added to: log P(inputs) with a prefactor, else 0."""
        return 0.0 if self.prefactor is None else self.prefactor(inputs)

    def fit_standardisation(self, inputs: torch.Tensor, target: torch.Tensor) -> None:
        self.features.fit(inputs)
        transformed = self.transform(target) - self.offset(inputs)
        self.target_shift.copy_(transformed.mean())
        self.target_scale.copy_(transformed.std())

    def standardise_target(self, target: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """What the members fit: (T(target) - log P(inputs) - shift) / scale."""
        return (self.transform(target) - self.offset(inputs) - self.target_shift) / self.target_scale

    def members_transformed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and width of T(target), shape (K, B) each."""
        out = self.ensemble(self.features(inputs).to(self.network_dtype)).to(torch.float64)
        mu = self.target_shift + self.target_scale * out[..., 0] + self.offset(inputs)
        sigma = self.target_scale * torch.exp(out[..., 1])
        return mu, sigma

    def aggregate(self, mu: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Members' means and widths (K, B) in T-space -> centre, stat, syst (B,) in T-space (module docstring)."""
        k = mu.shape[0]
        centre = mu.sum(0) / k
        spread = ((mu - centre) ** 2).sum(0) / (k - 1)  # V, unbiased
        width = (sigma**2).sum(0) / k  # <s_k^2>
        if self.aggregation == "ambiguity":
            stat = torch.sqrt(shrunk_spread(spread, width, self.spread_weight, self.spread_prior_share) / k)
            syst = torch.sqrt(self.shared_fraction(width) * width)
        else:
            stat, syst = torch.sqrt(spread), torch.sqrt(width)
        return centre, stat, syst

    def shared_fraction(self, width: torch.Tensor) -> torch.Tensor:
        """The share of the members' mean squared width W that they share, with the fitted c, g and W_0."""
        return shared_fraction(width, self.shared_share, self.share_power, self.share_reference_width)

    def measure_shared_share(self, inputs: torch.Tensor, target: torch.Tensor, chunk: int = 65_536) -> SharedShare:
        """Fit and set c, g and W_0 of sigma_syst (module docstring, 2.) and alpha and rho of sigma_stat (3.) on
        held-out `inputs` and their `target` (the validation split, after the widths are refit there) by the
        likelihood of the average's residuals."""
        residual, spread, width = [], [], []
        with torch.no_grad():
            for start in range(0, len(inputs), chunk):
                batch = inputs[start : start + chunk].to(torch.float64)
                mu, sigma = self.members_transformed(batch)
                label = self.transform(target[start : start + chunk].to(torch.float64))
                residual.append(mu.mean(0) - label)
                spread.append(mu.var(0, unbiased=True))
                width.append((sigma**2).mean(0))
        share = fit_shared_share(torch.cat(residual), torch.cat(spread), torch.cat(width), self.members)
        self.set_shared_share(share)
        return share

    def set_shared_share(self, share: SharedShare) -> None:
        """Hold a fitted share in the graph's buffers: what sigma_syst and sigma_stat are computed with."""
        for buffer, value in (
            (self.shared_share, share.share),
            (self.share_power, share.power),
            (self.share_reference_width, share.reference_width),
            (self.spread_weight, share.spread_weight),
            (self.spread_prior_share, share.spread_prior_share),
        ):
            buffer.fill_(value)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, sigma = self.members_transformed(inputs.to(torch.float64))
        centre, stat, syst = self.aggregate(mu, sigma)
        if self.target_transform == "log":
            value = torch.exp(centre)
            stat, syst = value * stat, value * syst
            member_value = torch.exp(mu)
            member_sigma = member_value * sigma
        else:
            value, member_value, member_sigma = centre, mu, sigma
        sigma_stat = stat * self.recalibration
        sigma_syst = syst * self.recalibration
        outputs = (value, sigma_stat, sigma_syst, torch.sqrt(sigma_stat**2 + sigma_syst**2))
        if self.with_members:  # each member's own learned width, not recalibrated
            outputs = outputs + (member_value.transpose(0, 1), member_sigma.transpose(0, 1))
        return tuple(o.to(self.io_dtype) for o in outputs)
