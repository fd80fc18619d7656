#!/usr/bin/env bash
# Checks of the production provisioning path (terraform/proxmox and
# ansible/): lints, syntax checks, the Terraform module's structure, and the
# roles run for real in a Debian 12 chroot (tests/chroot-roles.sh), twice.
#
#   ansible/test.sh                         everything (root needed for the chroot)
#   DAAS_SKIP_CHROOT_TEST=1 ansible/test.sh everything but the chroot run
#
# Caches: ${DAAS_CACHE_DIR:-/var/tmp/daas-cache} (see tests/chroot-roles.sh).
set -euo pipefail
ansible_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$ansible_dir")
cd "$root"
venv=$root/.venv
export PATH=$venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 ANSIBLE_NOCOLOR=1 NO_COLOR=1
# A TF_CLI_CONFIG_FILE naming a missing file only adds warnings to fmt.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi

started=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }
timed() { local t0; t0=$(date +%s); "$@"; printf '    (%s s)\n' "$(($(date +%s) - t0))"; }

if [ ! -x "$venv/bin/ansible-lint" ] || [ ! -x "$venv/bin/pytest" ]; then
  step "setup (the .venv lacks the linters)"
  scripts/setup.sh
fi

step "secrets in group_vars are vault-encrypted"
vault_check() {
  local f bad=0
  for f in ansible/playbooks/group_vars/*/vault*.yml ansible/playbooks/group_vars/*/vault*.yaml; do
    [ -e "$f" ] || continue
    if head -c 14 "$f" | grep -q '^\$ANSIBLE_VAULT'; then
      echo "    ok: $f"
    else
      echo "    NOT ENCRYPTED: $f (ansible-vault encrypt it)" >&2
      bad=1
    fi
  done
  return "$bad"
}
timed vault_check

step "yamllint ansible/"
timed bash -c 'cd ansible && yamllint --strict .'

step "ansible-lint ansible/ (production profile)"
timed bash -c 'cd ansible && ansible-lint --offline'

step "ansible-playbook --syntax-check"
syntax() {
  for book in ansible/playbooks/*.yml; do
    ANSIBLE_CONFIG=ansible/ansible.cfg ansible-playbook --syntax-check -i localhost, "$book" >/dev/null
    echo "    ok: $book"
  done
  # Without ansible.cfg too: the roles are found through playbooks/roles.
  for book in ansible/playbooks/deploy-desktop.yml ansible/playbooks/teardown.yml; do
    (cd / && ANSIBLE_CONFIG= ansible-playbook --syntax-check -i localhost, "$root/$book" >/dev/null)
    echo "    ok: $book (no ansible.cfg)"
  done
}
timed syntax

step "terraform fmt -check terraform/proxmox"
fmt() {
  terraform fmt -check -recursive -diff terraform/proxmox
  # The example variables file too (fmt only reads *.tfvars).
  local tmp
  tmp=$(mktemp -d)
  cp terraform/proxmox/terraform.tfvars.example "$tmp/example.tfvars"
  terraform fmt -check -diff "$tmp/example.tfvars" || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
}
timed fmt

step "terraform/proxmox: structure and validations, the hook against fakepve, terraform test with a mocked provider (pytest)"
timed python -m pytest -p no:cacheprovider -q terraform/proxmox/tests

if [ "${DAAS_SKIP_CHROOT_TEST:-0}" = 1 ]; then
  step "chroot run of the roles: skipped (DAAS_SKIP_CHROOT_TEST=1)"
else
  step "the roles for real in a Debian 12 chroot, twice (ansible/tests/chroot-roles.sh)"
  timed ansible/tests/chroot-roles.sh
fi

printf '\nansible/test.sh: all checks passed in %s s\n' "$(($(date +%s) - started))"
