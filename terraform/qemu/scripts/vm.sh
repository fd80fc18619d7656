#!/usr/bin/env bash
# One local desktop VM under QEMU: what the qemu module's provisioners run.
#
#   vm.sh create    overlay + NoCloud seed + QEMU in the background
#   vm.sh destroy   stop QEMU, remove everything create made
#   vm.sh status    running (exit 0), dead (1) or absent (3)
#   vm.sh list      the names of the VMs in STATE_DIR, one a line: those with
#                   any of the files below, or a QEMU process (no VM_NAME)
#   vm.sh keep ID   stop QEMU, keep the VM's disk as STATE_DIR/kept/ID.qcow2
#                   (its overlay, on the same template image); prints its
#                   size in GiB; kept already: the same
#   vm.sh stage ID  copy kept disk ID to VM_NAME.restore.qcow2: the next
#                   create makes the VM from it instead of a fresh overlay
#   vm.sh forget ID delete kept disk ID (no VM_NAME); gone already: no error
#   vm.sh kept      the kept disks, "ID SIZE_GB" a line (no VM_NAME)
#
# Always: STATE_DIR; all but list: VM_NAME. create also: IMAGE_DIR, CORES,
# MEMORY_MB, DISK_GB, SSH_PORT, RDP_PORT, ACCEL (auto|kvm|tcg),
# KVM_PROBE_SECONDS, SESSION_ID, META_DATA, USER_DATA, DEPLOYMENT_ID (may be
# empty; TEMPLATE and FOR_USER are only logged).
#
# Files, all STATE_DIR/VM_NAME.*: session (the session id, and the
# deployment id on its second line, written first), size ("MEMORY_MB CORES",
# what the VM is made with: the inventory hook's `nodes` counts it; written
# next), qcow2 (overlay on IMAGE_DIR/disk.qcow2), seed.iso, pid (QEMU's),
# console.log (serial console), qemu.log (QEMU's own messages), watch.pid
# (the watcher), exited (written by the watcher when QEMU exits on its own).
# STATE_DIR/accel caches the KVM probe's verdict.
set -euo pipefail

action=${1:-}
: "${STATE_DIR:?STATE_DIR is not set}"
NAME_RE='^[a-z0-9][a-z0-9-]{0,14}$'
# Every file of a VM (STATE_DIR/VM_NAME.SUFFIX): destroy removes them all.
SUFFIXES=(session size qcow2 seed.iso pid console.log qemu.log watch.pid exited restore.qcow2)
KEPT="$STATE_DIR/kept"
KEPT_RE='^[a-z0-9][a-z0-9-]{0,63}$'

# A kept disk's size in whole GiB, rounded up (what it takes on disk).
kept_gb() { echo $((($(du -k -- "$1" | cut -f1) + 1048575) / 1048576)); }

# vm.sh list: every name with one of the files above, or with a process whose
# command line holds STATE_DIR/NAME.pid as an argument (QEMU's -pidfile).
list_vms() {
  local f n p arg sfx
  if [[ -e $STATE_DIR && ! (-d $STATE_DIR && -r $STATE_DIR && -x $STATE_DIR) ]]; then
    echo "vm.sh list: $STATE_DIR is not a readable folder" >&2
    return 1
  fi
  {
    if [[ -d $STATE_DIR ]]; then
      shopt -s nullglob
      for sfx in "${SUFFIXES[@]}"; do
        for f in "$STATE_DIR"/*."$sfx"; do
          n=${f##*/}
          n=${n%."$sfx"}
          if [[ $n =~ $NAME_RE ]]; then echo "$n"; fi
        done
      done
    fi
    # (read's builtin, no fork per process; a process may exit meanwhile)
    for p in /proc/[0-9]*/cmdline; do
      while IFS= read -r -d '' arg; do
        [[ $arg == "$STATE_DIR/"*.pid ]] || continue
        n=${arg#"$STATE_DIR/"}
        n=${n%.pid}
        if [[ $n =~ $NAME_RE ]]; then echo "$n"; fi
      done 2>/dev/null <"$p" || true
    done
  } | sort -u
}
if [[ $action == list ]]; then
  list_vms
  exit 0
fi
if [[ $action == forget || $action == kept ]]; then
  if [[ $action == forget ]]; then
    [[ ${2:-} =~ $KEPT_RE ]] || { echo "bad kept disk id: ${2:-}" >&2; exit 2; }
    rm -f -- "$KEPT/$2.qcow2"
    echo "forgot kept disk $2"
  else
    shopt -s nullglob
    for f in "$KEPT"/*.qcow2; do
      id=${f##*/}
      echo "${id%.qcow2} $(kept_gb "$f")"
    done
  fi
  exit 0
