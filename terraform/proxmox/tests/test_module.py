"""Checks of the Proxmox module that need no provider binary.

`terraform validate` needs `terraform init`, i.e. the Telmate provider, which
cannot be downloaded on the build machines. Instead:

* the module is parsed with python-hcl2 and its structure is checked against
  the provider 3.x syntax and the provisioning contract (terraform/CONTRACT.md);
* the variables' validation blocks are run by the real `terraform` on a stub
  module made of variables.tf and the module's locals (no provider needed).

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import hcl2
import pytest

MODULE = Path(__file__).resolve().parent.parent
REPO = MODULE.parent.parent

CONTRACT_VARIABLES = [
    "vm_name",
    "slot",
    "ssh_public_key",
    "ssh_host_private_key",
    "ssh_host_public_key",
    "template",
    "cores",
    "memory_mb",
    "disk_gb",
    "session_id",
    "username",
    "deployment_id",
    "target_node",
    "vm_id",
    "restore_from",
]
# Contract variables with a default: a session an older server made is
# destroyed with its kept variables file, which lacks them.
OPTIONAL = {"deployment_id": '""', "target_node": '""', "vm_id": 0, "restore_from": '""'}
CONTRACT_OUTPUTS = ["vm_name", "vm_id", "ssh_host", "ssh_port", "rdp_host", "rdp_port"]


# ---- parsing helpers (python-hcl2 8.x keeps quotes and `${}` around values) ----


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expr(value):
    """An expression's source text without the `${...}` wrapper."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def blocks(body, name):
    """The blocks `name { ... }` directly inside `body`."""
    found = body.get(name, [])
    return [b for b in found if isinstance(b, dict)]


def one_block(body, name):
    found = blocks(body, name)
    assert len(found) == 1, f"expected one `{name}` block, found {len(found)}"
    return found[0]


def labelled(doc, kind):
    """{label: body} for top-level `kind "label" { }` blocks (variable, output)."""
    out = {}
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            out[unquote(label)] = body
    return out


@pytest.fixture(scope="module")
def module():
    merged = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as f:
            doc = hcl2.load(f)
        for key, value in doc.items():
            merged.setdefault(key, []).extend(value)
    return merged


@pytest.fixture(scope="module")
def vm(module):
    resources = {}
    for entry in module.get("resource", []):
        for rtype, named in entry.items():
            for name, body in named.items():
                resources[(unquote(rtype), unquote(name))] = body
    qemu = [body for (rtype, _), body in resources.items() if rtype == "proxmox_vm_qemu"]
    assert len(qemu) == 1, f"expected one proxmox_vm_qemu resource, found {sorted(resources)}"
    return qemu[0]


# ---- provider ----


def test_provider_is_pinned_to_3_0_2_rc04(module):
    terraform = one_block(module, "terraform")
    providers = one_block(terraform, "required_providers")
    proxmox = providers["proxmox"]
    assert unquote(proxmox["source"]) == "Telmate/proxmox"
    assert unquote(proxmox["version"]) == "= 3.0.2-rc04"


def test_provider_takes_the_token_from_the_environment(module):
    provider = labelled(module, "provider")["proxmox"]
    for attr in ("pm_api_token_id", "pm_api_token_secret", "pm_user", "pm_password"):
        assert attr not in provider, f"{attr} must come from PM_API_TOKEN_ID / PM_API_TOKEN_SECRET"
    assert expr(provider["pm_api_url"]) == "var.proxmox_api_url"
    text = "".join(p.read_text() for p in MODULE.glob("*.tf"))
    assert "PM_API_TOKEN_SECRET" in text, "the provider block should say where the token comes from"


# ---- the VM: provider 3.x structure ----


def test_linked_clone_of_the_template_or_a_copy_of_the_kept_vm(vm):
    # tests/placement.tftest.hcl checks both with the provider mocked.
    assert expr(vm["clone"]) == 'var.restore_from == "" ? var.template : "daas-kept-${var.restore_from}"'
    assert expr(vm["full_clone"]) == 'var.restore_from != ""'
    assert expr(vm["name"]) == "var.vm_name"


def test_vmid_is_the_servers_else_derived_from_slot_and_base(module, vm):
    assert expr(vm["vmid"]) == "local.vmid"
    locals_ = {}
    for block in module.get("locals", []):
        locals_.update(block)
    # The server's vm_id; vmid_base + slot only for an older server's session.
    assert re.fullmatch(
        r"var\.vm_id > 0 \? var\.vm_id : var\.vmid_base \+ var\.slot", expr(locals_["vmid"])
    ), locals_["vmid"]


