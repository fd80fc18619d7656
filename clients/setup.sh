#!/usr/bin/env bash
# Installs what the clients' code generation and tests need, and nothing
# when it is already there:
#   clients/python/.venv                  python3 -m venv + pip install -e '.[test]'
#   clients/typescript/node_modules       npm ci (package-lock.json)
# Each is redone only when its inputs change (a sha256 stamp of
# pyproject.toml, of package-lock.json), so a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/clients"

say() { printf 'clients/setup: %s\n' "$*"; }
die() { printf 'clients/setup: error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python 3.10 or newer is needed as python3"
command -v node >/dev/null && command -v npm >/dev/null \
  && node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
  || die "Node 20 or newer, with npm, is needed"

# ---- Python: clients/python/.venv ----
venv=python/.venv
stamp=$venv/.daas-stamp
want=$( { python3 --version; sha256sum python/pyproject.toml; } | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating $venv (daas-client with its test extras, from PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e './python[test]'
  echo "$want" > "$stamp"
fi

# ---- TypeScript: clients/typescript/node_modules ----
modules=typescript/node_modules
stamp=$modules/.daas-stamp
want=$( { node --version; sha256sum typescript/package-lock.json; } | sha256sum | cut -d' ' -f1)
if [ ! -d "$modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "npm ci in clients/typescript"
  (cd typescript && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
