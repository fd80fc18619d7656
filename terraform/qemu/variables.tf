# ---- contract inputs (terraform/CONTRACT.md) ----

variable "vm_name" {
  description = "VM name, also its host name and AD computer name (at most 15 characters)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,14})$", var.vm_name))
    error_message = "vm_name must be 1-15 lower-case letters, digits or '-', not starting with '-'."
  }
}

variable "slot" {
  description = "Small integer unique among live sessions; fixes the VM's loopback ports."
  type        = number
  validation {
    condition     = var.slot >= 0 && var.slot < 1000 && floor(var.slot) == var.slot
    error_message = "slot must be an integer from 0 to 999."
  }
}

variable "ssh_public_key" {
  description = "The server's SSH public key (one OpenSSH line), authorized for vm_user."
  type        = string
  validation {
    condition     = can(regex("^(ssh-|ecdsa-|sk-)[^\n]+$", trimspace(var.ssh_public_key)))
    error_message = "ssh_public_key must be one OpenSSH public key line (ssh-ed25519 AAAA..., ssh-rsa ..., ecdsa-...)."
  }
}

variable "ssh_host_private_key" {
  description = "The VM's SSH host key the server made (OpenSSH private key, ed25519): cloud-init installs it, the server's ssh accepts no other."
  type        = string
  validation {
    condition     = startswith(var.ssh_host_private_key, "-----BEGIN OPENSSH PRIVATE KEY-----")
    error_message = "ssh_host_private_key must be an OpenSSH private key."
  }
}

variable "ssh_host_public_key" {
  description = "Its public half, one OpenSSH line (ssh-ed25519 AAAA...)."
  type        = string
  validation {
    condition     = can(regex("^ssh-ed25519 [A-Za-z0-9+/=]+$", trimspace(var.ssh_host_public_key)))
    error_message = "ssh_host_public_key must be one ssh-ed25519 public key line."
  }
}

variable "template" {
  description = "Template name the session asked for; recorded only: the image is image_dir (the server asks only for one of templates, the names inventory nodes reports)."
  type        = string
  validation {
    condition     = length(var.template) > 0
    error_message = "template must not be empty."
  }
}

variable "cores" {
  description = "vCPUs."
  type        = number
  validation {
    condition     = var.cores >= 1 && var.cores <= 64 && floor(var.cores) == var.cores
    error_message = "cores must be an integer from 1 to 64."
  }
}

variable "memory_mb" {
  description = "Memory in MiB (an XFCE desktop wants 1024 or more)."
  type        = number
  validation {
    condition     = var.memory_mb >= 512 && var.memory_mb <= 262144 && floor(var.memory_mb) == var.memory_mb
    error_message = "memory_mb must be an integer from 512 to 262144."
  }
}

variable "disk_gb" {
  description = "Disk size in GiB; the overlay on the template grows to it (never below the template's own size)."
  type        = number
  validation {
    condition     = var.disk_gb >= 1 && var.disk_gb <= 4096 && floor(var.disk_gb) == var.disk_gb
    error_message = "disk_gb must be an integer from 1 to 4096."
  }
}

variable "session_id" {
  description = "Session id: the VM's cloud-init instance id."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9._:-]{1,128}$", var.session_id))
    error_message = "session_id must be 1-128 letters, digits or '.', '_', ':', '-'."
  }
}

variable "username" {
  description = "User the desktop is for (recorded in the VM's log line only)."
  type        = string
}

variable "deployment_id" {
  description = "The server's deployment id, kept in NAME.session with the session id (inventory list reports it); empty from an older server."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[a-z0-9]{0,32}$", var.deployment_id))
    error_message = "deployment_id must be at most 32 lower-case letters or digits."
  }
}

variable "target_node" {
  description = "The node the server placed the VM on: this machine, under the name the module's inventory nodes reports (uname -n's first label, else localhost); empty from an older server or in a session made before. Declared for the contract and ignored (one machine: the VM runs here either way, so an empty one is not refused)."
  type        = string
  default     = ""
  validation {
    condition     = var.target_node == "" || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$", var.target_node))
    error_message = "target_node must be empty or a node name (letters, digits, '.', '-'; at most 63)."
  }
}

