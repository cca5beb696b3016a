"""What an inference request asks for beyond its inputs: its parameters, and which outputs it gets back.

Parameters are checked strictly: one the server does not know is refused with the list of those it knows,
so that a client never believes a setting took effect when it was ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from calsurr.service.card import MEMBER_OUTPUTS, ModelCard
from calsurr.service.errors import InvalidInput

# Inference request parameters understood, with what each takes; any other is refused, naming these.
KNOWN_PARAMETERS = {
    "members": "bool: also return the per-member outputs the graph exports (member_mean, member_sigma)",
    "timeout": "int, microseconds: give up (DEADLINE_EXCEEDED) on a request still unanswered after this long",
}
MICROSECONDS = 1e-6


@dataclass(frozen=True)
class InferOptions:
    """What a request's parameters ask for."""

    members: bool = False
    timeout_us: int | None = None


def parse_parameters(parameters: Mapping[str, object] | None) -> InferOptions:
    """Request parameters checked against KNOWN_PARAMETERS; an unknown one or a wrong type is refused."""
    parameters = parameters or {}
    unknown = sorted(set(parameters) - set(KNOWN_PARAMETERS))
    if unknown:
        known = "; ".join(f"'{k}' ({v})" for k, v in KNOWN_PARAMETERS.items())
        raise InvalidInput(f"unknown request parameters {unknown}; this server knows {known}")
    members = parameters.get("members", False)
    if not isinstance(members, bool):
        raise InvalidInput(f"parameter 'members' expects a bool, got {members!r}")
    timeout = parameters.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
        raise InvalidInput(f"parameter 'timeout' expects a non-negative int of microseconds, got {timeout!r}")
    return InferOptions(members, timeout)


def select_outputs(card: ModelCard, requested: list[str] | None, members: bool) -> list[str]:
    """The outputs to answer with: those requested, else every output but the per-member ones; `members`
    adds the per-member outputs, and is refused for a graph that exports none."""
    known = [o.name for o in card.outputs]
    if requested:
        unknown = [o for o in requested if o not in known]
        if unknown:
            raise InvalidInput(f"model '{card.name}' has no outputs {unknown}; it has {known}")
    selected = list(requested) if requested else [n for n in known if n not in MEMBER_OUTPUTS]
    if members:
        exported = [n for n in MEMBER_OUTPUTS if n in known]
        if not exported:
            raise InvalidInput(
                f"parameter 'members': model '{card.name}' version {card.version} exports no per-member outputs "
                f"{list(MEMBER_OUTPUTS)}; its outputs are {known}"
            )
        selected += [n for n in exported if n not in selected]
    return selected
