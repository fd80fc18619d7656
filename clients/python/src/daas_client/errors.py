"""Errors of the DaaS API as Python exceptions carrying the gRPC status code.

Every failed call raises a :class:`DaasError`; the common codes have their
own subclass, so a script can ``except NotFound:`` or ``except DaasError as
err: ... err.code``.
"""

from __future__ import annotations

import grpc

__all__ = [
    "Aborted",
    "DaasError",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]


class DaasError(Exception):
    """A call to the DaaS server failed.

    ``code`` is the gRPC status code (``grpc.StatusCode``) and ``message``
    the server's explanation, which names the bad field or the refused act.
    """

    code: grpc.StatusCode
    message: str

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r})"


class InvalidArgument(DaasError):
    """A request field is malformed; the message names it (INVALID_ARGUMENT)."""


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

    retry_after: float | None

    def __init__(
        self, code: grpc.StatusCode, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, "
            f"retry_after={self.retry_after!r})"
        )


class Aborted(DaasError):
    """Terraform could not destroy the VM; destroying again retries (ABORTED)."""


class Unavailable(DaasError):
    """The server cannot be reached, refused the TLS handshake (e.g. no or a
    bad client certificate) or is shutting down (UNAVAILABLE)."""


class DeadlineExceeded(DaasError):
    """The call's timeout passed (DEADLINE_EXCEEDED)."""


_BY_CODE: dict[grpc.StatusCode, type[DaasError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def _retry_after(err: grpc.RpcError) -> float | None:
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
    """The :class:`DaasError` for a failed grpcio call."""
    code_fn = getattr(err, "code", None)
    code = code_fn() if code_fn is not None else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(err, "details", None)
    message = (details_fn() if details_fn is not None else None) or str(err)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(code, message, _retry_after(err))
    return _BY_CODE.get(code, DaasError)(code, message)
