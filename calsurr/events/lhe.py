"""Les Houches Event files, version 3 (Alwall et al., hep-ph/0609017; LHEF v3, arXiv:1405.1067, Sec. 21).

One process (LPRUP 1) of gluons in their partonic centre-of-mass frame, which is the laboratory frame of two
proton beams of energy E_beam with momentum fractions x1 = x2 = sqrt(s) / (2 E_beam): a parton shower
(Pythia 8 with `Beams:frameType = 4`) then adds initial-state radiation, remnants and hadronisation. The
partonic energy is fixed (no parton densities were sampled) and |M|^2 has g_s = 1, as the header says.

Weights: IDWTUP = 4 (weighted events to be kept as they are, XWGTUP in pb, their average the cross section),
since events that carry an overweight are not of unit weight. XWGTUP is W N_events / N_trials, so that its
average is the events' own estimate of sigma; XSECUP is the weighted-sample estimate. Each event also carries
the LHEF v3 weight `overweight` (W / W_max >= 1), declared in `<initrwgt>`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from calsurr.events.colour_flow import colour_tags, trace_orderings

GLUON = 21
PROTON = 2212
DEFAULT_BEAM_ENERGY_GEV = 6500.0  # LHC Run 2 beams, 13 TeV
AQED = 7.2973525643e-3  # alpha at q = 0 (CODATA 2018): informational only, no electroweak vertex here
AQCD = 1.0 / (4.0 * math.pi)  # g_s = 1 means alpha_s = 1 / (4 pi): the coupling the weights were computed with
SPIN_UNKNOWN = 9.0  # SPINUP: helicities summed, not sampled
OVERWEIGHT_ID = "overweight"


def transverse_momentum(p: np.ndarray) -> np.ndarray:
    return np.hypot(p[..., 1], p[..., 2])


def shower_scales(momenta: np.ndarray) -> np.ndarray:
    """SCALUP per event: the smallest transverse momentum of the final-state gluons, GeV, so that the shower
    does not emit harder than the softest matrix-element gluon."""
    return transverse_momentum(momenta[:, 2:]).min(axis=1)


def _xml_text(value: object) -> str:
    """Text safe inside an XML element: only & and < must be escaped ('s_ij > 0.01 s' stays readable)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;")


def _header(info: Mapping[str, object]) -> str:
    lines = [f"  {_xml_text(key)}: {_xml_text(value)}" for key, value in info.items()]
    return "<calsurr>\n" + "\n".join(lines) + "\n</calsurr>"


def write_lhe(
    path: Path,
    momenta: np.ndarray,
    weights: np.ndarray,
    overweights: np.ndarray,
    flows: np.ndarray,
    cross_section_pb: float,
    cross_section_error_pb: float,
    info: Mapping[str, object],
    beam_energy: float = DEFAULT_BEAM_ENERGY_GEV,
) -> None:
    """Write the events: momenta (N, 2 + n, 4) GeV, weights (N,) pb (XWGTUP), overweights (N,), flows (N,)
    indices into `trace_orderings(2 + n)`; `info` goes into the header as `key: value` lines."""
    momenta = np.asarray(momenta, dtype=np.float64)
    n_events, n_particles, _ = momenta.shape
    sqrt_s = float(momenta[0, 0, 0] + momenta[0, 1, 0]) if n_events else 0.0
    if n_events and sqrt_s > 2.0 * beam_energy:
        raise ValueError(f"sqrt(s) = {sqrt_s:g} GeV exceeds the beams' 2 x {beam_energy:g} GeV")
    orderings = trace_orderings(n_particles)
    scales = shower_scales(momenta) if n_events else np.zeros(0)
    x_max = float(np.max(weights)) if n_events else 0.0
    with open(path, "w", encoding="ascii") as out:
        out.write('<LesHouchesEvents version="3.0">\n<header>\n')
        out.write(_header(info) + "\n")
        out.write('<initrwgt>\n<weightgroup name="calsurr">\n')
        out.write(f'<weight id="{OVERWEIGHT_ID}">W / W_max of the unweighting, >= 1 (1: not overweight)</weight>\n')
        out.write("</weightgroup>\n</initrwgt>\n</header>\n<init>\n")
        out.write(f"{PROTON} {PROTON} {beam_energy:.10e} {beam_energy:.10e} 0 0 0 0 4 1\n")
        out.write(f"{cross_section_pb:.10e} {cross_section_error_pb:.10e} {x_max:.10e} 1\n</init>\n")
        for i in range(n_events):
            tags = colour_tags(orderings[int(flows[i])])
            out.write("<event>\n")
            out.write(f"{n_particles} 1 {weights[i]:.10e} {scales[i]:.10e} {AQED:.10e} {AQCD:.10e}\n")
            for j in range(n_particles):
                status, mothers = (-1, (0, 0)) if j < 2 else (1, (1, 2))
                e, px, py, pz = momenta[i, j]
                out.write(
                    f"{GLUON} {status} {mothers[0]} {mothers[1]} {tags[j, 0]} {tags[j, 1]} "
                    f"{px:.17e} {py:.17e} {pz:.17e} {e:.17e} 0.0 0.0 {SPIN_UNKNOWN:.1f}\n"
                )
            out.write(f'<rwgt>\n<wgt id="{OVERWEIGHT_ID}">{overweights[i]:.10e}</wgt>\n</rwgt>\n</event>\n')
        out.write("</LesHouchesEvents>\n")
