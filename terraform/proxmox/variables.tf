# ---- provisioning contract (terraform/CONTRACT.md): set by the server for every session ----

variable "vm_name" {
  description = "VM name in Proxmox, its hostname and its AD computer name (NetBIOS: at most 15 characters)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$", var.vm_name))
    error_message = "vm_name must be 1-15 lower-case letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "slot" {
  description = "Small integer unique among live sessions; the VM id is vmid_base + slot when the server gives no vm_id (an older server)."
  type        = number
  validation {
    condition     = var.slot >= 0 && var.slot < 1000 && floor(var.slot) == var.slot
    error_message = "slot must be an integer from 0 to 999."
  }
}

variable "ssh_public_key" {
  description = "The server's SSH public key (one OpenSSH line), authorised for ssh_user by cloud-init."
  type        = string
  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) AAAA[A-Za-z0-9+/]+=*( [^\\n]*)?$", trimspace(var.ssh_public_key)))
    error_message = "ssh_public_key must be one OpenSSH public key line (e.g. \"ssh-ed25519 AAAA... comment\")."
  }
}

variable "ssh_host_private_key" {
  description = "The VM's SSH host key the server made (OpenSSH private key, ed25519): installed by cloud-init from a vendor-data snippet; the server's ssh accepts no other."
  type        = string
  sensitive   = true
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
  description = "Name of the Proxmox cloud-init template to clone (see README.md for what it must contain)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.template))
    error_message = "template must be 1-64 letters, digits, '.', '_' or '-'."
  }
}

variable "cores" {
  description = "vCPUs (cores of one socket)."
  type        = number
  validation {
    condition     = var.cores >= 1 && var.cores <= 128 && floor(var.cores) == var.cores
    error_message = "cores must be an integer from 1 to 128."
  }
}

variable "memory_mb" {
  description = "Memory in MiB."
  type        = number
  validation {
    condition     = var.memory_mb >= 512 && var.memory_mb <= 1048576 && floor(var.memory_mb) == var.memory_mb
    error_message = "memory_mb must be an integer from 512 to 1048576."
  }
}

variable "disk_gb" {
  description = "Size of the OS disk in GiB; at least template_disk_gb (a smaller size would recreate the disk empty)."
  type        = number
  validation {
    condition     = var.disk_gb >= 1 && var.disk_gb <= 65536 && floor(var.disk_gb) == var.disk_gb
    error_message = "disk_gb must be an integer from 1 to 65536."
  }
}

variable "session_id" {
  description = "The session's id (a UUID), for the VM's tags and description."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.session_id))
    error_message = "session_id must be a lower-case UUID."
  }
}

variable "username" {
  description = "The AD account the desktop is for (sAMAccountName), for the VM's tags and description."
  type        = string
  validation {
    condition     = can(regex("^[^\"/\\\\\\[\\]:;|=,+*?<>@[:cntrl:]]{1,20}$", var.username))
    error_message = "username must be 1-20 characters, none of \"/\\[]:;|=,+*?<>@ nor a control character."
  }
  validation {
    condition     = !can(regex("^[. ]+$", var.username))
    error_message = "username must not consist only of dots and spaces."
  }
}

variable "deployment_id" {
  description = "The server's deployment id, for the VM's deployment-<id> tag (the inventory hook reports it); empty (an older server): no such tag."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[a-z0-9]{0,32}$", var.deployment_id))
    error_message = "deployment_id must be at most 32 lower-case letters or digits."
  }
}

variable "target_node" {
  description = "The Proxmox node the server placed the clone on (from inventory nodes: online, holding the template). Once a site setting of the same name, so the kept variables of older sessions still carry it. The default only lets such a file be read: an empty name is refused."
  type        = string
  default     = ""
  validation {
    condition     = var.target_node != ""
    error_message = "target_node is empty: the server places each desktop on a node (this module's inventory reports them) and gives its name; a server that does not needs target_node in [terraform.variables] (older servers only)."
  }
  validation {
    condition     = var.target_node == "" || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$", var.target_node))
    error_message = "target_node must be a Proxmox node name (letters, digits, '.', '-'; at most 63)."
  }
}

variable "vm_id" {
  description = "The VM id the server picked ([placement] vm_id_base + slot), unique among the deployment's live sessions, so parallel applies never race for the next free id; 0: not given (an older server), then vmid_base + slot."
  type        = number
  default     = 0
  validation {
    condition     = var.vm_id == 0 || (var.vm_id >= 100 && var.vm_id <= 999999999 && floor(var.vm_id) == var.vm_id)
    error_message = "vm_id must be 0 (not given) or an integer from 100 to 999999999."
  }
}

