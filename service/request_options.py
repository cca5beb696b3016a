"""What an inference request asks for beyond its inputs: its parameters, and which outputs it gets back.

Every request parameter a client may send is in REQUEST_PARAMETERS, with what calsurr does with it:
honoured; accepted as not applicable, with the meaning Triton gives it for a stateless, non-decoupled model
without priority levels (what every calsurr model is), so that Triton's own clients (tritonclient,
perf_analyzer) work unchanged; or refused with the reason. A parameter in none of these is refused with the
list of those known, so a client never believes a setting took effect when it was ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from calsurr.service.card import MEMBER_OUTPUTS, ModelCard
from calsurr.service.errors import InvalidInput

MICROSECONDS = 1e-6
Handling = Literal["honoured", "not applicable", "refused"]


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_sequence_id(value: object) -> bool:
    return _is_count(value) or isinstance(value, str)


def _anything(value: object) -> bool:
    return True


@dataclass(frozen=True)
class RequestParameter:
    """One request parameter: what it takes, who sends it, and what calsurr does with it (the README's table)."""

    name: str
    handling: Handling
    takes: str
    meaning: str
    sent_by: str
    valid: Callable[[object], bool] = _anything


REQUEST_PARAMETERS: tuple[RequestParameter, ...] = (
    RequestParameter(
        "members",
        "honoured",
        "bool",
        "also return the per-member outputs the graph exports (member_mean, member_sigma)",
        "calsurr's clients",
        _is_bool,
    ),
    RequestParameter(
        "timeout",
        "honoured",
        "int, microseconds",
        "give up (DEADLINE_EXCEEDED) on a request still unanswered after this long; the earlier of it and the "
        "gRPC deadline applies",
        "tritonclient (timeout=), Triton's schedule-policy extension",
        _is_count,
    ),
    RequestParameter(
        "priority",
        "not applicable",
        "int >= 0",
        "every request has the default priority, as in a Triton model without priority_levels (Triton then maps "
        "any priority to the default)",
        "tritonclient (priority=, sent when not 0), perf_analyzer",
        _is_count,
    ),
    RequestParameter(
        "sequence_id",
        "not applicable",
        "int >= 0 or str",
        "calsurr models are stateless: each request stands alone and its answer does not depend on the "
        "sequence, as for a Triton model without a sequence batcher",
        "tritonclient (sequence_id=, sent when not 0), perf_analyzer on sequence models",
        _is_sequence_id,
    ),
    RequestParameter(
        "sequence_start",
        "not applicable",
        "bool",
        "as sequence_id: no state to start",
        "tritonclient with sequence_id",
        _is_bool,
    ),
    RequestParameter(
        "sequence_end",
        "not applicable",
        "bool",
        "as sequence_id: no state to release",
        "tritonclient with sequence_id",
        _is_bool,
    ),
    RequestParameter(
        "triton_enable_empty_final_response",
        "not applicable",
        "bool",
        "for a decoupled model, an empty response that only says the request is complete; every calsurr "
        "model answers each request with exactly one response, which is final (and says so, as Triton's does, "
        "in its triton_final_response parameter on a stream)",
        "perf_analyzer (every mode), tritonclient's stream_infer(enable_empty_final_response=True)",
        _is_bool,
    ),
    RequestParameter(
        "binary_data_output",
        "not applicable",
        "bool",
        "an HTTP/JSON setting; on gRPC, calsurr always answers in raw_output_contents (binary)",
        "HTTP clients; tritonclient.grpc never sends it",
        _is_bool,
    ),
    RequestParameter(
        "headers",
        "refused",
        "",
        "reserved for Triton's forwarding of HTTP/gRPC headers inside the server; send metadata as gRPC metadata "
        "(x-request-id is read from there)",
        "nobody (tritonclient refuses to send it)",
    ),
)
PARAMETERS_BY_NAME = {p.name: p for p in REQUEST_PARAMETERS}
ACCEPTED = {p.name: p for p in REQUEST_PARAMETERS if p.handling != "refused"}


@dataclass(frozen=True)
class InferOptions:
    """What a request's parameters ask for."""

    members: bool = False
    timeout_us: int | None = None


NO_OPTIONS = InferOptions()  # a request without parameters (most of them)


def _known() -> str:
    return "; ".join(f"'{p.name}' ({p.takes}: {p.handling})" for p in ACCEPTED.values())


def parse_parameters(parameters: Mapping[str, object] | None) -> InferOptions:
    """Request parameters checked against REQUEST_PARAMETERS: a refused or unknown one, or a value of the wrong
    type (None: a parameter sent with no value), is refused saying why."""
    if not parameters:
        return NO_OPTIONS
    refused = [PARAMETERS_BY_NAME[k] for k in sorted(parameters) if k in PARAMETERS_BY_NAME and k not in ACCEPTED]
    if refused:
        raise InvalidInput("; ".join(f"request parameter '{p.name}' is refused: {p.meaning}" for p in refused))
    unknown = sorted(set(parameters) - set(ACCEPTED))
    if unknown:
        raise InvalidInput(f"unknown request parameters {unknown}; this server knows {_known()}")
    for name, value in parameters.items():
        spec = ACCEPTED[name]
        if not spec.valid(value):
            raise InvalidInput(f"parameter '{name}' expects {_article(spec.takes)}, got {value!r}")
    return InferOptions(parameters.get("members", False), parameters.get("timeout"))


def _article(takes: str) -> str:
    return f"an {takes}" if takes[:1] in "aeiou" else f"a {takes}"


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
