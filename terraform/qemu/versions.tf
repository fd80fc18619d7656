terraform {
  # terraform_data (built in since 1.4) and local-exec: no provider to
  # download, so the module works where no registry can be reached.
  required_version = ">= 1.4"
}