variable "restore_from" {
  description = "The kept disk the VM is made from: \"\" clones `template` (linked); an id full-clones the stopped VM daas-kept-ID that `inventory snapshot` made."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9-]{0,52})?$", var.restore_from))
    error_message = "restore_from must be empty or a kept disk's id (1-53 of a-z, 0-9 and -)."
  }
}

# ---- Proxmox site settings: the server's [terraform.variables] ----

variable "proxmox_api_url" {
  description = "Proxmox VE API URL, e.g. https://pve1.example.org:8006/api2/json."
  type        = string
  validation {
    condition     = can(regex("^https://[^/\\s]+/api2/json/?$", var.proxmox_api_url))
    error_message = "proxmox_api_url must look like https://HOST:8006/api2/json."
  }
}

variable "proxmox_tls_insecure" {
  description = "Skip verification of the API's TLS certificate (a self-signed PVE certificate). Prefer adding the PVE CA to the system trust store."
  type        = bool
  default     = false
}

variable "proxmox_timeout" {
  description = "Timeout in seconds of each Proxmox API task (clone, resize, start)."
  type        = number
  default     = 600
  validation {
    condition     = var.proxmox_timeout >= 30 && var.proxmox_timeout <= 3600 && floor(var.proxmox_timeout) == var.proxmox_timeout
    error_message = "proxmox_timeout must be an integer from 30 to 3600."
  }
}

variable "vmid_base" {
  description = "Only for the sessions of an older server, which gives no vm_id: their VM id is vmid_base + slot. The server picks VM ids itself now ([placement] vm_id_base; it refuses vmid_base in [terraform.variables])."
  type        = number
  default     = 10000
  validation {
    condition     = var.vmid_base >= 100 && var.vmid_base + 999 <= 999999999 && floor(var.vmid_base) == var.vmid_base
    error_message = "vmid_base must be an integer from 100 to 999999000 (VM ids are 100-999999999)."
  }
}

variable "pool" {
  description = "Proxmox resource pool for the desktops; empty: none."
  type        = string
  default     = ""
  validation {
    condition     = var.pool == "" || can(regex("^[A-Za-z0-9_.-]{1,64}$", var.pool))
    error_message = "pool must be empty or a pool id (letters, digits, '_', '.', '-')."
  }
}

variable "storage" {
  description = "Storage of the template's OS disk. A linked clone stays on it: another storage would copy the whole disk."
  type        = string
  default     = "local-lvm"
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]*$", var.storage))
    error_message = "storage must be a Proxmox storage id."
  }
}

variable "disk_format" {
  description = "Format of the template's OS disk: raw on LVM-thin, ZFS and Ceph, qcow2 on directory/NFS storage. Another format than the template's would move (copy) the disk."
  type        = string
  default     = "raw"
  validation {
    condition     = contains(["raw", "qcow2", "vmdk"], var.disk_format)
    error_message = "disk_format must be raw, qcow2 or vmdk."
  }
}

variable "disk_iothread" {
  description = "iothread on the OS disk, as the template has it (PVE's default with virtio-scsi-single is on)."
  type        = bool
  default     = true
}

variable "disk_discard" {
  description = "Pass discard/TRIM to thin storage, as the template has it."
  type        = bool
  default     = true
}

variable "template_disk_gb" {
  description = "Size of the template's OS disk in GiB: disk_gb may not be smaller (the provider would recreate the disk empty)."
  type        = number
  default     = 20
  validation {
    condition     = var.template_disk_gb >= 1 && floor(var.template_disk_gb) == var.template_disk_gb
    error_message = "template_disk_gb must be a positive integer."
  }
}

variable "cloudinit_storage" {
  description = "Storage of the cloud-init drive (slot ide2)."
  type        = string
  default     = "local-lvm"
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]*$", var.cloudinit_storage))
    error_message = "cloudinit_storage must be a Proxmox storage id."
  }
}

variable "scsihw" {
  description = "SCSI controller, as the template has it (the provider's default, lsi, is not PVE's)."
  type        = string
  default     = "virtio-scsi-single"
  validation {
    condition     = contains(["lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"], var.scsihw)
    error_message = "scsihw must be one of lsi, lsi53c810, virtio-scsi-pci, virtio-scsi-single, megasas, pvscsi."
  }
}

