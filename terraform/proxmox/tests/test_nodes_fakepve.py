"""The proxmox module's `inventory nodes` and `inventory list`, run for real
(bash, curl, jq) against a FAKE Proxmox VE API that others wrote and use:
the PyPI package fakepve (PVE 8/9 answers over TLS, several nodes, lost
quorum, offline nodes; AGPL-3.0, run as a test tool, its code not copied).
Its pytest plugin serves one per test on 127.0.0.1; its self-signed
certificate is the CA curl checks (`proxmox_tls_insecure` stays false).

HA maintenance: fakepve answers GET /cluster/ha/status/manager_status, but
only from PVE's API schema (`returns: object`; nothing stored): always an
empty `node_status`, at the top level of `data` where PVE nests it under
`manager_status`, and no call puts a node in maintenance. So fakepve tests
the cluster without HA, a refused read (a token without Sys.Audit on /, a
500); the maintenance states themselves come from a STUB over fakepve
(`stub_ha_manager_status`: that one answer in PVE's shape, as
pve-ha-manager's PVE::API2::HA::Status builds it), in the tests named
`test_stub_...`.

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import shutil

import pytest

from conftest import TOKEN_ID

pytest.importorskip("fakepve", reason="scripts/setup.sh installs fakepve into .venv")

GIB = 1024 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the hook needs bash, curl and jq (scripts/setup.sh installs jq)",
)


def nodes_of(done):
    assert done.returncode == 0, done.stderr
    return {n["node"]: n for n in map(json.loads, done.stdout.splitlines())}


HA_STATUS = "/api2/json/cluster/ha/status/manager_status"


def ha_reads(pve):
    return [path for method, path, _ in list(pve.requests) if method == "GET" and path == HA_STATUS]


def stub_ha_manager_status(pve, manager_status, lrm_status=None):
    """A STUB over fakepve (see the module's docstring): its generic handler
    answers GET /cluster/ha/status/manager_status with `manager_status` in
    PVE's shape ({"manager_status": ..., "quorum": ..., "lrm_status": ...}).
    Only that answer is the stub's: the request still goes through fakepve
    (TLS, the token, the schema's permission check, Sys.Audit on /)."""
    real = pve.synthesise  # fakepve's: the answer of a method it does not model

    async def synthesise(match, method, info, user, values):
        if method == "GET" and match.template == "/cluster/ha/status/manager_status":
            return {"manager_status": manager_status,
                    "quorum": {"node": "pve1", "quorate": 1},
                    "lrm_status": lrm_status or {}}
        return await real(match, method, info, user, values)

    pve.synthesise = synthesise


def ha_status(node_status, node_request=None):
    """A manager status as PVE's CRM writes it."""
    status = {"master_node": "pve1", "timestamp": 1700000000, "service_status": {},
              "node_status": node_status}
    if node_request is not None:
        status["node_request"] = node_request
    return status


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
    # Where each clone starts from (the clone turns count per storage): a
    # local storage qualified by its node, the shared one by its name.
    assert pve1["template_storage"] == {"debian-12": "pve1/local-lvm", "ubuntu-24": "ceph-pool"}
    assert pve2["template_storage"] == {"debian-12": "pve2/local-lvm", "ubuntu-24": "ceph-pool"}
    assert pve3["template_storage"] == {"ubuntu-24": "ceph-pool"}
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


# ---- HA maintenance ----

def test_without_ha_no_node_is_in_maintenance(run, cluster):
    """fakepve's own answer: a cluster without HA (an empty node_status)."""
    pve, _ = cluster
    done = run("nodes")
    nodes = nodes_of(done)
    assert {n["state"] for n in nodes.values()} == {"online"}
    assert len(ha_reads(pve)) == 1
    assert "HA maintenance" not in done.stderr


def test_a_token_without_sys_audit_on_root_still_reports_its_nodes(run, cluster):
    """The HA status needs Sys.Audit on / (PVE's schema, fakepve checks it);
    a token with the rights the rest of `nodes` needs, on /nodes, /vms and
    /storage only, gets a 403 there: not an error, no node in maintenance,
    every other field as with all rights."""
    pve, secret = cluster
    everything = nodes_of(run("nodes"))
    token = "daas@pve!daas"
    pve.apitokens[token] = secret
    pve.grant(token, "/nodes", "Sys.Audit")
    pve.grant(token, "/vms", "VM.Audit")
    pve.grant(token, "/storage", "Datastore.Audit")
    done = run("nodes", PM_API_TOKEN_ID=token)
    assert nodes_of(done) == everything
    assert "HA maintenance not read" in done.stderr and "Sys.Audit" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_a_failing_ha_status_is_no_error(run, cluster):
    pve, _ = cluster
    pve.fail("GET", "/cluster/ha/status/manager_status", 500, "unable to read file '/etc/pve/ha/manager_status'")
    done = run("nodes")
    nodes = nodes_of(done)
    assert {n["state"] for n in nodes.values()} == {"online"}
    assert "HA maintenance not read" in done.stderr and "manager_status" in done.stderr, done.stderr


def test_stub_a_node_in_ha_maintenance_is_reported_in_maintenance(run, cluster):
    pve, _ = cluster
    before = nodes_of(run("nodes"))
    stub_ha_manager_status(
        pve,
        ha_status({"pve1": "online", "pve2": "maintenance", "pve3": "online"}, {"pve2": {"maintenance": 1}}),
        lrm_status={"pve2": {"mode": "maintenance", "state": "wait_for_agent_lock", "timestamp": 1700000000}})
    done = run("nodes")
    nodes = nodes_of(done)
    assert {name: n["state"] for name, n in nodes.items()} == {
        "pve1": "online", "pve2": "maintenance", "pve3": "online"}
    # Only the state changes: its guests, templates and room are reported.
    assert {**nodes["pve2"], "state": "online"} == before["pve2"]
    assert done.stderr == ""


def test_stub_a_node_asked_to_enter_maintenance_is_in_maintenance_at_once(run, cluster):
    """`node-maintenance enable` sets node_request first; node_status
    follows once the node's LRM has switched."""
    pve, _ = cluster
    stub_ha_manager_status(pve, ha_status({"pve1": "online", "pve2": "online", "pve3": "online"},
                                          {"pve3": {"maintenance": 1}, "pve1": {}}))
    states = {name: n["state"] for name, n in nodes_of(run("nodes")).items()}
    assert states == {"pve1": "online", "pve2": "online", "pve3": "maintenance"}


def test_stub_other_ha_states_leave_the_nodes_state_to_the_cluster(run, cluster):
    """unknown, fence, gone: not maintenance; /cluster/resources says
    online or offline. A node in maintenance that is down is offline."""
    pve, _ = cluster
    stub_ha_manager_status(pve, ha_status({"pve1": "fence", "pve2": "maintenance", "pve3": "unknown",
                                           "pve9": "gone"}))
    pve.set_node_offline("pve2")
    states = {name: n["state"] for name, n in nodes_of(run("nodes")).items()}
    assert states == {"pve1": "online", "pve2": "offline", "pve3": "online"}


def test_stub_maintenance_ended_is_online_again(run, cluster):
    pve, _ = cluster
    stub_ha_manager_status(pve, ha_status({"pve1": "online", "pve2": "online", "pve3": "online"}, {}))
    assert {n["state"] for n in nodes_of(run("nodes")).values()} == {"online"}


@pytest.mark.parametrize("manager_status", [
    {},  # HA never configured: PVE answers an empty manager status
    None,
    [],
    "maintenance",
    {"node_status": ["pve2"], "node_request": "pve2"},
    {"node_status": {"pve2": {"state": "maintenance"}}, "node_request": {"pve3": {"maintenance": 0}}},
])
def test_stub_an_empty_or_unexpected_ha_status_puts_no_node_in_maintenance(run, cluster, manager_status):
    pve, _ = cluster
    stub_ha_manager_status(pve, manager_status)
    done = run("nodes")
    assert {n["state"] for n in nodes_of(done).values()} == {"online"}
    assert len(ha_reads(pve)) == 1
