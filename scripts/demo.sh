#!/usr/bin/env bash
# The README's main-job command: starts daas-server on the embedded default
# (deploy/demo.toml: SQLite under .data/demo, the test Terraform module and
# test playbook, no hypervisor needed), creates a desktop with the daas CLI
# and shows it, destroys it, then stops the server. The history persists in
# .data/demo (SQLite).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/setup.sh
echo "demo: building daas-server and daas"
cargo build --quiet --workspace --bins
bin=${CARGO_TARGET_DIR:-$root/target}/debug

mkdir -p .data/demo
log=.data/demo/server.log
"$bin/daas-server" --config deploy/demo.toml >.data/demo/server.out 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  addr=$(sed -n 's/^daas-server listening on //p' .data/demo/server.out)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "demo: the server did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "${addr:-}" ] || { echo "demo: the server did not start listening" >&2; exit 1; }
pki=.data/demo/pki
cert=$(find "$pki/users" -name '*.pem' ! -name '*-key.pem' | head -1)
[ -n "$cert" ] || { echo "demo: no user certificate in $pki/users" >&2; exit 1; }
export DAAS_ENDPOINT="https://$addr" DAAS_CA="$pki/ca.pem" DAAS_CERT="$cert" DAAS_KEY="${cert%.pem}-key.pem"
echo "demo: daas-server listening on $addr with mutual TLS (log: $log)"
echo "demo: client certificate $DAAS_CERT (dev PKI in $pki)"
echo "demo: note: the embedded default is the test Terraform module for now; it"
echo "      makes no real VM, so the RDP endpoint below is not a real desktop."
echo

echo "\$ daas create"
"$bin/daas" create
echo
echo "\$ daas list"
"$bin/daas" list
echo
id=$("$bin/daas" list --state ready | awk 'NR == 2 { print $1 }')
echo "\$ daas destroy $id"
"$bin/daas" destroy "$id"
echo
echo "demo: done. To keep going, run the server yourself:"
echo "  $bin/daas-server --config deploy/demo.toml"
echo "and, in another terminal, with DAAS_ENDPOINT=https://<the address it prints>"
echo "and DAAS_CA=$DAAS_CA DAAS_CERT=$DAAS_CERT DAAS_KEY=$DAAS_KEY:"
echo "  $bin/daas list | show ID | watch ID | destroy ID"
