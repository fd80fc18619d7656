#!/usr/bin/env bash
# The README's main-job command: a real desktop on this machine.
#
#   scripts/demo.sh                 # root: a real QEMU desktop (deploy/qemu.toml)
#   scripts/demo.sh --ad            # root: the same, joined to a test AD domain; log in as alice
#   scripts/demo.sh --web           # root: the web portal with the test domain: open the URL it
#                                   # prints, sign in as alice, create a desktop, use it in the tab
#   scripts/demo.sh --test-module   # no VM: the pipeline with terraform/test (deploy/demo.toml)
#
# With QEMU it sets up what is missing (Debian packages, the Ansible venv,
# the template image under .data/qemu/images, the dev PKI under
# .data/qemu/pki), starts daas-server with deploy/qemu.toml, runs
# `daas create --session-user demo` with live progress to READY and prints how
# to connect. On a terminal it then waits for Enter (or Ctrl-C) and destroys
# the desktop; without one it destroys it at once. Sessions persist in
# .data/qemu (SQLite). With --ad it first starts the test domain controller
# of tests/ad/dc.sh (DAAS.TEST), creates the desktop for its user alice
# (her AD password, her share mounted at ~/H) and stops the DC at the end.
# With --web it starts the DC and the server with its web portal
# (DAAS_WEB__LISTEN, default 127.0.0.1:8443), prints the URL and alice's
# password file, and waits: desktops are made from the page.
#
# Environment: DAAS_DEMO_USER (demo), DAAS_SESSION_PASSWORD (else asked on a
# terminal, or generated into .data/qemu/demo-password, mode 0600),
# DAAS_IMAGE_CACHE (.data/qemu/images), CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

module=qemu config=deploy/qemu.toml data=.data/qemu ad=0 web=0
case ${1:-} in
  "") ;;
  --ad) ad=1 ;;
  --web) ad=1 web=1 ;;
  --test-module) module=test config=deploy/demo.toml data=.data/demo ;;
  -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo: unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if [[ $module == qemu && $(id -u) != 0 ]]; then
  die "a real desktop needs root (debootstrap builds the image, QEMU runs the VM, apt-get installs what is missing);
      run it as root, or 'scripts/demo.sh --test-module' for the pipeline without a VM"
fi

scripts/setup.sh
say "building daas-server, daas and daas-agent"
cargo build --quiet --workspace --bins
bin=${CARGO_TARGET_DIR:-$root/target}/debug

mkdir -p "$data"

if [[ $module == qemu ]]; then
  cache=${DAAS_IMAGE_CACHE:-$data/images}
  # The debug agent without its debug info: 11 MB instead of 90 MB (the
  # release `agent` profile makes 2.5 MB, but takes minutes to build). The
  # template carries it; a desktop gets a copy only when it differs.
  strip -o "$data/daas-agent" "$bin/daas-agent"
  say "template image (cached in $cache; a first build takes 2-5 minutes)"
  image=$(terraform/qemu/image/build.sh --cache-dir "$cache" --agent-binary "$data/daas-agent" | tail -n 1)
  [[ -f $image/disk.qcow2 ]] || die "the image build printed no image folder"
  if (exec 3<>/dev/tcp/127.0.0.1/50061) 2>/dev/null; then
    die "127.0.0.1:50061 is in use (another daas-server?): the VMs' agents report to that fixed port"
  fi
  export DAAS_TERRAFORM__VARIABLES__IMAGE_DIR=$image DAAS_AGENT__BINARY=$root/$data/daas-agent
fi

ad_env=()
if ((ad)); then
  say "test AD domain controller (tests/ad/dc.sh: DAAS.TEST, users alice, bob, carol)"
  tests/ad/dc.sh start
  mapfile -t ad_env < <(tests/ad/dc.sh env)
  ((web)) && ad_env+=("DAAS_WEB__LISTEN=${DAAS_WEB__LISTEN:-127.0.0.1:8443}")
fi

