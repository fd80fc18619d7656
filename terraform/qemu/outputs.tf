# ---- contract outputs: derived from the variables ----

output "vm_name" {
  value = var.vm_name
}

output "vm_id" {
  description = "The slot: with state_dir and vm_name it names the VM on this machine."
  value       = tostring(var.slot)
}

output "ssh_host" {
  value = "127.0.0.1"
}

output "ssh_port" {
  value = local.ssh_port
}

output "rdp_host" {
  value = "127.0.0.1"
}

output "rdp_port" {
  value = local.rdp_port
}

# The server waits for an SSH banner, then `cloud-init status --wait`.
output "boot_wait" {
  value = "ssh"
}

# ---- for people and tools watching the VM (the server ignores them) ----

output "console_log" {
  description = "The VM's serial console (kernel, systemd, cloud-init), kept until destroy."
  value       = "${local.base}.console.log"
}

output "pid_file" {
  description = "QEMU's pid."
  value       = "${local.base}.pid"
}

output "exit_file" {
  description = "Appears when QEMU exits on its own (the VM died or powered off): time and pid."
  value       = "${local.base}.exited"
}

output "status_command" {
  description = "Prints running, dead or absent (exit 0, 1, 3), with the console's last lines when dead."
  value       = "VM_NAME=${var.vm_name} STATE_DIR=${var.state_dir} bash ${abspath(path.module)}/scripts/vm.sh status"
}
