#!/usr/bin/env bash
# The qemu module's inventory hook and what it relies on in scripts/vm.sh
# (the list verb, the NAME.session file), in a few seconds, with no image and
# no real QEMU:
#
# * a fake STATE_DIR with VM files and fake QEMU processes (sleep, with the
#   pid file path as its command line, as vm.sh's process match expects):
#   `inventory list`, `inventory destroy` and `inventory nodes` run as the
#   server runs them (scrubbed environment, another working folder);
#   `nodes` prints one JSON line, this machine (its name, CPUs and memory,
#   `templates`), counting what each VM in STATE_DIR is made with
#   (NAME.size) and naming ours in "vms";
# * a real `vm.sh create` with stand-ins for qemu-img, genisoimage and
#   qemu-system-x86_64 on PATH: the session and size files are there before
#   the overlay is made, the hook lists the VM with its session id, counts
#   it on the node, destroys it and counts it no more; a failed create
#   leaves no session or size file; the deployment id is listed with the
#   session id.
#
# Needs jq (scripts/setup.sh installs it; test.sh needs it too).
#
#   terraform/qemu/tests/inventory_test.sh      (run by terraform/qemu/test.sh)
set -euo pipefail

MODULE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INVENTORY=$MODULE/inventory
VM_SH=$MODULE/scripts/vm.sh
WORK=$(mktemp -d /tmp/daas-inventory-test.XXXXXX)
STATE=$WORK/state
mkdir -p "$STATE" "$WORK/cwd" "$WORK/bin" "$WORK/image" "$WORK/fake"

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok: $*"
}
bad() {
  failed=$((failed + 1))
  echo "FAIL: $*" >&2
}
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

