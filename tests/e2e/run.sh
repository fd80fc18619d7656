#!/usr/bin/env bash
# End-to-end test with real desktops (root; TCG or KVM; ~12-20 min on 2 cores):
#
#   0. a Samba AD domain controller for DAAS.TEST (tests/ad/dc.sh);
#   1. `daas create --user alice --session-user student`: the QEMU module
#      makes a real VM, the real playbook configures it over SSH and joins
#      it to the domain; READY, with per-stage times from the events and the
#      join's share of CONFIGURING; its computer account is in the directory;
#   2. the real daas-agent inside the VM reports to the server;
#   3. xfreerdp under Xvfb logs in as the local `student`; the screenshot
#      must show a desktop (not a black frame, not the xrdp login screen);
#      kept as $ARTIFACTS/desktop.png;
#   3a. alice logs in with her AD password: a desktop on screen, her share
#      //dc1.daas.test/homes mounted at ~/H with her Kerberos ticket (read
#      and written from both sides), the agent reports her; the screenshot
#      is kept as $ARTIFACTS/desktop-alice.png;
#   3b. bob (not alice, not in daas-users) is refused by SSSD over RDP;
#      carol (in daas-users) would be let in;
#   3c. the web portal in Chromium (tests/browser/desktop.mjs): alice signs
#      in with her domain account, opens the desktop in the tab through the
#      server's RDP gateway, which logs her in to xrdp with that sign-in
#      (web.pass_through_credentials: no second password), the XFCE desktop
#      shows (screenshot $ARTIFACTS/browser-desktop.png), she types a command in
#      its run dialog (the file appears in the VM, the agent reports the
#      input); text copied in the page pastes in the desktop and back; the
#      network drops (a proxy resets it) and the tab reconnects to the same
#      X session; the used ticket is refused a second time;
#   3d. her template's clipboard set to "off", record = true and shadow =
#      true (server restarted): a page changed to turn its clipboard on
#      copies nothing either way; the page tells her the session is recorded;
#   3e. (tests/browser/replay.mjs) alice opens her desktop again and carol
#      (an administrator) watches it live in her own browser: the desktop
#      shows, alice's tab says carol is watching, the watch ends with
#      alice's tab; carol replays a recording of it: the desktop alice saw
#      shows; the watch and the replay are in the audit trail;
#   4. the server is restarted with short policy timeouts: the idle desktop
#      gets an idle_warning, then is reaped; no QEMU, overlay, seed, pid file
#      or working directory of it is left, and no computer account;
#   4a. meanwhile a warm pool of one joined to the domain builds (SSSD lets
#      no one in); alice claims it from the page: her agent's root helper
#      writes SSSD's access section and restarts SSSD (no SSH, no Ansible);
#      the server starts her session as soon as it is READY; she opens it in
#      the tab 5 s later (E2E_CLICK_AFTER_MS), signed in once, timed; SSSD's
#      account check for xrdp-sesman lets alice in and refuses bob;
#      destroyed, its computer account gone;
#   5. a warm pool of one (without AD) builds beside a cold create of the
#      catalog's second template (dev: its own image, with gcc and git): two
#      VMs at once, different slots (RDP ports); a create claims the pooled
#      desktop (QUEUED -> CONFIGURING -> READY, the per-user part only, done
#      by the desktop's agent and its root helper, not Ansible) and
#      the claim makes the pool build a new one at once, which a restart
#      without the pool cleans up half-made (the claimed desktop stays);
#      xfreerdp logs in on the claimed one (screenshot
#      $ARTIFACTS/desktop-pool.png); everything destroyed and cleaned up;
#   5a. the dev template is persistent: the dev desktop's disk was kept at
#      its destroy, and the next dev desktop comes back from it with the
#      file written in it; its own kept disk is deleted (`daas snapshot`).
#
# Timings go to stdout and $ARTIFACTS/timings.txt.
# Environment: DAAS_IMAGE_CACHE (.data/qemu/images), DAAS_ARTIFACTS_DIR
# (target/e2e-artifacts), CARGO_TARGET_DIR, KEEP=1 keeps the work dir.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=tests/e2e/server.sh
. tests/e2e/server.sh

T0=$SECONDS
step() { printf '\n==> [e2e %4ds] %s\n' $((SECONDS - T0)) "$*"; }
log() { printf '    [e2e %4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() {
  printf '    [e2e %4ds] FAIL: %s\n' $((SECONDS - T0)) "$*" >&2
  exit 1
}
# Runs CMD... every K s (default 3) until it succeeds; after SECONDS fails with WHY (and FUNC's output).
wait_for() { # [--every K] [--detail FUNC] SECONDS WHY CMD...
  local every=3 detail=
  while [[ $1 == --* ]]; do
    case $1 in
      --every) every=$2 ;;
      --detail) detail=$2 ;;
      *) fail "wait_for: unknown option $1" ;;
    esac
    shift 2
  done
  local seconds=$1 why=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "$why within $seconds s${detail:+: $("$detail")}"
    sleep "$every"
  done
}

