#!/usr/bin/env bash
# The README's test command: installs what is missing, then formatting,
# lints and every test of the workspace, then real QEMU desktops end to end,
# one joined to a test Active Directory (root; 27-32 min on 2 cores with
# a first image build and an empty cargo target dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Each step says how much disk is left: a full disk otherwise fails late
# and cryptically (the whole run needs about 10 GiB; see BENCHMARKS.md).
step() { printf '\n==> %s (%s free, %s)\n' "$*" "$(df -P -h . | awk 'NR == 2 { print $4 }')" "$(date +%T)"; }

# The Rust tests start the test domain controller and the end-to-end test
# stops it; a failure in between must not leave it running (KEEP=1 keeps it).
# The tests' PostgreSQL goes in any case.
on_exit() {
  local status=$?
  [[ -z ${pgdir:-} ]] || scripts/postgres.sh destroy "$pgdir" >/dev/null 2>&1 || true
  if ((status != 0)) && [[ ${KEEP:-0} != 1 ]]; then
    tests/ad/dc.sh stop >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap on_exit EXIT

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "layers: the server's modules import only downwards, no circles (scripts/check-layers.py)"
scripts/check-layers.py --self-test
scripts/check-layers.py

step "terraform fmt -check"
terraform fmt -check -recursive terraform

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "PostgreSQL for the tests: a cluster of this run's own (scripts/postgres.sh)"
pgdir=$(mktemp -d /var/tmp/daas-test-postgres.XXXXXX)
DAAS_TEST_POSTGRES=$(scripts/postgres.sh start "$pgdir")
export DAAS_TEST_POSTGRES
echo "$DAAS_TEST_POSTGRES"

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

step "debian packages: build, systemd-analyze verify, install into a Debian 12 chroot"
deploy/debian/test.sh

step "terraform/qemu: a real VM from the template image (boot, SSH, cloud-init, RDP, port clash, destroy)"
# The image carrying the agent, as the end-to-end test builds it: one build.
cargo build --quiet --workspace --bins
agent=$(mktemp /var/tmp/daas-agent.XXXXXX)
strip -o "$agent" "${CARGO_TARGET_DIR:-$root/target}/debug/daas-agent"
status=0
AGENT_BINARY=$agent terraform/qemu/test.sh || status=$?
rm -f "$agent"
((status == 0)) || exit "$status"

step "end to end: real QEMU desktops through the server, the playbook, the agent, xfreerdp and a test AD domain"
tests/e2e/run.sh
