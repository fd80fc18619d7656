"""The Python client against the real daas-server (see conftest.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import BadRequest, RetryInfo
from google.rpc.status_pb2 import Status

from conftest import STREAM_LIMIT, Replicas, Server
from daas_client import (
    Amounts,
    Client,
    DaasError,
    EventStream,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Session,
    SessionEvent,
    SessionState,
    Unavailable,
    describe,
    parse_state,
    state_name,
)
from daas_client.errors import from_rpc_error

STAGES = ["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING", "READY"]


def drain(stream: EventStream, limit: float = STREAM_LIMIT) -> list[SessionEvent]:
    """Every event of a stream; a stream still open after ``limit`` seconds
    is closed, so a hang fails the test's assertions instead of blocking."""
    timer = threading.Timer(limit, stream.cancel)
    timer.start()
    try:
        return list(stream)
    finally:
        timer.cancel()


def stages(events: list[SessionEvent]) -> list[str]:
    return [state_name(e.state) for e in events if e.WhichOneof("kind") == "stage_change"]


def sequences(events: list[SessionEvent]) -> list[int]:
    return [e.sequence for e in events]


@pytest.fixture(scope="session")
def ready(alice: Client) -> tuple[list[SessionEvent], Session]:
    """A session alice created, streamed to its end."""
    stream = alice.create_session()
    events = drain(stream)
    assert stream.session is not None, [describe(e) for e in events]
    return events, stream.session


def test_a_desktop_has_its_size(ready: tuple[list[SessionEvent], Session]) -> None:
    _, session = ready
    assert (session.size.name, session.size.memory_mb) == ("standard", 4096), session


def test_create_streams_every_stage_in_order_to_ready(
    ready: tuple[list[SessionEvent], Session],
) -> None:
    events, session = ready
    assert stages(events) == STAGES, [describe(e) for e in events]
    assert sequences(events) == list(range(1, len(events) + 1)), "numbered from 1, no gaps"
    assert events[-1].state == SessionState.SESSION_STATE_READY
    assert any(e.WhichOneof("kind") == "output" for e in events), "tool output is streamed"
    assert len({e.session_id for e in events}) == 1
    # The last event carries the whole session with its RDP endpoint.
    assert session.id == events[0].session_id
    assert session.username == "alice", "an empty username means the caller"
    assert session.state == SessionState.SESSION_STATE_READY
    assert session.rdp_host and session.rdp_port > 0
    assert session.vm_name.startswith("desktop-")
    assert session.HasField("ready_at")
    assert describe(events[-1]).startswith("READY")


def test_watch_after_disconnect_replays_from_the_first_event(alice: Client) -> None:
    stream = alice.create_session(template="debian-12-xfce")
    first = next(stream)
    assert first.sequence == 1 and state_name(first.state) == "QUEUED"
    session_id = first.session_id
    stream.cancel()  # disconnect: the server goes on with the session
    assert list(stream) == []
    # Still provisioning (terraform apply alone takes over a second): the
    # watch below replays, then follows live.
    assert alice.get(session_id).state != SessionState.SESSION_STATE_READY

    watched = drain(alice.watch(session_id))
    assert watched[0].sequence == 1, "the replay starts at sequence 1"
    assert sequences(watched) == list(range(1, len(watched) + 1))
    assert stages(watched) == STAGES, [describe(e) for e in watched]
    assert watched[0].SerializeToString() == first.SerializeToString(), "the same stored event"
    assert alice.get(session_id).template == "debian-12-xfce"

    # Once READY, a watch replays the same history and ends.
    again = drain(alice.watch(session_id))
    assert [e.SerializeToString() for e in again] == [e.SerializeToString() for e in watched]


def test_cancel_closes_a_stream_quietly(
    ready: tuple[list[SessionEvent], Session], alice: Client
) -> None:
    _, session = ready
    seen = []
    with alice.watch(session.id) as stream:
        for event in stream:
            seen.append(event)
            stream.cancel()
    assert [e.sequence for e in seen] == [1], "no event after cancel()"
    assert list(stream) == []


