#!/usr/bin/env bash
# The README's main-job command: a real desktop on this machine.
#
#   scripts/demo.sh                 # root: a real QEMU desktop (deploy/qemu.toml)
#   scripts/demo.sh --ad            # root: the same, joined to a test AD domain; log in as alice
#   scripts/demo.sh --web           # root: the web portal with the test domain: open the URL it
#                                   # prints, sign in as alice, create a desktop, use it in the tab
#   scripts/demo.sh --test-module   # no VM: the pipeline with terraform/test (deploy/demo.toml)
#   scripts/demo.sh --replicas N    # root, no VM: N servers (2-5) sharing one PostgreSQL, the
#                                   # test module; kill one while a create or a watch runs
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
# With --replicas N it starts a PostgreSQL of its own (scripts/postgres.sh in
# .data/replicas/postgres, as the postgres user: hence root), a PKI in
# .data/replicas/pki and N servers on deploy/demo.toml sharing that store
# with a 5 s lease (data in .data/replicas/serverK, log serverK.log, a free
# loopback port each), runs `daas --endpoint URL1,...,URLN create`, then
# prints the servers' PIDs and how to follow a create on one while killing
# another. Enter (or no terminal) destroys the desktops, stops the servers
# and deletes the cluster. There Terraform takes 20 s a create, time to kill
# a server (DAAS_TERRAFORM__VARIABLES__CREATE_DELAY_SECONDS), and a user may
# have 5 desktops (DAAS_LIMITS__MAX_SESSIONS_PER_USER).
#
# Environment: DAAS_DEMO_USER (demo), DAAS_SESSION_PASSWORD (else asked on a
# terminal, or generated into .data/qemu/demo-password, mode 0600),
# DAAS_IMAGE_CACHE (.data/qemu/images), CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

module=qemu config=deploy/qemu.toml data=.data/qemu ad=0 web=0 replicas=0
case ${1:-} in
  "") ;;
  --ad) ad=1 ;;
  --web) ad=1 web=1 ;;
  --test-module) module=test config=deploy/demo.toml data=.data/demo ;;
  --replicas)
    [[ ${2:-} =~ ^[2-5]$ ]] || { echo "demo: --replicas takes a number of servers from 2 to 5" >&2; exit 2; }
    module=test config=deploy/demo.toml data=.data/replicas replicas=$2
    ;;
  -h | --help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo: unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if [[ $module == qemu && $(id -u) != 0 ]]; then
  die "a real desktop needs root (debootstrap builds the image, QEMU runs the VM, apt-get installs what is missing);
      run it as root, or 'scripts/demo.sh --test-module' for the pipeline without a VM"
fi
if ((replicas)) && [[ $(id -u) != 0 ]]; then
  die "--replicas needs root: scripts/postgres.sh runs its PostgreSQL as the postgres user (initdb refuses root)"
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
  say "the catalog's second template, dev (image/build.sh --flavor dev)"
  dev_image=$(terraform/qemu/image/build.sh --cache-dir "$cache" --flavor dev --agent-binary "$data/daas-agent" | tail -n 1)
  [[ -f $dev_image/disk.qcow2 ]] || die "the dev image build printed no image folder"
  if (exec 3<>/dev/tcp/127.0.0.1/50061) 2>/dev/null; then
    die "127.0.0.1:50061 is in use (another daas-server?): the VMs' agents report to that fixed port"
  fi
  export DAAS_TERRAFORM__VARIABLES__IMAGE_DIR=$image DAAS_AGENT__BINARY=$root/$data/daas-agent \
    DAAS_TERRAFORM__VARIABLES__TEMPLATE_IMAGES__DEV=$dev_image
fi

ad_env=()
if ((ad)); then
  say "test AD domain controller (tests/ad/dc.sh: DAAS.TEST, users alice, bob, carol)"
  tests/ad/dc.sh start
  mapfile -t ad_env < <(tests/ad/dc.sh env)
  ((web)) && ad_env+=("DAAS_WEB__LISTEN=${DAAS_WEB__LISTEN:-127.0.0.1:8443}")
fi

servers=() before=none pg=
# Sessions this run made that still hold a VM (READY or on their way).
ours() {
  "$bin/daas" list --json 2>/dev/null |
    jq -rs --arg before "$before" 'flatten | .[] | select(.state != "DESTROYED" and .state != "FAILED")
      | .id | select(. as $id | $before | split(" ") | index($id) | not)'
}
alive() {
  local pid
  for pid in "${servers[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
# A destroy; with replicas, again while the session's server is gone and its
# lease not yet over (ABORTED: another server works on it).
destroy() {
  local try
  for try in $(seq $((replicas ? 10 : 1))); do
    ((try == 1)) || sleep 2
    "$bin/daas" destroy "$1" && return 0
  done
  return 1
}
finish() {
  local status=$? id pid
  trap - EXIT INT TERM
  if [[ $before != none ]] && alive; then
    for id in $(ours); do
      ((status == 0)) || say "stopped: destroying what the demo made"
      echo
      echo "\$ daas destroy $id"
      destroy "$id" || status=1
    done
  fi
  [[ -z $pg ]] || say "stopping the servers and deleting the PostgreSQL cluster $pg"
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $pg ]]; then
    rm -f "$data"/server*.pid
    scripts/postgres.sh destroy "$pg" || status=1
  fi
  if ((ad)); then
    say "stopping the test domain controller"
    tests/ad/dc.sh stop || status=1
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A server's address once its stdout ($1) names it; stops the demo if the
# server ($2) exits first, with the end of its log ($3).
listening() {
  local addr
  for _ in $(seq 300); do
    addr=$(sed -n 's/^daas-server listening on //p' "$1")
    [[ -n $addr ]] && { echo "$addr"; return; }
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; die "a server did not start (log: $3)"; }
    sleep 0.1
  done
  die "a server did not start listening (log: $3)"
}

