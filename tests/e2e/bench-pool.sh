#!/usr/bin/env bash
# Benchmark (not a test): cold creates and warm-pool claims of real QEMU
# desktops in one run, through the server and the CLI (root; ~30 min on 2
# cores, TCG):
#
#   tests/e2e/bench-pool.sh [CLAIMS (10)] [COLD (3)]
#
#   1. COLD creates one after the other with no pool (`daas create
#      --session-user bench`): request to READY as the CLI sees it, and
#      Terraform, boot and Ansible from the events; each destroyed before
#      the next;
#   2. a pool of one: CLAIMS times, wait for its desktop to be READY (the
#      machine otherwise idle), claim it with the same create, destroy it
#      (the pool builds the next); each line says whether the desktop's
#      agent made the session user or the playbook did.
# Prints p50 and p95 (nearest rank) of each, and keeps the figures and the
# events in $ARTIFACTS (bench-pool.txt, bench-*.ndjson). BENCHMARKS.md
# records its results. Environment as tests/e2e/run.sh: DAAS_IMAGE_CACHE,
# DAAS_ARTIFACTS_DIR, CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=tests/e2e/server.sh
. tests/e2e/server.sh

CLAIMS=${1:-10}
COLD=${2:-3}
T0=$SECONDS
log() { printf '[bench %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
[[ $(id -u) == 0 ]] || fail "run as root (QEMU, the image build)"

CACHE_DIR=${DAAS_IMAGE_CACHE:-$root/.data/qemu/images}
ARTIFACTS=${DAAS_ARTIFACTS_DIR:-$root/target/e2e-artifacts}
mkdir -p "$ARTIFACTS"
BIN=${CARGO_TARGET_DIR:-$root/target}/debug
WORK=/var/tmp/daas-bench-$$
SERVER_PID=
# A throwaway password for throwaway VMs reachable on 127.0.0.1 only.
export DAAS_SESSION_PASSWORD="Bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')!"
mkdir -p "$WORK/state"
chmod 700 "$WORK"

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
alive() {
  "$BIN/daas" list --json 2>/dev/null | jq -r 'if type == "array" then .[] else . end
    | select(.state != "DESTROYED" and .state != "FAILED") | .id'
}
# The server again without the pool (which retires its desktop), every
# desktop destroyed, and waited for.
teardown() {
  local id deadline=$((SECONDS + 300))
  stop_server
  start_server
  for id in $(alive); do "$BIN/daas" destroy "$id" >/dev/null 2>&1 || true; done
  while [[ -n $(alive) ]] && ((SECONDS < deadline)); do sleep 2; done
  stop_server
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $SERVER_PID ]] && teardown
  if ((status != 0)); then
    cp "$WORK/server.log" "$ARTIFACTS/bench-server.log" 2>/dev/null
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "cargo build, setup, image"
cargo build --quiet --workspace --bins
scripts/setup.sh >/dev/null
strip -o "$WORK/daas-agent" "$BIN/daas-agent"
IMAGE_DIR=$(terraform/qemu/image/build.sh --cache-dir "$CACHE_DIR" --agent-binary "$WORK/daas-agent" | tail -n 1)
[[ -f $IMAGE_DIR/disk.qcow2 ]] || fail "build.sh printed no image folder"

