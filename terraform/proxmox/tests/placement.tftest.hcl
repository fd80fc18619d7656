# `terraform test` of the module's placement inputs with the provider mocked:
# the VM goes to the node and gets the VM id the server picked. A mock still
# takes the real provider's resource schema (test_terraform_test.py runs this
# with a stand-in that serves 3.0.2-rc04's, where no provider can be
# downloaded); plans only, nothing is made.

mock_provider "proxmox" {}

variables {
  vm_name              = "desktop-abc123"
  slot                 = 7
  ssh_public_key       = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandInKeyForThePlanOnly daas"
  ssh_host_private_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n-----END OPENSSH PRIVATE KEY-----\n"
  ssh_host_public_key  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandInHostKey"
  template             = "debian-12"
  cores                = 2
  memory_mb            = 4096
  disk_gb              = 20
  session_id           = "3f0c2a8e-5b1d-4c6e-9a7f-0d2b4e6a8c10"
  username             = "alice"
  proxmox_api_url      = "https://pve.invalid:8006/api2/json"
  snippets_storage     = "local"
  snippets_dir         = "/var/lib/vz/snippets"
}

run "the_vm_goes_where_the_server_placed_it" {
  command = plan

  variables {
    target_node = "pve2"
    vm_id       = 10234
  }

  assert {
    condition     = proxmox_vm_qemu.desktop.target_node == "pve2"
    error_message = "target_node does not reach the VM"
  }
  assert {
    condition     = proxmox_vm_qemu.desktop.vmid == 10234
    error_message = "vm_id does not reach the VM's vmid"
  }
  assert {
    condition     = proxmox_vm_qemu.desktop.clone == "debian-12" && !proxmox_vm_qemu.desktop.full_clone
    error_message = "the VM is not a linked clone of the template"
  }
}

run "an_older_server_gives_no_vm_id" {
  command = plan

  variables {
    target_node = "pve1"
  }

  assert {
    condition     = proxmox_vm_qemu.desktop.vmid == 10007
    error_message = "without vm_id, the VM id is vmid_base + slot"
  }
}

run "no_node_is_refused" {
  command = plan

  variables {
    target_node = ""
    vm_id       = 10234
  }

  expect_failures = [var.target_node]
}

run "a_vm_id_out_of_range_is_refused" {
  command = plan

  variables {
    target_node = "pve1"
    vm_id       = 42
  }

  expect_failures = [var.vm_id]
}

run "a_restore_copies_the_kept_vm" {
  command = plan

  variables {
    target_node  = "pve1"
    vm_id        = 10234
    restore_from = "6b1e2f3a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"
  }

  assert {
    condition     = proxmox_vm_qemu.desktop.clone == "daas-kept-6b1e2f3a-0c4d-4e5f-8a9b-1c2d3e4f5a6b" && proxmox_vm_qemu.desktop.full_clone
    error_message = "a restore is not a full clone of the kept VM"
  }
}

run "a_kept_disk_id_that_is_no_name_is_refused" {
  command = plan

  variables {
    target_node  = "pve1"
    restore_from = "../etc"
  }

  expect_failures = [var.restore_from]
}
