# Local desktop VMs with QEMU: the provisioning contract
# (terraform/CONTRACT.md) on this machine, with nothing but the built-in
# terraform_data resource. Create makes a qcow2 overlay on the template (a
# linked clone), a NoCloud seed and starts QEMU in the background with
# loopback port forwards; destroy stops it and removes what create made.
# scripts/vm.sh does the work.

locals {
  ssh_port = var.port_base + 2 * var.slot
  rdp_port = var.port_base + 2 * var.slot + 1
  base     = "${var.state_dir}/${var.vm_name}"
  # The template's own folder, else image_dir.
  image_dir = lookup(var.template_images, var.template, var.image_dir)

  # NoCloud seed. JSON is YAML, so the key and names need no escaping.
  meta_data = jsonencode({
    "instance-id"    = var.session_id
    "local-hostname" = var.vm_name
  })
  user_data = "#cloud-config\n${jsonencode({
    hostname         = var.vm_name
    manage_etc_hosts = true
    users = [{
      name                = var.vm_user
      groups              = "sudo"
      shell               = "/bin/bash"
      sudo                = "ALL=(ALL) NOPASSWD:ALL"
      lock_passwd         = true
      ssh_authorized_keys = [trimspace(var.ssh_public_key)]
    }]
    # The host key the server made: ssh checks it from the first login.
    ssh_deletekeys  = true
    ssh_genkeytypes = []
    ssh_keys = {
      ed25519_private = var.ssh_host_private_key
      ed25519_public  = trimspace(var.ssh_host_public_key)
    }
    ssh_pwauth     = false
    disable_root   = true
    locale         = "en_US.UTF-8"
    package_update = false
  })}\n"
}

resource "terraform_data" "vm" {
  # Any change makes a new VM.
  triggers_replace = [
    var.slot, var.ssh_public_key, var.ssh_host_public_key, var.cores, var.memory_mb, var.disk_gb,
    var.session_id, local.image_dir, var.port_base, var.vm_user, var.accel,
  ]

  # All that destroy needs (a destroy provisioner sees only self).
  input = {
    vm_name   = var.vm_name
    state_dir = var.state_dir
    script    = "${path.module}/scripts/vm.sh"
  }

  provisioner "local-exec" {
    interpreter = ["/bin/bash", "${path.module}/scripts/vm.sh"]
    command     = "create"
    environment = {
      VM_NAME           = var.vm_name
      STATE_DIR         = var.state_dir
      IMAGE_DIR         = local.image_dir
      TEMPLATE          = var.template
      CORES             = tostring(var.cores)
      MEMORY_MB         = tostring(var.memory_mb)
      DISK_GB           = tostring(var.disk_gb)
      SSH_PORT          = tostring(local.ssh_port)
      RDP_PORT          = tostring(local.rdp_port)
      ACCEL             = var.accel
      KVM_PROBE_SECONDS = tostring(var.kvm_probe_seconds)
      SESSION_ID        = var.session_id
      DEPLOYMENT_ID     = var.deployment_id
      FOR_USER          = var.username
      META_DATA         = local.meta_data
      USER_DATA         = local.user_data
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["/bin/bash", self.input.script]
    command     = "destroy"
    environment = {
      VM_NAME   = self.input.vm_name
      STATE_DIR = self.input.state_dir
    }
  }
}
