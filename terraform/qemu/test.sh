#!/usr/bin/env bash
# A real test of the qemu module on this machine: builds (or reuses) the
# template, applies the module like the server does (init -from-module, a
# terraform.tfvars.json with the contract variables) with a fresh SSH key and
# slot 7, waits for the SSH banner and `cloud-init status --wait`, checks that
# xrdp answers RDP, that a second VM on the same ports fails cleanly, then
# destroys and checks that nothing is left; the module's inventory hook lists
# the VM with its session id while it runs, and `inventory nodes` counts it
# on this machine (and names the node target_node gets, as the server
# does), not after the destroy (its own checks, tests/inventory_test.sh, run
# first: seconds, no image). Prints the timings.
#
#   terraform/qemu/test.sh        (root; the image cache is
#                                  ${DAAS_IMAGE_CACHE:-.data/qemu/images})
# Environment: SLOT (7), PORT_BASE (22000), ACCEL (auto), CORES (2),
# MEMORY_MB (2048), BOOT_TIMEOUT seconds (900), XRDP_TIMEOUT seconds after
# cloud-init (180), AGENT_BINARY (the image carries that agent, as the
# end-to-end test's does: one image for both), KEEP=1 keeps the temp folder.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${DAAS_IMAGE_CACHE:-$HERE/../../.data/qemu/images}
SLOT=${SLOT:-7}
PORT_BASE=${PORT_BASE:-22000}
ACCEL=${ACCEL:-auto}
CORES=${CORES:-2}
MEMORY_MB=${MEMORY_MB:-2048}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
XRDP_TIMEOUT=${XRDP_TIMEOUT:-180}
VM_NAME=daas-qemu-test
VM_USER=daas

