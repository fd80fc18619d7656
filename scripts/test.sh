#!/usr/bin/env bash
# The README's test command: installs what is missing, then formatting,
# lints and every test of the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "terraform fmt -check"
terraform fmt -check -recursive terraform

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "clients (buf lint and breaking, generated code, Python and TypeScript suites)"
clients/test.sh

step "ansible and terraform/proxmox (lint, syntax, HCL structure, roles run in a Debian 12 chroot)"
ansible/test.sh
