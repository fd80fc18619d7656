"""What the fakepve tests of the hook share (test_nodes_fakepve.py,
test_kept_disks_fakepve.py): a cluster on fakepve and the hook run against
it with a token, its secret checked absent from what the hook prints."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest

INVENTORY = Path(__file__).resolve().parent.parent / "inventory"
TOKEN_ID = "root@pam!daas"
DEPLOYMENT = "0123456789ab"


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


