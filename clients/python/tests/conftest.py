"""One real ``daas-server`` for the whole test session.

It runs the binary built by ``cargo build -p daas-server`` with a fresh PKI
(``daas-server pki``), the test Terraform module (``terraform/test``) and the
test playbook run by the project's Ansible (``.venv``), in a temp dir, as
``server/src/testkit.rs`` does for the Rust tests. Overrides:
``DAAS_SERVER_BIN`` (the binary), ``DAAS_TEST_ANSIBLE_PLAYBOOK``
(``ansible-playbook``). The ``replicas`` fixtures run two server processes
on one folder (one SQLite file), which a test may kill.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from daas_client import Client

REPO = Path(__file__).resolve().parents[3]
LISTENING = "daas-server listening on "

#: Bound on any one stream in these tests, so a hang fails instead of waiting.
STREAM_LIMIT = 240.0

#: How long a replica's hold on a session lasts unless renewed: another
#: takes a dead one's session over once it runs out.
LEASE = "2s"

#: ``[limits]`` of the shared test server: high enough never to be reached.
LIMITS = {
    "max_parallel_provisions": 4,
    "max_sessions": 100,
    "max_sessions_per_user": 100,
    "creates_per_minute": 1000,
    "create_burst": 1000,
    "max_streams": 1000,
}

#: An organisation for the members of group ``physics``, administered by
#: those of ``physics-admins``: two desktops of the default size (2 cores,
#: 4 GiB) in all, one a member (the ``org_server`` fixture's).
PHYSICS = """
[orgs.physics]
title = "Physics"
groups = ["physics"]
admin_groups = ["physics-admins"]

[orgs.physics.quota]
desktops = 2
cores = 4
memory_gb = 8

[orgs.physics.user_quota]
desktops = 1
"""

#: A catalog with a persistent template, ``notes``: its desktops keep their
#: disk when destroyed (the test module's hooks keep it), for the next
#: ``notes`` desktop of their user (the ``org_server`` fixture's too).
NOTES = """
[templates.debian-12-xfce]
[templates.notes]
persistent = true
"""


def _server_binary() -> Path:
    if env := os.environ.get("DAAS_SERVER_BIN"):
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "daas-server"


def _ansible_playbook() -> Path:
    if env := os.environ.get("DAAS_TEST_ANSIBLE_PLAYBOOK"):
        return Path(env)
    return REPO / ".venv" / "bin" / "ansible-playbook"


def _toml(value: object) -> str:
    # TOML basic strings escape like JSON strings.
    return json.dumps(str(value) if isinstance(value, Path) else value)


def _postgres_schema() -> str:
    """The URL of a new schema of its own in the test PostgreSQL."""
    url = os.environ.get("DAAS_TEST_POSTGRES")
    if not url:
        dir = Path(tempfile.gettempdir()) / "daas-test-postgres"
        run = subprocess.run(
            [str(REPO / "scripts" / "postgres.sh"), "ensure", str(dir)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            pytest.fail(f"scripts/postgres.sh ensure {dir} failed: {run.stderr}")
        url = run.stdout.strip()
    psql = Path(os.environ.get("DAAS_POSTGRES_BIN", "/usr/lib/postgresql/15/bin")) / "psql"
    schema = f"t{uuid.uuid4().hex}"
    subprocess.run(
        [str(psql), url, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE SCHEMA {schema}"],
        check=True,
        capture_output=True,
    )
    return f"{url}&options=-csearch_path%3D{schema}"


def _write_config(
    dir: Path, pki: Path, limits: dict[str, int], boot_wait: str, extra: str = ""
) -> Path:
    markers = dir / "markers"
    markers.mkdir()
    limits_toml = "".join(f"{key} = {value}\n" for key, value in limits.items())
    text = f"""\
listen = "127.0.0.1:0"
data_dir = {_toml(dir / "data")}

[limits]
{limits_toml}

[tls]
ca = {_toml(pki / "ca.pem")}
cert = {_toml(pki / "server.pem")}
key = {_toml(pki / "server-key.pem")}

[terraform]
module_dir = {_toml(REPO / "terraform" / "test")}
init_timeout = "2m"
apply_timeout = "2m"
destroy_timeout = "2m"

[terraform.variables]
# A create takes a moment, so a test can leave a stream half-way.
create_delay_seconds = 1
# "ssh": nothing answers, so a session stays in BOOTING.
boot_wait = {_toml(boot_wait)}
marker_dir = {_toml(markers)}

[boot]
timeout = "1m"

[ansible]
binary = {_toml(_ansible_playbook())}
playbook = {_toml(REPO / "ansible" / "playbooks" / "test-desktop.yml")}
teardown_playbook = {_toml(REPO / "ansible" / "playbooks" / "test-teardown.yml")}
connection = "local"
timeout = "3m"

[ansible.extra_vars]
marker_dir = {_toml(markers)}
{extra}"""
    path = dir / "daas.toml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Credentials:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Server:
    """A running server: its endpoint and its PKI."""

    endpoint: str
    dir: Path
    binary: Path

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    def credentials(
        self, user: str, admin: bool = False, groups: Sequence[str] = ()
    ) -> Credentials:
        """A client certificate for ``user`` (in ``groups``) from the
        server's CA (issued on first use)."""
        users = self.pki / "users"
        cert, key = users / f"{user}.pem", users / f"{user}-key.pem"
        if not cert.exists():
            args = [str(self.binary), "pki", "issue", "--dir", str(self.pki), "--user", user]
            args += ["--admin"] if admin else []
            for group in groups:
                args += ["--group", group]
            subprocess.run(args, check=True, capture_output=True)
        return Credentials(ca=self.pki / "ca.pem", cert=cert, key=key)

    def client(self, user: str, admin: bool = False, groups: Sequence[str] = ()) -> Client:
        creds = self.credentials(user, admin, groups)
        # The server certificate names localhost and 127.0.0.1.
        return Client.from_files(
            self.endpoint, creds.ca, creds.cert, creds.key, server_name="localhost"
        )