CACHE_DIR=${DAAS_IMAGE_CACHE:-$root/.data/qemu/images}
ARTIFACTS=${DAAS_ARTIFACTS_DIR:-$root/target/e2e-artifacts}
mkdir -p "$ARTIFACTS"
ARTIFACTS=$(cd "$ARTIFACTS" && pwd)
rm -f "$ARTIFACTS"/screenshot-*.png "$ARTIFACTS"/*.ndjson "$ARTIFACTS"/desktop*.png "$ARTIFACTS"/*.log
BIN=${CARGO_TARGET_DIR:-$root/target}/debug
WORK=/var/tmp/daas-e2e-$$
DATA=$WORK/data
STATE=$WORK/state
SERVER_PID=
XVFB_PID=
RDP_PID=
DISPLAY_NUM=55
SESSION_USER=student
# A throwaway password for a throwaway VM (it exists only in this test's
# desktops, reachable on 127.0.0.1). The CLI reads it from the environment;
# FreeRDP 2 takes a password non-interactively only on its command line (/p:).
SESSION_PASSWORD="E2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')!"
AD_USER=alice
AD_STARTED=0
declare -a AD_ENV=()
declare -a TIMINGS=()
timing() { TIMINGS+=("$(printf '%-42s %s' "$1" "$2")"); }

[[ $(id -u) == 0 ]] || fail "run as root (QEMU, the image build, apt-get)"
mkdir -p "$WORK" "$STATE"
chmod 700 "$WORK" "$STATE"

stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $RDP_PID ]] && kill "$RDP_PID" 2>/dev/null
  [[ -n $XVFB_PID ]] && kill "$XVFB_PID" 2>/dev/null
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # Sessions still alive (a failed step): destroy them through the server.
    local ids
    ids=$("$BIN/daas" list --json 2>/dev/null | jq -r 'if type == "array" then .[] else . end
      | select(.state != "DESTROYED" and .state != "FAILED") | .id' 2>/dev/null)
    for id in $ids; do
      log "cleanup: daas destroy $id"
      timeout 180 "$BIN/daas" destroy "$id" >/dev/null 2>&1 || log "cleanup: destroy $id failed"
    done
  fi
  stop_server
  if ((AD_STARTED)); then
    ((status == 0)) || cp "${DAAS_AD_DIR:-/var/tmp/daas-ad}/log/samba.log" "$ARTIFACTS/ad-dc.log" 2>/dev/null
    if [[ ${KEEP:-0} == 1 ]]; then log "kept the test DC (tests/ad/dc.sh stop removes it)"; else tests/ad/dc.sh stop; fi
  fi
  # Any QEMU this test started (found by its pid file path on its command line).
  local pidfile pid
  for pidfile in "$STATE"/*.pid; do
    [[ -e $pidfile ]] || continue
    case $pidfile in *.watch.pid) continue ;; esac
    pid=$(cat "$pidfile" 2>/dev/null)
    if [[ -n $pid ]] && grep -qF -- "$pidfile" "/proc/$pid/cmdline" 2>/dev/null; then
      log "cleanup: killing QEMU $pid ($pidfile)"
      kill "$pid" 2>/dev/null
      sleep 3
      kill -9 "$pid" 2>/dev/null
    fi
  done
  if ((status != 0)); then
    log "server log tail ($WORK/server.log):"
    tail -n 40 "$WORK/server.log" 2>/dev/null | sed 's/^/      /' >&2
    cp "$WORK/server.log" "$ARTIFACTS/server.log" 2>/dev/null
    for f in "$STATE"/*.console.log; do [[ -e $f ]] && cp "$f" "$ARTIFACTS/"; done
  fi
  if [[ ${KEEP:-0} == 1 || $status != 0 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  if ((status == 0)); then log "PASS"; else log "FAILED (exit $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build, setup, image, host tools ----
step "cargo build (daas-server, daas, daas-agent)"
cargo build --quiet --workspace --bins
for b in daas-server daas daas-agent; do [[ -x $BIN/$b ]] || fail "$BIN/$b was not built"; done

step "scripts/setup.sh"
scripts/setup.sh

step "template image (cache $CACHE_DIR)"
t=$SECONDS
# Without its debug info: 11 MB instead of 90 MB. The template carries it
# (a desktop gets a copy only when it differs).
strip -o "$WORK/daas-agent" "$BIN/daas-agent"
IMAGE_DIR=$(terraform/qemu/image/build.sh --cache-dir "$CACHE_DIR" --agent-binary "$WORK/daas-agent" | tail -n 1)
IMAGE_S=$((SECONDS - t))
[[ -f $IMAGE_DIR/disk.qcow2 ]] || fail "build.sh printed no image folder"
built=$(jq -r '.build_seconds // empty' "$IMAGE_DIR/manifest.json" 2>/dev/null || true)
if ((IMAGE_S < 5)); then
  timing "image" "${IMAGE_S} s (cache hit; built in ${built:-?} s)"
else
  timing "image" "${IMAGE_S} s (built)"
fi
log "image $IMAGE_DIR ($IMAGE_S s)"
t=$SECONDS
DEV_IMAGE_DIR=$(terraform/qemu/image/build.sh --cache-dir "$CACHE_DIR" --flavor dev --agent-binary "$WORK/daas-agent" | tail -n 1)
[[ -f $DEV_IMAGE_DIR/disk.qcow2 ]] || fail "build.sh --flavor dev printed no image folder"
timing "image (dev flavor)" "$((SECONDS - t)) s"
log "the catalog's second template: $DEV_IMAGE_DIR"

step "host tools (xfreerdp, Xvfb, ImageMagick)"
missing=()
command -v xfreerdp >/dev/null || missing+=(freerdp2-x11)
command -v Xvfb >/dev/null || missing+=(xvfb)
command -v import >/dev/null || missing+=(imagemagick)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

step "Active Directory: a test domain controller (tests/ad/dc.sh)"
t=$SECONDS
AD_STARTED=1
tests/ad/dc.sh start
mapfile -t AD_ENV < <(tests/ad/dc.sh env)
timing "AD: test DC up" "$((SECONDS - t)) s"
ad_password() { cat "$(tests/ad/dc.sh password "$1")"; }

# ---- the server ----
export DAAS_DATA_DIR=$DATA
export DAAS_TERRAFORM__VARIABLES__IMAGE_DIR=$IMAGE_DIR
export DAAS_TERRAFORM__VARIABLES__TEMPLATE_IMAGES__DEV=$DEV_IMAGE_DIR
export DAAS_TERRAFORM__VARIABLES__STATE_DIR=$STATE
export DAAS_AGENT__BINARY=$WORK/daas-agent
SERVER_RUNS=0
start_server() { # extra VAR=value ... for this run
  SERVER_RUNS=$((SERVER_RUNS + 1))
  local out=$WORK/server.out.$SERVER_RUNS
  env "$@" "$BIN/daas-server" --config deploy/qemu.toml >"$out" 2>>"$WORK/server.log" &
  SERVER_PID=$!
  local addr
  addr=$(listening_address "$out" "$SERVER_PID") || fail "the server did not start (see $WORK/server.log)"
  export DAAS_ENDPOINT="https://$addr"
  local names=("${@%%=*}")
  log "daas-server (pid $SERVER_PID) on $addr${names:+ with ${names[*]}}"
}

step "daas-server with deploy/qemu.toml and the test domain (data $DATA)"
if (exec 3<>/dev/tcp/127.0.0.1/50061) 2>/dev/null; then fail "port 50061 is in use (another server?)"; fi
# With the web portal (its sign-in settings are in dc.sh env).
# Sign in once: the portal's password logs alice in to xrdp (step 3c).
start_server "${AD_ENV[@]}" DAAS_WEB__LISTEN=127.0.0.1:0 DAAS_WEB__PASS_THROUGH_CREDENTIALS=true
PORTAL_URL=$(sed -n 's/^daas-server web portal on //p' "$WORK/server.out.$SERVER_RUNS")
[[ -n $PORTAL_URL ]] || fail "the server did not announce its web portal"
PORTAL_URL=${PORTAL_URL/127.0.0.1/localhost}
log "web portal on $PORTAL_URL"
pki=$DATA/pki
cert=$(find "$pki/users" -name '*.pem' ! -name '*-key.pem' -print -quit)
[[ -n $cert ]] || fail "no user certificate in $pki/users"
export DAAS_CA=$pki/ca.pem DAAS_CERT=$cert DAAS_KEY=${cert%.pem}-key.pem
log "client certificate $cert"

daas() { "$BIN/daas" "$@"; }
show() { daas show "$1" --json; }

# Prints the per-stage times of an NDJSON event file.
stage_times() { # NAME FILE
  local name=$1 file=$2 prev ms label
  while read -r prev ms; do
    case $prev in
      QUEUED) label="queued" ;; PROVISIONING) label="PROVISIONING (Terraform)" ;;
      BOOTING) label="BOOTING (SSH, cloud-init)" ;; CONFIGURING) label="CONFIGURING (Ansible or agent)" ;;
      *) label=$prev ;;
    esac
    timing "$name: $label" "$(awk -v ms="$ms" 'BEGIN { printf "%.1f s", ms / 1000 }')"
  done < <(jq -r 'select(.stage_change != null and .stage_change.previous != null)
      | "\(.stage_change.previous) \(.stage_change.previous_duration_ms)"' "$file")
}

# Asserts nothing of a destroyed session is left: QEMU, files, working dir.
assert_gone() { # ID VM_NAME
  local id=$1 vm=$2 f
  [[ -n $vm && $vm != null ]] || fail "session $id has no vm_name"
  if pgrep -f -- "$STATE/$vm.pid" >/dev/null; then fail "a QEMU of $vm is still running"; fi
  for f in qcow2 seed.iso pid watch.pid; do
    [[ ! -e $STATE/$vm.$f ]] || fail "$STATE/$vm.$f is left after destroy"
  done
  [[ ! -e $DATA/sessions/$id ]] || fail "$DATA/sessions/$id is left after destroy"
  log "$id ($vm): no QEMU, no overlay/seed/pid file, no working directory"
}

# Whether session ID is in STATE; STATE_SEEN is the state it is in. Fails at
# once when it is FAILED (and STATE is not); a failing `daas show` ends the test.
state_is() { # ID STATE
  STATE_SEEN=$(show "$1" | jq -r .state) || exit
  [[ $STATE_SEEN == "$2" ]] && return 0
  [[ $STATE_SEEN == FAILED && $2 != FAILED ]] && fail "$1 is FAILED: $(show "$1" | jq -c .failure)"
  return 1
}
state_seen() { echo "it is $STATE_SEEN"; }
wait_state() { # ID STATE SECONDS
  wait_for --every 2 --detail state_seen "$3" "$1 is not $2" state_is "$1" "$2"
}

# ---- 1. one desktop for alice, joined to the domain, with a local user ----
step "1. daas create --user $AD_USER --session-user $SESSION_USER (joined to DAAS.TEST)"
t=$SECONDS
DAAS_SESSION_PASSWORD=$SESSION_PASSWORD daas create --user "$AD_USER" --session-user "$SESSION_USER" --json \
  >"$ARTIFACTS/create-1.ndjson" || fail "daas create exited $? (events: $ARTIFACTS/create-1.ndjson)"
CREATE_S=$((SECONDS - t))
ID=$(jq -rn 'first(inputs | .session_id // empty)' "$ARTIFACTS/create-1.ndjson")
[[ -n $ID ]] || fail "no session id in the create output"
session=$(show "$ID")
[[ $(jq -r .state <<<"$session") == READY ]] || fail "session $ID is $(jq -r .state <<<"$session")"
RDP_PORT=$(jq -r .rdp_port <<<"$session")
SSH_PORT=$(jq -r .ssh_port <<<"$session")
VM=$(jq -r .vm_name <<<"$session")
log "session $ID READY in $CREATE_S s: $VM, RDP 127.0.0.1:$RDP_PORT"
timing "session 1: create to READY (CLI)" "$CREATE_S s"
stage_times "session 1" "$ARTIFACTS/create-1.ndjson"
# The ad-join role's share of CONFIGURING: from its first task to the next role's.
join_ms=$(jq -rn '[inputs | select(.output.tool == "ansible") | {t: .output.text, ms: .stage_elapsed_ms}]
  | ((map(select(.t | startswith("TASK [desktop-config"))) | first | .ms)
     - (map(select(.t | startswith("TASK [ad-join"))) | first | .ms)) // empty' "$ARTIFACTS/create-1.ndjson")
[[ -n $join_ms ]] || fail "no ad-join tasks in the playbook's output (events: $ARTIFACTS/create-1.ndjson)"
timing "session 1: CONFIGURING's ad-join role" "$(awk -v ms="$join_ms" 'BEGIN { printf "%.1f s", ms / 1000 }')"
dn=$(tests/ad/dc.sh computer "$VM") || fail "no computer account $VM in the directory after the join"
log "computer account: $dn"
[[ $dn == *"OU=Desktops"* ]] || fail "the computer account is not in OU=Desktops: $dn"

# The VM shows the host key the server made for it (and nothing else).
KNOWN_HOSTS=$DATA/sessions/$ID/identity/known_hosts
[[ -s $KNOWN_HOSTS ]] || fail "no known_hosts in the session's identity folder"
shown=$(ssh-keyscan -p "$SSH_PORT" -t ed25519 127.0.0.1 2>/dev/null | awk '{print $2, $3}')
[[ -n $shown && $shown == "$(awk '{print $2, $3}' "$KNOWN_HOSTS")" ]] ||
  fail "the VM's host key ($shown) is not the one the server made ($(cat "$KNOWN_HOSTS"))"
log "the VM's SSH host key is the one the server made"

# A shell command line inside the VM, over SSH with the server's key, the
# VM's host key checked as the server checks it.
vm() {
  ssh -i "$DATA/ssh/id_ed25519" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias="daas-$VM" \
    -o LogLevel=ERROR -o ConnectTimeout=20 daas@127.0.0.1 "$1"
}
# A command inside the VM, its arguments as they are (ssh would join them
# into one line for the remote shell).
vm_run() { vm "$(printf '%q ' "$@")"; }

# ---- 2. the agent in the VM reports ----
step "2. the agent inside the VM reports"
activity() { show "$ID" | jq -c .activity; }
agent_reported() { [[ $(show "$ID" | jq -r '.activity.last_report_at // empty') != "" ]]; }
wait_for --detail activity 120 "no agent report" agent_reported
log "agent report: $(show "$ID" | jq -c .activity)"
daas show "$ID" | grep -E '^ *alive' | sed 's/^/    /' || true

# ---- 3. RDP logins, screenshots ----
step "3. xfreerdp under Xvfb as $SESSION_USER"
export DISPLAY=:$DISPLAY_NUM
Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; [[ -e /tmp/.X11-unix/X$DISPLAY_NUM ]] && break; sleep 0.2; done
sleep 1
kill -0 "$XVFB_PID" 2>/dev/null || fail "Xvfb did not start: $(cat "$WORK/xvfb.log")"

rdp_start() { # USER PASSWORD
  xfreerdp "/v:127.0.0.1:$RDP_PORT" "/u:$1" "/p:$2" /cert:ignore \
    /size:1024x700 >"$WORK/xfreerdp-$1.log" 2>&1 &
  RDP_PID=$!
  RDP_T0=$SECONDS
}
rdp_stop() {
  kill "$RDP_PID" 2>/dev/null || true
  wait "$RDP_PID" 2>/dev/null || true
  RDP_PID=
}

# The xfreerdp window (no window manager: at 0,0) of the root window.
shot() { import -display ":$DISPLAY_NUM" -window root -crop 1024x700+0+0 +repage "$1" 2>/dev/null; }
mean() { convert "$1" ${2:+-crop "$2" +repage} -colorspace Gray -format '%[fx:mean]' info:; }
stddev() { convert "$1" ${2:+-crop "$2" +repage} -colorspace Gray -format '%[fx:standard_deviation]' info:; }
# Share (0-1) of the most common colour of a region.
dominant() {
  convert "$1" ${2:+-crop "$2" +repage} -depth 8 -format %c histogram:info: |
    awk '{ n = $1 + 0; t += n; if (n > m) m = n } END { if (t) printf "%.3f", m / t; else print 0 }'
}
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# A desktop: not one colour (a black frame), and XFCE's panel: a strip at
# the top, mostly one colour, that differs from the wallpaper below it. The
# xrdp login screen has no such strip: its background runs to the top edge,
# with the login dialog in the middle.
why_not_desktop() { # FILE; prints why it is not a desktop, nothing if it is
  local f=$1 sd dom panel_dom top below
  sd=$(stddev "$f")
  dom=$(dominant "$f")
  if ! gt "$sd" 0.03 || gt "$dom" 0.97; then
    # XFCE's own desktop (xfdesktop: a wallpaper that is not black, the
    # icons' column at the left) with the panel hidden under it is a
    # desktop too: under emulation xfdesktop sometimes maps after the panel.
    if gt "$(mean "$f")" 0.08 && gt "$(stddev "$f" 120x220+0+0)" 0.1; then return; fi
    echo "one colour (stddev $sd, dominant $dom)"
    return
  fi
  panel_dom=$(dominant "$f" 1024x20+0+2)
  top=$(mean "$f" 1024x20+0+2)
  below=$(mean "$f" 300x100+0+150)
  if ! gt "$panel_dom" 0.5; then echo "no uniform panel strip at the top (dominant $panel_dom)"; return; fi
  if ! gt "$(awk -v a="$top" -v b="$below" 'BEGIN { d = a - b; print (d < 0 ? -d : d) }')" 0.04; then
    echo "the top strip is like the background below (top $top, below $below): a login screen?"
    return
  fi
}

# Screenshots every 10 s for up to SECONDS until a desktop shows twice in a
# row; VERDICT is empty then, else why the last one is not a desktop. The
# last screenshot is $ARTIFACTS/TAG.png.
wait_desktop() { # TAG SECONDS
  local tag=$1 n=0 ok=0 f=
  VERDICT="no screenshot"
  while ((SECONDS - RDP_T0 < $2)); do
    sleep 10
    n=$((n + 1))
    f=$WORK/$tag-$n.png
    shot "$f" || continue
    cp "$f" "$ARTIFACTS/screenshot-$tag-$((SECONDS - RDP_T0))s.png"
    VERDICT=$(why_not_desktop "$f")
    log "screenshot at $((SECONDS - RDP_T0)) s: ${VERDICT:-a desktop}"
    kill -0 "$RDP_PID" 2>/dev/null || { log "xfreerdp exited: $(tail -n 5 "$WORK/xfreerdp-$tag.log" 2>/dev/null)"; break; }
    # A desktop twice in a row: XFCE has finished drawing.
    if [[ -z $VERDICT ]] && ((ok)); then break; fi
    [[ -z $VERDICT ]] && ok=1 || ok=0
  done
  [[ -z $f ]] || cp "$f" "$ARTIFACTS/$tag.png" 2>/dev/null || true
}

rdp_start "$SESSION_USER" "$SESSION_PASSWORD"
wait_desktop desktop 180
DESKTOP_S=$((SECONDS - RDP_T0))
[[ -z $VERDICT ]] || fail "no desktop on the screenshot ($VERDICT); see $ARTIFACTS/desktop.png, $WORK/xfreerdp-$SESSION_USER.log"
log "a desktop after $DESKTOP_S s; kept $ARTIFACTS/desktop.png"
timing "RDP connect to desktop on screen" "$DESKTOP_S s"
daas show "$ID" | grep -E '^ *alive' | sed 's/^/    /' || true
rdp_stop

# ---- 3a. alice, with her AD password and her share ----
step "3a. xfreerdp as $AD_USER (AD password): desktop, share, Kerberos ticket, agent report"
AD_PASSWORD=$(ad_password "$AD_USER")
rdp_start "$AD_USER" "$AD_PASSWORD"
wait_desktop "desktop-$AD_USER" 180
ALICE_S=$((SECONDS - RDP_T0))
if [[ -n $VERDICT ]]; then
  vm "sudo journalctl --no-pager -q -n 40 SYSLOG_IDENTIFIER=xrdp-sesman" >"$WORK/sesman.log" 2>&1 || true
  fail "no desktop for $AD_USER ($VERDICT); see $ARTIFACTS/desktop-$AD_USER.png and the VM's xrdp-sesman log: $(tail -n 8 "$WORK/sesman.log")"
fi
log "$AD_USER's desktop after $ALICE_S s"
timing "RDP as $AD_USER (AD) to desktop on screen" "$ALICE_S s"
home=/home/$AD_USER
if ! mnt=$(vm_run findmnt -n -o SOURCE,FSTYPE,OPTIONS --mountpoint "$home/H"); then
  vm "sudo journalctl --no-pager -q -b | grep -Ei 'pam_mount|cifs|mount\.|krb5' | tail -n 30" >"$WORK/mount.log" 2>&1 || true
  fail "nothing is mounted at $home/H; the VM's journal: $(cat "$WORK/mount.log")"
fi
log "findmnt $home/H: $mnt"
[[ $mnt == "//dc1.daas.test/homes cifs "* ]] || fail "$home/H is not //dc1.daas.test/homes over cifs: $mnt"
[[ $mnt == *sec=krb5* ]] || fail "$home/H is not mounted with Kerberos (sec=krb5): $mnt"
tickets=$(vm_run sudo -u "$AD_USER" klist) || fail "$AD_USER has no Kerberos ticket cache"
grep -q 'krbtgt/DAAS.TEST@DAAS.TEST' <<<"$tickets" || fail "no TGT in $AD_USER's cache: $tickets"
grep -q 'cifs/dc1.daas.test' <<<"$tickets" || fail "no cifs/dc1.daas.test ticket in $AD_USER's cache: $tickets"
log "$AD_USER's tickets: $(grep -o '[a-z]*/[A-Za-z0-9.]*@DAAS.TEST' <<<"$tickets" | sort -u | tr '\n' ' ')"
welcome=$(vm_run sudo -u "$AD_USER" cat "$home/H/welcome.txt") || fail "cannot read $home/H/welcome.txt"
[[ $welcome == "Hello $AD_USER:"* ]] || fail "$home/H/welcome.txt is not $AD_USER's: $welcome"
token="written by $VM at $(date +%s)"
vm_run sudo -u "$AD_USER" sh -c "echo '$token' >$home/H/from-desktop.txt" || fail "cannot write to $home/H"
[[ $(cat "${DAAS_AD_DIR:-/var/tmp/daas-ad}/homes/$AD_USER/from-desktop.txt" 2>/dev/null) == "$token" ]] ||
  fail "the file $AD_USER wrote on her share is not on the DC"