def test_list_get_destroy(
    ready: tuple[list[SessionEvent], Session], alice: Client, admin: Client
) -> None:
    _, session = ready
    got = alice.get(session.id)
    assert got.id == session.id and got.state == SessionState.SESSION_STATE_READY
    assert got.rdp_port == session.rdp_port

    mine = alice.list()
    assert session.id in [s.id for s in mine]
    assert all(s.username == "alice" for s in mine)
    assert session.id in [s.id for s in alice.list(state="ready")]
    assert session.id in [s.id for s in admin.list(username="alice", state="READY")]
    assert session.id not in [s.id for s in alice.list(state="destroyed")]

    destroyed = alice.destroy(session.id)
    assert destroyed.state == SessionState.SESSION_STATE_DESTROYED
    assert alice.get(session.id).state == SessionState.SESSION_STATE_DESTROYED
    assert session.id in [s.id for s in alice.list(state=SessionState.SESSION_STATE_DESTROYED)]
    assert alice.destroy(session.id).state == SessionState.SESSION_STATE_DESTROYED, "idempotent"
    # The history ends with the destruction.
    assert stages(drain(alice.watch(session.id)))[-2:] == ["DESTROYING", "DESTROYED"]

    with pytest.raises(NotFound) as not_found:
        alice.get("00000000-0000-4000-8000-000000000000")
    assert not_found.value.code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("username", "field"),
    [("a/b", "username"), ("x" * 21, "username"), ("tab\there", "username")],
)
def test_bad_username_is_invalid_argument(admin: Client, username: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        drain(admin.create_session(username))
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.message.startswith(field), err.value.message
    assert isinstance(err.value, DaasError)
    # The field, from the status's google.rpc.BadRequest details.
    ((violation_field, description),) = err.value.field_violations
    assert violation_field == field and description, err.value.field_violations
    assert err.value.message == f"{field} {description}"
    assert err.value.retry_after is None


def test_list_follows_every_page(server: Server) -> None:
    with server.client("erin") as erin:
        # One after the other (each stored before the next starts), then all
        # streamed to READY together.
        streams = []
        for _ in range(3):
            stream = erin.create_session()
            next(stream)
            streams.append(stream)
        for stream in streams:
            drain(stream)
        created = [s.session.id for s in streams if s.session is not None]
        assert len(created) == 3

        newest_first = created[::-1]
        assert [s.id for s in erin.list(page_size=2)] == newest_first, "3 sessions, pages of 2"
        assert [s.id for s in erin.list()] == newest_first
        pages = list(erin.list_pages(page_size=2))
        assert [[s.id for s in page] for page in pages] == [newest_first[:2], newest_first[2:]]
        assert [len(page) for page in erin.list_pages(page_size=3)] == [3], "no empty last page"
        assert [s.id for s in erin.list(state="ready", page_size=1)] == newest_first

        with pytest.raises(InvalidArgument) as err:
            erin.list(page_size=1001)
        assert [v.field for v in err.value.field_violations] == ["page_size"]


def test_a_create_repeated_with_its_request_id_makes_no_new_desktop(server: Server) -> None:
    with server.client("dave") as dave:
        first = dave.create_session(request_id="dave-create-1")
        first_events = drain(first)
        assert first.session is not None and stages(first_events) == STAGES
        again = dave.create_session(request_id="dave-create-1")
        again_events = drain(again)
        assert again.session is not None and again.session.id == first.session.id
        assert stages(again_events) == STAGES, "the same session's events, from the start"
        assert again_events[0].sequence == 1
        assert [s.id for s in dave.list()] == [first.session.id], "one session, not two"

        with pytest.raises(InvalidArgument) as reused:
            drain(dave.create_session(template="windows-11", request_id="dave-create-1"))
        assert [v.field for v in reused.value.field_violations] == ["request_id"]
        with pytest.raises(InvalidArgument) as bad:
            drain(dave.create_session(request_id="no spaces"))
        assert [v.field for v in bad.value.field_violations] == ["request_id"]
        assert len(dave.list()) == 1


def test_limits_say_when_to_retry(limited_server: Server) -> None:
    """One create a minute per user, one live desktop in all."""
    with limited_server.client("frank") as frank, limited_server.client("grace") as grace:
        first = frank.create_session()
        drain(first)
        assert first.session is not None
        assert first.session.state == SessionState.SESSION_STATE_READY

        with pytest.raises(ResourceExhausted) as rate:
            drain(frank.create_session())
        assert rate.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        retry_after = rate.value.retry_after
        assert retry_after is not None and 0 < retry_after <= 60, rate.value
        # From the google.rpc.RetryInfo details: the retry-after metadata
        # carries whole seconds only.
        assert retry_after != int(retry_after), rate.value
        assert f"try again in {max(1, int(retry_after))} s" in rate.value.message

        # Too many live desktops: waiting does not help, so no hint.
        with pytest.raises(ResourceExhausted) as full:
            drain(grace.create_session())
        assert full.value.retry_after is None, full.value
        assert full.value.field_violations == []


def test_the_password_is_checked_and_never_echoed(alice: Client) -> None:
    secret = "short7!"
    with pytest.raises(InvalidArgument) as err:
        drain(alice.create_session(session_user="bob", session_password=secret))
    assert "session_password" in err.value.message
    for text in (str(err.value), repr(err.value)):
        assert secret not in text


def test_another_users_session_is_permission_denied(
    ready: tuple[list[SessionEvent], Session], bob: Client
) -> None:
    _, session = ready
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: bob.get(session.id),
        "watch": lambda: drain(bob.watch(session.id)),
        "destroy": lambda: bob.destroy(session.id),
        "list": lambda: bob.list(username="alice"),
        "create": lambda: drain(bob.create_session("alice")),
    }
    for name, call in calls.items():
        with pytest.raises(PermissionDenied) as err:
            call()
        assert err.value.code is grpc.StatusCode.PERMISSION_DENIED, name
    assert session.id not in [s.id for s in bob.list()], "bob sees only his own sessions"


