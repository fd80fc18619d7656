"""A thin, typed layer over the generated ``daas.v1`` stubs.

:class:`Client` connects with mutual TLS and turns every call into one
method; failures are :mod:`daas_client.errors` exceptions. Sessions and
events are the generated protobuf messages (``daas.v1.desktop_pb2``). Given
several endpoints (replicas of one service), a call that finds one down
moves on to the next (:mod:`daas_client.replicas`).
"""

from __future__ import annotations

import builtins
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import TypeVar, Union

import grpc
from daas.v1 import desktop_pb2, desktop_pb2_grpc
from daas.v1.desktop_pb2 import (
    AuditEntry,
    ListTemplatesResponse,
    Node,
    Pool,
    Quota,
    Schedule,
    Session,
    SessionEvent,
    SessionState,
    Snapshot,
)

from .errors import from_rpc_error
from .replicas import Replicas, is_down, split_endpoints

__all__ = ["Client", "EventStream", "StateLike", "describe", "parse_state", "state_name"]

_STATE_PREFIX = "SESSION_STATE_"

StateLike = Union["SessionState.ValueType", str, None]
"""A state filter: a ``SessionState`` value, a name such as ``"ready"`` or
``"SESSION_STATE_READY"``, or ``None`` for any state."""

PathLike = Union[str, "os.PathLike[str]"]

_T = TypeVar("_T")

#: Opens a stream on a server: its stub, and the sequence number of the last
#: event already received (0: none).
_Open = Callable[[desktop_pb2_grpc.DesktopServiceStub, int], "grpc._CallIterator[SessionEvent]"]


def state_name(state: SessionState.ValueType | int) -> str:
    """The short name of a state: ``"READY"`` for ``SESSION_STATE_READY``."""
    try:
        name = SessionState.Name(state)  # type: ignore[arg-type]
    except ValueError:
        return str(state)
    return name.removeprefix(_STATE_PREFIX)


def parse_state(state: StateLike) -> SessionState.ValueType:
    """A state from a value or a name (``"ready"``, ``"SESSION_STATE_READY"``).

    Raises ``ValueError`` for an unknown name.
    """
    if state is None:
        return SessionState.SESSION_STATE_UNSPECIFIED
    if isinstance(state, str):
        name = state.strip().upper()
        if not name.startswith(_STATE_PREFIX):
            name = _STATE_PREFIX + name
        try:
            return SessionState.Value(name)
        except ValueError:
            known = ", ".join(
                n.removeprefix(_STATE_PREFIX).lower() for n in SessionState.keys()[1:]
            )
            raise ValueError(f"unknown session state {state!r} (one of: {known})") from None
    return state


def describe(event: SessionEvent) -> str:
    """One line for an event, as a person would want it printed."""
    kind = event.WhichOneof("kind")
    if kind == "stage_change":
        line = state_name(event.state)
        if event.stage_change.message:
            line += f": {event.stage_change.message}"
        if event.state == SessionState.SESSION_STATE_READY and event.HasField("session"):
            s = event.session
            line += f" (RDP {s.rdp_host}:{s.rdp_port})"
        if event.state == SessionState.SESSION_STATE_FAILED and event.session.HasField("failure"):
            failure = event.session.failure
            line += f" ({state_name(failure.stage)} failed: {failure.reason})"
        return line
    if kind == "output":
        tool = desktop_pb2.Tool.Name(event.output.tool).removeprefix("TOOL_").lower()
        return f"  [{tool}] {event.output.text}"
    if kind == "idle_warning":
        return f"warning: {event.idle_warning.reason}"
    return state_name(event.state)


