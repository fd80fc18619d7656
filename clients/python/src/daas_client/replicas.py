"""The servers a client may use, one after the other.

Several ``daas-server`` replicas share one database, so any of them serves
any call. A :class:`Replicas` keeps one channel per endpoint and the one in
use; a call that fails with UNAVAILABLE (connection refused or reset, the
server gone or shutting down) moves on to the next, until each has failed
once since the last answer (a :class:`Round`). A host name resolving to
several addresses needs nothing of this: gRPC's resolver tries each of them.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import NamedTuple

import grpc
from daas.v1 import desktop_pb2_grpc

from .errors import DaasError, Unavailable, from_rpc_error

__all__ = ["Replicas", "Round", "is_down", "split_endpoints"]

#: gRPC target names that are not URLs, taken as one target each (their
#: commas separate addresses of one server, e.g. ``ipv4:10.0.0.1:1,10.0.0.2:1``).
_GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def split_endpoints(endpoints: str | Sequence[str]) -> builtins.list[str]:
    """The endpoints of a comma-separated string (as ``DAAS_ENDPOINT``
    gives them) or of a sequence, trimmed, without empty items. Raises
    ``ValueError`` when none is left."""
    if isinstance(endpoints, str):
        text = endpoints.strip()
        items = [text] if text.startswith(_GRPC_SCHEMES) else text.split(",")
    else:
        items = builtins.list(endpoints)
    found = [item.strip() for item in items if item.strip()]
    if not found:
        raise ValueError(f"no endpoint in {endpoints!r}")
    return found


def is_down(err: grpc.RpcError) -> bool:
    """Whether a failed call says its server is down (UNAVAILABLE), so that
    another may serve it."""
    code = getattr(err, "code", None)
    return code is not None and code() is grpc.StatusCode.UNAVAILABLE


class _Server(NamedTuple):
    target: str
    channel: grpc.Channel
    stub: desktop_pb2_grpc.DesktopServiceStub


class Replicas:
    """One channel per endpoint, and the one new calls go to first."""

    def __init__(self, channels: Sequence[tuple[str, grpc.Channel]]) -> None:
        if not channels:
            raise ValueError("no channel to call")
        self._servers = [
            _Server(target, channel, desktop_pb2_grpc.DesktopServiceStub(channel))
            for target, channel in channels
        ]
        self._first = 0

    @property
    def targets(self) -> builtins.list[str]:
        """Every server's target, in the order they are tried."""
        return [server.target for server in self._servers]

    def round(self) -> Round:
        """A new round over the servers, for one call (or one stream), from
        the server the last one moved on to."""
        return Round(self, self._first)

    def prefer(self, at: int) -> None:
        """New calls start at server ``at`` (the one a call moved on to)."""
        self._first = at

    def close(self) -> None:
        for server in self._servers:
            server.channel.close()

    def __len__(self) -> int:
        return len(self._servers)

    def __getitem__(self, index: int) -> _Server:
        return self._servers[index]


class Round:
    """Where one call (or one stream) stands among the servers: the one it
    uses, and those that failed since the last answer."""

    def __init__(self, replicas: Replicas, at: int) -> None:
        self._replicas = replicas
        self._at = at
        self._failures: dict[int, grpc.RpcError] = {}

    @property
    def stub(self) -> desktop_pb2_grpc.DesktopServiceStub:
        """The stub of the server to call."""
        return self._replicas[self._at].stub

    def answered(self) -> None:
        """The server answered: each server may fail once again."""
        self._failures.clear()

    def failed(self, err: grpc.RpcError) -> None:
        """The server in use is down (``err``): moves on to the next one
        that has not failed in this round (where the client's next calls
        start too), or raises :class:`~daas_client.errors.Unavailable`
        naming every server tried (the server's own error when there is
        only one)."""
        self._failures[self._at] = err
        count = len(self._replicas)
        for step in range(1, count):
            at = (self._at + step) % count
            if at not in self._failures:
                self._at = at
                self._replicas.prefer(at)
                return
        if count == 1:
            raise from_rpc_error(err) from None
        raise self._all_down() from None

    def _all_down(self) -> DaasError:
        tried = "; ".join(
            f"{self._replicas[at].target} ({from_rpc_error(err).message})"
            for at, err in self._failures.items()
        )
        return Unavailable(grpc.StatusCode.UNAVAILABLE, f"no server answered: {tried}")