log "$home/H: read welcome.txt from the DC, wrote from-desktop.txt to it"
reports_user() { show "$ID" | jq -e --arg u "$1" '.activity.users // [] | index($u)' >/dev/null; }
wait_for --detail activity 60 "the agent did not report $AD_USER" reports_user "$AD_USER"
log "agent reports users $(show "$ID" | jq -c .activity.users)"
# On her screen: a terminal showing the mount (for the screenshot).
xdisplay=$(vm "ps -u $AD_USER -o args= | sed -n 's/^.*Xorg \(:[0-9]*\).*/\1/p' | head -n 1") || true
if [[ -n $xdisplay ]]; then
  # Its output goes nowhere on the VM's side, or ssh would wait for it.
  vm "$(printf '%q ' sudo -u "$AD_USER" env DISPLAY="$xdisplay" XAUTHORITY="$home/.Xauthority" setsid -f \
    xfce4-terminal --geometry=110x22+30+50 -x sh -c \
    "findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS $home/H | cut -c1-108; echo; ls -l $home/H; echo; klist; exec sleep 86400") \
    </dev/null >/dev/null 2>&1" || true
  sleep 8
  shot "$ARTIFACTS/desktop-$AD_USER.png" || true
fi
VERDICT=$(why_not_desktop "$ARTIFACTS/desktop-$AD_USER.png")
[[ -z $VERDICT ]] || fail "$AD_USER's last screenshot is not a desktop ($VERDICT)"
log "kept $ARTIFACTS/desktop-$AD_USER.png"
rdp_stop

