terraform {
  # Cross-checks between variables are lifecycle preconditions (1.2+);
  # the project's floor is 1.5.
  required_version = ">= 1.5"

  required_providers {
    proxmox = {
      source = "Telmate/proxmox"
      # A pre-release: only an exact pin selects it.
      version = "= 3.0.2-rc04"
    }
  }
}

# The API token comes from the environment the server gives Terraform:
# PM_API_TOKEN_ID and PM_API_TOKEN_SECRET (never a variable, never a file
# Terraform could print).
provider "proxmox" {
  pm_api_url      = var.proxmox_api_url
  pm_tls_insecure = var.proxmox_tls_insecure
  pm_timeout      = var.proxmox_timeout
  # Each session has its own Terraform process and a single VM: nothing to
  # run in parallel inside it.
  pm_parallel = 1
}