fi

: "${VM_NAME:?VM_NAME is not set}"
[[ $VM_NAME =~ $NAME_RE ]] || { echo "bad VM_NAME: $VM_NAME" >&2; exit 2; }

BASE="$STATE_DIR/$VM_NAME"
SESSION_FILE="$BASE.session"
SIZE_FILE="$BASE.size"
OVERLAY="$BASE.qcow2"
SEED="$BASE.seed.iso"
PIDFILE="$BASE.pid"
CONSOLE="$BASE.console.log"
QEMU_LOG="$BASE.qemu.log"
WATCH_PID="$BASE.watch.pid"
EXITED="$BASE.exited"
CMDLINE="console=ttyS0 root=/dev/vda rw net.ifnames=0"

say() { echo "vm $VM_NAME: $*"; }
die() {
  echo "vm $VM_NAME: ERROR: $*" >&2
  exit 1
}

# Pids of QEMU processes started for this VM: their command line holds this
# VM's pid file path (so a recycled pid is never taken for ours).
qemu_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ -r $p/cmdline ]] || continue
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$PIDFILE"; then
      echo "${p#/proc/}"
    fi
  done
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

console_tail() {
  local n=${1:-25}
  if [[ -s $QEMU_LOG ]]; then
    echo "--- $QEMU_LOG ---"
    tail -n "$n" "$QEMU_LOG"
  fi
  if [[ -s $CONSOLE ]]; then
    echo "--- last $n lines of $CONSOLE ---"
    tail -n "$n" "$CONSOLE" | tr -d '\r'
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stops the watcher first (so it does not report the stop as a death), then
# QEMU: SIGTERM, up to 10 s, SIGKILL.
stop_vm() {
  local wpid pid i
  if [[ -f $WATCH_PID ]]; then
    wpid=$(cat "$WATCH_PID" 2>/dev/null || true)
    rm -f "$WATCH_PID"
    # Only if that pid still is our watcher (pids are recycled).
    if [[ $wpid =~ ^[0-9]+$ ]] &&
      tr '\0' '\n' <"/proc/$wpid/cmdline" 2>/dev/null | grep -qxF -- "$WATCH_PID"; then
      kill -TERM -- "-$wpid" 2>/dev/null || true
    fi
  fi
  for pid in $(qemu_pids); do
    say "stopping QEMU (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      alive "$pid" || break
      sleep 0.25
    done
    if alive "$pid"; then
      say "QEMU (pid $pid) ignored SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do
        alive "$pid" || break
        sleep 0.25
      done
    fi
    alive "$pid" && die "QEMU (pid $pid) does not stop"
  done
  return 0
}

# accel = auto: KVM if a kernel boots under it within KVM_PROBE_SECONDS
# (on some machines /dev/kvm opens but guests hang before the kernel), else
# TCG. The verdict is kept in STATE_DIR/accel; delete it to probe again.
choose_accel() {
  local want=${ACCEL:-auto} cache="$STATE_DIR/accel" verdict reason lockfd
  case $want in
    kvm | tcg)
      echo "$want"
      return
      ;;
    auto) ;;
    *) die "ACCEL must be auto, kvm or tcg, not $want" ;;
  esac
  exec {lockfd}>"$STATE_DIR/.accel.lock"
  flock "$lockfd"
  if [[ -s $cache ]]; then
    head -n 1 "$cache"
    exec {lockfd}>&-
    return
  fi
  verdict=tcg
  if [[ ! -e /dev/kvm ]]; then
    reason="no /dev/kvm"
  elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    reason="/dev/kvm is not readable and writable by $(id -un)"
  else
    local log qpid i secs=${KVM_PROBE_SECONDS:-10}
    log=$(mktemp)
    say "probing KVM (a kernel boot, at most $secs s; once per state_dir)" >&2
    qemu-system-x86_64 -accel kvm -nodefaults -no-user-config -display none \
      -m 256 -kernel "$IMAGE_DIR/vmlinuz" -append "console=ttyS0 panic=-1" \
      -no-reboot -serial "file:$log" </dev/null >/dev/null 2>&1 &
    qpid=$!
    reason="no kernel output under KVM within $secs s"
    for ((i = 0; i < secs * 4; i++)); do
      if grep -q "Linux version" "$log" 2>/dev/null; then
        verdict=kvm
        reason="a kernel booted under KVM"
        break
      fi
      if ! alive "$qpid"; then
        reason="QEMU with KVM exited at once"
        break
      fi
      sleep 0.25
    done
    kill -KILL "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    rm -f "$log"
  fi
  printf '%s\n%s (probed %s)\n' "$verdict" "$reason" "$(date -u +%FT%TZ)" >"$cache"
  say "acceleration: $verdict ($reason)" >&2
  exec {lockfd}>&-
  echo "$verdict"
}