# ---- 3b. bob is refused, carol would be let in ----
step "3b. bob (not in daas-users) is refused; carol (in it) is allowed"
rdp_start bob "$(ad_password bob)"
bob_denied() {
  local journal
  journal=$(vm "sudo journalctl --no-pager -q -b") || return 1
  grep -qF 'pam_sss(xrdp-sesman:account): Access denied for user bob' <<<"$journal"
}
wait_for --every 5 90 "no 'Access denied for user bob' from pam_sss in the VM's journal" bob_denied
shot "$ARTIFACTS/refused-bob.png" || true
rdp_stop
log "xrdp-sesman: $(vm "sudo journalctl --no-pager -q -b" | grep -m 1 'Access denied for user bob' | sed 's/^.*pam_sss/pam_sss/')"
if show "$ID" | jq -e '.activity.users // [] | index("bob")' >/dev/null; then fail "the agent reports bob logged in"; fi
check=$(vm "sudo sssctl user-checks bob -a acct -s xrdp-sesman" 2>&1 || true)
grep -q 'pam_acct_mgmt: Permission denied' <<<"$check" || fail "sssctl: bob's account check is not denied: $check"
check=$(vm "sudo sssctl user-checks carol -a acct -s xrdp-sesman" 2>&1 || true)
grep -q 'pam_acct_mgmt: Success' <<<"$check" || fail "sssctl: carol (in daas-users) is not allowed: $check"
log "bob refused (RDP and sssctl), carol allowed by her group (sssctl)"