log=$data/server.log
# Its own session: a Ctrl-C stops this script and the CLI, and the server
# is still there to destroy what the demo made.
setsid env "${ad_env[@]}" "$bin/daas-server" --config "$config" >"$data/server.out" 2>>"$log" &
server=$!
before=none
# Sessions this run made that still hold a VM (READY or on their way).
ours() {
  "$bin/daas" list --json 2>/dev/null |
    jq -rs --arg before "$before" 'flatten | .[] | select(.state != "DESTROYED" and .state != "FAILED")
      | .id | select(. as $id | $before | split(" ") | index($id) | not)'
}
finish() {
  local status=$? id
  trap - EXIT INT TERM
  if [[ $before != none ]] && kill -0 "$server" 2>/dev/null; then
    for id in $(ours); do
      ((status == 0)) || say "stopped: destroying what the demo made"
      echo
      echo "\$ daas destroy $id"
      "$bin/daas" destroy "$id" || status=1
    done
  fi
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null || true
  if ((ad)); then
    say "stopping the test domain controller"
    tests/ad/dc.sh stop || status=1
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

addr=
for _ in $(seq 300); do
  addr=$(sed -n 's/^daas-server listening on //p' "$data/server.out")
  [[ -n $addr ]] && break
  kill -0 "$server" 2>/dev/null || { tail -n 20 "$log" >&2; die "the server did not start (log: $log)"; }
  sleep 0.1
done
[[ -n $addr ]] || die "the server did not start listening (log: $log)"
pki=$data/pki
cert=$(find "$pki/users" -name '*.pem' ! -name '*-key.pem' -print -quit)
[[ -n $cert ]] || die "no user certificate in $pki/users"
export DAAS_ENDPOINT="https://$addr" DAAS_CA="$pki/ca.pem" DAAS_CERT="$cert" DAAS_KEY="${cert%.pem}-key.pem"
say "daas-server ($config) listening on $addr with mutual TLS (log: $log)"
say "client certificate $DAAS_CERT (dev PKI in $pki)"
echo

if ((web)); then
  portal=$(sed -n 's/^daas-server web portal on //p' "$data/server.out")
  [[ -n $portal ]] || die "the server announced no web portal (log: $log)"
  before=$("$bin/daas" list --json | jq -rs 'flatten | map(.id) | join(" ")')
  cat <<EOF
demo: the web portal is on ${portal/127.0.0.1/localhost}
  Open it in a browser on this machine (from another one: ssh -L 8443:127.0.0.1:8443 root@$(hostname -f 2>/dev/null || hostname),
  then https://localhost:8443/). Its certificate is from the demo's own CA ($root/$pki/ca.pem): accept it, or import that CA.
  Sign in as alice with the password in $(tests/ad/dc.sh password alice) (carol: an administrator; bob: refused).
  "Create a desktop" makes one (READY in about 3 minutes under software emulation, the domain join included);
  "Open in the browser" shows it in the tab: log in there with alice's password again (her first login takes about a minute).
EOF
  if [[ -t 0 ]]; then
    read -rp "demo: press Enter to destroy the desktops made from the page and stop (Ctrl-C does the same) " _ || true
  else
    say "no terminal: stopping now"
  fi
  exit 0
fi

create=(create)
password_hint="the password in DAAS_SESSION_PASSWORD"
if ((ad)); then
  user=alice
  create+=(--user alice)
  password_hint="her AD password, in $(tests/ad/dc.sh password alice); her share is ~/H"
elif [[ $module == qemu ]]; then
  user=${DAAS_DEMO_USER:-demo}
  if [[ -z ${DAAS_SESSION_PASSWORD:-} ]]; then
    if [[ -t 0 ]]; then
      while :; do
        read -rsp "demo: choose a password for '$user' on the desktop (8+ characters): " p1 && echo
        read -rsp "demo: again: " p2 && echo
        [[ $p1 == "$p2" && ${#p1} -ge 8 ]] && break
        say "they differ or are shorter than 8 characters; again"
      done
      DAAS_SESSION_PASSWORD=$p1
      password_hint="the password you chose"
    else
      DAAS_SESSION_PASSWORD="Demo-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      (umask 077 && printf '%s\n' "$DAAS_SESSION_PASSWORD" >"$data/demo-password")
      say "password for '$user' generated into $data/demo-password (mode 0600)"
      password_hint="the password in $root/$data/demo-password"
    fi
  fi
  export DAAS_SESSION_PASSWORD
  create+=(--session-user "$user")
fi

before=$("$bin/daas" list --json | jq -rs 'flatten | map(.id) | join(" ")')
echo "\$ daas ${create[*]}"
"$bin/daas" "${create[@]}"
id=$(ours | head -n 1)
[[ -n $id ]] || die "no READY session after create"
echo
echo "\$ daas show $id"
"$bin/daas" show "$id"
echo

if [[ $module == test ]]; then
  say "the test module makes no VM: the RDP endpoint above is not a real desktop."
  exit 0
fi

port=$("$bin/daas" show "$id" --json | jq -r .rdp_port)
cat <<EOF
demo: the desktop is READY. Log in as '$user' with $password_hint.
  On this machine, in another terminal (xfreerdp starts in the background):
    export DAAS_ENDPOINT=$DAAS_ENDPOINT DAAS_CA=$root/$DAAS_CA
    export DAAS_CERT=$root/$DAAS_CERT DAAS_KEY=$root/$DAAS_KEY
    $bin/daas connect $id
  From another machine (RDP listens on 127.0.0.1 only): ssh -L 3389:127.0.0.1:$port root@$(hostname -f 2>/dev/null || hostname)
    then point an RDP client at localhost:3389.
  The agent in the VM reports its activity; an idle desktop is warned, then reaped
  (policy in $config).
EOF
if [[ -t 0 ]]; then
  read -rp "demo: press Enter to destroy the desktop and stop the server (Ctrl-C does the same) " _ || true
else
  say "no terminal: destroying the desktop now"
fi
