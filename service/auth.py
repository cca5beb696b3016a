"""Bearer tokens with roles, checked inside the server on every RPC but the health checks.

The token file holds one line per token, `ROLE sha256:HEX` (blank lines and `#` comments allowed), written by
`calsurr token new`; the server never sees a token in the clear except in a call's metadata, hashes it and
compares the hash with every line in constant time. Roles nest: `admin` may do all that `infer` may, plus
the repository and statistics RPCs. The file is re-read when it changes (checked at most once a second),
so revoking a token (deleting its line) takes effect without a restart; a file that becomes unreadable or
malformed keeps the last good tokens and says so once.

Open (no token): gRPC health checking and ServerLive/ServerReady, so that Kubernetes probes, which send no
metadata, work. Everything else needs a token of the role in ROLE_OF (unknown methods, reflection included:
`infer`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

ROLES = ("infer", "admin")  # each role may do what the ones before it may
AUTHORIZATION = "authorization"
BEARER = "bearer "
HASH_PREFIX = "sha256:"
RELOAD_CHECK_SECONDS = 1.0
TOKEN_BYTES = 32  # 256 bits of randomness, url-safe base64

INFERENCE = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        INFERENCE + "ServerLive",
        INFERENCE + "ServerReady",
    }
)
ADMIN_METHODS = frozenset(
    INFERENCE + name
    for name in (
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ModelStatistics",
        "SystemSharedMemoryStatus",
        "SystemSharedMemoryRegister",
        "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
        "TraceSetting",
        "LogSettings",
    )
)


def required_role(method: str) -> str | None:
    """The least role a method needs; None for the open ones."""
    if method in OPEN_METHODS:
        return None
    return "admin" if method in ADMIN_METHODS else "infer"


class TokenFileError(ValueError):
    """The token file is missing, unreadable or has a line that is not `ROLE sha256:HEX`."""


@dataclass(frozen=True)
class Grant:
    role: str
    digest: bytes  # sha256 of the token


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_file(path: Path) -> tuple[Grant, ...]:
    """The grants of a token file; TokenFileError names the line that is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"token file {path} is not readable: {exc}") from None
    grants = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) != 2 or words[0] not in ROLES or not words[1].startswith(HASH_PREFIX):
            raise TokenFileError(
                f"token file {path} line {number}: expected 'ROLE sha256:HEX' with ROLE one of {list(ROLES)}"
            )
        try:
            digest = bytes.fromhex(words[1].removeprefix(HASH_PREFIX))
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise TokenFileError(f"token file {path} line {number}: the hash is not 64 hexadecimal digits")
        grants.append(Grant(words[0], digest))
    return tuple(grants)


def new_token(role: str, path: Path) -> str:
    """A fresh random token; its hash is appended to the token file (created with mode 0600 if absent)."""
    if role not in ROLES:
        raise TokenFileError(f"role '{role}' is not one of {list(ROLES)}")
    if path.exists():
        parse_token_file(path)  # never append to a file the server would refuse
    token = secrets.token_urlsafe(TOKEN_BYTES)
    line = f"{role} {HASH_PREFIX}{token_digest(token).hex()}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        file.write(line)
    return token


@dataclass(frozen=True)
class Verdict:
    """Why a call is refused: its status, a reason for the metric and the log, and the message to send."""

    code: grpc.StatusCode
    reason: str
    message: str


class TokenBook:
    """The grants of a token file, followed on disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._grants = parse_token_file(self.path)
        self._stat = self._file_state()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _file_state(self) -> tuple[int, int, int] | None:
        try:
            s = self.path.stat()
        except OSError:
            return None
        return (s.st_ino, s.st_size, s.st_mtime_ns)

    def grants(self) -> tuple[Grant, ...]:
        """The current grants, re-reading the file when it changed (looked at once a second at most)."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return self._grants
        with self._lock:
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return self._grants
            self._checked = now
            state = self._file_state()
            if state != self._stat:
                self._stat = state
                try:
                    self._grants = parse_token_file(self.path)
                    log.info("token file %s re-read: %d tokens", self.path, len(self._grants))
                except TokenFileError as exc:
                    log.error("%s; keeping the %d tokens read before", exc, len(self._grants))
        return self._grants

    def check(self, metadata, role: str) -> Verdict | None:
        """None when the call's bearer token grants `role`, else why not."""
        token = _bearer_token(metadata)
        if token is None:
            return Verdict(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing_token",
                "this server needs a token: send 'authorization: Bearer <token>' in the call metadata",
            )
        digest = token_digest(token)
        held = None
        for grant in self.grants():  # every line compared, in constant time each
            if hmac.compare_digest(grant.digest, digest) and (held is None or _rank(grant.role) > _rank(held)):
                held = grant.role
        if held is None:
            return Verdict(grpc.StatusCode.UNAUTHENTICATED, "unknown_token", "the bearer token is not valid here")
        if _rank(held) < _rank(role):
            return Verdict(
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong_role",
                f"this call needs a token of role '{role}'; the token sent has role '{held}'",
            )
        return None


def _rank(role: str) -> int:
    return ROLES.index(role)


def _bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            if text[: len(BEARER)].lower() == BEARER and text[len(BEARER) :].strip():
                return text[len(BEARER) :].strip()
            return None
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, before the handler runs, a call whose token does not grant its method's role."""

    def __init__(self, book: TokenBook, on_refusal: Callable[[str], None] | None = None):
        self.book = book
        self.on_refusal = on_refusal or (lambda reason: None)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        role = required_role(details.method)
        if handler is None or role is None:
            return handler
        verdict = self.book.check(details.invocation_metadata, role)
        if verdict is None:
            return handler
        self.on_refusal(verdict.reason)
        return _refusing(handler, details.method, verdict)


def _refusing(handler: grpc.RpcMethodHandler, method: str, verdict: Verdict) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that logs one line (peer and reason, never the token) and
    aborts with the verdict."""

    async def refuse(request_or_iterator, context: grpc.aio.ServicerContext):
        log.info("refused %s from %s: %s", method, context.peer(), verdict.reason, extra={"code": verdict.code.name})
        await context.abort(verdict.code, verdict.message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)
