"""The proxmox module's `inventory list` and `inventory destroy`, run for
real (bash, curl, jq) against a FAKE Proxmox VE API that others wrote and
use: the PyPI package fakepve (PVE 8/9 answers over TLS, tasks with UPIDs
that run and fail as PVE's do, locks, protection, PVE's own error catalogue;
AGPL-3.0, run as a test tool, its code not copied). Its pytest plugin serves
one per test on 127.0.0.1; its self-signed certificate is the CA curl checks.
(`inventory nodes` is in test_nodes_fakepve.py.)

Each run is made as the server makes it: an argument vector, a scrubbed
environment (PATH, HOME, LANG, DAAS_VAR_*, the token, DAAS_VM_NAME_PREFIX,
DAAS_DEPLOYMENT_ID), another working folder. Every run also checks that the
token's secret appears in no process's command line while it runs (a thread
scans /proc/*/cmdline), in no curl argument vector nor curl's environment
(curl is wrapped on PATH), and not in the output. The wrapper's log of
curl's arguments is also where the tests read the query strings the hook
sends (the fake records paths without them).

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fakepve", reason="scripts/setup.sh installs fakepve into .venv")

MODULE = Path(__file__).resolve().parent.parent
INVENTORY = MODULE / "inventory"
TOKEN_ID = "daas@pve!daas"
API = "/api2/json"

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


@pytest.fixture
def pve(fakepve):
    """The fake with two nodes and the guests below."""
    pve = fakepve
    # Ours: running (made for this deployment; its disk, and one it no
    # longer references, on local-lvm), on another node (made before
    # deployment tags), stopped, half made (no session tag).
    pve.add_vm(10001, "desktop-aaa111", node="pve1", status="running",
               config={"memory": "4096", "cores": "2", "scsi0": "local-lvm:vm-10001-disk-0,size=32G",
                       "tags": f"daas;deployment-{DEPLOYMENT};session-{SID_A};user-alice"})
    volumes = pve.storages["local-lvm"].setdefault("volumes", {})
    for disk in ("vm-10001-disk-0", "vm-10001-disk-1"):
        volumes[disk] = {"content": "images", "format": "raw", "size": 1 << 30, "vmid": 10001}
    pve.add_vm(10002, "desktop-bbb222", node="pve2", status="running",
               config={"tags": f"daas;session-{SID_B};user-bob"})
    pve.add_vm(10003, "desktop-ccc333", node="pve1", status="stopped", config={"tags": "daas"})
    # Ours, but left locked by a backup: PVE's delete task fails.
    pve.add_vm(10006, "desktop-fff666", node="pve2", status="stopped", lock="backup",
               config={"tags": f"daas;session-{SID_F};user-dan"})
    # Another deployment's: listed with its id, never destroyed here.
    pve.add_vm(10008, "desktop-hhh888", node="pve1", status="running",
               config={"tags": f"daas;deployment-{OTHER};session-{SID_H};user-erin"})
    # Not ours: no daas tag, a tag that only starts with daas, another
    # name, a container, a template.
    pve.add_vm(10004, "desktop-ddd444", node="pve1", status="running", config={"tags": "user-carol"})
    pve.add_vm(10007, "desktop-ggg777", node="pve1", status="running", config={"tags": "daasx;session-x"})
    pve.add_vm(100, "mail", node="pve1", status="running", config={"tags": "prod"})
    pve.add_ct(101, "desktop-lxc001", node="pve1", status="running", config={"tags": "daas"})
    pve.add_vm(9000, "desktop-tmpl01", node="pve1", template=True, config={"tags": "daas"})
    return pve


@pytest.fixture
def secret(pve):
    secret = "fake-secret-" + uuid.uuid4().hex
    pve.apitokens[TOKEN_ID] = secret
    return secret


def mutations(pve):
    """The requests that change something: (method, path after /api2/json)."""
    return [(m, path[len(API):]) for m, path, _ in list(pve.requests) if m in ("POST", "PUT", "DELETE")]


def vm_names(pve):
    return sorted(vm.name for vm in pve.vms)


def task_log(pve, kind, vmid):
    """The log lines of the (last) task of this kind for this VM."""
    found = [t for t in pve.tasklog if t["type"] == kind and t["id"] == str(vmid)]
    assert found, f"no {kind} task for {vmid}"
    return found[-1]["log"]


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
def run(pve, secret, curl_wrapper, fakepve_cafile, tmp_path):
    bin_dir, argv_log = curl_wrapper
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def run_inventory(*args, **overrides):
        env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "CURL_ARGV_LOG": str(argv_log),
            # curl checks the fake's certificate against its own CA.
            "CURL_CA_BUNDLE": str(fakepve_cafile),
            "DAAS_VM_NAME_PREFIX": "desktop-",
            "DAAS_DEPLOYMENT_ID": DEPLOYMENT,
            "DAAS_VAR_proxmox_api_url": pve.url + API,
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


def curl_urls(argv_log):
    """The URLs curl was given, in order."""
    if not argv_log.exists():
        return []
    return [a for a in argv_log.read_text().split("\n") if a.startswith("https://") or a.startswith("http://")]


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


def test_list_shows_only_ours_with_their_session_and_deployment_ids(run, pve, curl_wrapper):
    _, argv_log = curl_wrapper
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert listed(result) == OURS
    assert mutations(pve) == []
    assert [r[:2] for r in pve.requests] == [("GET", API + "/cluster/resources")]
    assert curl_urls(argv_log) == [pve.url + API + "/cluster/resources?type=vm"]


def test_list_with_no_vms_of_ours_is_empty(run, pve):
    pve.vms[:] = [vm for vm in pve.vms if vm.vmid not in (10001, 10002, 10003, 10006, 10008)]
    result = run("list")
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


@pytest.mark.fakepve(time_scale=0.01)
def test_destroy_stops_then_deletes_with_purge_and_waits_for_each_task(run, pve, curl_wrapper):
    _, argv_log = curl_wrapper
    # The stop takes 50 PVE seconds (0.5 s here): the hook polls it while it
    # runs. PVE (and the fake) refuses to delete a running VM.
    pve.vm(10001).stop_secs = 50
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "desktop-aaa111" in result.stdout
    assert mutations(pve) == [
        ("POST", "/nodes/pve1/qemu/10001/status/stop"),
        ("DELETE", "/nodes/pve1/qemu/10001"),
    ]
    assert pve.url + API + "/nodes/pve1/qemu/10001?purge=1&destroy-unreferenced-disks=1" in curl_urls(argv_log)
    # Each task was polled until it stopped, before the next step (the fake
    # refuses to delete a running VM). How many polls depends on the
    # machine's load, so at least one.
    kinds = "".join(
        "S" if path.endswith("/status/stop") else
        "D" if method == "DELETE" else
        "s" if ":qmstop:" in path else
        "d" if ":qmdestroy:" in path else
        "L" if path.endswith("/cluster/resources") else "?"
        for method, path, _ in pve.requests
    )
    assert re.fullmatch(r"LSs+Dd+L", kinds), kinds
    assert task_log(pve, "qmstop", 10001)[-1] == "TASK OK"
    # purge=1: PVE's note in the task log; destroy-unreferenced-disks=1:
    # the disk the config no longer named is gone too.
    log = task_log(pve, "qmdestroy", 10001)
    assert log[-1] == "TASK OK" and any("purging VM 10001" in line for line in log), log
    assert not any(v.startswith("vm-10001-") for v in pve.storages["local-lvm"].get("volumes", {}))
    assert "desktop-aaa111" not in vm_names(pve)
    assert listed(run("list")) == [vm for vm in OURS if vm[0] != "desktop-aaa111"]


def test_destroy_on_another_node(run, pve):
    result = run("destroy", "desktop-bbb222")
    assert result.returncode == 0, result.stderr
    assert mutations(pve) == [
        ("POST", "/nodes/pve2/qemu/10002/status/stop"),
        ("DELETE", "/nodes/pve2/qemu/10002"),
    ]
    assert "desktop-bbb222" not in vm_names(pve)


def test_destroy_of_a_stopped_vm_only_deletes(run, pve):
    result = run("destroy", "desktop-ccc333")
    assert result.returncode == 0, result.stderr
    assert mutations(pve) == [("DELETE", "/nodes/pve1/qemu/10003")]
    assert "desktop-ccc333" not in vm_names(pve)


@pytest.mark.parametrize("name", ["desktop-zzz999", "desktop-ddd444", "desktop-ggg777", "desktop-lxc001", "desktop-tmpl01"])
def test_destroy_of_an_unknown_or_foreign_vm_is_a_success_that_touches_nothing(run, pve, name):
    before = vm_names(pve)
    result = run("destroy", name)
    assert result.returncode == 0, result.stderr
    assert "already gone" in result.stdout
    assert mutations(pve) == []
    assert vm_names(pve) == before
    assert [ct.vmid for ct in pve.cts] == [101]


def test_destroy_of_another_deployments_vm_touches_nothing(run, pve):
    result = run("destroy", "desktop-hhh888")
    assert result.returncode == 0, result.stderr
    assert "already gone" in result.stdout and "left alone" in result.stderr
    assert mutations(pve) == []
    assert "desktop-hhh888" in vm_names(pve)


def test_destroy_leaves_another_deployments_vm_of_the_same_name_alone(run, pve):
    pve.add_vm(10009, "desktop-aaa111", node="pve2", status="running",
               config={"tags": f"daas;deployment-{OTHER};session-{SID_H};user-erin"})
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert mutations(pve) == [
        ("POST", "/nodes/pve1/qemu/10001/status/stop"),
        ("DELETE", "/nodes/pve1/qemu/10001"),
    ]
    assert pve.vm(10009) is not None and pve.vm(10001) is None


def test_without_a_deployment_id_destroy_takes_any_deployments_vm(run, pve):
    # An older server gives none: the name alone decides, as before.
    result = run("destroy", "desktop-hhh888", DAAS_DEPLOYMENT_ID=None)
    assert result.returncode == 0, result.stderr
    assert mutations(pve) == [
        ("POST", "/nodes/pve1/qemu/10008/status/stop"),
        ("DELETE", "/nodes/pve1/qemu/10008"),
    ]
    assert "desktop-hhh888" not in vm_names(pve)


def test_destroy_twice_is_a_success(run, pve):
    assert run("destroy", "desktop-aaa111").returncode == 0
    count = len(mutations(pve))
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 0, result.stderr
    assert len(mutations(pve)) == count


@pytest.mark.parametrize(
    "name",
    ["mail", "Desktop-AAA111", "desktop-0123456789", "-desktop", "desktop-a b", "../desktop-x", "desktop-x/y", ""],
)
def test_destroy_refuses_a_bad_name_with_exit_2(run, pve, name):
    result = run("destroy", name)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "refusing" in result.stderr
    assert pve.requests == []


@pytest.mark.parametrize("args", [[], ["frob"], ["destroy"], ["list", "extra"], ["destroy", "desktop-aaa111", "x"]])
def test_usage_errors_exit_2(run, pve, args):
    result = run(*args)
    assert result.returncode == 2
    assert "usage" in result.stderr
    assert pve.requests == []


def test_a_wrong_token_makes_list_fail_with_a_message(run, pve):
    result = run("list", PM_API_TOKEN_SECRET="not-the-" + uuid.uuid4().hex)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "401" in result.stderr and "authentication failure" in result.stderr
    assert "cannot list" in result.stderr
    assert [r[:2] for r in pve.requests] == [("GET", API + "/cluster/resources")]


def test_a_wrong_token_makes_destroy_fail_and_touch_nothing(run, pve):
    result = run("destroy", "desktop-aaa111", PM_API_TOKEN_SECRET="not-the-" + uuid.uuid4().hex)
    assert result.returncode != 0
    assert mutations(pve) == []
    assert "desktop-aaa111" in vm_names(pve)


@pytest.mark.parametrize("missing", ["PM_API_TOKEN_ID", "PM_API_TOKEN_SECRET", "DAAS_VAR_proxmox_api_url"])
def test_missing_settings_fail_with_a_message(run, pve, missing):
    result = run("list", **{missing: None})
    assert result.returncode == 1
    assert result.stdout == ""
    assert ("PM_API_TOKEN" in result.stderr) if missing.startswith("PM_") else ("proxmox_api_url" in result.stderr)
    assert pve.requests == []


def test_an_unreachable_api_fails_with_a_message(run, pve):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("list", DAAS_VAR_proxmox_api_url=f"https://127.0.0.1:{port}/api2/json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "cannot list" in result.stderr


@pytest.mark.parametrize(
    "name, vmid, failure, message",
    [
        # Left locked by a backup: PVE's delete task checks the lock and ends
        # with "TASK ERROR: VM is locked (backup)".
        ("desktop-fff666", 10006, None, "VM is locked (backup)"),
        # A task error from PVE's own catalogue (a linked clone's base).
        ("desktop-ccc333", 10003, "base_volume_still_use_linked", "still in use by linked clone"),
    ],
)
def test_a_failed_delete_task_fails_the_destroy(run, pve, name, vmid, failure, message):
    node = pve.vm(vmid).node
    if failure:
        pve.fail("DELETE", f"/nodes/{node}/qemu/{vmid}", error=failure)
    result = run("destroy", name)
    assert result.returncode == 1
    assert message in result.stderr and "failed" in result.stderr, result.stderr
    assert mutations(pve) == [("DELETE", f"/nodes/{node}/qemu/{vmid}")]
    assert name in vm_names(pve)


def test_a_failed_stop_task_fails_the_destroy_before_any_delete(run, pve):
    pve.fail("POST", "/nodes/pve1/qemu/10001/status/stop", error="quit_powerdown_failed_got_timeout")
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 1
    assert "got timeout" in result.stderr, result.stderr
    assert [m for m, _ in mutations(pve)] == ["POST"], "no delete after a failed stop"
    assert "desktop-aaa111" in vm_names(pve)


def test_a_failed_stop_fails_the_destroy_among_many_desktops(run, pve):
    # The check after the destroy read the listing through a pipe into
    # `grep -q`: with hundreds of names after the match, the writer took
    # SIGPIPE and the VM still there read as "gone after all".
    for i in range(400):
        pve.add_vm(20000 + i, f"desktop-zz{i:04d}", node="pve1", status="stopped", config={"tags": "daas"})
    pve.fail("POST", "/nodes/pve1/qemu/10001/status/stop", error="quit_powerdown_failed_got_timeout")
    result = run("destroy", "desktop-aaa111")
    assert result.returncode == 1, result.stderr
    assert "still there after the destroy" in result.stderr, result.stderr
    assert "desktop-aaa111" in vm_names(pve)


def test_a_refused_delete_fails_the_destroy(run, pve):
    # Protection on: PVE refuses the delete itself (HTTP 500, no task).
    pve.vm(10003).config["protection"] = "1"
    result = run("destroy", "desktop-ccc333")
    assert result.returncode == 1
    assert "protection mode enabled" in result.stderr and "still there" in result.stderr, result.stderr
    assert "desktop-ccc333" in vm_names(pve)
    pve.vm(10003).config.pop("protection")
    assert run("destroy", "desktop-ccc333").returncode == 0
    assert "desktop-ccc333" not in vm_names(pve)


@pytest.mark.fakepve(time_scale=1)
def test_a_task_that_does_not_end_in_time_is_waited_for_within_proxmox_timeout(run, pve):
    # The stop takes 3 s, more than proxmox_timeout: the hook gives up.
    pve.vm(10001).stop_secs = 3
    result = run("destroy", "desktop-aaa111", DAAS_VAR_proxmox_timeout="2")
    assert result.returncode == 1
    assert "still running after 2 s" in result.stderr, result.stderr
    assert [m for m, _ in mutations(pve)] == ["POST"], "no delete after a stop that did not finish"
    # Let the fake's task end before it stops.
    deadline = time.monotonic() + 10
    while task_log(pve, "qmstop", 10001)[-1:] != ["TASK OK"]:
        assert time.monotonic() < deadline, "the fake's stop task did not end"
        time.sleep(0.1)


def test_tls_is_verified_unless_proxmox_tls_insecure_is_true(run, pve, curl_wrapper):
    _, argv_log = curl_wrapper
    assert run("list").returncode == 0
    assert "--insecure" not in argv_log.read_text().split("\n")
    argv_log.unlink()
    assert run("list", DAAS_VAR_proxmox_tls_insecure="false").returncode == 0
    assert "--insecure" not in argv_log.read_text().split("\n")
    argv_log.unlink()
    # Without the fake's CA its self-signed certificate is refused...
    refused = run("list", CURL_CA_BUNDLE=None)
    assert refused.returncode == 1 and "cannot list" in refused.stderr, refused.stderr
    argv_log.unlink()
    # ...unless verification is off.
    assert run("list", CURL_CA_BUNDLE=None, DAAS_VAR_proxmox_tls_insecure="true").returncode == 0
    assert "--insecure" in argv_log.read_text().split("\n")
    result = run("list", DAAS_VAR_proxmox_tls_insecure="yes")
    assert result.returncode == 1 and "proxmox_tls_insecure" in result.stderr


def test_the_header_reaches_the_api_through_stdin(run, pve, curl_wrapper):
    _, argv_log = curl_wrapper
    result = run("list")
    assert result.returncode == 0, result.stderr  # the fake took the token
    argv = argv_log.read_text().split("\n")
    assert "@-" in argv  # -H @-: the headers come from standard input


def test_the_hook_is_executable_and_bash():
    assert os.access(INVENTORY, os.X_OK), "chmod +x terraform/proxmox/inventory"
    first = INVENTORY.read_text().splitlines()[0]
    assert first == "#!/usr/bin/env bash"