T0=$SECONDS
log() { printf '[test %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

WORK=$(mktemp -d /tmp/daas-qemu-test.XXXXXX)
STATE="$WORK/state"
TF="$WORK/tf"
KEY="$WORK/id_ed25519"
APPLIED=0

tf() { # DIR COMMAND ARGS...
  (cd "$1" && terraform "$2" -input=false -no-color "${@:3}")
}
tf_out() { (cd "$TF" && terraform output -no-color -raw "$1"); }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Before the destroy, which removes the console log.
  if ((status != 0)) && [[ -f $STATE/$VM_NAME.console.log ]]; then
    log "last console lines:"
    tail -n 30 "$STATE/$VM_NAME.console.log" | tr -d '\r' >&2 || true
  fi
  if ((APPLIED)); then
    log "cleanup: terraform destroy"
    tf "$TF" destroy -auto-approve >"$WORK/destroy-cleanup.log" 2>&1 ||
      { log "destroy failed:"; tail -n 20 "$WORK/destroy-cleanup.log" >&2; }
  fi
  if [[ -d $WORK/tf2 ]]; then tf "$WORK/tf2" destroy -auto-approve >/dev/null 2>&1 || true; fi
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  if ((status == 0)); then log "PASS"; else log "FAILED (exit $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The VM's host key is made here and given to the module, as the server
# does: ssh accepts that key alone.
HOST_KEY="$WORK/ssh_host_ed25519_key"
SSH=(ssh -i "$KEY" -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$WORK/known_hosts"
  -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=daas-vm
  -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR)

# The first 4 bytes a port sends (an SSH server: "SSH-").
banner() {
  timeout 12 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 4 <&3' _ "$1" 2>/dev/null || true
}

# An RDP server answers an X.224 Connection Request with a TPKT (03 00).
# (A bare TCP connect proves nothing: QEMU's forward accepts it anyway.)
rdp_answers() {
  local reply
  reply=$(timeout 12 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00" >&3
    head -c 4 <&3 | od -An -tx1' _ "$1" 2>/dev/null | tr -d ' \n') || true
  [[ $reply == 0300* ]]
}

tfvars() { # vm_name slot
  cat <<EOF
{
  "vm_name": "$1",
  "slot": $2,
  "ssh_public_key": "$(cat "$KEY.pub")",
  "ssh_host_private_key": $(jq -Rs . "$HOST_KEY"),
  "ssh_host_public_key": "$(cut -d' ' -f1-2 "$HOST_KEY.pub")",
  "template": "debian-12-xfce",
  "cores": $CORES,
  "memory_mb": $MEMORY_MB,
  "disk_gb": 20,
  "session_id": "test-$(date +%s)-$2",
  "username": "tester",
  "deployment_id": "0123456789ab",
  "target_node": "$NODE",
  "vm_id": $((10000 + $2)),
  "image_dir": "$IMAGE_DIR",
  "state_dir": "$STATE",
  "port_base": $PORT_BASE,
  "vm_user": "$VM_USER",
  "accel": "$ACCEL"
}
EOF
}

# ---- 0. the inventory hook against fake VMs (no image, a few seconds) ----
t=$SECONDS
"$HERE/tests/inventory_test.sh" >"$WORK/inventory-test.log" 2>&1 ||
  { cat "$WORK/inventory-test.log" >&2; fail "tests/inventory_test.sh"; }
log "inventory hook: $(tail -n 1 "$WORK/inventory-test.log") ($((SECONDS - t)) s)"

# The hook as the server runs it (scrubbed environment, another folder);
# this test's names start with daas-qemu-.
inventory() {
  (cd "$WORK" && env -i PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 \
    DAAS_VM_NAME_PREFIX=daas-qemu- DAAS_VAR_state_dir="$STATE" "$HERE/inventory" "$@")
}

# The node the server would place the VM on: this machine, as the hook names it.
NODE=$(inventory nodes | jq -r .node) || fail "inventory nodes"
[[ -n $NODE && $NODE != null ]] || fail "inventory nodes named no node"

# ---- 1. the image ----
t=$SECONDS
IMAGE_DIR=$("$HERE/image/build.sh" --cache-dir "$CACHE_DIR" ${AGENT_BINARY:+--agent-binary "$AGENT_BINARY"} | tail -n 1)
IMAGE_S=$((SECONDS - t))
[[ -f $IMAGE_DIR/disk.qcow2 ]] || fail "build.sh printed no image folder"
log "image: $IMAGE_DIR ($IMAGE_S s)"

command -v terraform >/dev/null || fail "terraform is not on PATH"
ssh-keygen -q -t ed25519 -N "" -C daas-qemu-test -f "$KEY"
ssh-keygen -q -t ed25519 -N "" -C "" -f "$HOST_KEY"
echo "daas-vm $(cut -d' ' -f1-2 "$HOST_KEY.pub")" >"$WORK/known_hosts"
SSH_PORT=$((PORT_BASE + 2 * SLOT))
RDP_PORT=$((SSH_PORT + 1))
for p in "$SSH_PORT" "$RDP_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "port $p is in use before the test (another VM on slot $SLOT?)"
  fi
done

# ---- 2. apply, as the server does ----
mkdir -p "$TF"
tf "$TF" init -from-module="$HERE" >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; fail "terraform init"; }
tfvars "$VM_NAME" "$SLOT" >"$TF/terraform.tfvars.json"
t=$SECONDS
APPLIED=1
if ! tf "$TF" apply -auto-approve 2>&1 | sed 's/^/    /' >&2; then fail "terraform apply"; fi
APPLY_S=$((SECONDS - t))
BOOT0=$SECONDS
[[ $(tf_out ssh_port) == "$SSH_PORT" ]] || fail "ssh_port output"
[[ $(tf_out rdp_port) == "$RDP_PORT" ]] || fail "rdp_port output"
[[ $(tf_out boot_wait) == ssh ]] || fail "boot_wait output"
for f in session size qcow2 seed.iso pid console.log; do
  [[ -f $STATE/$VM_NAME.$f ]] || fail "$STATE/$VM_NAME.$f is missing after apply"
done
SESSION_ID=$(sed -n 's/^  "session_id": "\(.*\)",$/\1/p' "$TF/terraform.tfvars.json")
inv=$(inventory list) || fail "inventory list"
[[ $inv == "{\"vm_name\":\"$VM_NAME\",\"session_id\":\"$SESSION_ID\",\"deployment\":\"0123456789ab\"}" ]] ||
  fail "inventory list after apply: $inv"
inv=$(inventory nodes) || fail "inventory nodes"
jq -e --arg vm "$VM_NAME" --argjson mb "$MEMORY_MB" --argjson cores "$CORES" \
  '.vms == [$vm] and .configured_memory_mb == $mb and .configured_cores == $cores' <<<"$inv" >/dev/null ||
  fail "inventory nodes after apply does not count the VM: $inv"
ACCEL_USED=$(head -n 1 "$STATE/accel" 2>/dev/null || echo "$ACCEL")
log "applied in $APPLY_S s (accel: $ACCEL_USED); waiting for SSH on 127.0.0.1:$SSH_PORT"

# ---- 3. a second VM on the same ports fails cleanly ----
mkdir -p "$WORK/tf2"
tf "$WORK/tf2" init -from-module="$HERE" >/dev/null 2>&1 || fail "terraform init (second)"
tfvars daas-qemu-dup "$SLOT" >"$WORK/tf2/terraform.tfvars.json"
if tf "$WORK/tf2" apply -auto-approve >"$WORK/dup.log" 2>&1; then
  fail "a second VM on the ports of slot $SLOT was created"
fi
grep -q "already in use" "$WORK/dup.log" || { cat "$WORK/dup.log" >&2; fail "no clear port-in-use error"; }
ls "$STATE"/daas-qemu-dup.{session,size,qcow2,seed.iso,pid} >/dev/null 2>&1 && fail "the failed create left files"
tf "$WORK/tf2" destroy -auto-approve >/dev/null 2>&1 || fail "destroy after a failed create"
rm -rf "$WORK/tf2"
log "a second VM on the same ports fails: $(grep -o 'port [0-9]* on 127.0.0.1 is already in use' "$WORK/dup.log" | head -n 1)"

# ---- 4. boot: SSH banner, cloud-init ----
deadline=$((SECONDS + BOOT_TIMEOUT))
until [[ $(banner "$SSH_PORT") == SSH- ]]; do
  ((SECONDS < deadline)) || fail "no SSH banner within $BOOT_TIMEOUT s"
  status=$(VM_NAME=$VM_NAME STATE_DIR=$STATE bash "$HERE/scripts/vm.sh" status 2>&1) ||
    { echo "$status" >&2; fail "the VM died while booting"; }
  sleep 2
done
SSH_S=$((SECONDS - BOOT0))
log "SSH banner after $SSH_S s"

until out=$("${SSH[@]}" -p "$SSH_PORT" "$VM_USER@127.0.0.1" cloud-init status --wait 2>&1); rc=$?; ((rc == 0 || rc == 1 || rc == 2)); do
  ((SECONDS < deadline)) || fail "no SSH login within $BOOT_TIMEOUT s: $out"
  sleep 2
done
((rc != 1)) || {
  "${SSH[@]}" -p "$SSH_PORT" "$VM_USER@127.0.0.1" cloud-init status --long >&2 || true
  fail "cloud-init ended in error: $out"
}
CLOUD_S=$((SECONDS - BOOT0))
log "cloud-init done after $CLOUD_S s: $(echo "$out" | tail -n 1)"

# ---- 5. the desktop side ----
# xrdp starts with the boot: once cloud-init is done it has had its time.
xrdp_deadline=$((SECONDS + XRDP_TIMEOUT))
until rdp_answers "$RDP_PORT"; do
  if ((SECONDS >= xrdp_deadline)); then
    log "xrdp in the VM:"
    "${SSH[@]}" -p "$SSH_PORT" "$VM_USER@127.0.0.1" \
      'sudo systemctl --no-pager status xrdp xrdp-sesman; sudo journalctl -b --no-pager -n 40 -u xrdp -u xrdp-sesman; sudo ss -ltnp' >&2 || true
    fail "xrdp does not answer on 127.0.0.1:$RDP_PORT within $XRDP_TIMEOUT s of cloud-init's end"
  fi
  sleep 2
done
XRDP_S=$((SECONDS - BOOT0))
active=$("${SSH[@]}" -p "$SSH_PORT" "$VM_USER@127.0.0.1" systemctl is-active xrdp xrdp-sesman | tr '\n' ' ')
[[ $active == "active active " ]] || fail "xrdp/xrdp-sesman: $active"
facts=$("${SSH[@]}" -p "$SSH_PORT" "$VM_USER@127.0.0.1" \
  'echo "$(hostname) $(id -un) sudo:$(sudo -n true && echo ok) $(. /etc/os-release; echo $PRETTY_NAME | tr " " _) root:$(df -h --output=size / | tail -n 1 | tr -d " ")"')
log "xrdp answers RDP after $XRDP_S s; in the VM: $facts"
[[ $facts == "$VM_NAME $VM_USER sudo:ok "* ]] || fail "unexpected VM facts: $facts"

# ---- 6. destroy ----
t=$SECONDS
if ! tf "$TF" destroy -auto-approve 2>&1 | sed 's/^/    /' >&2; then fail "terraform destroy"; fi
APPLIED=0
DESTROY_S=$((SECONDS - t))
if pgrep -f -- "$STATE/$VM_NAME.pid" >/dev/null; then fail "a QEMU of $VM_NAME is still running"; fi
for f in session size qcow2 seed.iso pid console.log watch.pid exited; do
  [[ ! -e $STATE/$VM_NAME.$f ]] || fail "$STATE/$VM_NAME.$f is left after destroy"
done
inv=$(inventory list) || fail "inventory list after destroy"
[[ -z $inv ]] || fail "inventory list after destroy: $inv"
inv=$(inventory nodes) || fail "inventory nodes after destroy"
jq -e '.vms == [] and .configured_memory_mb == 0' <<<"$inv" >/dev/null ||
  fail "inventory nodes after destroy still counts a VM: $inv"
log "destroyed in $DESTROY_S s; no QEMU and no files left"

cat >&2 <<EOF
timings (s): image $IMAGE_S, apply $APPLY_S, boot to SSH $SSH_S, cloud-init done $CLOUD_S, xrdp answers $XRDP_S, destroy $DESTROY_S (accel $ACCEL_USED, $CORES vCPU, $MEMORY_MB MiB)
EOF
