"""A STAND-IN for the Telmate/proxmox 3.0.2-rc04 provider, for `terraform
test` with `mock_provider "proxmox"` only (tests/placement.tftest.hcl).

A mock provider still asks the real provider for its schema (and for the
check of each resource's configuration); this machine cannot download
providers, so this process answers in its place. It is built on the PyPI
package `tf` (a Python framework for Terraform plugins: the go-plugin
handshake, its TLS, the plugin protocol) and serves the schema of
`proxmox_vm_qemu` as far as this module uses it: the names, types and
nesting (list blocks of at most one item, the `serial` set) of 3.0.2-rc04's
own schema (`proxmox/resource_vm_qemu.go` and `proxmox/Internal/resource/
guest/...` at tag v3.0.2-rc04). An argument the module sets that 3.0.2-rc04
does not have fails the test, as it would with the real provider; the real
provider's own checks of values are not reproduced. It creates nothing:
`terraform test` plans with a mock.

Run by Terraform as the plugin executable `terraform-provider-proxmox`
(test_terraform_test.py installs it in a filesystem mirror).
"""

import sys
from typing import Optional, Type

from tf import schema, types
from tf.gen import tfplugin_pb2 as pb
from tf.iface import Config, DataSource, Resource
from tf.provider import Provider
from tf.runner import run_provider
from tf.schema import Attribute
from tf.utils import Diagnostics


class ListBlock(schema.NestedBlock):
    """An SDKv2 `TypeList` of `Elem: &schema.Resource{...}`: a list block."""

    def __init__(self, name: str, attributes, blocks=(), max_items: Optional[int] = None):
        super().__init__(
            name,
            schema.NestMode.Set,  # replaced in to_pb
            schema.Block(attributes=list(attributes), block_types=list(blocks)),
            max_items=max_items,
        )

    def to_pb(self) -> pb.Schema.NestedBlock:
        block = super().to_pb()
        block.nesting = pb.Schema.NestedBlock.NestingMode.LIST
        return block

    def encode(self, value):
        return value

    def decode(self, value):
        return value

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        return a_decoded == b_decoded


class SetBlock(ListBlock):
    """An SDKv2 `TypeSet` of `Elem: &schema.Resource{...}`: a set block."""

    def to_pb(self) -> pb.Schema.NestedBlock:
        block = super().to_pb()
        block.nesting = pb.Schema.NestedBlock.NestingMode.SET
        return block


def opt(name: str, kind, computed: bool = False) -> Attribute:
    return Attribute(name, kind, optional=True, computed=computed)


def out(name: str) -> Attribute:
    return Attribute(name, types.String(), computed=True)


S, N, B = types.String(), types.Number(), types.Bool()

# The disk of a slot (proxmox/Internal/resource/guest/qemu/disk/schema.go).
DISK = ListBlock("disk", [
    opt("storage", S), opt("size", S), opt("format", S), opt("iothread", B),
    opt("discard", B), opt("emulatessd", B), opt("cache", S), opt("backup", B),
    opt("replicate", B), opt("asyncio", S), opt("serial", S), opt("wwn", S),
    opt("readonly", B), opt("id", N, computed=True), opt("linked_disk_id", N, computed=True),
], max_items=1)
CLOUDINIT = ListBlock("cloudinit", [Attribute("storage", S, required=True)], max_items=1)


class VmQemu(Resource):
    """`proxmox_vm_qemu`, the arguments and attributes this module uses."""

    def __init__(self, provider: "Proxmox"):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "vm_qemu"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        attributes = [
            opt("id", S, computed=True),
            opt("name", S), opt("target_node", S), opt("vmid", N, computed=True),
            opt("pool", S), opt("description", S), opt("tags", S),
            opt("clone", S), opt("full_clone", B), opt("force_create", B),
            opt("vm_state", S), opt("bios", S), opt("scsihw", S), opt("qemu_os", S),
            opt("boot", S, computed=True), opt("memory", N), opt("agent", N),
            opt("agent_timeout", N), opt("skip_ipv4", B), opt("skip_ipv6", B),
            opt("os_type", S), opt("ciuser", S), opt("sshkeys", S), opt("cicustom", S),
            opt("ipconfig0", S), opt("ciupgrade", B), opt("nameserver", S),
            opt("searchdomain", S),
            out("default_ipv4_address"), out("ssh_host"), out("ssh_port"),
            out("current_node"),
        ]
        blocks = [
            ListBlock("cpu", [opt("cores", N), opt("sockets", N), opt("type", S)], max_items=1),
            ListBlock("network", [
                Attribute("id", N, required=True), Attribute("model", S, required=True),
                opt("bridge", S), opt("tag", N), opt("firewall", B), opt("macaddr", S),
            ], max_items=16),
            ListBlock("disks", [], [
                ListBlock("scsi", [], [ListBlock("scsi0", [], [DISK], max_items=1)], max_items=1),
                ListBlock("ide", [], [ListBlock("ide2", [], [CLOUDINIT], max_items=1)], max_items=1),
            ], max_items=1),
            ListBlock("efidisk", [
                Attribute("storage", S, required=True), opt("efitype", S),
                opt("pre_enrolled_keys", B),
            ], max_items=1),
            SetBlock("serial", [Attribute("id", N, required=True), opt("type", S)]),
        ]
        return schema.Schema(version=0, attributes=attributes, block_types=blocks)

    def validate(self, diags: Diagnostics, type_name: str, config: Config):
        # The real provider's value checks are not reproduced (see above);
        # Terraform itself checks the configuration against the schema.
        return

    def create(self, ctx, planned):
        raise NotImplementedError("a stand-in: only for terraform test with a mock provider")

    def read(self, ctx, current):
        return current

    def update(self, ctx, current, planned):
        raise NotImplementedError("a stand-in: only for terraform test with a mock provider")

    def delete(self, ctx, current):
        raise NotImplementedError("a stand-in: only for terraform test with a mock provider")


class Proxmox(Provider):
    def full_name(self) -> str:
        return "registry.terraform.io/telmate/proxmox"

    def get_model_prefix(self) -> str:
        return "proxmox_"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(attributes=[
            Attribute("pm_api_url", S, required=True), opt("pm_tls_insecure", B),
            opt("pm_timeout", N), opt("pm_parallel", N),
        ])

    def validate_config(self, diags: Diagnostics, config: Config):
        return

    def configure_provider(self, diags: Diagnostics, config: Config):
        diags.add_error("a stand-in provider", "only for terraform test with mock_provider")

    def get_data_sources(self) -> list[Type[DataSource]]:
        return []

    def get_resources(self) -> list[Type[Resource]]:
        return [VmQemu]


if __name__ == "__main__":
    run_provider(Proxmox(), sys.argv)