def _prepare(
    tmp_path_factory: pytest.TempPathFactory,
    limits: dict[str, int],
    boot_wait: str = "none",
    extra: str = "",
) -> tuple[Path, Path, Path]:
    """The binary, a server folder with a fresh PKI, and its config."""
    binary = _server_binary()
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `cargo build -p daas-server` first")
    if not _ansible_playbook().exists():
        pytest.fail(f"{_ansible_playbook()} is missing: run scripts/setup.sh first")
    dir = tmp_path_factory.mktemp("daas-server")
    pki = dir / "pki"
    subprocess.run(
        [str(binary), "pki", "init", "--dir", str(pki)], check=True, capture_output=True
    )
    return binary, dir, _write_config(dir, pki, limits, boot_wait, extra)


@contextmanager
def _serving(binary: Path, config: Path, log_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A server process of ``config`` and its endpoint, stopped (SIGTERM)
    on leaving unless it is gone already."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        # Keep reading stdout so the server never blocks on a full pipe.
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            first = None
        if first is None or not first.startswith(LISTENING):
            proc.kill()
            pytest.fail(
                f"daas-server did not start (first line {first!r}); "
                f"its log:\n{log_path.read_text()[-4000:]}"
            )
        yield f"https://{first.removeprefix(LISTENING)}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def _running_server(
    tmp_path_factory: pytest.TempPathFactory, limits: dict[str, int], extra: str = ""
) -> Iterator[Server]:
    """A server with these ``[limits]`` and ``extra`` config, stopped
    (SIGTERM) on leaving."""
    binary, dir, config = _prepare(tmp_path_factory, limits, extra=extra)
    with _serving(binary, config, dir / "server.log") as (endpoint, _):
        yield Server(endpoint=endpoint, dir=dir, binary=binary)


@dataclass(frozen=True)
class Replica:
    """One server process of a store others serve too."""

    endpoint: str
    proc: subprocess.Popen[str]

    def kill(self) -> None:
        """SIGKILL: the process dies mid-call, its connections with it."""
        self.proc.kill()
        self.proc.wait()


@dataclass(frozen=True)
class Replicas:
    """Two server processes on one PostgreSQL schema: ``server``
    (the first one's endpoint) issues credentials; ``a`` and ``b`` are the
    processes."""

    server: Server
    a: Replica
    b: Replica

    def client(self, user: str, endpoints: str | list[str]) -> Client:
        creds = self.server.credentials(user)
        return Client.from_files(
            endpoints, creds.ca, creds.cert, creds.key, server_name="localhost"
        )


@contextmanager
def _running_replicas(
    tmp_path_factory: pytest.TempPathFactory, boot_wait: str
) -> Iterator[Replicas]:
    store = f"\n[store]\nurl = {_toml(_postgres_schema())}\nlease = {_toml(LEASE)}\n"
    binary, dir, config = _prepare(tmp_path_factory, LIMITS, boot_wait, store)
    # B: the same, with a data folder of its own.
    data = _toml(dir / "data")
    text = config.read_text()
    assert data in text, text
    config_b = dir / "daas-b.toml"
    config_b.write_text(text.replace(data, _toml(dir / "data-b")))
    with (
        _serving(binary, config, dir / "a.log") as (a, a_proc),
        _serving(binary, config_b, dir / "b.log") as (b, b_proc),
    ):
        replicas = Replicas(
            Server(endpoint=a, dir=dir, binary=binary), Replica(a, a_proc), Replica(b, b_proc)
        )
        # Each answers once done starting (which fails sessions another
        # process left in progress: none is created before).
        for endpoint in (a, b):
            with replicas.client("root", [endpoint]) as client:
                client.list()
        yield replicas


@pytest.fixture
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with _running_replicas(tmp_path_factory, "none") as running:
        yield running


@pytest.fixture
def booting_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Replicas whose sessions stay in BOOTING (nothing answers SSH)."""
    with _running_replicas(tmp_path_factory, "ssh") as running:
        yield running


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _running_server(tmp_path_factory, LIMITS) as running:
        yield running


@pytest.fixture
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own with low limits: one live desktop in all, one
    create a minute per user (no burst)."""
    limits = LIMITS | {
        "max_sessions": 1,
        "max_sessions_per_user": 1,
        "creates_per_minute": 1,
        "create_burst": 1,
    }
    with _running_server(tmp_path_factory, limits) as running:
        yield running


@pytest.fixture(scope="module")
def org_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own with organisation ``physics`` (``PHYSICS``) and
    a catalog with the persistent template ``notes`` (``NOTES``)."""
    with _running_server(tmp_path_factory, LIMITS, PHYSICS + NOTES) as running:
        yield running


@pytest.fixture(scope="session")
def alice(server: Server) -> Iterator[Client]:
    with server.client("alice") as client:
        yield client


@pytest.fixture(scope="session")
def bob(server: Server) -> Iterator[Client]:
    with server.client("bob") as client:
        yield client


@pytest.fixture(scope="session")
def admin(server: Server) -> Iterator[Client]:
    with server.client("root", admin=True) as client:
        yield client