# Our fake processes: killed at the end (only while they still are ours).
cleanup() {
  local f pid
  for f in "$WORK"/fake/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    if tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$WORK/"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A stand-in for a VM's QEMU: a process in its own session (so init reaps
# it, as it does a daemonized QEMU) whose command line is the pid file path.
fake_qemu() { # PIDFILE_PATH RECORD
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid -f bash -c 'echo $$ >"$2"; exec -a "$1" sleep 300' _ "$1" "$2" </dev/null >/dev/null 2>&1
  local i
  for ((i = 0; i < 100; i++)); do
    if [[ -s $2 ]] && tr '\0' '\n' 2>/dev/null <"/proc/$(cat "$2")/cmdline" | grep -qxF -- "$1"; then
      return 0
    fi
    sleep 0.05
  done
  echo "fake QEMU for $1 did not start" >&2
  return 1
}
not() { ! "$@"; }
# The one line `inventory nodes` printed, through a jq filter (-e: false or
# null fails).
node_is() { # JQ_FILTER
  one_line "$out" && jq -e "$1" <<<"$out" >/dev/null
}
has() { [[ $1 == *"$2"* ]]; } # TEXT PART
one_line() { [[ -n $1 && $1 != *$'\n'* ]]; }
running() { # RECORD: the fake process still runs (not even a zombie)
  local pid state
  pid=$(cat "$1")
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Runs the hook as the server does; sets rc, out, err.
inv() {
  local env=(PATH="$PATH" HOME="$WORK" LANG=C.UTF-8 DAAS_VM_NAME_PREFIX=desktop-
    DAAS_VAR_state_dir="$STATE" DAAS_VAR_port_base=22000 DAAS_VAR_accel=tcg)
  inv_env "${env[@]}" -- "$@"
}
inv_env() { # VAR=VALUE... -- ARGS...
  local env=()
  while [[ $1 != -- ]]; do
    env+=("$1")
    shift
  done
  shift
  rc=0
  (cd "$WORK/cwd" && env -i "${env[@]}" "$INVENTORY" "$@") >"$WORK/out" 2>"$WORK/err" || rc=$?
  out=$(cat "$WORK/out")
  err=$(cat "$WORK/err")
}
no_files() { # NAME: no STATE/NAME.* left
  local f
  for f in "$STATE/$1".*; do
    [[ -e $f ]] && return 1
  done
  return 0
}

A=3f0c1c52-7d4e-4a43-9a55-0c8f6b1e2d11
D=9b2d6c1a-0e4f-4c3b-8a7d-5e6f7a8b9c0d
E=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f
DEP=0123456789ab

# ---- usage and configuration errors ----
inv
check "no verb: exit 2 and a usage line" test "$rc" = 2 -a -z "$out" -a -n "$err"
inv frob
check "unknown verb: exit 2" test "$rc" = 2
inv destroy
check "destroy without a name: exit 2" test "$rc" = 2
inv list extra
check "list with an extra argument: exit 2" test "$rc" = 2
inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- -- list
check "no state_dir: exit 1" test "$rc" = 1 -a -z "$out"
check "no state_dir: a message on stderr" has "$err" "state_dir is not set"
inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- DAAS_VAR_state_dir=relative/dir -- list
check "relative state_dir: exit 1" test "$rc" = 1
inv_env PATH="$PATH" DAAS_VAR_state_dir="$STATE" -- list
check "no DAAS_VM_NAME_PREFIX: exit 2" test "$rc" = 2
inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- DAAS_VAR_state_dir="$WORK/none" -- list
check "state_dir not made yet: exit 0, nothing listed" test "$rc" = 0 -a -z "$out"
inv list
check "empty state_dir: exit 0, nothing listed" test "$rc" = 0 -a -z "$out"

# ---- nodes: this machine ----
command -v jq >/dev/null || bad "jq is not installed: the nodes checks need it (apt-get install jq)"
inv nodes extra
check "nodes with an extra argument: exit 2" test "$rc" = 2
host=$(uname -n)
host=${host%%.*}
[[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$ ]] || host=localhost
total_mb=$(($(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) / 1024))
inv nodes
check "nodes, empty state_dir: exit 0, one line" one_line "$out"
[[ $rc == 0 ]] || printf 'stderr:\n%s\n' "$err" >&2
check "nodes: a JSON object with every field the contract names, typed" node_is '
  (.node | type == "string") and .state == "online"
  and ([.cpus, .memory_mb, .used_memory_mb, .configured_memory_mb, .configured_cores]
       | all(type == "number" and . >= 0 and floor == .))
  and (.templates | type == "array") and (.vms | type == "array")'
check "nodes: the node is this machine's name ($host)" node_is ".node == \"$host\""
check "nodes: cpus is nproc ($(nproc))" node_is ".cpus == $(nproc)"
check "nodes: memory_mb is MemTotal ($total_mb MiB)" node_is ".memory_mb == $total_mb"
check "nodes: used_memory_mb is within it, above 0" node_is '.used_memory_mb > 0 and .used_memory_mb <= .memory_mb'
check "nodes, no VM: nothing configured, no vms" \
  node_is '.configured_memory_mb == 0 and .configured_cores == 0 and .vms == []'
check "nodes: the default templates" node_is '.templates == ["debian-12-xfce"]'
inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- DAAS_VAR_state_dir="$STATE" \
  DAAS_VAR_templates=" debian-12-xfce, ubuntu-24 ,debian-12-xfce" -- nodes
check "nodes: DAAS_VAR_templates, comma-separated (blanks and repeats dropped)" \
  node_is '.templates == ["debian-12-xfce", "ubuntu-24"]'
for t in "" "a b" "debian-12," "x/y" "a,,b"; do
  inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- DAAS_VAR_state_dir="$STATE" DAAS_VAR_templates="$t" -- nodes
  check "nodes: templates '$t' refused (exit 1, a message)" test "$rc" = 1 -a -z "$out" -a -n "$err"
done
inv_env PATH="$PATH" DAAS_VM_NAME_PREFIX=desktop- -- nodes
check "nodes without state_dir: exit 1" test "$rc" = 1 -a -z "$out"
# The name: `uname -n`'s first label, else localhost (a stand-in on PATH).
mkdir -p "$WORK/uname"
for case in "pve-lab1.example.org:pve-lab1" "build_box:localhost" "-x:localhost" "h.:h"; do
  printf '#!/bin/sh\necho "%s"\n' "${case%%:*}" >"$WORK/uname/uname"
  chmod +x "$WORK/uname/uname"
  inv_env PATH="$WORK/uname:$PATH" DAAS_VM_NAME_PREFIX=desktop- DAAS_VAR_state_dir="$STATE" -- nodes
  check "nodes: host name '${case%%:*}' gives node '${case#*:}'" node_is ".node == \"${case#*:}\""
done

# ---- a STATE_DIR with leftovers ----
# desktop-aaa111: complete, running; desktop-bbb222: only its QEMU (files
# lost); desktop-ccc333: an overlay without session file; desktop-ddd444:
# only the session file (the create's first write, with a deployment id);
# other-vm01: not ours. desktop-aaa111's session file is one line, as
# before deployment ids: its deployment is empty.
echo "$A" >"$STATE/desktop-aaa111.session"
for f in qcow2 seed.iso pid console.log qemu.log; do : >"$STATE/desktop-aaa111.$f"; done
fake_qemu "$STATE/desktop-aaa111.pid" "$WORK/fake/aaa.pid"
fake_qemu "$STATE/desktop-bbb222.pid" "$WORK/fake/bbb.pid"
: >"$STATE/desktop-ccc333.qcow2"
printf '%s\n%s\n' "$D" "$DEP" >"$STATE/desktop-ddd444.session"
echo "other" >"$STATE/other-vm01.session"
: >"$STATE/other-vm01.qcow2"
fake_qemu "$STATE/other-vm01.pid" "$WORK/fake/other.pid"
echo tcg >"$STATE/accel"
: >"$STATE/.accel.lock"
: >"$STATE/notes.txt"
# What they are made with: desktop-aaa111 2048 MiB and 2 cores; other-vm01
# (not ours: counted, not named); desktop-ccc333 a malformed one (0, with a
# warning); desktop-bbb222 and desktop-ddd444 none (an older module's: 0).
echo "2048 2" >"$STATE/desktop-aaa111.size"
echo "512 1" >"$STATE/other-vm01.size"
echo "lots 2" >"$STATE/desktop-ccc333.size"

inv list
want=$(
  cat <<EOF
{"vm_name":"desktop-aaa111","session_id":"$A","deployment":""}
{"vm_name":"desktop-bbb222","session_id":"","deployment":""}
{"vm_name":"desktop-ccc333","session_id":"","deployment":""}
{"vm_name":"desktop-ddd444","session_id":"$D","deployment":"$DEP"}
EOF
)
check "list: our four VMs with their session and deployment ids, nothing else" test "$rc" = 0 -a "$out" = "$want"
[[ $out == "$want" ]] || printf 'got:\n%s\nwant:\n%s\nstderr:\n%s\n' "$out" "$want" "$err" >&2
if command -v jq >/dev/null; then
  check "list: every line is a JSON object" \
    jq -e -n '[inputs | objects | select(.vm_name and (.session_id | type == "string") and (.deployment | type == "string"))] | length == 4' "$WORK/out" >/dev/null
fi

inv nodes
check "nodes: every VM in state_dir counted with its size (2048 + 512 MiB, 2 + 1 cores)" \
  node_is '.configured_memory_mb == 2560 and .configured_cores == 3'
check "nodes: vms names ours, whatever their files (not other-vm01)" \
  node_is '.vms == ["desktop-aaa111", "desktop-bbb222", "desktop-ccc333", "desktop-ddd444"]'
check "nodes: a malformed size file is named on stderr" has "$err" "desktop-ccc333.size"

inv destroy desktop-aaa111
check "destroy desktop-aaa111: exit 0" test "$rc" = 0
check "destroy desktop-aaa111: one line on stdout" one_line "$out"
check "destroy desktop-aaa111: says so" has "$out" "destroyed desktop-aaa111"
check "destroy desktop-aaa111: its QEMU stopped" not running "$WORK/fake/aaa.pid"
check "destroy desktop-aaa111: no file left" no_files desktop-aaa111
inv nodes
check "nodes after destroying desktop-aaa111: not counted, not in vms" \
  node_is '.configured_memory_mb == 512 and .configured_cores == 1
    and .vms == ["desktop-bbb222", "desktop-ccc333", "desktop-ddd444"]'
inv destroy desktop-aaa111
check "destroy desktop-aaa111 again: exit 0" test "$rc" = 0
check "destroy desktop-aaa111 again: already gone" has "$out" "already gone"
inv destroy desktop-bbb222
check "destroy desktop-bbb222 (a QEMU without files): exit 0" test "$rc" = 0
check "destroy desktop-bbb222: its QEMU stopped" not running "$WORK/fake/bbb.pid"
inv destroy desktop-ccc333
check "destroy desktop-ccc333 (an overlay only): exit 0" test "$rc" = 0
check "destroy desktop-ccc333: the overlay is removed" no_files desktop-ccc333

for name in other-vm01 Desktop-1 desktop-0123456789 ../desktop-x "desktop-a b" -desktop ""; do
  inv destroy "$name"
  check "destroy '$name': refused with exit 2" test "$rc" = 2 -a -z "$out"
done
check "refused names touched nothing: other-vm01's QEMU runs" running "$WORK/fake/other.pid"
check "refused names touched nothing: other-vm01's files stay" \
  test -f "$STATE/other-vm01.session" -a -f "$STATE/other-vm01.qcow2"

inv list
check "list after the destroys: only desktop-ddd444 left" \
  test "$rc" = 0 -a "$out" = "{\"vm_name\":\"desktop-ddd444\",\"session_id\":\"$D\",\"deployment\":\"$DEP\"}"
inv destroy desktop-ddd444
inv list
check "list after destroying all ours: exit 0, empty" test "$rc" = 0 -a -z "$out"
check "accel cache and other files untouched" test -f "$STATE/accel" -a -f "$STATE/notes.txt"

# ---- a real vm.sh create with stand-ins for the QEMU tools ----
cat >"$WORK/bin/qemu-img" <<'EOF'
#!/usr/bin/env bash
# Stand-in: records whether the session and size files exist when the
# overlay is made.
overlay=${*: -2:1}
{ printf 'session file: '; cat "${overlay%.qcow2}.session" 2>/dev/null || echo missing; } >>"$STUB_LOG"
{ printf 'size file: '; cat "${overlay%.qcow2}.size" 2>/dev/null || echo missing; } >>"$STUB_LOG"
[[ ${STUB_FAIL:-} == qemu-img ]] && { echo "qemu-img: simulated failure" >&2; exit 1; }
: >"$overlay"
EOF
cat >"$WORK/bin/genisoimage" <<'EOF'
#!/usr/bin/env bash
# Stand-in: makes the -output file.
while (($#)); do
  if [[ $1 == -output ]]; then : >"$2"; fi
  shift
done
EOF
cat >"$WORK/bin/qemu-system-x86_64" <<'EOF'
#!/usr/bin/env bash
# Stand-in for `qemu-system-x86_64 ... -pidfile P -daemonize`: a process in
# its own session whose command line holds P, its pid in P.
pidfile=
while (($#)); do
  if [[ $1 == -pidfile ]]; then pidfile=$2; fi
  shift
done
[[ -n $pidfile ]] || exit 1
setsid -f bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; exec -a "$1" sleep 300' _ "$pidfile" </dev/null >/dev/null 2>&1
for ((i = 0; i < 100; i++)); do
  [[ -s $pidfile ]] && exit 0
  sleep 0.05
done
exit 1
EOF
chmod +x "$WORK/bin/"*
# A qcow2 header as far as vm.sh reads it: the virtual size (1 GiB) at byte 24.
{
  head -c 24 /dev/zero
  printf '\x00\x00\x00\x00\x40\x00\x00\x00'
} >"$WORK/image/disk.qcow2"
: >"$WORK/image/vmlinuz"
: >"$WORK/image/initrd.img"

free_port() {
  local p
  for ((p = 40000 + RANDOM % 20000; ; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}
port=$(free_port)
create() { # NAME SESSION [STUB_FAIL]
  PATH="$WORK/bin:$PATH" STUB_LOG="$WORK/stub.log" STUB_FAIL=${3:-} \
    VM_NAME=$1 STATE_DIR=$STATE IMAGE_DIR=$WORK/image TEMPLATE=test CORES=1 \
    MEMORY_MB=512 DISK_GB=1 SSH_PORT=$port RDP_PORT=$((port + 1)) ACCEL=tcg \
    SESSION_ID=$2 DEPLOYMENT_ID=$DEP FOR_USER=tester META_DATA='{}' USER_DATA='#cloud-config' \
    bash "$VM_SH" create >"$WORK/create.log" 2>&1
}

rc=0
create desktop-eee555 "$E" || rc=$?
check "vm.sh create with stand-ins: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || cat "$WORK/create.log" >&2
check "vm.sh create: the session file was written before the overlay" \
  grep -qxF "session file: $E" "$WORK/stub.log"
check "vm.sh create: the size file (MEMORY_MB CORES) was written before the overlay" \
  grep -qxF "size file: 512 1" "$WORK/stub.log"
cp "$STATE/desktop-eee555.pid" "$WORK/fake/eee.pid" 2>/dev/null || true
inv list
check "list: the created VM with its session and deployment ids" \
  test "$rc" = 0 -a "$out" = "{\"vm_name\":\"desktop-eee555\",\"session_id\":\"$E\",\"deployment\":\"$DEP\"}"
inv nodes
check "nodes: the created VM counts with its memory and cores (+ other-vm01's 512 MiB, 1 core)" \
  node_is '.configured_memory_mb == 1024 and .configured_cores == 2'
check "nodes: the created VM is in vms" node_is '.vms == ["desktop-eee555"]'
# ---- kept disks: snapshot, snapshots, restore, forget ----
K=3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11
# The overlay as a qcow2 header (1 GiB at byte 24) and the user's data.
{
  head -c 24 /dev/zero
  printf '\x00\x00\x00\x00\x40\x00\x00\x00'
  printf "alice's notes\n"
} >"$STATE/desktop-eee555.qcow2"
inv snapshot desktop-eee555 "$K"
check "snapshot: exit 0, one line naming it with its size" \
  test "$rc" = 0 -a "$out" = "{\"snapshot\":\"$K\",\"size_gb\":1}"
check "snapshot: QEMU stopped first" not running "$WORK/fake/eee.pid"
check "snapshot: the overlay kept as kept/$K.qcow2" cmp -s "$STATE/desktop-eee555.qcow2" "$STATE/kept/$K.qcow2"
inv snapshot desktop-eee555 "$K"
check "snapshot again: the same, exit 0" test "$rc" = 0 -a "$out" = "{\"snapshot\":\"$K\",\"size_gb\":1}"
inv snapshot desktop-eee555 "../etc"
check "snapshot of a malformed id: exit 2" test "$rc" = 2
inv snapshots
check "snapshots: the kept disk" test "$rc" = 0 -a "$out" = "{\"snapshot\":\"$K\",\"size_gb\":1}"
inv list
check "list: a kept disk is no VM" test "$rc" = 0 -a "$(wc -l <<<"$out")" = 1
inv destroy desktop-eee555
check "destroy desktop-eee555: exit 0" test "$rc" = 0
check "destroy desktop-eee555: QEMU stopped" not running "$WORK/fake/eee.pid"
check "destroy desktop-eee555: no file left (session, overlay, seed, pid, logs)" no_files desktop-eee555
inv list
check "list after the destroy: empty" test "$rc" = 0 -a -z "$out"
inv nodes
check "nodes after the destroy: the VM no longer counted nor in vms" \
  node_is '.configured_memory_mb == 512 and .configured_cores == 1 and .vms == []'

inv restore "$K" desktop-ggg777
check "restore: exit 0, the disk staged for the next create" \
  test "$rc" = 0 -a -f "$STATE/desktop-ggg777.restore.qcow2"
: >"$WORK/stub.log"
rc=0
create desktop-ggg777 "$E" || rc=$?
check "vm.sh create of a restored VM: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || cat "$WORK/create.log" >&2
check "its disk is the kept one (no fresh overlay made)" \
  cmp -s "$STATE/desktop-ggg777.qcow2" "$STATE/kept/$K.qcow2"
check "qemu-img made no overlay for it" test ! -s "$WORK/stub.log"
inv destroy desktop-ggg777
inv restore "$K" desktop-hhh888
check "a staged disk is a VM's file: destroy removes it" test -f "$STATE/desktop-hhh888.restore.qcow2"
inv destroy desktop-hhh888
check "destroy of a VM staged only: its staged disk is gone" test ! -e "$STATE/desktop-hhh888.restore.qcow2"
inv forget "$K"
check "forget: exit 0, the kept disk is gone" test "$rc" = 0 -a ! -e "$STATE/kept/$K.qcow2"
inv forget "$K"
check "forget again: exit 0" test "$rc" = 0
inv restore "$K" desktop-ggg777
check "restore of a forgotten disk: exit 1" test "$rc" = 1
inv snapshots
check "snapshots: none left" test "$rc" = 0 -a -z "$out"

rc=0
create desktop-fff666 "$E" qemu-img || rc=$?
check "a vm.sh create that fails after the session file: exit non-zero" test "$rc" != 0
check "the failed create removed its session file" test ! -e "$STATE/desktop-fff666.session"
check "the failed create removed its size file" test ! -e "$STATE/desktop-fff666.size"
inv list
check "list after the failed create: empty" test "$rc" = 0 -a -z "$out"

echo "inventory_test.sh: $passed passed, $failed failed"
((failed == 0))
