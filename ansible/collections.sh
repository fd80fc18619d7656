#!/usr/bin/env bash
# Prints a folder for ANSIBLE_COLLECTIONS_PATH that holds community.general
# (its chroot connection runs the roles in a directory tree: the template
# image's build, the roles' chroot test). No Galaxy here: the collection is
# unpacked from the `ansible` package on PyPI (pinned with its hash in
# collections-requirements.txt) once, into ${DAAS_CACHE_DIR:-/var/tmp/daas-cache}.
# Needs the project's venv (scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$(cd "$here/.." && pwd)/.venv
die() { printf 'ansible/collections.sh: error: %s\n' "$*" >&2; exit 1; }
[ -x "$venv/bin/pip" ] || die "$venv is missing: run scripts/setup.sh"
cache=${DAAS_CACHE_DIR:-/var/tmp/daas-cache}
mkdir -p "$cache"
ansible_pkg=$(grep -o '^ansible==[0-9.]*' "$here/collections-requirements.txt")
collections=$cache/collections-${ansible_pkg#ansible==}
exec 8>"$cache/.collections.lock"
flock 8
if [ ! -f "$collections/ansible_collections/community/general/MANIFEST.json" ]; then
  printf 'ansible/collections.sh: fetching community.general from PyPI (%s)\n' "$ansible_pkg" >&2
  wheels=$(mktemp -d "$cache/wheels.XXXXXX")
  trap 'rm -rf "$wheels"' EXIT
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$here/collections-requirements.txt" -d "$wheels" >&2 \
    || die "cannot download $ansible_pkg from PyPI"
  rm -rf "$collections.tmp"
  "$venv/bin/python" - "$wheels" "$collections.tmp" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("ansible-*.whl"))
prefix = "ansible_collections/community/general/"
with zipfile.ZipFile(wheel) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith(prefix)])
PY
  rm -rf "$collections"
  mv "$collections.tmp" "$collections"
fi
echo "$collections"
