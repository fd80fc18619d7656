"""`terraform test` of the module (tests/placement.tftest.hcl) with the real
`terraform` binary and `mock_provider "proxmox"`: the server's `target_node`
and `vm_id` reach the VM. A mock provider still needs the provider's schema
from the provider itself, and no provider can be downloaded here: the
STAND-IN of provider_standin.py (3.0.2-rc04's schema of `proxmox_vm_qemu` as
this module uses it, served through the PyPI plugin framework `tf`) is
installed in a filesystem mirror under the real provider's address and
version. With the real provider installed, `terraform test` in
terraform/proxmox runs the same file.

Each test copies the module (its .tf files and the .tftest.hcl) so it can
break a copy on purpose: the checks must fail when the wiring is wrong.

Run: .venv/bin/python -m pytest -p no:cacheprovider terraform/proxmox/tests
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tf", reason="scripts/setup.sh installs the plugin framework tf into .venv")

MODULE = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "provider_standin.py"
VERSION = "3.0.2-rc04"

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="needs terraform")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A filesystem mirror holding the stand-in as Telmate/proxmox VERSION,
    and a CLI configuration that installs it from there (and nothing from
    the network)."""
    root = tmp_path_factory.mktemp("mirror")
    target = root / "registry.terraform.io" / "telmate" / "proxmox" / VERSION / "linux_amd64"
    target.mkdir(parents=True)
    plugin = target / f"terraform-provider-proxmox_v{VERSION}"
    # This venv's Python, so the stand-in finds tf.
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import runpy\n"
        f"runpy.run_path({str(STANDIN)!r}, run_name='__main__')\n"
    )
    plugin.chmod(0o755)
    rc = root / "terraform.rc"
    rc.write_text(
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = \"{root}\"\n"
        "    include = [\"registry.terraform.io/telmate/proxmox\"]\n  }\n}\n"
    )
    return rc


def terraform_test(mirror, tmp_path, edit=None):
    """Copies the module into tmp_path (applying `edit` to main.tf's text),
    then runs `terraform init` and `terraform test` there; the test's
    CompletedProcess."""
    module = tmp_path / "proxmox"
    (module / "tests").mkdir(parents=True)
    for tf in MODULE.glob("*.tf"):
        shutil.copy(tf, module / tf.name)
    shutil.copy(MODULE / "tests" / "placement.tftest.hcl", module / "tests")
    if edit is not None:
        main = module / "main.tf"
        text = main.read_text()
        edited = edit(text)
        assert edited != text, "the edit changed nothing"
        main.write_text(edited)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TF_CLI_CONFIG_FILE": str(mirror),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }
    init = subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        cwd=module, env=env, capture_output=True, text=True, timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert f"Installed telmate/proxmox v{VERSION}" in init.stdout, init.stdout
    return subprocess.run(
        ["terraform", "test", "-no-color"],
        cwd=module, env=env, capture_output=True, text=True, timeout=300,
    )


def test_target_node_vm_id_and_restore_from_reach_the_vm(mirror, tmp_path):
    done = terraform_test(mirror, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success! 6 passed, 0 failed." in done.stdout, done.stdout


BROKEN = {
    # The node the server picked is ignored.
    "a fixed node": (
        "target_node = var.target_node", 'target_node = "pve1"',
        "target_node does not reach the VM",
    ),
    # The VM id the server picked is ignored.
    "the old VM id": (
        "vmid        = local.vmid", "vmid        = var.vmid_base + var.slot",
        "vm_id does not reach the VM's vmid",
    ),
    # A restore that clones the template: the kept disk is lost.
    "a restore from the template": (
        'clone      = var.restore_from == "" ? var.template : "daas-kept-${var.restore_from}"',
        "clone      = var.template",
        "a restore is not a full clone of the kept VM",
    ),
    # An argument 3.0.2-rc04 does not have: the schema is checked, as with
    # the real provider.
    "an unknown argument": (
        "target_node = var.target_node", "node = var.target_node",
        'An argument named "node" is not expected here.',
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_module_fails_the_test(mirror, tmp_path, broken):
    old, new, why = BROKEN[broken]
    done = terraform_test(mirror, tmp_path, lambda text: text.replace(old, new))
    assert done.returncode != 0, done.stdout
    assert why in done.stdout + done.stderr