pki=$data/pki
if ((replicas)); then
  # What an earlier run killed before its cleanup left: its servers (their
  # pid files, if still this command in this folder), its cluster, its
  # servers' folders. The PKI is kept.
  for pidfile in "$data"/server*.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if [[ $(ps -o args= -p "$pid" 2>/dev/null) == "$bin/daas-server --config $config" &&
      $(readlink "/proc/$pid/cwd") == "$root" ]]; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  pg=$data/postgres
  scripts/postgres.sh destroy "$pg"
  rm -rf "$data"/server*
  say "PostgreSQL for the replicas: scripts/postgres.sh start $pg"
  store=$(scripts/postgres.sh start "$pg")
  user=${USER:-dev}
  [[ $user != root ]] || user=dev
  # One PKI for all the servers (the dev PKI would make one per data folder).
  pki_kind="daas-server pki init"
  if [[ ! -f $pki/ca.pem ]]; then
    out=$("$bin/daas-server" pki init --dir "$pki" 2>&1) || die "pki init: $out"
  fi
  if [[ ! -f $pki/users/$user.pem ]]; then
    out=$("$bin/daas-server" pki issue --dir "$pki" --user "$user" --admin 2>&1) || die "pki issue: $out"
  fi
  cert=$pki/users/$user.pem
  # deploy/demo.toml and the same store, lease, PKI for all, with slower
  # creates and room for a few beside the demo's; a data folder and a free
  # loopback port each.
  export DAAS_STORE__URL=$store DAAS_STORE__LEASE=5s DAAS_TLS__DEV_PKI=false \
    DAAS_TLS__CA=$pki/ca.pem DAAS_TLS__CERT=$pki/server.pem DAAS_TLS__KEY=$pki/server-key.pem \
    DAAS_TERRAFORM__VARIABLES__CREATE_DELAY_SECONDS=${DAAS_TERRAFORM__VARIABLES__CREATE_DELAY_SECONDS:-20} \
    DAAS_LIMITS__MAX_SESSIONS_PER_USER=${DAAS_LIMITS__MAX_SESSIONS_PER_USER:-5}
  for k in $(seq "$replicas"); do
    DAAS_DATA_DIR=$data/server$k setsid "$bin/daas-server" --config "$config" >"$data/server$k.log" 2>&1 &
    servers+=($!)
    echo $! >"$data/server$k.pid"
  done
  urls=()
  for k in $(seq "$replicas"); do
    addr=$(listening "$data/server$k.log" "${servers[k - 1]}" "$data/server$k.log")
    urls+=("https://$addr")
  done
  endpoints=$(IFS=,; echo "${urls[*]}")
  say "$replicas servers on deploy/demo.toml, sharing $store (lease 5s), with mutual TLS:"
  for k in $(seq "$replicas"); do
    printf '  server%s  %-24s pid %-8s log %s\n' "$k" "${urls[k - 1]}" "${servers[k - 1]}" "$data/server$k.log"
  done
else
  log=$data/server.log
  # Its own session: a Ctrl-C stops this script and the CLI, and the server
  # is still there to destroy what the demo made.
  setsid env "${ad_env[@]}" "$bin/daas-server" --config "$config" >"$data/server.out" 2>>"$log" &
  servers+=($!)
  addr=$(listening "$data/server.out" "${servers[0]}" "$log")
  endpoints=https://$addr
  say "daas-server ($config) listening on $addr with mutual TLS (log: $log)"
fi
[[ -n ${cert:-} ]] || cert=$(find "$pki/users" -name '*.pem' ! -name '*-key.pem' -print -quit)
[[ -n $cert ]] || die "no user certificate in $pki/users"
export DAAS_ENDPOINT=$endpoints DAAS_CA="$pki/ca.pem" DAAS_CERT="$cert" DAAS_KEY="${cert%.pem}-key.pem"
say "client certificate $DAAS_CERT (${pki_kind:-dev PKI} in $pki)"
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
((replicas)) && create=(--endpoint "$endpoints" create)
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

if ((replicas)); then
  say "the test module makes no VM: the RDP endpoint above is not a real desktop."
  rotated=("${urls[@]:1}" "${urls[0]}")
  next=$((replicas > 2 ? 3 : 1))
  cat <<EOF
demo: $replicas servers share one PostgreSQL. Kill one while two other terminals follow a desktop;
  in each, first:
    export PATH=$bin:\$PATH DAAS_CA=$root/$DAAS_CA DAAS_CERT=$root/$DAAS_CERT DAAS_KEY=$root/$DAAS_KEY
  A: a create, on server1 (about 25 s here):
    daas --endpoint $endpoints create
  B: its id, then a watch of it on server2:
    daas --endpoint $endpoints list --state provisioning
    daas --endpoint $(IFS=,; echo "${rotated[*]}") watch ID
  kill -9 ${servers[1]} (server2): the watch says server2 went away, follows the session on server$next
    to READY and prints no event twice; the create goes on.
  kill -9 ${servers[0]} (server1, which runs the create) instead: the create follows the session on
    server2; once server1's 5 s lease is over (and here, the Terraform run it left has ended)
    another server takes it over: the create and the watch end FAILED, what was made is destroyed.
  The servers' logs: $data/serverK.log
EOF
  if [[ -t 0 ]]; then
    read -rp "demo: press Enter to destroy the desktops, stop the servers and PostgreSQL (Ctrl-C does the same) " _ || true
  else
    say "no terminal: destroying the desktop now"
  fi
  exit 0
fi
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