def _read(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _target(endpoint: str) -> str:
    """A grpcio target from ``host:port`` or ``https://host:port``."""
    endpoint = endpoint.strip()
    for scheme in ("https://", "grpcs://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/")
    if "://" in endpoint:
        raise ValueError(
            f"endpoint {endpoint!r}: use host:port or https://host:port "
            "(the server speaks gRPC over mutual TLS)"
        )
    return endpoint


class EventStream(Iterator[SessionEvent]):
    """The events of one CreateSession or WatchSession call, as they arrive.

    Iterate it; the iteration ends after READY, FAILED or DESTROYED. A failed
    call raises a :class:`~daas_client.errors.DaasError` from the iteration.
    When the server goes away midway (UNAVAILABLE), the call is made again on
    the next server and the iteration goes on after the last event it gave:
    no event comes twice. :meth:`cancel` (or leaving a ``with`` block) closes
    the stream: the server goes on with the session, and
    :meth:`Client.watch` re-attaches to it.
    """

    def __init__(
        self, method: str, replicas: Replicas, open: _Open, *, request_id: str = ""
    ) -> None:
        self._method = method
        self._open = open
        self._round = replicas.round()
        self._cancelled = False
        self.request_id = request_id
        """The create's idempotency key (empty for a watch)."""
        self.last: SessionEvent | None = None
        """The last event received."""
        self.session: Session | None = None
        """The whole session, from the last event that carried it (the one
        ending the stream: READY, FAILED or DESTROYED)."""
        self._call = open(self._round.stub, 0)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> SessionEvent:
        while True:
            try:
                event = next(self._call)
            except grpc.RpcError as err:
                if self._cancelled and err.code() is grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                if not is_down(err) or self._cancelled:
                    raise from_rpc_error(err) from None
                self._round.failed(err)  # raises when every server is down
                self._call = self._open(self._round.stub, self._last_sequence)
                continue
            self._round.answered()
            if event.sequence <= self._last_sequence:
                continue  # sent again by the next server
            self.last = event
            if event.HasField("session"):
                self.session = event.session
            return event

    @property
    def _last_sequence(self) -> int:
        return self.last.sequence if self.last is not None else 0

    def cancel(self) -> None:
        """Closes the stream (the session itself is not affected)."""
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"EventStream({self._method}, cancelled={self._cancelled})"


class Client:
    """A client of ``daas.v1.DesktopService``.

    Make one with :meth:`from_files` (mutual TLS from PEM files), or wrap any
    ``grpc.Channel``, or several servers' (replicas of one service) as
    ``[(target, channel), ...]``, tried in this order: a call that finds one
    down (UNAVAILABLE) moves on to the next. Use it as a context manager, or
    call :meth:`close`.

    ``timeout`` (seconds) bounds each unary call (get, list, destroy, the
    pool, node, audit, quota, schedule and kept disk calls); it is ``None``
    by default because a destroy waits for Terraform. Streams have no
    deadline: they end with the session's stage.
    """

    def __init__(
        self,
        channel: grpc.Channel | Sequence[tuple[str, grpc.Channel]],
        *,
        timeout: float | None = None,
        target: str = "",
    ) -> None:
        channels = [(target, channel)] if isinstance(channel, grpc.Channel) else channel
        self._replicas = Replicas(channels)
        self._timeout = timeout

    @classmethod
    def from_files(
        cls,
        endpoint: str | Sequence[str],
        ca: PathLike,
        cert: PathLike,
        key: PathLike,
        *,
        server_name: str | None = None,
        timeout: float | None = None,
    ) -> Client:
        """Connects to ``endpoint`` (``host:port`` or ``https://host:port``)
        with the CA that signed the server's certificate and the caller's
        client certificate and key (all PEM files, e.g. from ``daas-server pki``).

        ``endpoint`` may name several servers (replicas of one service): a
        sequence, or a string separated by commas as ``DAAS_ENDPOINT`` may
        be. They are tried in order: a call that finds one down
        (UNAVAILABLE) moves on to the next. A host name resolving to several
        addresses is tried at each by gRPC itself, as is a gRPC target
        listing them (``ipv4:10.0.0.1:50051,10.0.0.2:50051``).

        ``server_name`` checks the server's certificate for that name instead
        of the endpoint's host (e.g. ``"localhost"`` when connecting to an IP
        address the certificate does not name). The key is read once and
        handed to gRPC; the client keeps no copy.
        """
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca),
            private_key=_read(key),
            certificate_chain=_read(cert),
        )
        options: builtins.list[tuple[str, str]] = []
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        targets = [_target(each) for each in split_endpoints(endpoint)]
        channels = [
            (target, grpc.secure_channel(target, credentials, options=options))
            for target in targets
        ]
        return cls(channels, timeout=timeout)

    def create_session(
        self,
        username: str = "",
        *,
        session_user: str = "",
        session_password: str = "",
        template: str = "",
        request_id: str = "",
        size: str = "",
        org: str = "",
    ) -> EventStream:
        """Creates a desktop and returns its live events (the call starts now).

        ``username`` empty means the caller (only an administrator may name
        someone else). ``session_user`` is an optional local login created on
        the desktop, with ``session_password`` (required with it; sent to the
        server only, never stored or logged). ``template`` empty means the
        server's default, ``size`` empty the template's (:meth:`list_templates`
        shows both); an unknown one is ``InvalidArgument`` naming the choices,
        a template not for the caller's groups ``PermissionDenied``.

        ``org`` is the organisation whose quota the desktop counts against
        (empty: the caller's; one the caller is not in is
        ``PermissionDenied``, and a caller in several must name one). A
        create past a quota is ``ResourceExhausted`` naming it.

        ``request_id`` is the create's idempotency key (1-64 letters, digits,
        ``.``, ``_``, ``:`` or ``-``; by default 32 random hex digits, in
        ``stream.request_id``): a create repeated with the same key within
        24 hours makes no new desktop but streams the first one's events
        from the start. The stream does so itself when its server goes away
        (on the next server, without giving an event twice); a script may
        too after an ``Unavailable``. The same key for another user or
        template is ``InvalidArgument``.

        The last event is READY (``stream.session`` has the RDP endpoint) or
        FAILED (``stream.session.failure`` says where and why).
        """
        request = desktop_pb2.CreateSessionRequest(
            username=username,
            session_user=session_user,
            session_password=session_password,
            template=template,
            request_id=request_id or uuid.uuid4().hex,
            size=size,
            org=org,
        )
        return EventStream(
            "CreateSession",
            self._replicas,
            lambda stub, _after: stub.CreateSession(request),
            request_id=request.request_id,
        )

    def watch(self, session_id: str) -> EventStream:
        """Every event of a session since the first (sequence 1), then live
        ones until READY, FAILED or DESTROYED. On the next server after one
        went away, only the events after the last one received."""
        return EventStream(
            "WatchSession",
            self._replicas,
            lambda stub, after: stub.WatchSession(
                desktop_pb2.WatchSessionRequest(session_id=session_id, after_sequence=after)
            ),
        )

    def list(
        self,
        username: str = "",
        state: StateLike = None,
        *,
        org: str = "",
        page_size: int = 1000,
    ) -> builtins.list[Session]:
        """Every matching session, newest first; optionally one user's (a user
        sees only their own), in one state (``"ready"``,
        ``SESSION_STATE_READY``), of one organisation (``org``: its
        administrators see its members' sessions this way). The server
        answers a page at a time (at most ``page_size`` sessions, 1-1000):
        this asks for each page in turn."""
        return [
            session
            for page in self.list_pages(username, state, org=org, page_size=page_size)
            for session in page
        ]

    def list_pages(
        self,
        username: str = "",
        state: StateLike = None,
        *,
        org: str = "",
        page_size: int = 1000,
    ) -> Iterator[builtins.list[Session]]:
        """Like :meth:`list`, one page (at most ``page_size`` sessions) at a
        time: each page is asked for when the iteration reaches it."""
        request = desktop_pb2.ListSessionsRequest(
            username=username, state=parse_state(state), org=org, page_size=page_size
        )
        while True:
            # A page token is good on any server.
            response = self._unary(lambda stub: stub.ListSessions(request, timeout=self._timeout))
            yield builtins.list(response.sessions)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def get(self, session_id: str) -> Session:
        """One session (NotFound for an unknown id)."""
        request = desktop_pb2.GetSessionRequest(session_id=session_id)
        return self._unary(lambda stub: stub.GetSession(request, timeout=self._timeout))

    def destroy(self, session_id: str) -> Session:
        """Destroys a session's desktop and returns the session, DESTROYED.
        Idempotent; Aborted when Terraform failed (destroying again retries)."""
        request = desktop_pb2.DestroySessionRequest(session_id=session_id)
        return self._unary(lambda stub: stub.DestroySession(request, timeout=self._timeout))

    def list_pools(self) -> builtins.list[Pool]:
        """Every warm pool the server configures, by name, and where each
        stands (administrators only: PermissionDenied otherwise)."""
        request = desktop_pb2.ListPoolsRequest()
        response = self._unary(lambda stub: stub.ListPools(request, timeout=self._timeout))
        return builtins.list(response.pools)

    def get_pool(self, name: str) -> Pool:
        """One warm pool (NotFound for a pool the server does not configure;
        administrators only: PermissionDenied otherwise)."""
        request = desktop_pb2.GetPoolRequest(name=name)
        return self._unary(lambda stub: stub.GetPool(request, timeout=self._timeout))

    def list_templates(self) -> ListTemplatesResponse:
        """The templates the caller may create desktops of, by name, with
        their sizes; ``default_template`` is a create's when it names none,
        and ``open`` says the server has no catalog (any template name goes,
        in the one size listed)."""
        request = desktop_pb2.ListTemplatesRequest()
        return self._unary(lambda stub: stub.ListTemplates(request, timeout=self._timeout))

    def get_quota(self, org: str = "", username: str = "") -> Quota:
        """An organisation's quota (``org_max``) and what its live desktops
        use (``org_used``), with one member's (``user_max``, ``user_used``),
        and the organisations the caller administers (``administers``); in
        a maximum, 0 is no limit. ``org`` empty: the caller's (in none,
        ``org`` is empty and ``user_max`` is the server's per-user limit).
        ``username`` empty: the caller, or for an administrator naming
        ``org``, no member. NotFound for an organisation the server does not
        configure; PermissionDenied for one the caller may not see."""
        request = desktop_pb2.GetQuotaRequest(org=org, username=username)
        return self._unary(lambda stub: stub.GetQuota(request, timeout=self._timeout))

    def add_schedule(
        self,
        at: str,
        days: str,
        timezone: str = "",
        template: str = "",
        size: str = "",
        org: str = "",
        username: str = "",
    ) -> Schedule:
        """Adds a schedule: a desktop READY at ``at`` (``"HH:MM"``, 24-hour)
        on ``days`` (``"mon-fri"``, ``"sat,sun"``, ``"mon,wed-fri"``,
        ``"daily"``) in the IANA time zone ``timezone`` (empty: the
        server's, which the answer names). The server creates each desktop
        ahead as an ordinary session of ``username`` (empty: the caller;
        only an administrator may name another), of ``template`` and
        ``size`` (empty: the defaults, resolved in the answer), counted
        against ``org`` (empty: the caller's), within the quotas and the
        catalog as checked now and when it runs. The answer's ``next_at``
        is when the next desktop is due READY. ``InvalidArgument`` names
        the bad field (``at``, ``days``, ``timezone``, ``template``,
        ``size``, ``org``); ``ResourceExhausted`` past the schedules a user
        may have. Like every call it moves to the next server when one is
        down (UNAVAILABLE); having no idempotency key, it is added twice
        when a server stores it and goes away before answering
        (:meth:`list_schedules` shows both)."""
        request = desktop_pb2.AddScheduleRequest(
            username=username,
            at=at,
            days=days,
            timezone=timezone,
            template=template,
            size=size,
            org=org,
        )
        return self._unary(lambda stub: stub.AddSchedule(request, timeout=self._timeout))

    def list_schedules(self, username: str = "") -> builtins.list[Schedule]:
        """The caller's schedules, by time of day; ``username``: only that
        user's (only an administrator may name another); an administrator
        without ``username``: everyone's, by user."""
        request = desktop_pb2.ListSchedulesRequest(username=username)
        response = self._unary(lambda stub: stub.ListSchedules(request, timeout=self._timeout))
        return builtins.list(response.schedules)

    def remove_schedule(self, schedule_id: str) -> Schedule:
        """Removes a schedule and returns it (desktops it already made
        stay). NotFound for an unknown id; PermissionDenied for another
        user's (unless an administrator)."""
        request = desktop_pb2.RemoveScheduleRequest(schedule_id=schedule_id)
        return self._unary(lambda stub: stub.RemoveSchedule(request, timeout=self._timeout))

    def list_snapshots(self, username: str = "") -> builtins.list[Snapshot]:
        """The kept disks of persistent templates (``persistent = true``),
        newest first: a desktop of one keeps its disk when destroyed, and
        its user's next create of the template restores it (the restored
        session's ``restored_from`` names it). The caller's;
        ``username``: only that user's (only an administrator may name
        another); an administrator without ``username``: everyone's."""
        request = desktop_pb2.ListSnapshotsRequest(username=username)
        response = self._unary(lambda stub: stub.ListSnapshots(request, timeout=self._timeout))
        return builtins.list(response.snapshots)

    def delete_snapshot(self, snapshot_id: str) -> Snapshot:
        """Deletes a kept disk and returns it (the next create of its
        template starts blank). NotFound for an unknown id;
        PermissionDenied for another user's (unless an administrator);
        Aborted while a desktop is being restored from it."""
        request = desktop_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id)
        return self._unary(lambda stub: stub.DeleteSnapshot(request, timeout=self._timeout))

    def list_nodes(self) -> builtins.list[Node]:
        """Every node of the cluster, by name, as the Terraform module last
        reported it, with the desktops placed on it; empty when the module
        places its VMs itself (administrators only: PermissionDenied
        otherwise)."""
        request = desktop_pb2.ListNodesRequest()
        response = self._unary(lambda stub: stub.ListNodes(request, timeout=self._timeout))
        return builtins.list(response.nodes)

    def drain_node(self, name: str) -> Node:
        """Drains a node: it takes no new desktop (its users' desktops stay
        until they end, its unclaimed pool desktops are replaced on other
        nodes); returns it, ``drained``. Idempotent. NotFound for a node the
        server does not know; administrators only."""
        request = desktop_pb2.DrainNodeRequest(name=name)
        return self._unary(lambda stub: stub.DrainNode(request, timeout=self._timeout))

    def resume_node(self, name: str) -> Node:
        """Ends a node's drain: it takes new desktops again; returns it.
        Idempotent. Errors as :meth:`drain_node`'s."""
        request = desktop_pb2.ResumeNodeRequest(name=name)
        return self._unary(lambda stub: stub.ResumeNode(request, timeout=self._timeout))

    def list_audit(
        self,
        username: str = "",
        session_id: str = "",
        since: datetime | None = None,
        *,
        org: str = "",
        page_size: int = 1000,
    ) -> builtins.list[AuditEntry]:
        """The audit trail, newest first: creates, claims, destroys, reaps,
        agent certificates issued and refused calls, with who, from where and
        the result (administrators, and an organisation's administrators
        with ``org``: PermissionDenied otherwise). Optionally only the
        entries whose actor or session owner is ``username``, about
        ``session_id``, at or after ``since`` (a naive datetime is taken as
        UTC), about organisation ``org``'s sessions and members. This asks
        for each page (``page_size`` entries, 1-1000) in turn."""
        return [
            entry
            for page in self.list_audit_pages(
                username, session_id, since, org=org, page_size=page_size
            )
            for entry in page
        ]

    def list_audit_pages(
        self,
        username: str = "",
        session_id: str = "",
        since: datetime | None = None,
        *,
        org: str = "",
        page_size: int = 1000,
    ) -> Iterator[builtins.list[AuditEntry]]:
        """Like :meth:`list_audit`, one page (at most ``page_size`` entries)
        at a time: each page is asked for when the iteration reaches it."""
        request = desktop_pb2.ListAuditRequest(
            username=username, session_id=session_id, org=org, page_size=page_size
        )
        if since is not None:
            request.since.FromDatetime(since)
        while True:
            response = self._unary(lambda stub: stub.ListAudit(request, timeout=self._timeout))
            yield builtins.list(response.entries)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def _unary(self, call: Callable[[desktop_pb2_grpc.DesktopServiceStub], _T]) -> _T:
        """``call`` on the server in use, then on the next while one is down."""
        tries = self._replicas.round()
        while True:
            try:
                return call(tries.stub)
            except grpc.RpcError as err:
                if not is_down(err):
                    raise from_rpc_error(err) from None
                tries.failed(err)  # raises when every server is down

    def close(self) -> None:
        """Closes the connections (and any open stream)."""
        self._replicas.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        targets = ", ".join(repr(target) for target in self._replicas.targets if target)
        return f"Client({targets})"