variable "bios" {
  description = "Firmware, as the template has it: seabios, or ovmf (UEFI; then efidisk_storage holds the EFI vars disk)."
  type        = string
  default     = "seabios"
  validation {
    condition     = contains(["seabios", "ovmf"], var.bios)
    error_message = "bios must be seabios or ovmf."
  }
}

variable "efidisk_storage" {
  description = "Storage of the EFI vars disk when bios = \"ovmf\"; empty: the OS disk's storage."
  type        = string
  default     = ""
  validation {
    condition     = var.efidisk_storage == "" || can(regex("^[A-Za-z][A-Za-z0-9_.-]*$", var.efidisk_storage))
    error_message = "efidisk_storage must be empty or a Proxmox storage id."
  }
}

variable "cpu_type" {
  description = "Emulated CPU type (the provider's default is host; PVE 8 creates x86-64-v2-AES). host is fastest but ties the VM to identical nodes."
  type        = string
  default     = "x86-64-v2-AES"
  validation {
    condition     = can(regex("^[A-Za-z0-9._+-]+$", var.cpu_type))
    error_message = "cpu_type must be a QEMU CPU model name such as host or x86-64-v2-AES."
  }
}

variable "serial_console" {
  description = "Declare the serial0 socket that PVE's cloud-image recipe adds to the template (an undeclared device is removed from the clone)."
  type        = bool
  default     = true
}

variable "bridge" {
  description = "Bridge (or SDN vnet) of the VM's network interface."
  type        = string
  default     = "vmbr0"
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,15}$", var.bridge))
    error_message = "bridge must be a Linux bridge or vnet name (1-15 letters, digits, '_', '.', '-')."
  }
}

variable "vlan_tag" {
  description = "VLAN tag of the VM's interface; 0: untagged."
  type        = number
  default     = 0
  validation {
    condition     = var.vlan_tag >= 0 && var.vlan_tag <= 4094 && floor(var.vlan_tag) == var.vlan_tag
    error_message = "vlan_tag must be an integer from 0 (untagged) to 4094."
  }
}

variable "firewall" {
  description = "Enable the Proxmox firewall on the VM's interface."
  type        = bool
  default     = false
}

variable "ssh_user" {
  description = "Login cloud-init creates with ssh_public_key: the server's [ssh] user."
  type        = string
  default     = "daas"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a Linux user name (lower-case letters, digits, '_', '-'; at most 32)."
  }
}

variable "nameserver" {
  description = "DNS servers for cloud-init, space-separated (the AD domain controllers); empty: from DHCP."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[0-9A-Fa-f.: ]*$", var.nameserver))
    error_message = "nameserver must be empty or space-separated IP addresses."
  }
}

variable "searchdomain" {
  description = "DNS search domain for cloud-init (the AD domain); empty: from DHCP."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*)?$", var.searchdomain))
    error_message = "searchdomain must be empty or a DNS domain name."
  }
}

variable "agent_timeout" {
  description = "Seconds the provider waits for the QEMU guest agent to report an IPv4 address after the start."
  type        = number
  default     = 300
  validation {
    condition     = var.agent_timeout >= 1 && var.agent_timeout <= 3600 && floor(var.agent_timeout) == var.agent_timeout
    error_message = "agent_timeout must be an integer from 1 to 3600."
  }
}

variable "rdp_port" {
  description = "Port xrdp listens on in the VM (the desktop-config role's desktop_config_xrdp_port)."
  type        = number
  default     = 3389
  validation {
    condition     = var.rdp_port >= 1 && var.rdp_port <= 65535 && floor(var.rdp_port) == var.rdp_port
    error_message = "rdp_port must be a TCP port (1-65535)."
  }
}

variable "snippets_storage" {
  description = "Proxmox storage with the 'snippets' content type that holds each VM's cloud-init vendor data (its host key)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]*$", var.snippets_storage))
    error_message = "snippets_storage must be a Proxmox storage id."
  }
}

variable "snippets_dir" {
  description = "That storage's snippets/ folder as the server sees it (a shared storage mounted on the server, e.g. /mnt/pve/shared/snippets)."
  type        = string
  validation {
    condition     = startswith(var.snippets_dir, "/") && !endswith(var.snippets_dir, "/")
    error_message = "snippets_dir must be an absolute path without a trailing '/'."
  }
}

variable "snippet_mode" {
  description = "File mode of the snippets (they hold the VM's host private key): 0600, or 0640/0644 when the storage squashes PVE's root."
  type        = string
  default     = "0600"
  validation {
    condition     = contains(["0600", "0640", "0644"], var.snippet_mode)
    error_message = "snippet_mode must be 0600, 0640 or 0644."
  }
}