export DAAS_DATA_DIR=$WORK/data
export DAAS_TERRAFORM__VARIABLES__IMAGE_DIR=$IMAGE_DIR
export DAAS_TERRAFORM__VARIABLES__STATE_DIR=$WORK/state
export DAAS_AGENT__BINARY=$WORK/daas-agent
start_server() { # VAR=value ... for this run
  if (exec 3<>/dev/tcp/127.0.0.1/50061) 2>/dev/null; then fail "port 50061 is in use (another server?)"; fi
  env "$@" "$BIN/daas-server" --config deploy/qemu.toml >"$WORK/server.out" 2>>"$WORK/server.log" &
  SERVER_PID=$!
  local addr
  addr=$(listening_address "$WORK/server.out" "$SERVER_PID") || fail "the server did not start (see $WORK/server.log)"
  export DAAS_ENDPOINT="https://$addr"
  local cert
  cert=$(find "$DAAS_DATA_DIR/pki/users" -name '*.pem' ! -name '*-key.pem' -print -quit)
  export DAAS_CA=$DAAS_DATA_DIR/pki/ca.pem DAAS_CERT=$cert DAAS_KEY=${cert%.pem}-key.pem
}
state_of() { "$BIN/daas" show "$1" --json | jq -r .state; }
wait_destroyed() { # ID
  local deadline=$((SECONDS + 300))
  until [[ $(state_of "$1") == DESTROYED ]]; do
    ((SECONDS < deadline)) || fail "$1 is not DESTROYED after 300 s"
    sleep 2
  done
}
# One create: its wall time in ms (the CLI's, request to READY) to stdout.
create() { # NAME
  local events=$ARTIFACTS/bench-$1.ndjson t_ms id
  t_ms=$(date +%s%3N)
  "$BIN/daas" create --session-user bench --json >"$events" || fail "daas create ($1) exited $? (events: $events)"
  echo $(($(date +%s%3N) - t_ms))
  id=$(jq -rn 'first(inputs | .session_id // empty)' "$events")
  [[ $(state_of "$id") == READY ]] || fail "$1: $id is not READY"
}
session_of() { jq -rn 'first(inputs | .session_id // empty)' "$ARTIFACTS/bench-$1.ndjson"; }
# "STAGE=seconds ..." from the events' stage changes.
stages() { # NAME
  jq -rs '[.[] | select(.stage_change.previous != null)
    | "\(.stage_change.previous)=\(.stage_change.previous_duration_ms / 1000 * 10 | round / 10)"] | join(" ")' \
    "$ARTIFACTS/bench-$1.ndjson"
}
# p50 and p95 (nearest rank) of milliseconds, in seconds.
percentiles() { # MS...
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR * 50 + 99) / 100)]; p95 = v[int((NR * 95 + 99) / 100)]
    printf "p50 %.1f s, p95 %.1f s (n=%d, min %.1f s, max %.1f s)", p50 / 1000, p95 / 1000, NR, v[1] / 1000, v[NR] / 1000 }'
}

RESULTS=$ARTIFACTS/bench-pool.txt
: >"$RESULTS"
record() { echo "$*" | tee -a "$RESULTS" >&2; }

# ---- 1. cold creates ----
start_server
cold=()
for i in $(seq "$COLD"); do
  ms=$(create "cold-$i")
  cold+=("$ms")
  id=$(session_of "cold-$i")
  record "cold $i: READY in $((ms / 1000)).$((ms % 1000 / 100)) s ($(stages "cold-$i"))"
  "$BIN/daas" destroy "$id" >/dev/null || fail "daas destroy $id"
  wait_destroyed "$id"
done

# ---- 2. claims from a pool of one ----
stop_server
start_server DAAS_POOLS__BENCH__SIZE=1
pool_ready() { "$BIN/daas" pool status bench --json | jq -e '.ready == 1 and .provisioning == 0' >/dev/null; }
claims=()
for i in $(seq "$CLAIMS"); do
  deadline=$((SECONDS + 900))
  until pool_ready; do
    ((SECONDS < deadline)) || fail "the pool has no ready desktop after 900 s: $("$BIN/daas" pool status bench --json)"
    sleep 2
  done
  ms=$(create "claim-$i")
  id=$(session_of "claim-$i")
  [[ $("$BIN/daas" show "$id" --json | jq -r .pool) == bench ]] || fail "claim $i: $id did not come from the pool"
  claims+=("$ms")
  by=$(jq -rn 'first(inputs | select(.output.text // "" | startswith("the agent created")) | .output.text) // "by the playbook"' \
    "$ARTIFACTS/bench-claim-$i.ndjson")
  record "claim $i: READY in $((ms / 1000)).$((ms % 1000 / 100)) s ($(stages "claim-$i"); $by)"
  "$BIN/daas" destroy "$id" >/dev/null || fail "daas destroy $id"
  wait_destroyed "$id"
done

record "cold create to READY: $(percentiles "${cold[@]}")"
record "claim to READY:       $(percentiles "${claims[@]}")"
teardown
log "done: $RESULTS"
