# Test module: the provisioning contract (terraform/CONTRACT.md) with nothing
# but the built-in terraform_data resource (no provider to download). It
# creates no VM: outputs are derived from the variables, and marker files
# prove that create and destroy ran. Used by the integration tests and, until
# the QEMU module exists, by `make demo`.

terraform {
  required_version = ">= 1.4"
}

# ---- contract inputs ----

variable "vm_name" {
  description = "VM name, also its AD computer name (at most 15 characters)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9-]{1,15}$", var.vm_name))
    error_message = "vm_name must be 1-15 lower-case letters, digits or '-'."
  }
}

variable "slot" {
  description = "Small integer unique among live sessions; fixes the VM id and ports."
  type        = number
  validation {
    condition     = var.slot >= 0 && var.slot < 1000 && floor(var.slot) == var.slot
    error_message = "slot must be an integer from 0 to 999."
  }
}

variable "ssh_public_key" {
  description = "The server's SSH public key, for the VM's login."
  type        = string
}

variable "ssh_host_private_key" {
  description = "The VM's SSH host key the server made; a VM would install it (here: nothing boots)."
  type        = string
  sensitive   = true
}

variable "ssh_host_public_key" {
  description = "Its public half; written to NAME.hostkey in marker_dir, for the tests."
  type        = string
}

variable "template" {
  description = "Template to clone."
  type        = string
}

variable "cores" {
  description = "vCPUs."
  type        = number
}

variable "memory_mb" {
  description = "Memory in MiB."
  type        = number
}

variable "disk_gb" {
  description = "Disk size in GiB."
  type        = number
}

variable "session_id" {
  description = "Session id, for tags."
  type        = string
}

variable "username" {
  description = "User the desktop is for, for tags."
  type        = string
}

variable "deployment_id" {
  description = "The server's deployment id, written to NAME.deployment in marker_dir (inventory list reports it); empty from an older server."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[a-z0-9]{0,32}$", var.deployment_id))
    error_message = "deployment_id must be at most 32 lower-case letters or digits."
  }
}

variable "target_node" {
  description = "The simulated node the server placed the VM on (inventory nodes reports node-1 .. node-N when node_count is set); empty: no placement. When given, apply writes NAME.node, NAME.memory and NAME.cores in marker_dir, and inventory nodes counts the VM there."
  type        = string
  default     = ""
  validation {
    condition     = var.target_node == "" || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$", var.target_node))
    error_message = "target_node must be empty or a node name (letters, digits, '.', '-'; at most 63)."
  }
}

variable "vm_id" {
  description = "The VM id the server picked ([placement] vm_id_base + slot); 0 from an older server. Written to NAME.vmid in marker_dir, for the tests; the vm_id output stays 9000 + slot."
  type        = number
  default     = 0
  validation {
    condition     = var.vm_id == 0 || (var.vm_id >= 100 && var.vm_id <= 999999999 && floor(var.vm_id) == var.vm_id)
    error_message = "vm_id must be 0 (not given) or an integer from 100 to 999999999."
  }
}

variable "restore_from" {
  description = "The kept disk the VM is made from (\"\": a fresh one); written to NAME.restore_from in marker_dir, for the tests; the disk is the one `inventory restore` staged."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9-]{0,52})?$", var.restore_from))
    error_message = "restore_from must be empty or a kept disk's id (1-53 of a-z, 0-9 and -)."
  }
}

# ---- test knobs (set through the server's [terraform.variables]) ----

variable "create_delay_seconds" {
  description = "Seconds the create takes, like a slow hypervisor."
  type        = number
  default     = 0
}

variable "destroy_delay_seconds" {
  description = "Seconds the destroy takes."
  type        = number
  default     = 0
}

variable "fail_create" {
  description = "Fail the apply after the VM resource exists."
  type        = bool
  default     = false
}

variable "echo_token" {
  description = "Print PM_API_TOKEN_SECRET, to prove the server masks secrets in output."
  type        = bool
  default     = false
}

variable "marker_dir" {
  description = "Folder for NAME.created / NAME.destroyed markers; empty: none."
  type        = string
  default     = ""
}

variable "port_base" {
  description = "Ports are port_base + 2*slot (SSH) and port_base + 2*slot + 1 (RDP)."
  type        = number
  default     = 42000
}

variable "boot_wait" {
  description = "The boot_wait output: \"none\" (nothing boots), or \"ssh\": the server waits for an SSH banner on ssh_host:ssh_port, which nothing serves here, so the session stays BOOTING."
  type        = string
  default     = "none"
  validation {
    condition     = contains(["none", "ssh"], var.boot_wait)
    error_message = "boot_wait must be \"none\" or \"ssh\"."
  }
}

variable "outputs" {
  description = "Contract outputs to print instead of the derived ones (a misbehaving module, for the server's validation tests)."
  type        = map(string)
  default     = {}
}

