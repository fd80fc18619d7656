"""The proxmox module's kept disks (`inventory snapshot | restore | forget |
snapshots`, terraform/CONTRACT.md), run for real (bash, curl, jq) against
the FAKE Proxmox VE API of the PyPI package fakepve (see
test_nodes_fakepve.py): its clone task copies the disks of a stopped VM,
its resources answer carries each VM's tags, lock and first disk's size.

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import shutil

import pytest

from conftest import DEPLOYMENT

pytest.importorskip("fakepve", reason="scripts/setup.sh installs fakepve into .venv")

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the hook needs bash, curl and jq (scripts/setup.sh installs jq)",
)

KEPT = "6b1e2f3a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"
DESKTOP = 10001  # desktop-aaa111 on pve1, running (conftest's cluster)


@pytest.fixture
def desktop(cluster):
    """desktop-aaa111 with a 32 GiB disk and a cloud-init drive, for alice."""
    pve, _ = cluster
    vm = pve.vm(DESKTOP)
    vm.config.update({
        "scsi0": "local-lvm:vm-10001-disk-0,size=32G",
        "ide2": "local-lvm:vm-10001-cloudinit,media=cdrom",
        "tags": f"daas;deployment-{DEPLOYMENT};session-s-1;user-alice",
    })
    return pve


def kept_vms(pve, kept=KEPT):
    return [vm for vm in pve.vms if vm.name == f"daas-kept-{kept}"]


def tags_of(vm):
    return sorted(t for t in vm.config.get("tags", "").replace(",", ";").split(";") if t)


def lines_of(done):
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_kept_disk_is_a_stopped_full_copy_tagged_for_its_deployment(run, desktop):
    pve = desktop
    assert lines_of(run("snapshot", "desktop-aaa111", KEPT)) == [{"snapshot": KEPT, "size_gb": 32}]
    # The desktop was shut down first; Terraform destroys it next.
    assert pve.vm(DESKTOP).status == "stopped"
    [kept] = kept_vms(pve)
    assert kept.status == "stopped" and kept.node == "pve1" and not kept.template
    assert tags_of(kept) == ["daas-kept", f"deployment-{DEPLOYMENT}", "user-alice"]
    # A copy: its own disk, not the desktop's.
    assert kept.config["scsi0"].startswith(f"local-lvm:vm-{kept.vmid}-disk-")
    assert "size=32G" in kept.config["scsi0"]
    assert "lock" not in kept.config
    assert KEPT in kept.config["description"]

    # Not a desktop: `list` does not name it, `nodes` does not count it.
    assert [v["vm_name"] for v in lines_of(run("list"))] == ["desktop-aaa111", "desktop-bbb222", "desktop-ccc333"]
    pve1 = next(n for n in lines_of(run("nodes")) if n["node"] == "pve1")
    assert pve1["configured_memory_mb"] == 6144  # what it was without the kept VM

    # Keeping it again (a destroy retried after a crash) makes no second copy.
    assert lines_of(run("snapshot", "desktop-aaa111", KEPT)) == [{"snapshot": KEPT, "size_gb": 32}]
    assert len(kept_vms(pve)) == 1
    assert lines_of(run("snapshots")) == [{"snapshot": KEPT, "size_gb": 32}]


def test_restore_checks_the_kept_vm_and_forget_deletes_it(run, desktop):
    pve = desktop
    assert run("snapshot", "desktop-aaa111", KEPT).returncode == 0
    [kept] = kept_vms(pve)
    done = run("restore", KEPT, "desktop-new001")
    assert done.returncode == 0, done.stderr
    assert f"VM {kept.vmid} on pve1" in done.stdout

    # A kept VM someone started is no disk to copy.
    kept.status = "running"
    done = run("restore", KEPT, "desktop-new001")
    assert done.returncode == 1 and "must stay stopped" in done.stderr
    kept.status = "stopped"

    done = run("forget", KEPT)
    assert done.returncode == 0, done.stderr
    assert kept_vms(pve) == [] and pve.vm(kept.vmid) is None
    assert lines_of(run("snapshots")) == []
    # Gone already: no error; restoring it is one.
    assert run("forget", KEPT).returncode == 0
    done = run("restore", KEPT, "desktop-new001")
    assert done.returncode == 1 and f"no kept disk {KEPT}" in done.stderr


def test_an_interrupted_copy_is_made_again(run, desktop):
    """A clone without the daas-kept tag is one a crash cut short."""
    pve = desktop
    pve.add_vm(200, f"daas-kept-{KEPT}", node="pve1", config={"scsi0": "local-lvm:vm-200-disk-0,size=32G"})
    assert lines_of(run("snapshots")) == []
    done = run("restore", KEPT, "desktop-new001")
    assert done.returncode == 1
    assert lines_of(run("snapshot", "desktop-aaa111", KEPT)) == [{"snapshot": KEPT, "size_gb": 32}]
    assert pve.vm(200) is None
    [kept] = kept_vms(pve)
    assert "daas-kept" in tags_of(kept)


def test_another_deployments_kept_disks_are_left_alone(run, desktop):
    pve = desktop
    pve.add_vm(300, f"daas-kept-{KEPT}", node="pve2",
               config={"scsi0": "local-lvm:vm-300-disk-0,size=20G", "tags": "daas-kept;deployment-ba9876543210"})
    assert lines_of(run("snapshots")) == []
    assert run("restore", KEPT, "desktop-new001").returncode == 1
    assert run("forget", KEPT).returncode == 0
    assert pve.vm(300) is not None
    # A server that gives no deployment sees every one.
    assert lines_of(run("snapshots", DAAS_DEPLOYMENT_ID="")) == [{"snapshot": KEPT, "size_gb": 20}]


def test_nothing_to_keep_and_refused_names(run, desktop):
    done = run("snapshot", "desktop-zzz999", KEPT)
    assert done.returncode == 1 and "no disk to keep" in done.stderr
    for args in (["snapshot", "desktop-aaa111", "../etc"], ["snapshot", "mail", KEPT],
                 ["restore", "Kept;rm", "desktop-aaa111"], ["forget", "-x"], ["snapshots", "extra"]):
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
    assert kept_vms(desktop) == []