# ---- 3c. the desktop in the browser tab ----
step "3c. the web portal in Chromium: $AD_USER opens her desktop in the tab"
rm -f "$ARTIFACTS"/browser-*.png
before=$(show "$ID" | jq -r '.activity.last_input_at // ""')
# Runs the browser test SCRIPT with node into LOG, with the portal's URL,
# the artifacts' folder and what the caller's assignments add to its
# environment (passwords go there, never into an argument); prints it and
# fails with WHY if it fails, else prints its "ok:" lines. BROWSER_TIMINGS
# is then its last line (its timings, JSON).
browser_step() { # LOG WHY SCRIPT
  PORTAL_URL=$PORTAL_URL ARTIFACTS=$ARTIFACTS node "$3" >"$1" 2>&1 || {
    sed 's/^/    /' "$1"
    fail "$2 (see $ARTIFACTS/browser-*.png)"
  }
  grep '^ok: ' "$1" | sed 's/^/    /'
  BROWSER_TIMINGS=$(tail -n 1 "$1")
}
# The field FIELD of BROWSER_TIMINGS (milliseconds), in seconds.
browser_seconds() { jq -r --arg f "$1" '.[$f] / 1000 | tostring + " s"' <<<"$BROWSER_TIMINGS"; }

# Her clipboard and X session on the desktop, for the browser test: `get`,
# `set TEXT`, `session` (her Xorg's pid and display).
CLIPBOARD_TOOL=$WORK/desktop-clipboard.sh
{
  printf '#!/usr/bin/env bash\nset -euo pipefail\n'
  printf 'vm() { ssh -i %q -p %q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%q' \
    "$DATA/ssh/id_ed25519" "$SSH_PORT" "$KNOWN_HOSTS"
  # shellcheck disable=SC2016 # "$1" is the tool's own argument, expanded when it runs
  printf ' -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=%q -o LogLevel=ERROR -o ConnectTimeout=20 daas@127.0.0.1 "$1"; }\n' \
    "daas-$VM"
  printf 'user=%q\n' "$AD_USER"
  cat <<'TOOL'
display='d=$(ps -u '$user' -o args= | sed -n "s/^.*Xorg \(:[0-9]*\).*/\1/p" | head -n 1)'
as_user="sudo -u $user env DISPLAY=\$d XAUTHORITY=/home/$user/.Xauthority"
case ${1:-} in
  get) vm "$display; $as_user timeout 10 xclip -o -selection clipboard 2>/dev/null || true" ;;
  set) vm "$display; printf %s $(printf %q "$2") | $as_user xclip -i -selection clipboard >/dev/null 2>&1" ;;
  session) vm "ps -u $user -o pid=,args= | grep -m 1 '[X]org :'" ;;
  *) echo "usage: $0 get | set TEXT | session" >&2; exit 2 ;;
esac
TOOL
} >"$CLIPBOARD_TOOL"
ALICE_PASSWORD=$AD_PASSWORD PASS_THROUGH=1 CLIPBOARD_TOOL=$CLIPBOARD_TOOL \
  browser_step "$WORK/browser-desktop.log" "the desktop in the browser" tests/browser/desktop.mjs
log "timings: $BROWSER_TIMINGS"
timing "portal: click to desktop in the tab (signed in once)" "$(browser_seconds click_to_desktop_ms)"
vm_run sudo test -f "/home/$AD_USER/typed-in-the-browser" ||
  fail "the command typed in the tab did not run in the VM (no ~/typed-in-the-browser)"
log "the command typed in the tab ran: /home/$AD_USER/typed-in-the-browser exists"
typed_at=$(jq -r .typed_at <<<"$BROWSER_TIMINGS")
# Whether the agent reports input since the typing; `last` is its last input.
input_reported() {
  last=$(show "$ID" | jq -r '.activity.last_input_at // ""') &&
    [[ -n $last && $last != "$before" ]] && (($(date -d "$last" +%s) >= $(date -d "$typed_at" +%s) - 30))
}
input_seen() { echo "last input $last, typed at $typed_at"; }
wait_for --detail input_seen 60 "the agent did not report the input typed in the tab" input_reported
log "the agent reports input at $last (typed at $typed_at)"
# Written when the connection ends (with its byte counts): just after the
# browser closed it.
web_connect_audited() { daas audit --session "$ID" --json | jq -se 'any(.action == "web connect")' >/dev/null; }
wait_for --every 1 30 "no 'web connect' in the audit trail for $ID" web_connect_audited
daas audit --user "$AD_USER" --json |
  jq -se 'any(.action == "web connect" and .result == "PERMISSION_DENIED")' >/dev/null ||
  fail "the refused second use of the ticket is not in the audit trail"
daas audit --session "$ID" --json |
  jq -se 'any(.action == "web connect" and (.detail | contains("logged in with the portal'"'"'s sign-in")))' >/dev/null ||
  fail "the gateway did not log $AD_USER in with her sign-in (audit: no 'logged in with the portal's sign-in')"
mountpoint_ok() { vm_run findmnt -n --mountpoint "/home/$AD_USER/H" >/dev/null; }
wait_for 30 "nothing is mounted at /home/$AD_USER/H in the browser's session" mountpoint_ok
log "signed in once: the gateway logged $AD_USER in with her portal sign-in; her share is mounted"
log "audit: $(daas audit --session "$ID" --json | jq -r 'select(.action == "web connect") | "\(.actor) \(.result): \(.detail)"' | head -n 2 | tr '\n' ';')"

# ---- 3d. the clipboard policy "off", enforced by the gateway ----
step "3d. clipboard \"off\", recorded and watchable for her template: a changed page copies nothing either way"
# Her desktop's xrdp still allows both ways (it was made under "both"):
# only the gateway stands in the way here.
template=$(show "$ID" | jq -r .template)
stop_server
start_server "${AD_ENV[@]}" DAAS_WEB__LISTEN=127.0.0.1:0 DAAS_WEB__PASS_THROUGH_CREDENTIALS=true \
  "DAAS_TEMPLATES__${template^^}__CLIPBOARD=off" "DAAS_TEMPLATES__${template^^}__RECORD=true" \
  "DAAS_TEMPLATES__${template^^}__SHADOW=true"
PORTAL_URL=$(sed -n 's/^daas-server web portal on //p' "$WORK/server.out.$SERVER_RUNS")
PORTAL_URL=${PORTAL_URL/127.0.0.1/localhost}
ALICE_PASSWORD=$AD_PASSWORD PASS_THROUGH=1 CLIPBOARD_TOOL=$CLIPBOARD_TOOL CLIPBOARD=off RECORDED=1 \
  browser_step "$WORK/browser-clipboard-off.log" "the clipboard policy \"off\"" tests/browser/desktop.mjs
