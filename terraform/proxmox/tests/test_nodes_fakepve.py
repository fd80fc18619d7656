"""The proxmox module's `inventory nodes` and `inventory list`, run for real
(bash, curl, jq) against a FAKE Proxmox VE API that others wrote and use:
the PyPI package fakepve (PVE 8/9 answers over TLS, several nodes, lost
quorum, offline nodes; AGPL-3.0, run as a test tool, its code not copied).
Its pytest plugin serves one per test on 127.0.0.1; its self-signed
certificate is the CA curl checks (`proxmox_tls_insecure` stays false).

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fakepve", reason="scripts/setup.sh installs fakepve into .venv")

INVENTORY = Path(__file__).resolve().parent.parent / "inventory"
TOKEN_ID = "root@pam!daas"
DEPLOYMENT = "0123456789ab"
GIB = 1024 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the hook needs bash, curl and jq (scripts/setup.sh installs jq)",
)


@pytest.fixture
def cluster(fakepve):
    """Three nodes: a template on each node's local storage (pve1, pve2),
    one on a shared Ceph pool (every node), desktops on pve1 and pve2."""
    pve = fakepve
    pve.add_ceph_storage("ceph-pool")
    pve.add_node("pve3")
    pve.add_vm(9000, "debian-12", node="pve1", template=True,
               config={"scsi0": "local-lvm:base-9000-disk-0,size=8G", "memory": "2048"})
    pve.add_vm(9001, "debian-12", node="pve2", template=True,
               config={"scsi0": "local-lvm:base-9001-disk-0,size=8G", "memory": "2048"})
    pve.add_vm(9002, "ubuntu-24", node="pve1", template=True,
               config={"scsi0": "ceph-pool:base-9002-disk-0,size=8G",
                       "ide2": "local:iso/seed.iso,media=cdrom", "memory": "2048"})
    pve.add_vm(10001, "desktop-aaa111", node="pve1", status="running",
               config={"memory": "4096", "cores": "2",
                       "tags": f"daas;deployment-{DEPLOYMENT};session-s-1"})
    pve.add_vm(10002, "desktop-bbb222", node="pve1", status="stopped",
               config={"memory": "2048", "cores": "1", "tags": "daas;session-s-2"})
    pve.add_vm(10003, "desktop-ccc333", node="pve2", status="running",
               config={"memory": "8192", "cores": "4", "tags": "daas"})
    pve.add_vm(100, "mail", node="pve2", status="running", config={"memory": "1024", "cores": "1"})
    secret = "fake-secret-" + uuid.uuid4().hex
    pve.apitokens[TOKEN_ID] = secret
    return pve, secret


@pytest.fixture
def run(cluster, fakepve_cafile, tmp_path):
    pve, secret = cluster
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def run(*args, **overrides):
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "DAAS_VM_NAME_PREFIX": "desktop-",
            "DAAS_DEPLOYMENT_ID": DEPLOYMENT,
            "DAAS_VAR_proxmox_api_url": pve.url + "/api2/json",
            "DAAS_VAR_proxmox_timeout": "30",
            "PM_API_TOKEN_ID": TOKEN_ID,
            "PM_API_TOKEN_SECRET": secret,
            # curl checks the fake's certificate against its own CA.
            "CURL_CA_BUNDLE": str(fakepve_cafile),
        }
        env.update(overrides)
        done = subprocess.run([str(INVENTORY), *args], env=env, cwd=scratch,
                              capture_output=True, text=True, timeout=120)
        assert secret not in done.stdout + done.stderr
        return done

    return run


def nodes_of(done):
    assert done.returncode == 0, done.stderr
    return {n["node"]: n for n in map(json.loads, done.stdout.splitlines())}


def test_nodes_report_state_capacity_guests_and_templates(run):
    nodes = nodes_of(run("nodes"))
    assert sorted(nodes) == ["pve1", "pve2", "pve3"]
    pve1, pve2, pve3 = nodes["pve1"], nodes["pve2"], nodes["pve3"]
    assert pve1["state"] == "online"
    # fakepve's nodes: 4 CPUs, 8 GiB, 2 GiB in use.
    assert (pve1["cpus"], pve1["memory_mb"], pve1["used_memory_mb"]) == (4, 8192, 2048)
    # What the guests are configured for, running or not, templates aside.
    assert (pve1["configured_memory_mb"], pve1["configured_cores"]) == (6144, 3)
    assert (pve2["configured_memory_mb"], pve2["configured_cores"]) == (9216, 5)
    assert (pve3["configured_memory_mb"], pve3["configured_cores"]) == (0, 0)
    # A local template on its node only; the shared one everywhere.
    assert pve1["templates"] == ["debian-12", "ubuntu-24"]
    assert pve2["templates"] == ["debian-12", "ubuntu-24"]
    assert pve3["templates"] == ["ubuntu-24"]
    # The guests of ours on each (the prefix's; not "mail").
    assert (pve1["vms"], pve2["vms"], pve3["vms"]) == (["desktop-aaa111", "desktop-bbb222"], ["desktop-ccc333"], [])


def test_nodes_name_every_vm_with_the_prefix_on_each(run, cluster):
    """`vms`: what configured_memory_mb counts of ours, so any QEMU guest
    with the prefix (tagged daas or not, any deployment), running or not;
    neither templates nor containers, which it does not count either."""
    pve, _ = cluster
    pve.add_vm(10004, "desktop-ddd444", node="pve2", config={"memory": "1024", "tags": "user-x"})
    pve.add_vm(10005, "desktop-eee555", node="pve3", status="running",
               config={"memory": "2048", "tags": "daas;deployment-ba9876543210;session-s-5"})
    pve.add_vm(9003, "desktop-tmpl01", node="pve3", template=True,
               config={"scsi0": "local-lvm:base-9003-disk-0,size=8G", "memory": "2048"})
    pve.add_ct(101, "desktop-lxc001", node="pve1", status="running", config={"memory": "512"})
    nodes = nodes_of(run("nodes"))
    assert nodes["pve1"]["vms"] == ["desktop-aaa111", "desktop-bbb222"]
    assert nodes["pve2"]["vms"] == ["desktop-ccc333", "desktop-ddd444"]
    assert nodes["pve3"]["vms"] == ["desktop-eee555"]
    assert nodes["pve3"]["configured_memory_mb"] == 2048
    # An offline node's guests are still listed (as unknown), and counted.
    pve.set_node_offline("pve3")
    nodes = nodes_of(run("nodes"))
    assert nodes["pve3"]["state"] == "offline"
    assert nodes["pve3"]["vms"] == ["desktop-eee555"]
    # The prefix decides.
    nodes = nodes_of(run("nodes", DAAS_VM_NAME_PREFIX="mail"))
    assert (nodes["pve1"]["vms"], nodes["pve2"]["vms"]) == ([], ["mail"])


def test_an_offline_node_is_reported_offline(run, cluster):
    pve, _ = cluster
    pve.set_node_offline("pve2")
    nodes = nodes_of(run("nodes"))
    assert nodes["pve2"]["state"] == "offline"
    assert nodes["pve1"]["state"] == "online"
    # Its local template cannot be read, so it is not offered; the others are.
    assert nodes["pve1"]["templates"] == ["debian-12", "ubuntu-24"]
    assert nodes["pve3"]["templates"] == ["ubuntu-24"]
    pve.set_node_offline("pve2", offline=False)
    assert nodes_of(run("nodes"))["pve2"]["state"] == "online"


def test_lost_quorum_still_reads_and_a_failed_delete_says_so(run, cluster):
    pve, _ = cluster
    pve.lose_quorum()
    assert len(nodes_of(run("nodes"))) == 3
    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    names = sorted(json.loads(line)["vm_name"] for line in listed.stdout.splitlines())
    assert names == ["desktop-aaa111", "desktop-bbb222", "desktop-ccc333"]
    # PVE refuses a delete without quorum; fakepve does not apply that to
    # deletes, so its own no_quorum error (PVE's wording) stands for it.
    pve.fail("DELETE", "/nodes/pve1/qemu/10002", error="no_quorum", times=1)
    refused = run("destroy", "desktop-bbb222")
    assert refused.returncode == 1, refused
    assert "quorum" in refused.stderr and "desktop-bbb222" in refused.stderr, refused.stderr
    pve.regain_quorum()
    destroyed = run("destroy", "desktop-bbb222")
    assert destroyed.returncode == 0, destroyed.stderr
    names = [json.loads(line)["vm_name"] for line in run("list").stdout.splitlines()]
    assert "desktop-bbb222" not in names


def test_a_wrong_token_is_a_clear_failure(run, cluster):
    pve, _ = cluster
    pve.apitokens[TOKEN_ID] = "another"
    done = run("nodes")
    assert done.returncode == 1
    assert "/cluster/resources" in done.stderr