def test_the_audit_trail_shows_the_create_to_administrators_only(
    ready: tuple[list[SessionEvent], Session], admin: Client, alice: Client
) -> None:
    _, session = ready
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    entries = admin.list_audit(username="alice", session_id=session.id, since=hour_ago)
    (create,) = [e for e in entries if e.action == "create"]
    assert (create.actor, create.owner, create.result) == ("alice", "alice", "OK"), create
    assert create.peer.startswith("127.0.0.1:") and len(create.fingerprint) == 64, create
    pages = list(admin.list_audit_pages(session_id=session.id, page_size=1))
    assert all(len(page) == 1 for page in pages) and [create] in pages
    assert admin.list_audit(since=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    with pytest.raises(PermissionDenied):
        alice.list_audit()


def test_nodes_are_for_administrators_and_an_unknown_one_is_not_found(
    admin: Client, alice: Client
) -> None:
    # The test module reports no nodes (it places its VMs itself).
    assert admin.list_nodes() == []
    for call in (admin.drain_node, admin.resume_node):
        with pytest.raises(NotFound) as err:
            call("pve9")
        assert err.value.code is grpc.StatusCode.NOT_FOUND
        assert "no node pve9" in err.value.message, err.value
    with pytest.raises(InvalidArgument):
        admin.drain_node("not a node")
    for refused in (alice.list_nodes, lambda: alice.drain_node("pve9")):
        with pytest.raises(PermissionDenied):
            refused()


def test_templates_and_sizes(alice: Client) -> None:
    # The test server has no catalog: its default template, in [vm]'s size.
    answer = alice.list_templates()
    assert answer.open and answer.default_template == "debian-12-xfce", answer
    (template,) = answer.templates
    assert template.name == "debian-12-xfce" and template.default_size == "standard"
    assert [(s.name, s.cores) for s in template.sizes] == [("standard", 2)]
    with pytest.raises(InvalidArgument) as err:
        drain(alice.create_session(size="huge"))
    assert [v.field for v in err.value.field_violations] == ["size"], err.value
    assert "its sizes: standard (2 cores" in err.value.message, err.value


def test_schedules_are_added_listed_and_removed(
    alice: Client, bob: Client, admin: Client
) -> None:
    added = alice.add_schedule("08:00", "mon-fri", timezone="Europe/Paris")
    assert (added.username, added.at, added.days, added.timezone) == (
        "alice",
        "08:00",
        "mon-fri",
        "Europe/Paris",
    ), added
    # The test server has no catalog: the defaults, resolved.
    assert (added.template, added.size) == ("debian-12-xfce", "standard"), added
    # The next desktop is due READY at 08:00 on a weekday in Paris, within days.
    due = added.next_at.ToDatetime(tzinfo=timezone.utc)
    in_paris = due.astimezone(ZoneInfo("Europe/Paris"))
    assert (in_paris.hour, in_paris.minute, in_paris.isoweekday() <= 5) == (8, 0, True), due
    now = datetime.now(timezone.utc)
    assert now - timedelta(hours=1) < due < now + timedelta(days=4), due

    assert [s.id for s in alice.list_schedules()] == [added.id]
    assert [s.id for s in admin.list_schedules(username="alice")] == [added.id]
    assert added.id in [s.id for s in admin.list_schedules()], "everyone's"
    assert added.id not in [s.id for s in bob.list_schedules()]
    with pytest.raises(PermissionDenied):
        bob.remove_schedule(added.id)

    removed = alice.remove_schedule(added.id)
    assert (removed.id, removed.username) == (added.id, "alice")
    assert alice.list_schedules() == []
    with pytest.raises(NotFound):
        alice.remove_schedule(added.id)

    with pytest.raises(InvalidArgument) as err:
        alice.add_schedule("25:00", "mon-fri", timezone="Europe/Paris")
    assert [v.field for v in err.value.field_violations] == ["at"], err.value
    assert err.value.message.startswith("at "), err.value
    assert alice.list_schedules() == []


def amounts(a: Amounts) -> tuple[int, int, int]:
    """Desktops, cores and memory (MiB) of a quota's amounts."""
    return (a.desktops, a.cores, a.memory_mb)


def test_quotas_count_an_organisations_desktops_and_each_members_share(
    org_server: Server,
) -> None:
    with (
        org_server.client("dave", groups=["physics"]) as dave,
        org_server.client("erin", groups=["physics"]) as erin,
        org_server.client("grace", groups=["physics-admins"]) as grace,
        org_server.client("alice") as alice,
        org_server.client("root", admin=True) as admin,
    ):
        quota = dave.get_quota()
        assert (quota.org, quota.org_title, quota.username) == ("physics", "Physics", "dave")
        assert amounts(quota.org_max) == (2, 4, 8192), quota
        assert amounts(quota.user_max) == (1, 0, 0), "0: no limit"
        assert amounts(quota.org_used) == (0, 0, 0) and list(quota.administers) == []

        # dave's desktop counts against physics at its size; his share is full.
        created = dave.create_session()
        drain(created)
        assert created.session is not None and created.session.org == "physics"
        assert dave.get(created.session.id).org == "physics"
        assert amounts(dave.get_quota().user_used) == (1, 2, 4096)
        with pytest.raises(ResourceExhausted) as full:
            drain(dave.create_session())
        assert "quota" in full.value.message, full.value
        erins = erin.create_session(org="physics")
        drain(erins)
        assert erins.session is not None and erins.session.org == "physics"

        # The organisation's administrators and a server administrator: the
        # organisation alone, its sessions, its part of the audit trail.
        org = grace.get_quota(org="physics")
        assert org.username == "" and not org.HasField("user_max"), org
        assert amounts(org.org_used) == (2, 4, 8192) and list(org.administers) == ["physics"]
        for overseer in (grace, admin):
            assert sorted(s.username for s in overseer.list(org="physics")) == ["dave", "erin"]
            entries = overseer.list_audit(org="physics")
            assert any(
                e.action == "create" and e.session_id == created.session.id and e.org == "physics"
                for e in entries
            ), entries
        with pytest.raises(NotFound):
            admin.get_quota(org="chemistry")

        # alice is in no organisation: the server's per-user limit only.
        alone = alice.get_quota()
        assert (alone.org, alone.username, alone.user_max.desktops) == ("", "alice", 100)
        assert not alone.HasField("org_max"), alone
        with pytest.raises(PermissionDenied):
            alice.get_quota(org="physics")
        with pytest.raises(PermissionDenied):
            drain(alice.create_session(org="physics"))


def test_a_kept_disk_is_listed_restored_and_deleted(org_server: Server) -> None:
    # The org server's catalog has the persistent template ``notes``; carol
    # is in no organisation.
    with (
        org_server.client("carol") as carol,
        org_server.client("bob") as bob,
        org_server.client("root", admin=True) as admin,
    ):

        def ready_notes() -> Session:
            stream = carol.create_session(template="notes")
            events = drain(stream)
            assert stream.session is not None, [describe(e) for e in events]
            assert stream.session.state == SessionState.SESSION_STATE_READY, stream.session
            return stream.session

        assert carol.list_snapshots() == []
        first = ready_notes()
        assert first.restored_from == "", "a fresh clone"
        carol.destroy(first.id)
        [kept] = carol.list_snapshots()
        assert (kept.id, kept.username, kept.template, kept.size, kept.vm_name) == (
            first.id,
            "carol",
            "notes",
            "standard",
            first.vm_name,
        ), kept
        # The test module's disks are 1 GB; no desktop is being restored.
        assert (kept.size_gb, kept.restoring_session_id) == (1, ""), kept
        assert kept.HasField("created_at"), kept
        assert [s.id for s in admin.list_snapshots(username="carol")] == [first.id]
        assert first.id in [s.id for s in admin.list_snapshots()], "everyone's"
        assert bob.list_snapshots() == []
        with pytest.raises(PermissionDenied):
            bob.list_snapshots(username="carol")
        with pytest.raises(PermissionDenied):
            bob.delete_snapshot(first.id)

        # The next notes desktop is restored from it, which is forgotten
        # just after that desktop is READY.
        second = ready_notes()
        assert second.restored_from == first.id, second
        assert carol.get(second.id).restored_from == first.id
        deadline = time.monotonic() + 10
        while carol.list_snapshots() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert carol.list_snapshots() == [], "forgotten once READY"

        # Kept again when destroyed; deleted, it is gone.
        carol.destroy(second.id)
        assert [s.id for s in carol.list_snapshots()] == [second.id]
        deleted = carol.delete_snapshot(second.id)
        assert (deleted.id, deleted.username, deleted.template) == (second.id, "carol", "notes")
        assert carol.list_snapshots() == []
        with pytest.raises(NotFound) as err:
            carol.delete_snapshot(second.id)
        assert second.id in err.value.message, err.value


def test_a_connection_without_a_client_certificate_is_refused(server: Server) -> None:
    creds = server.credentials("alice")
    tls = grpc.ssl_channel_credentials(root_certificates=creds.ca.read_bytes())
    channel = grpc.secure_channel(
        server.endpoint.removeprefix("https://"),
        tls,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    with Client(channel, timeout=20) as client:
        with pytest.raises(Unavailable) as err:
            client.list()
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    # The TLS handshake was refused, not the TCP connection.
    assert "connection refused" not in err.value.message.lower(), err.value.message

    # With the certificate, the same server answers.
    with server.client("alice") as client:
        client.list()


def test_repr_shows_no_key_material(server: Server) -> None:
    creds = server.credentials("alice")
    key = creds.key.read_text()
    with server.client("alice") as client:
        assert repr(client) == f"Client({server.endpoint.removeprefix('https://')!r})"
        stream = client.watch("00000000-0000-4000-8000-000000000000")
        with pytest.raises(NotFound):
            next(stream)
        for text in (repr(client), repr(stream), str(vars(client))):
            assert "PRIVATE KEY" not in text and key not in text


class _Metadatum(NamedTuple):
    key: str
    value: str | bytes


class _FakeError(grpc.RpcError):
    """A failed call as grpcio reports it: metadata entries are (key, value)
    named tuples, the value a str for text keys and bytes for -bin keys."""

    def __init__(
        self,
        code: grpc.StatusCode,
        metadata: tuple[_Metadatum, ...],
        message: str = "too many creates; retry in 9 s",
    ) -> None:
        self._code, self._metadata, self._message = code, metadata, message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._metadata


def _status_details(code: grpc.StatusCode, message: str, *details: Any) -> _Metadatum:
    """The grpc-status-details-bin trailer of a status with these details."""
    status = Status(code=code.value[0], message=message)
    for detail in details:
        packed = AnyMessage()
        packed.Pack(detail)
        status.details.append(packed)
    return _Metadatum("grpc-status-details-bin", status.SerializeToString())


def test_errors_map_codes_and_the_retry_hint() -> None:
    exhausted = from_rpc_error(
        _FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, (_Metadatum("retry-after", "9"),))
    )
    assert isinstance(exhausted, ResourceExhausted) and exhausted.retry_after == 9.0
    assert str(exhausted) == "RESOURCE_EXHAUSTED: too many creates; retry in 9 s"
    no_hint = from_rpc_error(_FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, ()))
    assert isinstance(no_hint, ResourceExhausted) and no_hint.retry_after is None
    other = from_rpc_error(_FakeError(grpc.StatusCode.INTERNAL, ()))
    assert type(other) is DaasError and other.code is grpc.StatusCode.INTERNAL
    assert other.retry_after is None and other.field_violations == []