log "clipboard off: nothing crossed the gateway either way, the connection stayed up"
recorded_as() {
  recording=$(daas audit --session "$ID" --json |
    jq -r 'select(.action == "web connect") | .detail | capture("recorded as (?<id>[0-9]+-[0-9a-f]{16})").id' | head -n 1) &&
    [[ -n $recording ]]
}
wait_for --every 1 30 "the 3d connection is not recorded (audit: no 'recorded as')" recorded_as
[[ -s $DATA/recordings/$recording.rec ]] || fail "no recording file $DATA/recordings/$recording.rec"
if grep -qaF -- "$AD_PASSWORD" "$DATA/recordings/$recording.rec" "$DATA/recordings/$recording.json"; then
  fail "the recording holds her password"
fi
log "recorded as $recording ($(stat -c %s "$DATA/recordings/$recording.rec") bytes; her password is not in it)"

# ---- 3e. an administrator watches her tab live, then replays it ----
step "3e. carol (administrator) watches alice's tab live, then replays a recording of it"
OWNER=$AD_USER OWNER_PASSWORD=$AD_PASSWORD ADMIN_USER=carol ADMIN_PASSWORD=$(ad_password carol) \
  browser_step "$WORK/browser-replay.log" "the watch and the replay in the portal" tests/browser/replay.mjs
timing "portal: click to the watched desktop (live)" "$(browser_seconds click_to_watched_desktop_ms)"
timing "portal: click to the replayed desktop" "$(browser_seconds click_to_replayed_desktop_ms)"
for action in "web watch" "web replay"; do
  daas audit --session "$ID" --json |
    jq -se --arg a "$action" 'any(.action == $a and .actor == "carol" and .result == "OK")' >/dev/null ||
    fail "carol's $action is not in the audit trail"
done
log "carol's watch and replay are in the audit trail"

# ---- 4. idle: warned, then reaped ----
step "4. idle reaping (server restarted with short policy timeouts)"
# The idle clock is in the store: a restart keeps the session READY and its
# clock. The timeout is set from the time already idle, so that the reaper
# warns first (a desktop past its timeout is reaped without a warning).
last=$(show "$ID" | jq -r '.activity.last_input_at // .ready_at')
idle=$(($(date +%s) - $(date -d "$last" +%s)))
((idle >= 0)) || idle=0
IDLE_TIMEOUT=$((idle + 90))
stop_server
# With a warm pool joined to the domain, built meanwhile for step 4a.
start_server "${AD_ENV[@]}" DAAS_POLICY__IDLE_TIMEOUT="${IDLE_TIMEOUT}s" DAAS_POLICY__WARNING=60s \
  DAAS_POLICY__REAPER_INTERVAL=2s DAAS_POOLS__AD__SIZE=1 \
  DAAS_WEB__LISTEN=127.0.0.1:0 DAAS_WEB__PASS_THROUGH_CREDENTIALS=true
AD_POOL_T0=$SECONDS
PORTAL_URL=$(sed -n 's/^daas-server web portal on //p' "$WORK/server.out.$SERVER_RUNS")
PORTAL_URL=${PORTAL_URL/127.0.0.1/localhost}
log "idle for $idle s (last input or READY: $last); idle_timeout ${IDLE_TIMEOUT}s, warning 60s"
[[ $(show "$ID" | jq -r .state) == READY ]] || fail "$ID is not READY after the restart"
t=$SECONDS
destroyed() { [[ $(show "$ID" | jq -r .state) == DESTROYED ]]; }
state_activity() { show "$ID" | jq -c '{state, activity}'; }
wait_for --detail state_activity 300 "$ID was not reaped" destroyed
REAP_S=$((SECONDS - t))
timing "session 1: short policy on to DESTROYED" "$REAP_S s"
timeout 60 "$BIN/daas" watch "$ID" --json >"$ARTIFACTS/watch-1.ndjson" || true
# The warning of the idle rule (not of another one), then the reaping for it.
jq -e -s 'any(.[]; .idle_warning.reason // "" | startswith("idle_timeout"))' "$ARTIFACTS/watch-1.ndjson" >/dev/null ||
  fail "no idle_timeout idle_warning event before the reaping (events: $ARTIFACTS/watch-1.ndjson)"
jq -e -s 'any(.[]; .state == "DESTROYING" and (.stage_change.message // "" | contains("idle_timeout")))' \
  "$ARTIFACTS/watch-1.ndjson" >/dev/null || fail "the session was not destroyed for idle_timeout"
warn_line=$(jq -cn 'first(inputs | select(.idle_warning.reason // "" | startswith("idle_timeout")) | {time, idle_warning})' "$ARTIFACTS/watch-1.ndjson")
log "warned: $warn_line"
log "destroyed because: $(jq -rn 'first(inputs | select(.stage_change.message != null and .state == "DESTROYING") | .stage_change.message)' "$ARTIFACTS/watch-1.ndjson")"
destroying_ms=$(jq -r 'select(.state == "DESTROYED" and .stage_change != null) | .stage_change.previous_duration_ms' "$ARTIFACTS/watch-1.ndjson" | tail -n 1)
timing "session 1: reaped destroy (DESTROYING)" "$(awk -v ms="${destroying_ms:-0}" 'BEGIN { printf "%.1f s", ms / 1000 }')"
assert_gone "$ID" "$VM"
if dn=$(tests/ad/dc.sh computer "$VM"); then fail "the computer account is left after the destroy: $dn"; fi
log "$VM: no computer account left in the directory"