variable "vm_id" {
  description = "The VM id the server picked ([placement] vm_id_base + slot; 0 from an older server): declared for the contract and ignored (a VM here is known by its name; the vm_id output stays the slot)."
  type        = number
  default     = 0
  validation {
    condition     = var.vm_id == 0 || (var.vm_id >= 100 && var.vm_id <= 999999999 && floor(var.vm_id) == var.vm_id)
    error_message = "vm_id must be 0 (not given) or an integer from 100 to 999999999."
  }
}

variable "restore_from" {
  description = "The kept disk the VM is made from (\"\": a fresh clone); declared for the contract: scripts/vm.sh takes the disk `inventory restore` staged."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9-]{0,52})?$", var.restore_from))
    error_message = "restore_from must be empty or a kept disk's id (1-53 of a-z, 0-9 and -)."
  }
}

# ---- this module's own (the server's [terraform.variables]) ----

variable "image_dir" {
  description = "Absolute path of the template folder image/build.sh printed (disk.qcow2, vmlinuz, initrd.img)."
  type        = string
  validation {
    condition     = startswith(var.image_dir, "/")
    error_message = "image_dir must be an absolute path (the last line image/build.sh prints)."
  }
}

variable "template_images" {
  description = "Other templates' folders, by template name (e.g. { dev = \"/.../debian12-dev-<hash>\" }, from image/build.sh --flavor dev); a template not in it is cloned from image_dir."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for name, dir in var.template_images : can(regex("^[A-Za-z0-9._-]{1,64}$", name)) && startswith(dir, "/")])
    error_message = "template_images maps template names (1-64 letters, digits, '.', '_' or '-') to absolute paths."
  }
}

variable "state_dir" {
  description = "Absolute path of the folder for the VMs' overlays, seeds, pid files and console logs."
  type        = string
  validation {
    condition     = startswith(var.state_dir, "/")
    error_message = "state_dir must be an absolute path."
  }
}

variable "port_base" {
  description = "Loopback ports: SSH = port_base + 2*slot, RDP = port_base + 2*slot + 1."
  type        = number
  default     = 22000
  validation {
    condition     = var.port_base >= 1024 && var.port_base + 1999 <= 65535 && floor(var.port_base) == var.port_base
    error_message = "port_base must be an integer from 1024 to 63536."
  }
}

variable "vm_user" {
  description = "Login cloud-init creates with ssh_public_key and passwordless sudo (the server's [ssh] user)."
  type        = string
  default     = "daas"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.vm_user))
    error_message = "vm_user must be a Linux user name (lower-case letters, digits, '_' or '-', at most 32)."
  }
}

variable "templates" {
  description = "The template names this machine serves, comma-separated (default \"debian-12-xfce\"): inventory nodes reports them, and the server places a desktop here only when its template is one of them. Read by the hook alone: a VM is a clone of its template's folder in template_images, else of image_dir, and apply accepts any name."
  type        = string
  default     = "debian-12-xfce"
  validation {
    condition     = can(regex("^\\s*[A-Za-z0-9._-]{1,64}(\\s*,\\s*[A-Za-z0-9._-]{1,64})*\\s*$", var.templates))
    error_message = "templates must be comma-separated template names, each 1-64 letters, digits, '.', '_' or '-'."
  }
}

variable "accel" {
  description = "\"kvm\", \"tcg\" (software emulation) or \"auto\": KVM when a short probe boot under it succeeds, else TCG."
  type        = string
  default     = "auto"
  validation {
    condition     = contains(["auto", "kvm", "tcg"], var.accel)
    error_message = "accel must be \"auto\", \"kvm\" or \"tcg\"."
  }
}

variable "kvm_probe_seconds" {
  description = "How long accel = \"auto\" lets a probe kernel boot under KVM before it falls back to TCG (once per state_dir)."
  type        = number
  default     = 10
  validation {
    condition     = var.kvm_probe_seconds >= 1 && var.kvm_probe_seconds <= 300
    error_message = "kvm_probe_seconds must be from 1 to 300."
  }
}