def test_the_clone_goes_to_the_node_the_server_placed_it_on(vm):
    assert expr(vm["target_node"]) == "var.target_node"


def test_agent_state_and_force_create(vm):
    assert vm["agent"] == 1
    assert unquote(vm["vm_state"]) == "running"
    assert vm["force_create"] is True


def test_cpu_block_and_no_deprecated_top_level_cpu_arguments(vm):
    cpu = one_block(vm, "cpu")
    assert expr(cpu["cores"]) == "var.cores"
    assert cpu["sockets"] == 1
    assert expr(cpu["type"]) == "var.cpu_type"
    for deprecated in ("cores", "sockets", "vcpus", "cpu_type"):
        assert deprecated not in vm, f"top-level `{deprecated}` is deprecated in 3.x (use cpu {{}})"
    assert "desc" not in vm, "`desc` is `description` in 3.x"
    assert "description" in vm


def test_network_block_has_an_id(vm):
    networks = blocks(vm, "network")
    assert len(networks) == 1
    net = networks[0]
    assert net["id"] == 0
    assert unquote(net["model"]) == "virtio"
    assert expr(net["bridge"]) == "var.bridge"


def test_disks_declare_the_os_disk_and_the_cloudinit_drive_in_their_slots(vm):
    assert "disk" not in vm, "flat `disk` blocks and `disks` cannot be mixed"
    disks = one_block(vm, "disks")
    scsi0 = one_block(one_block(one_block(disks, "scsi"), "scsi0"), "disk")
    assert expr(scsi0["storage"]) == "var.storage"
    assert unquote(scsi0["size"]) == "${var.disk_gb}G"
    assert expr(scsi0["format"]) == "var.disk_format"
    cloudinit = one_block(one_block(one_block(disks, "ide"), "ide2"), "cloudinit")
    assert expr(cloudinit["storage"]) == "var.cloudinit_storage"
    assert "cloudinit_cdrom_storage" not in vm, "the cloud-init drive is a disk in 3.x"
    assert unquote(vm["boot"]) == "order=scsi0"


def test_hardware_matches_the_template_not_provider_defaults(vm):
    assert expr(vm["scsihw"]) == "var.scsihw"
    assert expr(vm["bios"]) == "var.bios"
    assert expr(vm["memory"]) == "var.memory_mb"


def test_cloud_init_settings(vm):
    assert unquote(vm["os_type"]) == "cloud-init"
    assert "local.snippet_name" in expr(vm["cicustom"]) and "var.snippets_storage" in expr(vm["cicustom"])
    assert [expr(d) for d in vm["depends_on"]] == ["terraform_data.host_key_snippet"]
    assert expr(vm["sshkeys"]) == "var.ssh_public_key"
    assert expr(vm["ciuser"]) == "var.ssh_user"
    assert unquote(vm["ipconfig0"]) == "ip=dhcp"


def test_tags_name_the_session_and_the_user(module, vm):
    assert expr(vm["tags"]) == "local.tags"
    locals_ = {}
    for block in module.get("locals", []):
        locals_.update(block)
    tags = expr(locals_["tags"])
    assert "var.session_id" in tags and "local.user_tag" in tags
    assert "local.deployment_tag" in tags
    assert "var.username" in expr(locals_["user_tag"])
    assert "var.deployment_id" in expr(locals_["deployment_tag"])


def test_ip_comes_from_the_guest_agent_and_is_checked(vm):
    lifecycle = one_block(vm, "lifecycle")
    post = one_block(lifecycle, "postcondition")
    assert "self.default_ipv4_address" in expr(post["condition"])
    pre = one_block(lifecycle, "precondition")
    assert "var.template_disk_gb" in expr(pre["condition"])


# ---- contract variables and outputs ----


def test_every_contract_variable_is_declared_with_type_description_and_validation(module):
    variables = labelled(module, "variable")
    for name in CONTRACT_VARIABLES:
        assert name in variables, f"contract variable {name} is missing"
        body = variables[name]
        if name in OPTIONAL:
            assert body.get("default") == OPTIONAL[name], f"contract variable {name} must default to {OPTIONAL[name]}"
        else:
            assert "default" not in body, f"contract variable {name} must have no default"
        assert "type" in body and "description" in body, name
        assert blocks(body, "validation"), f"contract variable {name} has no validation"


def test_every_variable_has_a_type_and_a_description(module):
    for name, body in labelled(module, "variable").items():
        assert "type" in body, f"variable {name} has no type"
        assert unquote(body.get("description", "")), f"variable {name} has no description"