# The pool $POOL's status.
pool_status() { daas pool status "$POOL" --json; }
# Whether the pool's status passes the jq test TEST.
pool_passes() { pool_status | jq -e "$1" >/dev/null; }
# Waits until the pool's status passes the jq test TEST.
wait_pool() { # TEST SECONDS WHY_NOT
  wait_for --every 2 --detail pool_status "$2" "$3" pool_passes "$1"
}
# Ids of the pool's unclaimed desktops whose state passes the jq test TEST.
unclaimed() { # TEST
  daas list --json | jq -r --arg pool "$POOL" "if type == \"array\" then .[] else . end
    | select(.pool == \$pool and (.username // \"\") == \"\" and ($1)) | .id"
}

# ---- 4a. a warm pool joined to the domain: alice claims, her agent lets her in ----
step "4a. a warm pool joined to DAAS.TEST (built during step 4): $AD_USER claims its desktop from the page, through its agent"
POOL=ad
wait_pool '.ready == 1' 600 "the AD pool has no ready desktop"
timing "AD pool: server start to one ready desktop" "$((SECONDS - AD_POOL_T0)) s"
SPARE=$(unclaimed '.state == "READY"')
[[ -n $SPARE ]] || fail "no unclaimed READY desktop of pool ad in the list: $(daas list)"
# She creates it from the page, signed in once: the server starts her
# session as soon as it is READY (web.start_session_at_create); she opens
# it 5 s later, a user's time to read "Your desktop is ready" and click.
# Her first login on the claimed desktop, in the tab.
ALICE_PASSWORD=$AD_PASSWORD PASS_THROUGH=1 FIRST_LOGIN=1 CREATE=debian-12-xfce CLICK_AFTER_MS=${E2E_CLICK_AFTER_MS:-5000} \
  browser_step "$WORK/browser-claimed.log" "her first login on the desktop she claimed from the page" tests/browser/desktop.mjs
ID5=$(jq -r .session_id <<<"$BROWSER_TIMINGS")
[[ $ID5 == "$SPARE" ]] || fail "the page's create did not claim the AD pool's desktop $SPARE but made $ID5"
AD_CLAIM_MS=$(jq -r .create_to_ready_ms <<<"$BROWSER_TIMINGS")
timing "AD pool: claimed from the page, click to her first desktop in the tab ($(browser_seconds ready_to_click_ms) after READY)" "$(browser_seconds click_to_desktop_ms)"
timing "AD pool: claimed from the page, click to xrdp's first frame in the tab" "$(browser_seconds click_to_first_frame_ms)"
timing "AD pool: create's click to her first desktop in the tab" "$(browser_seconds create_to_desktop_ms)"
timing "AD pool: create's click to xrdp's first frame in the tab" "$(browser_seconds create_to_first_frame_ms)"
started=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -F "started a desktop's session ahead of its tab" | grep -F "$ID5" | tail -n 1)
[[ -n $started ]] || fail "the server did not start $AD_USER's session at the create: $(grep -F "$ID5" "$WORK/server.log" | grep -F "ahead of its tab" | tail -n 1)"
log "her session started at the create: ${started##*desktops: }"
timeout 30 "$BIN/daas" watch "$ID5" --json >"$ARTIFACTS/create-ad-claim.ndjson" || true
s5=$(show "$ID5")
# When her desktop came up after READY: the age of her xfdesktop, read in
# the VM (its clock is not the host's).
SSH_PORT=$(jq -r .ssh_port <<<"$s5") VM=$(jq -r .vm_name <<<"$s5")
KNOWN_HOSTS=$DATA/sessions/$ID5/identity/known_hosts
now_ms=$(date +%s%3N)
age=$(vm "ps -o etimes=,comm= -u $AD_USER" 2>/dev/null | awk '$2 == "xfdesktop" { print $1; exit }') || true
if [[ $age =~ ^[0-9]+$ ]]; then
  ready_at_ms=$(jq -r .ready_at_ms <<<"$BROWSER_TIMINGS")
  timing "AD pool: READY to her xfdesktop (about; her session started at the create)" "$(((now_ms - age * 1000 - ready_at_ms + 500) / 1000)) s"
fi
[[ $(jq -r .state <<<"$s5") == READY && $(jq -r .pool <<<"$s5") == ad ]] || fail "the claimed session: $s5"
# SSSD's access through the agent's helper (no SSH, no Ansible).
by_agent=$(jq -rn 'first(inputs | select(.output.tool == "agent" and (.output.text | startswith("the agent let"))) | .output.text)' \
  "$ARTIFACTS/create-ad-claim.ndjson")
[[ $by_agent == "the agent let the domain user $AD_USER log in"* ]] ||
  fail "the AD claim did not go through the desktop's agent: ${by_agent:-no agent line} (events: $ARTIFACTS/create-ad-claim.ndjson)"
log "AD claim: $by_agent"
timing "AD pool: claim to READY (the page)" "$(awk -v ms="$AD_CLAIM_MS" 'BEGIN { printf "%.1f s", ms / 1000 }')"
stage_times "session 5 (AD, claimed)" "$ARTIFACTS/create-ad-claim.ndjson"
# The account phase of xrdp's PAM service, through SSSD: alice in, bob not.
acct_check() { vm "sudo sssctl user-checks $1 -a acct -s xrdp-sesman 2>&1" || true; }
alice_let_in() {
  local out
  out=$(acct_check "$AD_USER")
  grep -qF 'pam_acct_mgmt: Success' <<<"$out"
}
acct_alice() { acct_check "$AD_USER"; }
t=$SECONDS
wait_for --detail acct_alice 90 "SSSD does not let $AD_USER in on the claimed desktop" alice_let_in
log "SSSD lets $AD_USER in on $VM (checked in $((SECONDS - t)) s)"
out=$(acct_check bob)
grep -qF 'pam_acct_mgmt: Permission denied' <<<"$out" || fail "SSSD does not refuse bob on $AD_USER's claimed desktop: $out"
log "and refuses bob"
# The pool's build warmed it for her first login: XFCE's first-run
# configuration in /etc/skel, nothing left of the throwaway login.
warm=$(vm 'sudo sh -c "ls -A /etc/skel/.config; getent passwd daas-warmup; ls -A /home; grep -rlF daas-warmup /etc/skel"' 2>&1) || true
grep -qx xfce4 <<<"$warm" || fail "the pool's build did not warm $VM: no XFCE configuration in /etc/skel ($warm)"
! grep -q daas-warmup <<<"$warm" || fail "the warm-up's throwaway login is left on $VM: $warm"
log "warmed for a first login: /etc/skel/.config holds $(vm 'ls -A /etc/skel/.config' | tr '\n' ' ')"
daas destroy "$ID5" >/dev/null || fail "daas destroy $ID5"
wait_state "$ID5" DESTROYED 300
assert_gone "$ID5" "$VM"
if dn=$(tests/ad/dc.sh computer "$VM"); then fail "the computer account is left after the destroy: $dn"; fi

# ---- 5. a warm pool of one beside a cold create; the claim ----
step "5. a warm pool of one beside a cold create (no domain); a create claims the pooled desktop"
stop_server
start_server DAAS_POOLS__E2E__SIZE=1
POOL=e2e
POOL_T0=$SECONDS
t=$SECONDS
# Of the catalog's second template: no pool has it, a cold create.
DAAS_SESSION_PASSWORD=$SESSION_PASSWORD daas create --template dev --session-user "$SESSION_USER" --json \
  >"$ARTIFACTS/create-2.ndjson" || fail "daas create (cold) exited $? (events: $ARTIFACTS/create-2.ndjson)"
COLD_S=$((SECONDS - t))
ID2=$(jq -rn 'first(inputs | .session_id // empty)' "$ARTIFACTS/create-2.ndjson")
s2=$(show "$ID2")
[[ $(jq -r .state <<<"$s2") == READY ]] || fail "$ID2 is $(jq -r .state <<<"$s2")"
[[ $(jq -r '.pool // ""' <<<"$s2") == "" ]] || fail "the cold create came from the pool: $s2"
timing "session 2 (cold, template dev, beside the pool): READY" "$COLD_S s"
[[ $(jq -r .template <<<"$s2") == dev ]] || fail "session 2 is not of template dev: $s2"
# It is the developer's image: its tools are there.
SSH_PORT=$(jq -r .ssh_port <<<"$s2") VM=$(jq -r .vm_name <<<"$s2")
KNOWN_HOSTS=$DATA/sessions/$ID2/identity/known_hosts
tools=$(vm 'gcc --version | head -n 1; git --version') || fail "no developer's tools on the dev desktop"
log "the dev desktop has its tools: $(tr '\n' ';' <<<"$tools")"
# dev is persistent: what is on its disk comes back on the next one.
vm 'echo "kept by e2e $$" >~/kept.txt && cat ~/kept.txt && sync' >"$WORK/kept.txt" ||
  fail "cannot write a file on the dev desktop"
stage_times "session 2" "$ARTIFACTS/create-2.ndjson"
wait_pool '.ready == 1' 600 "the pool has no ready desktop"
timing "pool: server start to one ready desktop" "$((SECONDS - POOL_T0)) s"
SPARE=$(unclaimed '.state == "READY"')
[[ -n $SPARE ]] || fail "no unclaimed READY desktop in the list: $(daas list)"
log "pool e2e: $(pool_status | jq -c '{desired, ready, provisioning}'), desktop $SPARE"
t_ms=$(date +%s%3N)
DAAS_SESSION_PASSWORD=$SESSION_PASSWORD daas create --session-user "$SESSION_USER" --json \
  >"$ARTIFACTS/create-3.ndjson" || fail "daas create (claim) exited $? (events: $ARTIFACTS/create-3.ndjson)"
CLAIM_MS=$(($(date +%s%3N) - t_ms))
ID3=$(jq -rn 'first(inputs | .session_id // empty)' "$ARTIFACTS/create-3.ndjson")
[[ $ID3 == "$SPARE" ]] || fail "the create did not claim the pool's desktop $SPARE but made $ID3"
s3=$(show "$ID3")
[[ $(jq -r .state <<<"$s3") == READY && $(jq -r .pool <<<"$s3") == e2e ]] || fail "the claimed session: $s3"
stages3=$(jq -rs '[.[] | select(.stage_change != null) | .state] | join(" ")' "$ARTIFACTS/create-3.ndjson")
[[ $stages3 == "QUEUED CONFIGURING READY" ]] || fail "the claim went through $stages3"
# The desktop's agent made the session user (no SSH, no Ansible); xfreerdp
# logs in with that user's password below.
by_agent=$(jq -rn 'first(inputs | select(.output.tool == "agent" and (.output.text | startswith("the agent created"))) | .output.text)' \
  "$ARTIFACTS/create-3.ndjson")
[[ $by_agent == "the agent created the local login"* ]] ||
  fail "the claim did not go through the desktop's agent: ${by_agent:-no agent line} (events: $ARTIFACTS/create-3.ndjson)"
log "claim: $by_agent"
log "claimed $SPARE ($(jq -r .vm_name <<<"$s3")): READY $CLAIM_MS ms after the request ($stages3)"
timing "session 3: claim to READY (CLI)" "$(awk -v ms="$CLAIM_MS" 'BEGIN { printf "%.1f s", ms / 1000 }')"
stage_times "session 3 (claimed)" "$ARTIFACTS/create-3.ndjson"
# The claim makes the pool build another at once (a claimed desktop never
# goes back). The server stops mid-build and comes back without the pool:
# the half-made desktop is cleaned up, nothing builds it again, and the
# claimed desktop stays READY.
wait_pool '.provisioning == 1 and .ready == 0 and .claimed_today == 1' 60 "the pool did not start a new desktop"
REFILL=$(unclaimed '.state != "DESTROYED" and .state != "FAILED"')
log "the pool builds $REFILL in place of the claimed desktop ($(show "$REFILL" | jq -r .state))"
stop_server
start_server
wait_state "$REFILL" FAILED 300
show "$REFILL" | jq -r .failure.reason | grep -q 'server restarted' || fail "$REFILL: $(show "$REFILL" | jq -c .failure)"
assert_gone "$REFILL" "$(show "$REFILL" | jq -r .vm_name)"
log "the half-made $REFILL: FAILED ($(show "$REFILL" | jq -r .failure.reason)), nothing left"
[[ $(show "$ID3" | jq -r .state) == READY ]] || fail "the claimed $ID3 did not stay READY: $(show "$ID3" | jq -c .)"
ports=("$(jq -r .rdp_port <<<"$s2")" "$(jq -r .rdp_port <<<"$s3")")
vms=("$(jq -r .vm_name <<<"$s2")" "$(jq -r .vm_name <<<"$s3")")
[[ ${ports[0]} != "${ports[1]}" ]] || fail "both desktops got RDP port ${ports[0]}"
RDP_PORT=${ports[1]}
rdp_start "$SESSION_USER" "$SESSION_PASSWORD"
# Two emulated desktops share the 2 cores here (the cold one idles).
wait_desktop desktop-pool 240
POOL_RDP_S=$((SECONDS - RDP_T0))
[[ -z $VERDICT ]] || fail "no desktop on the claimed desktop's screenshot ($VERDICT); see $ARTIFACTS/desktop-pool.png"
log "a desktop on the claimed desktop after $POOL_RDP_S s; kept $ARTIFACTS/desktop-pool.png"
timing "claimed desktop: RDP connect to desktop" "$POOL_RDP_S s"
rdp_stop
kill "$XVFB_PID" 2>/dev/null || true
wait "$XVFB_PID" 2>/dev/null || true
XVFB_PID=
daas destroy "$ID3" >/dev/null || fail "daas destroy $ID3"
wait_state "$ID3" DESTROYED 300
assert_gone "$ID3" "${vms[1]}"
daas destroy "$ID2" >/dev/null || fail "daas destroy $ID2"
wait_state "$ID2" DESTROYED 300
assert_gone "$ID2" "${vms[0]}"

step "5a. the dev desktop kept its disk: the next one comes back from it"
[[ -f $STATE/kept/$ID2.qcow2 ]] || fail "no kept disk $STATE/kept/$ID2.qcow2 after destroying $ID2"
daas snapshot list --json | jq -e --arg id "$ID2" 'map(select(.id == $id)) | length == 1' >/dev/null ||
  fail "daas snapshot list does not show $ID2: $(daas snapshot list)"
t=$SECONDS
DAAS_SESSION_PASSWORD=$SESSION_PASSWORD daas create --template dev --session-user "$SESSION_USER" --json \
  >"$ARTIFACTS/create-4.ndjson" || fail "daas create (restore) exited $? (events: $ARTIFACTS/create-4.ndjson)"
RESTORE_S=$((SECONDS - t))
ID4=$(jq -rn 'first(inputs | .session_id // empty)' "$ARTIFACTS/create-4.ndjson")
s4=$(show "$ID4")
[[ $(jq -r .state <<<"$s4") == READY ]] || fail "$ID4 is $(jq -r .state <<<"$s4")"
[[ $(jq -r '.restored_from // ""' <<<"$s4") == "$ID2" ]] || fail "$ID4 was not restored from $ID2: $s4"
timing "session 4 (dev, restored from a kept disk): READY" "$RESTORE_S s"
stage_times "session 4 (restored)" "$ARTIFACTS/create-4.ndjson"
SSH_PORT=$(jq -r .ssh_port <<<"$s4") VM=$(jq -r .vm_name <<<"$s4")
KNOWN_HOSTS=$DATA/sessions/$ID4/identity/known_hosts
back=$(vm 'cat ~/kept.txt') || fail "no ~/kept.txt on the restored desktop $VM"
[[ $back == "$(cat "$WORK/kept.txt")" ]] || fail "the restored desktop has '$back', not '$(cat "$WORK/kept.txt")'"
log "$ID4 ($VM) came back from $ID2's disk: ~/kept.txt says '$back'"
# Used: forgotten once READY (just after).
wait_for 30 "the used kept disk $ID2 is still there" test ! -e "$STATE/kept/$ID2.qcow2"
daas destroy "$ID4" >/dev/null || fail "daas destroy $ID4"
wait_state "$ID4" DESTROYED 300
assert_gone "$ID4" "$VM"
[[ -f $STATE/kept/$ID4.qcow2 ]] || fail "no kept disk of $ID4"
daas snapshot delete "$ID4" >/dev/null || fail "daas snapshot delete $ID4"
[[ ! -e $STATE/kept/$ID4.qcow2 ]] || fail "$STATE/kept/$ID4.qcow2 is left after daas snapshot delete"
log "the kept disk of $ID4 deleted: nothing left in $STATE/kept"

# ---- summary ----
step "timings"
{
  printf 'e2e %s (accel %s, %s cores)\n' "$(date -u +%FT%TZ)" "$(head -n 1 "$STATE/accel" 2>/dev/null || echo ?)" "$(nproc)"
  printf '%s\n' "${TIMINGS[@]}"
  printf '%-42s %s\n' "whole test" "$((SECONDS - T0)) s"
} | tee "$ARTIFACTS/timings.txt"
