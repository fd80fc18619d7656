#!/usr/bin/env bash
# The clients' checks and tests, the one entry point the project's test
# command calls. On a fresh clone it installs what it needs
# (clients/setup.sh: clients/python/.venv from PyPI, npm ci), then:
#   buf lint; buf breaking against the last released API (clients/released/);
#   the committed generated code equals what clients/generate.sh makes;
#   Python: mypy (strict), pytest; TypeScript: tsc --noEmit (strict), npm test.
# Both test suites start the real daas-server (target/debug/daas-server,
# built here when missing) with a fresh PKI, the test Terraform module and
# the test playbook.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

start=$SECONDS
step() { printf '\n==> %s  [%ds]\n' "$*" "$((SECONDS - start))"; }
die() { printf 'clients/test: error: %s\n' "$*" >&2; exit 1; }

step "setup (clients/python/.venv, clients/typescript/node_modules)"
clients/setup.sh
buf=clients/typescript/node_modules/.bin/buf
py=$root/clients/python/.venv/bin

step "daas-server binary and the Ansible venv"
server_bin=${CARGO_TARGET_DIR:-$root/target}/debug/daas-server
case $server_bin in /*) ;; *) server_bin=$root/$server_bin ;; esac
# Built when missing or older than a source it is made from (scripts/test.sh
# runs the cargo tests first, which leave it fresh).
if [ ! -x "$server_bin" ] || [ -n "$(find Cargo.toml Cargo.lock build.rs src proto \
    server/Cargo.toml server/src -newer "$server_bin" -type f -print -quit 2>/dev/null)" ]; then
  echo "building $server_bin (cargo build -p daas-server)"
  cargo build --locked -p daas-server
fi
[ -x .venv/bin/ansible-playbook ] || scripts/setup.sh
echo "using $server_bin"

step "buf lint"
"$buf" lint
echo "ok"

step "buf breaking (proto/ against the last released API, clients/released/)"
released=clients/released/api.binpb
[ -f "$released" ] || die "$released is missing: clients/release-api.sh VERSION records a release's API"
echo "against the API of $(cut -d' ' -f1 clients/released/VERSION) (commit $(cut -d' ' -f2 clients/released/VERSION))"
"$buf" breaking proto --against "$released"
# The check can fail: a copy of proto/ without a released file is refused.
broken=$(mktemp -d)
cp -r proto "$broken/proto"
rm "$broken/proto/daas/v1/agent.proto"
if (cd "$broken" && "$root/$buf" breaking proto --against "$root/$released" >/dev/null); then
  rm -rf "$broken"
  die "buf breaking let a deleted file of the released API through"
fi
rm -rf "$broken"
echo "ok (and a deleted released file is refused)"

step "generated code is up to date (clients/generate.sh)"
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
clients/generate.sh "$fresh"
stale=0
diff -r -x __pycache__ "$fresh/python/gen" clients/python/gen || stale=1
diff -r "$fresh/typescript/src/gen" clients/typescript/src/gen || stale=1
if [ "$stale" -ne 0 ]; then
  die "the committed generated code is not what proto/ gives (diff above: < fresh, > committed): run clients/generate.sh and commit the result"
fi
echo "ok"

step "python: mypy (strict)"
(cd clients/python && "$py/mypy")

step "python: pytest"
(cd clients/python && "$py/pytest")

step "typescript: tsc --noEmit (strict)"
(cd clients/typescript && node_modules/.bin/tsc -p tsconfig.json --noEmit)
echo "ok"

step "typescript: npm test"
(cd clients/typescript && npm test --silent)

printf '\nclients/test: all checks passed in %ds\n' "$((SECONDS - start))"
