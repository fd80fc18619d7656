"""Errors of the DaaS API as Python exceptions carrying the gRPC status code.

Every failed call raises a :class:`DaasError`; the common codes have their
own subclass, so a script can ``except NotFound:`` or ``except DaasError as
err: ... err.code``.

The server puts typed details in each error status (the standard
``grpc-status-details-bin`` trailer, a ``google.rpc.Status``): a
``google.rpc.BadRequest`` naming the bad field, a ``google.rpc.RetryInfo``
saying when to try again. They become :attr:`DaasError.field_violations`
and :attr:`DaasError.retry_after`.
"""

from __future__ import annotations

import builtins
from typing import NamedTuple, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status

__all__ = [
    "Aborted",
    "DaasError",
    "DeadlineExceeded",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]


class FieldViolation(NamedTuple):
    """A bad request field (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    """The field's name in the request, e.g. ``"username"``."""
    description: str
    """What is wrong with it, e.g. ``"must be at most 20 characters"``."""


class DaasError(Exception):
    """A call to the DaaS server failed.

    ``code`` is the gRPC status code (``grpc.StatusCode``) and ``message``
    the server's explanation, which names the bad field or the refused act.
    ``retry_after`` is the server's hint in seconds when waiting helps
    (RESOURCE_EXHAUSTED, UNAVAILABLE), else ``None``; ``field_violations``
    lists the bad request fields (INVALID_ARGUMENT), else is empty.
    """

    code: grpc.StatusCode
    message: str
    retry_after: float | None
    field_violations: builtins.list[FieldViolation]

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        retry_after: float | None = None,
        field_violations: builtins.list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.field_violations = builtins.list(field_violations or ())

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        text = f"{type(self).__name__}(code={self.code.name}, message={self.message!r}"
        if self.retry_after is not None:
            text += f", retry_after={self.retry_after!r}"
        if self.field_violations:
            text += f", field_violations={self.field_violations!r}"
        return text + ")"


class InvalidArgument(DaasError):
    """A request field is malformed (INVALID_ARGUMENT): ``field_violations``
    names it and says why, as does the message."""


class NotFound(DaasError):
    """No session has this id (NOT_FOUND)."""


class PermissionDenied(DaasError):
    """The caller may not do this, e.g. act on another user's session
    (PERMISSION_DENIED)."""


class Unauthenticated(DaasError):
    """The caller's certificate names no usable identity (UNAUTHENTICATED)."""


class ResourceExhausted(DaasError):
    """A limit is reached (sessions, creates per minute, open streams).

    ``retry_after`` is the server's hint in seconds, when waiting helps, and
    ``None`` when it does not (e.g. too many live sessions: destroy one).
    """


class Aborted(DaasError):
    """Terraform could not destroy the VM; destroying again retries (ABORTED)."""


class Unavailable(DaasError):
    """The server cannot be reached, refused the TLS handshake (e.g. no or a
    bad client certificate) or is shutting down (UNAVAILABLE; ``retry_after``
    is set then)."""


class DeadlineExceeded(DaasError):
    """The call's timeout passed (DEADLINE_EXCEEDED)."""


_BY_CODE: dict[grpc.StatusCode, type[DaasError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def _status(err: grpc.RpcError) -> Status | None:
    """The ``google.rpc.Status`` of the ``grpc-status-details-bin`` trailer,
    or ``None`` (no trailer, or one that does not match the call's status)."""
    if getattr(err, "trailing_metadata", None) is None:
        return None
    try:
        # grpcio's errors are grpc.Call objects; from_call uses only
        # trailing_metadata(), code() and details().
        status = rpc_status.from_call(cast(grpc.Call, err))
    except (ValueError, DecodeError):
        return None
    return status if isinstance(status, Status) else None


def _details(status: Status | None) -> tuple[float | None, builtins.list[FieldViolation]]:
    """RetryInfo's delay in seconds and BadRequest's field violations."""
    retry_after: float | None = None
    violations: builtins.list[FieldViolation] = []
    for detail in status.details if status is not None else ():
        retry, bad = RetryInfo(), BadRequest()
        try:
            if detail.Unpack(retry):
                delay = retry.retry_delay
                seconds = delay.seconds + delay.nanos / 1e9
                retry_after = seconds if seconds >= 0 else None
            elif detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
        except DecodeError:
            continue
    return retry_after, violations


def _retry_after_metadata(err: grpc.RpcError) -> float | None:
    """The ``retry-after`` trailer (whole seconds), for servers that send no
    RetryInfo."""
    trailing = getattr(err, "trailing_metadata", None)
    if trailing is None:
        return None
    for key, value in trailing() or ():
        if key.lower() == "retry-after":
            try:
                seconds = float(value if isinstance(value, str) else value.decode())
            except ValueError:
                return None
            return seconds if seconds >= 0 else None
    return None


def from_rpc_error(err: grpc.RpcError) -> DaasError:
    """The :class:`DaasError` for a failed grpcio call, with the details of
    its status (``retry_after`` from RetryInfo, else from the ``retry-after``
    metadata; ``field_violations`` from BadRequest)."""
    code_fn = getattr(err, "code", None)
    code = code_fn() if code_fn is not None else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(err, "details", None)
    message = (details_fn() if details_fn is not None else None) or str(err)
    retry_after, violations = _details(_status(err))
    if retry_after is None:
        retry_after = _retry_after_metadata(err)
    return _BY_CODE.get(code, DaasError)(code, message, retry_after, violations)