def test_every_contract_output(module, vm):
    outputs = labelled(module, "output")
    assert set(CONTRACT_OUTPUTS) <= set(outputs), sorted(outputs)
    assert expr(outputs["ssh_host"]["value"]) == "proxmox_vm_qemu.desktop.default_ipv4_address"
    assert expr(outputs["rdp_host"]["value"]) == "proxmox_vm_qemu.desktop.default_ipv4_address"
    assert "local.vmid" in expr(outputs["vm_id"]["value"])
    assert outputs["ssh_port"]["value"] == 22
    assert "boot_wait" not in outputs, "the server must wait for SSH and cloud-init on Proxmox"


def test_the_server_passes_exactly_the_contract_variables():
    """The list the server passes (server/src/domain/contract.rs) is the one tested here."""
    source = (REPO / "server/src/domain/contract.rs").read_text()
    block = re.search(r"CONTRACT_VARIABLES: &\[&str\] = &\[(.*?)\];", source, re.S)
    assert block, "CONTRACT_VARIABLES not found in server/src/domain/contract.rs"
    assert re.findall(r'"([a-z_]+)"', block.group(1)) == CONTRACT_VARIABLES


def test_example_tfvars_sets_only_declared_variables(module):
    variables = labelled(module, "variable")
    with (MODULE / "terraform.tfvars.example").open() as f:
        example = hcl2.load(f)
    example = {k: v for k, v in example.items() if not k.startswith("__")}
    assert example, "terraform.tfvars.example is empty"
    for key in example:
        assert key in variables, f"terraform.tfvars.example sets undeclared {key}"
    required = [n for n, b in variables.items() if "default" not in b]
    missing = [n for n in required if n not in example]
    assert not missing, f"terraform.tfvars.example lacks required {missing}"


# ---- the validations, run by terraform itself on a provider-free stub ----

GOOD = {
    "vm_name": "desktop-ab12cd",
    "slot": 3,
    "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx3bK0mJ4mB9 daas@server",
    "ssh_host_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n",
    "ssh_host_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKn0vHost",
    "template": "ubuntu-2204-xfce",
    "cores": 2,
    "memory_mb": 4096,
    "disk_gb": 32,
    "session_id": "0b6c2f7e-9d6a-4f7e-8a51-3c2d1e0f9a8b",
    "username": "Élodie.Martin",
    "proxmox_api_url": "https://pve1.example.org:8006/api2/json",
    "target_node": "pve1",
    "snippets_storage": "shared",
    "snippets_dir": "/mnt/pve/shared/snippets",
}


def locals_block_source():
    return block_source("locals {")


def block_source(opening):
    text = (MODULE / "main.tf").read_text()
    start = text.index(opening)
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise AssertionError("unbalanced locals block")


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    root = tmp_path_factory.mktemp("stub")
    shutil.copy(MODULE / "variables.tf", root / "variables.tf")
    (root / "stub.tf").write_text(
        locals_block_source()
        + '\n\noutput "vmid" {\n  value = local.vmid\n}\n'
        + '\noutput "tags" {\n  value = local.tags\n}\n'
    )
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    env.setdefault("TF_CLI_CONFIG_FILE", "/dev/null")
    if not Path(env["TF_CLI_CONFIG_FILE"]).exists():
        env["TF_CLI_CONFIG_FILE"] = "/dev/null"
    subprocess.run([terraform, "init", "-input=false", "-no-color"], cwd=root, env=env, check=True, capture_output=True)
    return root, terraform, env


