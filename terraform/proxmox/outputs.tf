# ---- provisioning contract outputs (terraform/CONTRACT.md) ----
# No boot_wait output: the server waits for SSH and `cloud-init status --wait`.

output "vm_name" {
  description = "The VM's name (also its hostname and AD computer name)."
  value       = proxmox_vm_qemu.desktop.name
}

output "vm_id" {
  description = "The Proxmox VM id: vm_id (the server's pick), or vmid_base + slot from an older server."
  value       = tostring(local.vmid)
}

output "ssh_host" {
  description = "The VM's IPv4 address as the QEMU guest agent reports it."
  value       = proxmox_vm_qemu.desktop.default_ipv4_address
}

output "ssh_port" {
  description = "SSH port of the VM."
  value       = 22
}

output "rdp_host" {
  description = "Where RDP clients connect: the same guest-agent address."
  value       = proxmox_vm_qemu.desktop.default_ipv4_address
}

output "rdp_port" {
  description = "Port xrdp listens on in the VM."
  value       = var.rdp_port
}
