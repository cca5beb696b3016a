"""Errors the data plane raises, each carrying the gRPC status a client should see.

The transport layer turns them into a status and message; nothing else about a failed request is sent.
"""

from __future__ import annotations

import grpc


class CalsurrError(Exception):
    """Base of errors that reach a client; the message says what was expected and what came."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ModelNotFound(CalsurrError):
    status_code = grpc.StatusCode.NOT_FOUND


class InvalidInput(CalsurrError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


class ModelUnavailable(CalsurrError):
    status_code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(CalsurrError):
    """A part of the protocol calsurr does not implement; the message says why and what to do instead."""

    status_code = grpc.StatusCode.UNIMPLEMENTED