# A qcow2's virtual size: its header's 64-bit big-endian field at byte 24.
virtual_size() {
  od -An -tu8 --endian=big -j 24 -N 8 "$1" | tr -d ' '
}

create() {
  local v missing=()
  for v in IMAGE_DIR CORES MEMORY_MB DISK_GB SSH_PORT RDP_PORT SESSION_ID META_DATA USER_DATA; do
    [[ -n ${!v:-} ]] || die "$v is not set"
  done
  [[ $MEMORY_MB =~ ^[0-9]{1,9}$ && $CORES =~ ^[0-9]{1,4}$ ]] ||
    die "MEMORY_MB and CORES must be whole numbers, not '$MEMORY_MB' and '$CORES'"
  for v in qemu-system-x86_64 qemu-img genisoimage flock setsid; do
    command -v "$v" >/dev/null 2>&1 || missing+=("$v")
  done
  ((${#missing[@]} == 0)) ||
    die "missing on this machine: ${missing[*]} (terraform/qemu/image/build.sh installs them)"
  for v in disk.qcow2 vmlinuz initrd.img; do
    [[ -f $IMAGE_DIR/$v ]] || die "$IMAGE_DIR/$v is missing: set image_dir to the folder terraform/qemu/image/build.sh printed"
  done
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR" 2>/dev/null || true

  local running
  running=$(qemu_pids | head -n 1)
  [[ -z $running ]] || die "a QEMU for $VM_NAME is already running (pid $running); destroy it first"
  for v in "$SSH_PORT" "$RDP_PORT"; do
    port_in_use "$v" && die "port $v on 127.0.0.1 is already in use (another VM or program): choose another slot or port_base"
  done

  # From here on a failure (or a stop by the server) undoes what was made;
  # the logs stay for diagnosis until the next create or destroy of this name.
  trap 'status=$?; if ((status != 0)); then stop_vm || true; rm -f "$SESSION_FILE" "$SIZE_FILE" "$OVERLAY" "$SEED" "$PIDFILE"; fi' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  rm -f "$OVERLAY" "$SEED" "$PIDFILE" "$CONSOLE" "$QEMU_LOG" "$EXITED" "$WATCH_PID"
  # First of all the files: what a power cut leaves is found by `vm.sh list`
  # (the inventory hook), with the session and the deployment it was for.
  printf '%s\n%s\n' "$SESSION_ID" "${DEPLOYMENT_ID:-}" >"$SESSION_FILE"
  # Then what it is made with: the machine's memory the hook's `inventory
  # nodes` counts as configured for it (the server places by it).
  printf '%s %s\n' "$((10#$MEMORY_MB))" "$((10#$CORES))" >"$SIZE_FILE"

  local accel
  accel=$(choose_accel)
  say "creating from $IMAGE_DIR (template ${TEMPLATE:-?}, for ${FOR_USER:-?}): $CORES vCPU, $MEMORY_MB MiB, $DISK_GB GiB, $accel"

  # Linked clone: an overlay on the template, grown to disk_gb (cloud-init
  # grows the root file system at first boot).
  local base_size want_size
  base_size=$(virtual_size "$IMAGE_DIR/disk.qcow2")
  [[ $base_size =~ ^[0-9]+$ && $base_size -gt 0 ]] || die "$IMAGE_DIR/disk.qcow2 is not a qcow2 image"
  want_size=$((DISK_GB * 1024 * 1024 * 1024))
  if ((want_size < base_size)); then
    say "disk_gb $DISK_GB is below the template's $((base_size / 1024 / 1024)) MiB; keeping the template's size"
    want_size=$base_size
  fi
  if [[ -f $BASE.restore.qcow2 ]]; then
    # A kept disk staged by `vm.sh stage`: the desktop comes back from it.
    mv -- "$BASE.restore.qcow2" "$OVERLAY"
    local kept_size
    kept_size=$(virtual_size "$OVERLAY")
    [[ $kept_size =~ ^[0-9]+$ ]] || die "the kept disk is not a qcow2 image"
    if ((want_size > kept_size)); then
      qemu-img resize -q "$OVERLAY" "$want_size"
    fi
    say "restored its disk from a kept one"
  else
    qemu-img create -q -f qcow2 -b "$IMAGE_DIR/disk.qcow2" -F qcow2 "$OVERLAY" "$want_size"
  fi

  # NoCloud seed: a small ISO labelled cidata, attached as a second disk.
  local seed_dir
  seed_dir=$(mktemp -d)
  printf '%s\n' "$META_DATA" >"$seed_dir/meta-data"
  printf '%s' "$USER_DATA" >"$seed_dir/user-data"
  genisoimage -quiet -output "$SEED" -volid cidata -joliet -rock \
    "$seed_dir/user-data" "$seed_dir/meta-data" 2>"$QEMU_LOG" ||
    { cat "$QEMU_LOG" >&2; rm -rf "$seed_dir"; die "genisoimage failed"; }
  rm -rf "$seed_dir"

  local args=(
    qemu-system-x86_64
    -name "$VM_NAME"
    -accel "$accel"
    -smp "$CORES" -m "$MEMORY_MB"
    -nodefaults -no-user-config -display none
    -kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" -append "$CMDLINE"
    -drive "file=$OVERLAY,if=virtio,format=qcow2,discard=unmap"
    -drive "file=$SEED,if=virtio,format=raw,readonly=on"
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$RDP_PORT-:3389"
    -device "virtio-net-pci,netdev=n0,romfile="
    -device virtio-rng-pci
    -serial "file:$CONSOLE"
    -D "$QEMU_LOG"
    -pidfile "$PIDFILE"
    -daemonize
  )
  # -daemonize returns once QEMU is set up (or has failed); setsid keeps it
  # out of Terraform's (and so the server's) process group, and the
  # redirection keeps it off Terraform's output pipe.
  if ! setsid "${args[@]}" </dev/null >>"$QEMU_LOG" 2>&1; then
    console_tail 20 >&2
    die "QEMU did not start"
  fi
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  sleep 1
  if ! alive "$pid"; then
    console_tail 20 >&2
    die "QEMU exited right after starting"
  fi

  # The watcher: when QEMU exits on its own, VM_NAME.exited says when.
  setsid -f /bin/bash -c '
    echo $$ >"$1"
    tail --pid="$2" -f /dev/null
    if [ -f "$1" ]; then
      printf "%s QEMU (pid %s) exited; the console log is %s\n" "$(date -u +%FT%TZ)" "$2" "$4" >"$3"
    fi
  ' watcher "$WATCH_PID" "$pid" "$EXITED" "$CONSOLE" </dev/null >/dev/null 2>&1

  say "QEMU running (pid $pid, $accel): ssh 127.0.0.1:$SSH_PORT, rdp 127.0.0.1:$RDP_PORT, console $CONSOLE"
}

destroy() {
  local sfx
  stop_vm
  for sfx in "${SUFFIXES[@]}"; do
    rm -f "$BASE.$sfx"
  done
  say "destroyed"
}

# Stops QEMU (the guest's file systems are as after a power cut: journaled)
# and copies the overlay; the copy is renamed into place once whole.
keep() {
  local id=$1 kept
  [[ $id =~ $KEPT_RE ]] || { echo "bad kept disk id: $id" >&2; exit 2; }
  kept=$KEPT/$id.qcow2
  if [[ ! -f $kept ]]; then
    [[ -f $OVERLAY ]] || die "no disk to keep ($OVERLAY is gone)"
    stop_vm
    mkdir -p "$KEPT"
    cp --sparse=always -- "$OVERLAY" "$kept.tmp"
    mv -- "$kept.tmp" "$kept"
    say "kept its disk as $kept"
  fi
  kept_gb "$kept"
}

stage() {
  local id=$1
  [[ $id =~ $KEPT_RE ]] || { echo "bad kept disk id: $id" >&2; exit 2; }
  [[ -f $KEPT/$id.qcow2 ]] || die "no kept disk $id"
  cp --sparse=always -- "$KEPT/$id.qcow2" "$BASE.restore.tmp"
  mv -- "$BASE.restore.tmp" "$BASE.restore.qcow2"
  say "staged kept disk $id"
}

status() {
  local pid
  pid=$(qemu_pids | head -n 1)
  if [[ -n $pid ]]; then
    echo "running (pid $pid)"
    return 0
  fi
  if [[ -f $OVERLAY || -f $EXITED ]]; then
    if [[ -f $EXITED ]]; then echo "dead: $(cat "$EXITED")"; else echo "dead"; fi
    console_tail 25
    return 1
  fi
  echo "absent"
  return 3
}

case $action in
  create) create ;;
  destroy) destroy ;;
  status) status ;;
  keep) keep "${2:-}" ;;
  stage) stage "${2:-}" ;;
  *)
    echo "usage: VM_NAME=... STATE_DIR=... vm.sh create|destroy|status|keep ID|stage ID; STATE_DIR=... vm.sh list|kept|forget ID" >&2
    exit 2
    ;;
esac
