# Production module of the provisioning contract (terraform/CONTRACT.md): a
# linked clone of a cloud-init template on Proxmox VE, with DHCP and the QEMU
# guest agent reporting the address. Telmate/proxmox 3.x syntax: cpu {},
# network { id }, disks {} with every disk of the template declared in its own
# slot.

locals {
  # The server's pick ([placement] vm_id_base + slot); vmid_base + slot for
  # a session an older server made (no vm_id in its variables).
  vmid = var.vm_id > 0 ? var.vm_id : var.vmid_base + var.slot

  # Proxmox tags are [a-z0-9_][a-z0-9_+.-]*: the user's account name is
  # lower-cased and every other character becomes '_'. In PVE's order
  # (sorted); deployment-<id> only from a server that gives one.
  user_tag       = replace(lower(var.username), "/[^a-z0-9_+.-]/", "_")
  deployment_tag = var.deployment_id == "" ? [] : ["deployment-${var.deployment_id}"]
  tags           = join(";", concat(["daas"], local.deployment_tag, ["session-${var.session_id}", "user-${local.user_tag}"]))

  # cloud-init vendor data with the host key the server made (Telmate has
  # no host-key argument): a snippet on a storage PVE reads snippets from.
  snippet_name = "daas-${var.vm_name}.yaml"
  snippet_path = "${var.snippets_dir}/${local.snippet_name}"
  vendor_data = "#cloud-config\n${jsonencode({
    ssh_deletekeys  = true
    ssh_genkeytypes = []
    ssh_keys = {
      ed25519_private = var.ssh_host_private_key
      ed25519_public  = trimspace(var.ssh_host_public_key)
    }
  })}\n"
}

# The snippet, written before the clone and removed with it. The content
# goes through the environment, never the command line.
resource "terraform_data" "host_key_snippet" {
  triggers_replace = [var.vm_name, var.snippets_dir, var.ssh_host_public_key]
  input = {
    path = local.snippet_path
  }

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "umask 077 && printf '%s' \"$CONTENT\" > \"$SNIPPET.tmp\" && chmod \"$MODE\" \"$SNIPPET.tmp\" && mv -f \"$SNIPPET.tmp\" \"$SNIPPET\""
    environment = {
      SNIPPET = local.snippet_path
      MODE    = var.snippet_mode
      CONTENT = local.vendor_data
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["/bin/sh", "-c"]
    command     = "rm -f \"$SNIPPET\""
    environment = {
      SNIPPET = self.input.path
    }
  }
}

resource "proxmox_vm_qemu" "desktop" {
  depends_on = [terraform_data.host_key_snippet]

  name        = var.vm_name
  target_node = var.target_node # the server's placement (inventory nodes)
  vmid        = local.vmid
  pool        = var.pool == "" ? null : var.pool
  description = "DaaS desktop of ${var.username} (session ${var.session_id}). Made by Terraform: destroyed with the session."
  tags        = local.tags

  # A linked clone of the template: instant, thin, on the template's
  # storage. A restore copies the kept VM instead (PVE links clones to
  # templates only); `disk_gb` is never below its disk (the server's rule).
  clone      = var.restore_from == "" ? var.template : "daas-kept-${var.restore_from}"
  full_clone = var.restore_from != ""

  # Fail when a VM of this name exists instead of taking it over
  # (3.0.2-rc04 semantics; the meaning flips in later releases).
  force_create = true
  vm_state     = "running"

  # Unset attributes get the provider's defaults, not the template's: set
  # the ones that matter to match the template.
  bios    = var.bios
  scsihw  = var.scsihw
  qemu_os = "l26"
  boot    = "order=scsi0"
  memory  = var.memory_mb

  cpu {
    cores   = var.cores
    sockets = 1
    type    = var.cpu_type
  }

  # The guest agent reports the DHCP address (default_ipv4_address).
  agent         = 1
  agent_timeout = var.agent_timeout
  skip_ipv6     = true

  network {
    id       = 0
    model    = "virtio"
    bridge   = var.bridge
    tag      = var.vlan_tag == 0 ? null : var.vlan_tag
    firewall = var.firewall
  }

  # Every disk of the template, in the template's slots: an undeclared slot
  # is deleted, a smaller size recreates the disk empty, another storage or
  # format moves (copies) it.
  disks {
    scsi {
      scsi0 {
        disk {
          storage  = var.storage
          size     = "${var.disk_gb}G"
          format   = var.disk_format
          iothread = var.disk_iothread
          discard  = var.disk_discard
        }
      }
    }
    ide {
      ide2 {
        cloudinit {
          storage = var.cloudinit_storage
        }
      }
    }
  }

  dynamic "efidisk" {
    for_each = var.bios == "ovmf" ? [1] : []
    content {
      storage = var.efidisk_storage == "" ? var.storage : var.efidisk_storage
      efitype = "4m"
    }
  }

  dynamic "serial" {
    for_each = var.serial_console ? [1] : []
    content {
      id   = 0
      type = "socket"
    }
  }

  # cloud-init: the server's login and key, DHCP, no package upgrade at
  # first boot (the template is kept up to date instead).
  os_type      = "cloud-init"
  ciuser       = var.ssh_user
  sshkeys      = var.ssh_public_key
  cicustom     = "vendor=${var.snippets_storage}:snippets/${local.snippet_name}"
  ipconfig0    = "ip=dhcp"
  ciupgrade    = false
  nameserver   = var.nameserver == "" ? null : var.nameserver
  searchdomain = var.searchdomain == "" ? null : var.searchdomain

  lifecycle {
    precondition {
      condition     = var.disk_gb >= var.template_disk_gb
      error_message = "disk_gb (${var.disk_gb}) is smaller than the template's disk (template_disk_gb = ${var.template_disk_gb}): the provider would recreate the disk empty."
    }
    postcondition {
      condition     = can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", self.default_ipv4_address))
      error_message = "The QEMU guest agent reported no IPv4 address within agent_timeout (${var.agent_timeout} s): is qemu-guest-agent installed and enabled in the template, and does DHCP answer on ${var.bridge}?"
    }
  }
}