def test_errors_read_the_status_details() -> None:
    code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, "too many creates; retry in 9 s"
    retry = RetryInfo(retry_delay=Duration(seconds=9, nanos=400_000_000))
    trailer = _status_details(code, message, retry)
    exhausted = from_rpc_error(_FakeError(code, (trailer, _Metadatum("retry-after", "9"))))
    assert isinstance(exhausted, ResourceExhausted)
    assert exhausted.retry_after == pytest.approx(9.4), "RetryInfo before the metadata"
    assert "retry_after=9.4" in repr(exhausted)

    unavailable_code, shutting_down = grpc.StatusCode.UNAVAILABLE, "shutting down"
    five_s = RetryInfo(retry_delay=Duration(seconds=5))
    trailer = _status_details(unavailable_code, shutting_down, five_s)
    unavailable = from_rpc_error(_FakeError(unavailable_code, (trailer,), shutting_down))
    assert isinstance(unavailable, Unavailable) and unavailable.retry_after == 5.0

    bad = BadRequest()
    bad.field_violations.add(field="username", description="must be at most 20 characters")
    invalid = from_rpc_error(
        _FakeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            (_status_details(grpc.StatusCode.INVALID_ARGUMENT, "username must be ...", bad),),
            "username must be ...",
        )
    )
    assert isinstance(invalid, InvalidArgument)
    assert invalid.field_violations == [("username", "must be at most 20 characters")]
    assert invalid.field_violations[0] == FieldViolation(
        field="username", description="must be at most 20 characters"
    )

    # Details that contradict the status itself are ignored (the metadata
    # still counts); so is a trailer that does not parse.
    mismatched = _status_details(grpc.StatusCode.NOT_FOUND, message, retry)
    ignored = from_rpc_error(_FakeError(code, (mismatched, _Metadatum("retry-after", "9"))))
    assert ignored.retry_after == 9.0
    garbage = _Metadatum("grpc-status-details-bin", b"\xff\xff")
    assert from_rpc_error(_FakeError(code, (garbage,))).retry_after is None