def plan(stub, **overrides):
    root, terraform, env = stub
    values = dict(GOOD, **overrides)
    (root / "terraform.tfvars.json").write_text(json.dumps(values))
    return subprocess.run(
        [terraform, "plan", "-input=false", "-no-color", "-lock=false"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


def test_good_values_pass_and_locals_compute(stub):
    result = plan(stub)
    assert result.returncode == 0, result.stderr
    # The plan lists the outputs it would set: no vm_id (an older server's
    # session), so vmid_base + slot.
    assert re.search(r"vmid\s+= 10003", result.stdout), result.stdout
    # Lower-cased, and what Proxmox refuses in a tag ('É') becomes '_'.
    tags = '"daas;session-0b6c2f7e-9d6a-4f7e-8a51-3c2d1e0f9a8b;user-_lodie.martin"'
    assert re.search(r"tags\s+= " + re.escape(tags), result.stdout), result.stdout


@pytest.mark.parametrize("vm_id, vmid", [(0, 10003), (10042, 10042), (20003, 20003)])
def test_the_servers_vm_id_is_the_vmid(stub, vm_id, vmid):
    result = plan(stub, vm_id=vm_id, vmid_base=10000)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"vmid\s+= {vmid}\n", result.stdout), result.stdout


def test_the_deployment_id_is_a_tag_when_given(stub):
    result = plan(stub, deployment_id="0123456789ab")
    assert result.returncode == 0, result.stderr
    tags = '"daas;deployment-0123456789ab;session-0b6c2f7e-9d6a-4f7e-8a51-3c2d1e0f9a8b;user-_lodie.martin"'
    assert re.search(r"tags\s+= " + re.escape(tags), result.stdout), result.stdout


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("vm_name", "Desktop-1", "vm_name must be"),
        ("vm_name", "desktop-abcdefghij", "vm_name must be"),
        ("vm_name", "-desktop", "vm_name must be"),
        ("slot", 1000, "slot must be"),
        ("slot", 1.5, "slot must be"),
        ("ssh_public_key", "not a key", "ssh_public_key must be"),
        ("template", "bad template", "template must be"),
        ("cores", 0, "cores must be"),
        ("memory_mb", 256, "memory_mb must be"),
        ("disk_gb", 0, "disk_gb must be"),
        ("session_id", "../../etc", "session_id must be"),
        ("deployment_id", "ABC", "deployment_id must be"),
        ("deployment_id", "x;daas", "deployment_id must be"),
        ("username", "...", "username must not"),
        ("username", "twenty-one-characters", "username must be"),
        ("username", "...", "username must not"),
        ("proxmox_api_url", "http://pve1:8006/api2/json", "proxmox_api_url must"),
        ("vmid_base", 50, "vmid_base must be"),
        ("target_node", "", "target_node is empty"),
        ("target_node", "-pve1", "target_node must be"),
        ("target_node", "pve 1", "target_node must be"),
        ("vm_id", 99, "vm_id must be"),
        ("vm_id", 10001.5, "vm_id must be"),
        ("vm_id", 1000000000, "vm_id must be"),
        ("vm_id", -1, "vm_id must be"),
        ("disk_format", "vdi", "disk_format must be"),
        ("scsihw", "virtio", "scsihw must be"),
        ("bios", "uefi", "bios must be"),
        ("vlan_tag", 4095, "vlan_tag must be"),
        ("ssh_user", "Root", "ssh_user must be"),
        ("ssh_host_private_key", "ssh-ed25519 AAAA", "ssh_host_private_key must be"),
        ("ssh_host_public_key", "ssh-rsa AAAA", "ssh_host_public_key must be"),
        ("snippets_dir", "snippets", "snippets_dir must be"),
        ("snippets_storage", "1bad", "snippets_storage must be"),
        ("snippet_mode", "0666", "snippet_mode must be"),
    ],
)
def test_bad_values_are_refused(stub, field, value, message):
    result = plan(stub, **{field: value})
    assert result.returncode != 0, f"{field}={value!r} was accepted"
    assert message in " ".join(result.stderr.split()), result.stderr


# ---- the host key snippet, written by the real terraform (built-in resource) ----


def test_the_host_key_snippet_is_written_private_and_removed_with_the_vm(tmp_path):
    import yaml

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    root = tmp_path / "module"
    root.mkdir()
    snippets = tmp_path / "snippets"
    snippets.mkdir()
    shutil.copy(MODULE / "variables.tf", root / "variables.tf")
    (root / "stub.tf").write_text(locals_block_source() + "\n\n" + block_source('resource "terraform_data" "host_key_snippet"'))
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE="/dev/null")
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE='\"$(id)`id`\n-----END OPENSSH PRIVATE KEY-----\n"
    values = dict(GOOD, snippets_dir=str(snippets), ssh_host_private_key=key)
    (root / "terraform.tfvars.json").write_text(json.dumps(values))
    run = lambda *args: subprocess.run([terraform, *args, "-input=false", "-no-color"], cwd=root, env=env, capture_output=True, text=True)
    assert run("init").returncode == 0
    applied = run("apply", "-auto-approve")
    assert applied.returncode == 0, applied.stderr
    snippet = snippets / "daas-desktop-ab12cd.yaml"
    assert stat.S_IMODE(snippet.stat().st_mode) == 0o600
    text = snippet.read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    # The key arrives byte for byte: quotes, $( ) and backquotes are data.
    assert data["ssh_keys"] == {"ed25519_private": key, "ed25519_public": GOOD["ssh_host_public_key"]}
    assert data["ssh_deletekeys"] is True and data["ssh_genkeytypes"] == []
    assert key.splitlines()[1] not in applied.stdout + applied.stderr, "the private key was printed"
    destroyed = run("destroy", "-auto-approve")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not snippet.exists()
