"""The proxmox module's `inventory` hook, run for real (bash, curl, jq)
against a MOCK of the Proxmox VE API (mock_proxmox_api.py: plain HTTP on
127.0.0.1, VMs in memory; the real API cannot run here).

Each run is made as the server makes it: an argument vector, a scrubbed
environment (PATH, HOME, LANG, DAAS_VAR_*, the token, DAAS_VM_NAME_PREFIX,
DAAS_DEPLOYMENT_ID),
another working folder. Every run also checks that the token's secret
appears in no process's command line while it runs (a thread scans
/proc/*/cmdline), in no curl argument vector nor curl's environment (curl is
wrapped on PATH), and not in the output.

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from mock_proxmox_api import MockProxmox

MODULE = Path(__file__).resolve().parent.parent
INVENTORY = MODULE / "inventory"
TOKEN_ID = "daas@pve!daas"

SID_A = "0b6c2f7e-9d6a-4f7e-8a51-3c2d1e0f9a8b"
SID_B = "5d1e3f20-8c4b-4a6d-9e7f-1a2b3c4d5e6f"
SID_F = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
SID_H = "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"
DEPLOYMENT = "0123456789ab"  # the server's, in DAAS_DEPLOYMENT_ID
OTHER = "ba9876543210"  # another deployment on the same Proxmox

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the hook needs bash, curl and jq (scripts/setup.sh installs jq)",
)


def vms():
    return [
        # Ours: running (made for this deployment), on another node (made
        # before deployment tags), stopped, half made (no session tag).
        dict(vmid=10001, node="pve1", name="desktop-aaa111", status="running",
             tags=f"daas;deployment-{DEPLOYMENT};session-{SID_A};user-alice"),
        dict(vmid=10002, node="pve2", name="desktop-bbb222", status="running",
             tags=f"daas;session-{SID_B};user-bob"),
        dict(vmid=10003, node="pve1", name="desktop-ccc333", status="stopped", tags="daas"),
        # Ours, but its delete task fails.
        dict(vmid=10006, node="pve2", name="desktop-fff666", status="stopped",
             tags=f"daas;session-{SID_F};user-dan", fail={"qmdestroy": "unable to remove disk: mock failure"}),
        # Another deployment's: listed with its id, never destroyed here.
        dict(vmid=10008, node="pve1", name="desktop-hhh888", status="running",
             tags=f"daas;deployment-{OTHER};session-{SID_H};user-erin"),
        # Not ours: no daas tag, a tag that only starts with daas, another
        # name, a container, a template.
        dict(vmid=10004, node="pve1", name="desktop-ddd444", status="running", tags="user-carol"),
        dict(vmid=10007, node="pve1", name="desktop-ggg777", status="running", tags="daasx;session-x"),
        dict(vmid=100, node="pve1", name="mail", status="running", tags="prod"),
        dict(vmid=101, node="pve1", name="desktop-lxc001", status="running", tags="daas", type="lxc"),
        dict(vmid=9000, node="pve1", name="desktop-tmpl01", status="stopped", tags="daas", template=1),
    ]


@pytest.fixture
def secret():
    return "mock-secret-" + uuid.uuid4().hex


@pytest.fixture
def api(secret):
    with MockProxmox(TOKEN_ID, secret, vms()) as mock:
        yield mock


@pytest.fixture
def curl_wrapper(tmp_path):
    """A `curl` first on PATH that records its argument vector and whether
    the token is in its environment, then runs the real curl."""
    real = shutil.which("curl")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "curl-argv.log"
    wrapper = bin_dir / "curl"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do printf "%s\\n" "$a"; done >>"$CURL_ARGV_LOG"\n'
        'if [ -n "${PM_API_TOKEN_SECRET:-}${PM_API_TOKEN_ID:-}" ]; then echo TOKEN-IN-ENVIRONMENT >>"$CURL_ARGV_LOG"; fi\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    return bin_dir, log


class CmdlineScanner:
    """Scans every process's command line for a string while it runs."""

    def __init__(self, needle):
        self.needle = needle.encode()
        self.hits = {}
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if self.needle in cmdline:
                    self.hits[entry.name] = cmdline.replace(b"\0", b" ").decode(errors="replace")
            self.scans += 1
            self._stop.wait(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def run(api, secret, curl_wrapper, tmp_path):
    bin_dir, argv_log = curl_wrapper
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def run_inventory(*args, **overrides):
        env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "CURL_ARGV_LOG": str(argv_log),
            "DAAS_VM_NAME_PREFIX": "desktop-",
            "DAAS_DEPLOYMENT_ID": DEPLOYMENT,
            "DAAS_VAR_proxmox_api_url": api.url,
            "DAAS_VAR_target_node": "pve1",
            "DAAS_VAR_vmid_base": "10000",
            "DAAS_VAR_serial_console": "true",
            "PM_API_TOKEN_ID": TOKEN_ID,
            "PM_API_TOKEN_SECRET": secret,
        }
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        watched = env.get("PM_API_TOKEN_SECRET") or secret
        with CmdlineScanner(watched) as scanner:
            result = subprocess.run(
                [str(INVENTORY), *args],
                env=env,
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert scanner.scans > 0
        assert not scanner.hits, "the secret is on a command line: " + "; ".join(
            f"pid {pid}: {cmdline[:300]}" for pid, cmdline in list(scanner.hits.items())[:3]
        )
        assert watched not in result.stdout and watched not in result.stderr, "the secret is in the output"
        if argv_log.exists():
            recorded = argv_log.read_text()
            assert watched not in recorded, "the secret is in curl's argument vector"
            assert "Authorization" not in recorded, "a header on curl's command line"
            assert "TOKEN-IN-ENVIRONMENT" not in recorded, "curl inherited the token"
        return result

    return run_inventory


def listed(result):
    lines = result.stdout.splitlines()
    objects = [json.loads(line) for line in lines]
    for line, obj in zip(lines, objects):
        assert set(obj) == {"vm_name", "session_id", "deployment"}, line
        assert line == json.dumps(obj, separators=(",", ":")), f"not one compact JSON object: {line}"
    return sorted((o["vm_name"], o["session_id"], o["deployment"]) for o in objects)


# Every deployment's (the server sets the others' apart).
OURS = [
    ("desktop-aaa111", SID_A, DEPLOYMENT),
    ("desktop-bbb222", SID_B, ""),
    ("desktop-ccc333", "", ""),
    ("desktop-fff666", SID_F, ""),
    ("desktop-hhh888", SID_H, OTHER),
]


def test_list_shows_only_ours_with_their_session_and_deployment_ids(run, api):
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert listed(result) == OURS
    assert api.mutations() == []
    assert [r[:2] for r in api.requests] == [("GET", "/cluster/resources")]
    assert api.requests[0][2] == {"type": "vm"}


def test_list_with_no_vms_of_ours_is_empty(run, api):
    with api.lock:
        for vmid in [10001, 10002, 10003, 10006, 10008]:
            del api.vms[vmid]
    result = run("list")
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


def test_destroy_stops_then_deletes_and_waits_for_each_task(run, api):
    api.task_polls = 2  # each task is running for two polls: the hook waits
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "desktop-aaa111" in result.stdout
    assert api.mutations() == [
        ("POST", "/nodes/pve1/qemu/10001/status/stop", {}),
        ("DELETE", "/nodes/pve1/qemu/10001", {"purge": "1", "destroy-unreferenced-disks": "1"}),
    ]
    # Each task was polled until it stopped, before the next step.
    kinds = [
        ("stop" if r[1].endswith("/stop") else "delete" if r[0] == "DELETE" else
         "poll-stop" if ":qmstop:" in r[1] else "poll-delete" if ":qmdestroy:" in r[1] else "list")
        for r in api.requests
    ]
    assert kinds == ["list", "stop", "poll-stop", "poll-stop", "poll-stop",
                     "delete", "poll-delete", "poll-delete", "poll-delete", "list"]
    assert "desktop-aaa111" not in api.vm_names()
    assert listed(run("list")) == [vm for vm in OURS if vm[0] != "desktop-aaa111"]


def test_destroy_on_another_node(run, api):
    result = run("destroy", "desktop-bbb222")
    assert result.returncode == 0, result.stderr
    assert [m[:2] for m in api.mutations()] == [
        ("POST", "/nodes/pve2/qemu/10002/status/stop"),
        ("DELETE", "/nodes/pve2/qemu/10002"),
    ]
    assert "desktop-bbb222" not in api.vm_names()


def test_destroy_of_a_stopped_vm_only_deletes(run, api):
    result = run("destroy", "desktop-ccc333")
    assert result.returncode == 0, result.stderr
    assert [m[:2] for m in api.mutations()] == [("DELETE", "/nodes/pve1/qemu/10003")]
    assert "desktop-ccc333" not in api.vm_names()


@pytest.mark.parametrize("name", ["desktop-zzz999", "desktop-ddd444", "desktop-ggg777", "desktop-lxc001", "desktop-tmpl01"])
def test_destroy_of_an_unknown_or_foreign_vm_is_a_success_that_touches_nothing(run, api, name):
    before = api.vm_names()
    result = run("destroy", name)
    assert result.returncode == 0, result.stderr
    assert "already gone" in result.stdout
    assert api.mutations() == []
    assert api.vm_names() == before


def test_destroy_of_another_deployments_vm_touches_nothing(run, api):
    result = run("destroy", "desktop-hhh888")
    assert result.returncode == 0, result.stderr
    assert "already gone" in result.stdout and "left alone" in result.stderr
    assert api.mutations() == []
    assert "desktop-hhh888" in api.vm_names()


def test_destroy_leaves_another_deployments_vm_of_the_same_name_alone(run, api):
    with api.lock:
        api.vms[10009] = dict(vmid=10009, node="pve2", name="desktop-aaa111", status="running",
                              tags=f"daas;deployment-{OTHER};session-{SID_H};user-erin")
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert [m[:2] for m in api.mutations()] == [
        ("POST", "/nodes/pve1/qemu/10001/status/stop"),
        ("DELETE", "/nodes/pve1/qemu/10001"),
    ]
    assert 10009 in api.vms and 10001 not in api.vms


def test_without_a_deployment_id_destroy_takes_any_deployments_vm(run, api):
    # An older server gives none: the name alone decides, as before.
    result = run("destroy", "desktop-hhh888", DAAS_DEPLOYMENT_ID=None)
    assert result.returncode == 0, result.stderr
    assert [m[:2] for m in api.mutations()] == [
        ("POST", "/nodes/pve1/qemu/10008/status/stop"),
        ("DELETE", "/nodes/pve1/qemu/10008"),
    ]
    assert "desktop-hhh888" not in api.vm_names()


def test_destroy_twice_is_a_success(run, api):
    assert run("destroy", "desktop-aaa111").returncode == 0
    count = len(api.mutations())
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert len(api.mutations()) == count


@pytest.mark.parametrize(
    "name",
    ["mail", "Desktop-AAA111", "desktop-0123456789", "-desktop", "desktop-a b", "../desktop-x", "desktop-x/y", ""],
)
def test_destroy_refuses_a_bad_name_with_exit_2(run, api, name):
    result = run("destroy", name)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "refusing" in result.stderr
    assert api.requests == []


@pytest.mark.parametrize("args", [[], ["frob"], ["destroy"], ["list", "extra"], ["destroy", "desktop-aaa111", "x"]])
def test_usage_errors_exit_2(run, api, args):
    result = run(*args)
    assert result.returncode == 2
    assert "usage" in result.stderr
    assert api.requests == []


def test_a_wrong_token_makes_list_fail_with_a_message(run, api):
    result = run("list", PM_API_TOKEN_SECRET="not-the-" + uuid.uuid4().hex)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "401" in result.stderr and "cannot list" in result.stderr
    assert api.rejected == 1


def test_a_wrong_token_makes_destroy_fail_and_touch_nothing(run, api):
    result = run("destroy", "desktop-aaa111", PM_API_TOKEN_SECRET="not-the-" + uuid.uuid4().hex)
    assert result.returncode != 0
    assert api.mutations() == []
    assert "desktop-aaa111" in api.vm_names()


@pytest.mark.parametrize("missing", ["PM_API_TOKEN_ID", "PM_API_TOKEN_SECRET", "DAAS_VAR_proxmox_api_url"])
def test_missing_settings_fail_with_a_message(run, api, missing):
    result = run("list", **{missing: None})
    assert result.returncode == 1
    assert result.stdout == ""
    assert ("PM_API_TOKEN" in result.stderr) if missing.startswith("PM_") else ("proxmox_api_url" in result.stderr)
    assert api.requests == []


def test_an_unreachable_api_fails_with_a_message(run, api):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("list", DAAS_VAR_proxmox_api_url=f"http://127.0.0.1:{port}/api2/json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "cannot list" in result.stderr


def test_a_failed_task_fails_the_destroy(run, api):
    result = run("destroy", "desktop-fff666")
    assert result.returncode == 1
    assert "mock failure" in result.stderr
    assert "desktop-fff666" in api.vm_names()


def test_a_task_that_never_ends_is_waited_for_within_proxmox_timeout(run, api):
    with api.lock:
        api.vms[10001]["polls"] = None
    result = run("destroy", "desktop-aaa111", DAAS_VAR_proxmox_timeout="2")
    assert result.returncode == 1
    assert "after 2 s" in result.stderr
    assert [m[0] for m in api.mutations()] == ["POST"], "no delete after a stop that did not finish"


def test_tls_verification_is_off_only_when_proxmox_tls_insecure_is_true(run, api, curl_wrapper):
    _, argv_log = curl_wrapper
    assert run("list").returncode == 0
    assert "--insecure" not in argv_log.read_text().split("\n")
    argv_log.unlink()
    assert run("list", DAAS_VAR_proxmox_tls_insecure="false").returncode == 0
    assert "--insecure" not in argv_log.read_text().split("\n")
    argv_log.unlink()
    assert run("list", DAAS_VAR_proxmox_tls_insecure="true").returncode == 0
    assert "--insecure" in argv_log.read_text().split("\n")
    result = run("list", DAAS_VAR_proxmox_tls_insecure="yes")
    assert result.returncode == 1 and "proxmox_tls_insecure" in result.stderr


def test_the_header_reaches_the_api_through_stdin(run, api, curl_wrapper):
    _, argv_log = curl_wrapper
    assert run("list").returncode == 0
    argv = argv_log.read_text().split("\n")
    assert "@-" in argv  # -H @-: the headers come from standard input
    assert api.rejected == 0  # and the mock saw the right Authorization


def test_the_hook_is_executable_and_bash():
    assert os.access(INVENTORY, os.X_OK), "chmod +x terraform/proxmox/inventory"
    first = INVENTORY.read_text().splitlines()[0]
    assert first == "#!/usr/bin/env bash"