def test_state_names() -> None:
    assert parse_state("ready") == SessionState.SESSION_STATE_READY
    assert parse_state("SESSION_STATE_FAILED") == SessionState.SESSION_STATE_FAILED
    assert parse_state(None) == SessionState.SESSION_STATE_UNSPECIFIED
    with pytest.raises(ValueError, match="unknown session state"):
        parse_state("running")
    assert state_name(SessionState.SESSION_STATE_CONFIGURING) == "CONFIGURING"


def test_the_readme_example_runs(server: Server, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has a python example"
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    creds = server.credentials("carol")
    env = dict(os.environ)
    env.update(
        DAAS_ENDPOINT=server.endpoint,
        DAAS_CA=str(creds.ca),
        DAAS_CERT=str(creds.cert),
        DAAS_KEY=str(creds.key),
        DAAS_SESSION_PASSWORD="correct-horse-9",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=STREAM_LIMIT
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")][:5] == STAGES
    assert re.search(r"^RDP: \S+:\d+; ready: 1$", run.stdout, re.MULTILINE), run.stdout
    assert "correct-horse-9" not in run.stdout + run.stderr
    with server.client("carol") as carol:
        (session,) = carol.list()
        assert session.state == SessionState.SESSION_STATE_DESTROYED
        assert session.session_user == "bob"


def closed_endpoint() -> str:
    """An endpoint nothing listens on: a port bound, then closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
    return f"https://{host}:{port}"


def test_calls_move_to_the_next_replica_when_one_is_down(replicas: Replicas) -> None:
    closed, a, b = closed_endpoint(), replicas.a.endpoint, replicas.b.endpoint
    with replicas.client("alice", [closed, a]) as alice:
        stream = alice.create_session()
        events = drain(stream)
        assert stream.session is not None, [describe(e) for e in events]
    assert re.fullmatch(r"[0-9a-f]{32}", stream.request_id), "a request id of its own"
    # One store: the other replica sees it (endpoints separated by commas).
    with replicas.client("alice", f"{closed}, {b}") as alice:
        assert [s.id for s in alice.list()] == [stream.session.id]

    replicas.a.kill()
    with replicas.client("alice", [a, b]) as alice:
        assert alice.get(stream.session.id).state == SessionState.SESSION_STATE_READY
        assert alice.destroy(stream.session.id).state == SessionState.SESSION_STATE_DESTROYED
    # A gRPC target listing several addresses (as a name resolving to
    # several would): gRPC tries each.
    port = closed.rsplit(":", 1)[1]
    several = f"ipv4:127.0.0.1:{port},{b.removeprefix('https://')}"
    with replicas.client("alice", several) as alice:
        assert len(alice.list()) == 1

    with replicas.client("alice", [closed, a]) as alice:
        with pytest.raises(Unavailable) as err:
            alice.list()
    message = err.value.message
    assert message.startswith(f"no server answered: {closed.removeprefix('https://')} ("), message
    assert f"); {a.removeprefix('https://')} (" in message, message


def test_a_create_whose_replica_dies_midway_goes_on_with_the_same_session(
    booting_replicas: Replicas,
) -> None:
    """The session waits in BOOTING (for an SSH port nobody serves): time
    enough to kill the replica that is building it."""
    replicas = booting_replicas
    a, b = replicas.a.endpoint, replicas.b.endpoint
    with replicas.client("alice", [a, b]) as alice, replicas.client("alice", [b]) as on_b:
        create = alice.create_session()
        created = [next(create)]
        while created[-1].state != SessionState.SESSION_STATE_BOOTING:
            created.append(next(create))
        watch = alice.watch(created[0].session_id)
        watched = [next(watch)]
        while watched[-1].state != SessionState.SESSION_STATE_BOOTING:
            watched.append(next(watch))

        replicas.a.kill()
        # The create is sent again to B (the same request id), the watch
        # asks B for what came after its last event: both go on. Nobody
        # builds it any more: once A's lease runs out, B takes the session
        # over and fails it (it cannot go on with A's work).
        created += drain(create)
        watched += drain(watch)
        # One desktop: the create sent twice made no second session.
        assert [s.id for s in on_b.list()] == [created[0].session_id]

    assert sequences(created) == list(range(1, len(created) + 1)), "each event once"
    assert {e.session_id for e in created} == {created[0].session_id}
    assert created[-1].state == SessionState.SESSION_STATE_FAILED, [describe(e) for e in created]
    assert create.session is not None and create.session.id == created[0].session_id
    assert create.session.state == SessionState.SESSION_STATE_FAILED
    assert "stopped answering" in create.session.failure.reason, create.session.failure.reason
    assert [e.SerializeToString() for e in watched] == [e.SerializeToString() for e in created]