resource "terraform_data" "vm" {
  input = {
    vm_name       = var.vm_name
    marker_dir    = var.marker_dir
    destroy_delay = var.destroy_delay_seconds
    node          = var.target_node
  }

  provisioner "local-exec" {
    command = <<-EOT
      echo "creating $VM_NAME from $TEMPLATE"
      sleep "$DELAY"
      if [ "$ECHO_TOKEN" = true ]; then echo "token: $PM_API_TOKEN_SECRET"; fi
      if [ -n "$MARKER_DIR" ]; then
        if [ -n "$DEPLOYMENT_ID" ]; then echo "$DEPLOYMENT_ID" > "$MARKER_DIR/$VM_NAME.deployment"; fi
        echo "$SESSION_ID" > "$MARKER_DIR/$VM_NAME.created"
        echo "$HOST_KEY" > "$MARKER_DIR/$VM_NAME.hostkey"
        echo "$VM_ID" > "$MARKER_DIR/$VM_NAME.vmid"
        echo "$DISK_GB" > "$MARKER_DIR/$VM_NAME.disk_gb"
        if [ -n "$RESTORE_FROM" ]; then echo "$RESTORE_FROM" > "$MARKER_DIR/$VM_NAME.restore_from"; fi
        # Its disk: a kept one staged by `inventory restore`, else blank.
        if [ -f "$MARKER_DIR/$VM_NAME.restore" ]; then
          mv "$MARKER_DIR/$VM_NAME.restore" "$MARKER_DIR/$VM_NAME.disk"
          echo "restored the disk of $VM_NAME"
        else
          : > "$MARKER_DIR/$VM_NAME.disk"
        fi
        # Placed by the server: inventory nodes counts the VM on its node.
        if [ -n "$TARGET_NODE" ]; then
          echo "$MEMORY_MB" > "$MARKER_DIR/$VM_NAME.memory"
          echo "$CORES" > "$MARKER_DIR/$VM_NAME.cores"
          echo "$TARGET_NODE" > "$MARKER_DIR/$VM_NAME.node"
        fi
        if [ -n "$PM_API_TOKEN_SECRET" ]; then
          printf %s "$PM_API_TOKEN_SECRET" | sha256sum | cut -d' ' -f1 > "$MARKER_DIR/$VM_NAME.token"
        fi
      fi
      echo "created $VM_NAME"
    EOT
    environment = {
      VM_NAME       = var.vm_name
      TEMPLATE      = var.template
      DELAY         = tostring(var.create_delay_seconds)
      MARKER_DIR    = var.marker_dir
      SESSION_ID    = var.session_id
      DEPLOYMENT_ID = var.deployment_id
      ECHO_TOKEN    = tostring(var.echo_token)
      HOST_KEY      = var.ssh_host_public_key
      VM_ID         = tostring(var.vm_id)
      TARGET_NODE   = var.target_node
      MEMORY_MB     = tostring(var.memory_mb)
      CORES         = tostring(var.cores)
      DISK_GB       = tostring(var.disk_gb)
      RESTORE_FROM  = var.restore_from
    }
  }

  # One line per destroy run (the inventory hook's destroy appends its own),
  # so tests can count them. While MARKER_DIR/NAME.refuse-destroy exists, or
  # the VM's node is offline (MARKER_DIR/node-I.state), the destroy fails, as
  # a hypervisor that refuses it would.
  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      sleep "$DELAY"
      if [ -n "$MARKER_DIR" ] && [ -e "$MARKER_DIR/$VM_NAME.refuse-destroy" ]; then
        echo "Error: simulated hypervisor refusing to destroy $VM_NAME" >&2
        exit 1
      fi
      if [ -n "$MARKER_DIR" ] && [ -n "$NODE" ] && [ "$(head -n 1 "$MARKER_DIR/$NODE.state" 2>/dev/null)" = offline ]; then
        echo "Error: node $NODE is offline: cannot destroy $VM_NAME" >&2
        exit 1
      fi
      if [ -n "$MARKER_DIR" ]; then
        echo "terraform $(date +%s.%N)" >> "$MARKER_DIR/$VM_NAME.destroyed"
      fi
      echo "destroyed $VM_NAME"
    EOT
    environment = {
      VM_NAME    = self.input.vm_name
      DELAY      = tostring(self.input.destroy_delay)
      MARKER_DIR = self.input.marker_dir
      NODE       = self.input.node
    }
  }
}

# A second step after the VM exists, so a failure here leaves something the
# cleanup must destroy (a failed resource is tainted and its own destroy
# provisioner would not run). It also fails when the target node went
# offline (MARKER_DIR/node-I.state) while the VM was made.
resource "terraform_data" "post_create" {
  depends_on = [terraform_data.vm]
  input      = var.fail_create

  provisioner "local-exec" {
    command = <<-EOT
      if [ "$FAIL" = true ]; then echo 'Error: simulated hypervisor failure (fail_create = true)' >&2; exit 1; fi
      if [ -n "$MARKER_DIR" ] && [ -n "$NODE" ] && [ "$(head -n 1 "$MARKER_DIR/$NODE.state" 2>/dev/null)" = offline ]; then
        echo "Error: node $NODE went offline while $VM_NAME was made" >&2
        exit 1
      fi
    EOT
    environment = {
      FAIL       = tostring(var.fail_create)
      MARKER_DIR = var.marker_dir
      NODE       = var.target_node
      VM_NAME    = var.vm_name
    }
  }
}

# ---- contract outputs ----

output "vm_name" {
  value = var.vm_name
}

output "vm_id" {
  value = lookup(var.outputs, "vm_id", tostring(9000 + var.slot))
}

output "ssh_host" {
  value = lookup(var.outputs, "ssh_host", "127.0.0.1")
}

output "ssh_port" {
  value = lookup(var.outputs, "ssh_port", tostring(var.port_base + 2 * var.slot))
}

output "rdp_host" {
  value = lookup(var.outputs, "rdp_host", "127.0.0.1")
}

output "rdp_port" {
  value = lookup(var.outputs, "rdp_port", tostring(var.port_base + 2 * var.slot + 1))
}

# "none" (the default): nothing boots, the server skips the SSH and
# cloud-init wait. "ssh": the server waits for a banner nobody serves.
output "boot_wait" {
  value = var.boot_wait
}
