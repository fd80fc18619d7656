#!/usr/bin/env bash
# Runs the real deploy-desktop.yml for real against a throwaway Debian 12
# root built with debootstrap, through Ansible's chroot connection
# (community.general.chroot): desktop-config and vm-agent in full, ad-join
# up to the join itself (ad_join_perform_join: false; there is no domain
# controller here). Then asserts the packages and files they leave
# (test_chroot_result.py), runs the playbook again and asserts nothing
# changed, checks that ad-join does nothing without a domain and that no
# secret reaches the output.
#
# Services cannot run in a chroot: the run sets daas_start_services=false
# (services are enabled, not started) and a policy-rc.d forbids package
# scripts to start them. Nothing is mounted in the chroot.
#
# Needs root (chroot), Debian packages debootstrap and openssl (installed
# with apt-get when missing), PyPI (the ansible package, for the
# community.general collection only) and deb.debian.org.
#
# Caches under ${DAAS_CACHE_DIR:-/var/tmp/daas-cache}: the debootstrap root
# (keyed by a hash of its inputs), the collection and downloaded .debs.
# Every run works on its own copy of the root, in /dev/shm when it has room
# (else /var/tmp; DAAS_CHROOT_WORK_DIR chooses), deleted at the end
# (DAAS_KEEP_CHROOT=1 keeps it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ansible_dir=$(dirname "$here")
root_dir=$(dirname "$ansible_dir")
venv=$root_dir/.venv

say() { printf 'chroot-test: %s\n' "$*"; }
die() { printf 'chroot-test: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (chroot(2)); run as root or skip with DAAS_SKIP_CHROOT_TEST=1"
[ -x "$venv/bin/ansible-playbook" ] || die "$venv is missing: run scripts/setup.sh"

need_apt=()
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt-get)"
  apt-get -o DPkg::Lock::Timeout=300 update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${need_apt[@]}" >/dev/null \
    || die "cannot install ${need_apt[*]} with apt-get"
fi

cache=${DAAS_CACHE_DIR:-/var/tmp/daas-cache}
mkdir -p "$cache"
exec 9>"$cache/.chroot-test.lock"
flock 9 # one run at a time per cache: the caches are shared

# ---- community.general (the chroot connection) ----
collections=$("$ansible_dir/collections.sh") || die "no community.general collection"
export ANSIBLE_COLLECTIONS_PATH=$collections

# ---- the Debian 12 root, built once per set of inputs ----
suite=bookworm
mirror=${DAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a cloud-init template has that Ansible needs: python3 (+ apt
# bindings), sudo (become), systemd (units are enabled offline).
include=systemd-sysv,python3,python3-apt,sudo,ca-certificates
key=$(printf '%s\n' "v2" "$suite" "$mirror" "$include" | sha256sum | cut -c1-16)
base=$cache/chroot-debian12-$key
if [ ! -f "$base/.complete" ]; then
  say "building the Debian 12 root (debootstrap, about a minute) in $base"
  rm -rf "$base.tmp"
  debootstrap --variant=minbase --include="$include" "$suite" "$base.tmp" "$mirror" \
    >"$cache/debootstrap-$key.log" 2>&1 \
    || die "debootstrap failed: see $cache/debootstrap-$key.log"
  # Like a cloud image: no downloaded packages, no package lists (the roles
  # must fetch them).
  chroot "$base.tmp" apt-get clean
  rm -rf "$base.tmp"/var/lib/apt/lists/*
  touch "$base.tmp/.complete"
  rm -rf "$base"
  mv "$base.tmp" "$base"
fi
debs=$cache/apt-archives-$suite
mkdir -p "$debs"

# The roots of a run live in memory when /dev/shm has room: creating and
# deleting 1.5 GB of small files on a disk mounted with `discard` takes
# minutes, in a tmpfs seconds.
work_parent=${DAAS_CHROOT_WORK_DIR:-}
if [ -z "$work_parent" ]; then
  work_parent=/var/tmp
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] \
    && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt $((4 * 1024 * 1024)) ]; then
    work_parent=/dev/shm
  fi
fi
work=$(mktemp -d "$work_parent/daas-chroot-test.XXXXXX")
cleanup() {
  set +e
  # Nothing is mounted in the roots; unmount anyway should a package have.
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount -l "$m"; done
  if [ "${DAAS_KEEP_CHROOT:-0}" = 1 ]; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy of the root, with the .debs earlier runs downloaded.
fresh_root() {
  local dest=$1
  cp -a "$base" "$dest"
  printf '#!/bin/sh\n# No service starts in this chroot.\nexit 101\n' >"$dest/usr/sbin/policy-rc.d"
  chmod 0755 "$dest/usr/sbin/policy-rc.d"
  find "$debs" -maxdepth 1 -name '*.deb' -exec cp -l -t "$dest/var/cache/apt/archives/" {} + 2>/dev/null \
    || find "$debs" -maxdepth 1 -name '*.deb' -exec cp -t "$dest/var/cache/apt/archives/" {} +
}
keep_debs() {
  find "$1/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -newer "$base/.complete" \
    -exec cp -n -t "$debs/" {} + 2>/dev/null || true
}

root=$work/root
fresh_root "$root"

# ---- the session's inputs, as the server would pass them ----
built_agent=${DAAS_AGENT_BINARY:-${CARGO_TARGET_DIR:-$root_dir/target}/debug/daas-agent}
agent_binary=$work/daas-agent # a snapshot: a build may replace the original meanwhile
real_agent=0
if [ -x "$built_agent" ]; then
  cp "$built_agent" "$agent_binary"
  real_agent=1
else
  say "no agent binary at $built_agent (not built yet): using a stand-in"
  printf '#!/bin/sh\necho "stand-in daas-agent $*"\n' >"$agent_binary"
fi
chmod 0755 "$agent_binary"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=daas-test-ca -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=agent -keyout "$work/agent-key.pem" -out "$work/agent.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=desktop-chroot -keyout "$work/rdp-key.pem" -out "$work/rdp.pem" 2>/dev/null

# A password a user may choose: template syntax, quotes and backslashes are
# characters like any other (the server hashes it; the roles get the hash).
session_password="Chroot-{{ lookup('pipe', 'id') }}-\"'\\-pw-$RANDOM$RANDOM"
claim_password="Claim-{% raw %}-pw-$RANDOM$RANDOM"
ad_password="AD-join-pw-$RANDOM$RANDOM"
umask 077
"$venv/bin/python" - "$work" "$agent_binary" "$session_password" "$ad_password" "$claim_password" <<'EOF'
import json, pathlib, sys
from passlib.hash import sha512_crypt
work, binary, password, ad_password = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
# What the server passes: the hash (rounds as glibc's default), never the password.
(work / "claim-hash").write_text(sha512_crypt.using(rounds=5000).hash(sys.argv[5]))
read = lambda name: (work / name).read_text()
dns_servers = [line.split()[1] for line in open("/etc/resolv.conf")
               if line.startswith("nameserver") and len(line.split()) > 1]
vars = {
    "session_id": "6f1c7a9e-2b3d-4c5e-8f70-1a2b3c4d5e6f",
    "username": "alice",
    "vm_name": "desktop-chroot",
    "session_user": "bob",
    "session_password_hash": sha512_crypt.using(rounds=5000).hash(password),
    "rdp_port": 3389,
    "daas_clipboard": "to-desktop",
    "daas_start_services": False,
    "daas_agent_binary": binary,
    "daas_agent_endpoint": "https://10.0.2.2:50051",
    "daas_agent_tls_server_name": "localhost",
    "daas_agent_ca_pem": read("ca.pem"),
    "daas_agent_cert_pem": read("agent.pem"),
    "daas_agent_key_pem": read("agent-key.pem"),
    "daas_rdp_cert_pem": read("rdp.pem"),
    "daas_rdp_key_pem": read("rdp-key.pem"),
    "ad_join_domain": "ad.daas-test.invalid",
    "ad_join_user": "svc-join",
    "ad_join_password": ad_password,
    "ad_join_perform_join": False,
    # The host's own servers: apt in the chroot resolves with them afterwards.
    "ad_join_dns_servers": dns_servers,
    "ad_join_admin_group_dns": ["CN=DaaS Admins,OU=Groups,DC=ad,DC=example,DC=org"],
    "desktop_config_pam_mount_volumes": [
        {"server": "fs01.ad.example.org", "path": "homes/%(USER)", "mountpoint": "~/H"},
    ],
}
(work / "vars.json").write_text(json.dumps(vars))
(work / "vars-no-domain.json").write_text(json.dumps(
    {k: v for k, v in vars.items() if not k.startswith("ad_join_")}))
EOF
umask 022

inventory() { # HOST ROOT
  printf 'all:\n  hosts:\n    %s:\n      ansible_connection: community.general.chroot\n      ansible_host: %s\n      ansible_python_interpreter: /usr/bin/python3\n' "$1" "$2"
}
inventory desktop-chroot "$root" >"$work/inventory.yml"

playbook() { # LOG INVENTORY VARS PLAYBOOK [ARGS...]
  local log=$1 inv=$2 vars=$3 book=$4
  shift 4
  ( cd "$ansible_dir" && ANSIBLE_CONFIG="$ansible_dir/ansible.cfg" ANSIBLE_NOCOLOR=1 \
      "$venv/bin/ansible-playbook" -i "$inv" -e "@$vars" "$@" "playbooks/$book" ) >"$log" 2>&1
}
recap() { grep -A3 '^PLAY RECAP' "$1" | grep -E 'ok=' || true; }
no_secrets() { # LOG
  for secret in "$session_password" "$ad_password" "$(sed -n 2p "$work/agent-key.pem")" \
    "$(sed -n 2p "$work/rdp-key.pem")" \
    "$(jq -r .session_password_hash "$work/vars.json")" "$(cat "$work/claim-hash")"; do
    if grep -qF -- "$secret" "$1"; then die "a secret appears in $1"; fi
  done
}

start=$(date +%s)
say "first run of deploy-desktop.yml"
if ! playbook "$work/run1.log" "$work/inventory.yml" "$work/vars.json" deploy-desktop.yml; then
  tail -n 60 "$work/run1.log" >&2
  die "the first run failed (log above)"
fi
recap "$work/run1.log"
no_secrets "$work/run1.log"
keep_debs "$root"
say "first run: $(($(date +%s) - start)) s"

say "checking what the roles left"
DAAS_CHROOT=$root DAAS_AGENT_BINARY_USED=$agent_binary DAAS_SESSION_PASSWORD=$session_password DAAS_RDP_CERT=$work/rdp.pem \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q "$here/test_chroot_result.py"

say "systemd-analyze verify daas-agent.service (in the chroot)"
verify=$(chroot "$root" systemd-analyze verify /etc/systemd/system/daas-agent.service 2>&1) \
  || die "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || die "systemd-analyze verify complains about daas-agent.service: $verify"

say "the agent helper's units: installed, the socket enabled, systemd-analyze verify"
for unit in daas-agent-helper.socket daas-agent-helper@.service; do
  [ -f "$root/etc/systemd/system/$unit" ] || die "the role did not install $unit"
done
[ -L "$root/etc/systemd/system/sockets.target.wants/daas-agent-helper.socket" ] \
  || die "daas-agent-helper.socket is not enabled"
grep -qx 'ExecStart=/usr/local/bin/daas-agent --apply' "$root/etc/systemd/system/daas-agent-helper@.service" \
  || die "daas-agent-helper@.service does not run daas-agent --apply"
grep -qx 'ListenStream=/run/daas-agent-helper.sock' "$root/etc/systemd/system/daas-agent-helper.socket" \
  || die "daas-agent-helper.socket does not listen where the agent connects"
# An instance is what systemd runs (the template itself cannot be verified).
cp "$root/etc/systemd/system/daas-agent-helper@.service" "$root/etc/systemd/system/daas-agent-helper@0-test.service"
verify=$(chroot "$root" systemd-analyze verify /etc/systemd/system/daas-agent-helper.socket \
  /etc/systemd/system/daas-agent-helper@0-test.service 2>&1) \
  || die "systemd-analyze verify failed on the helper's units: $verify"
rm "$root/etc/systemd/system/daas-agent-helper@0-test.service"
[ -z "$verify" ] || die "systemd-analyze verify complains about the helper's units: $verify"

say "second run (must change nothing)"
if ! playbook "$work/run2.log" "$work/inventory.yml" "$work/vars.json" deploy-desktop.yml; then
  tail -n 60 "$work/run2.log" >&2
  die "the second run failed (log above)"
fi
recap "$work/run2.log"
no_secrets "$work/run2.log"
if ! grep -qE '^desktop-chroot +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$work/run2.log"; then
  grep -B2 -A12 -E '^changed:' "$work/run2.log" >&2 || true
  die "the second run changed something: the roles are not idempotent"
fi
# Every package is there now: neither ad-join nor desktop-config may run apt.
for task in "Fetch the apt package lists" "Install the missing packages"; do
  runs=$(grep -cF "TASK [missing-packages : $task" "$work/run2.log" || true)
  skipped=$(grep -A1 -F "TASK [missing-packages : $task" "$work/run2.log" | grep -c '^skipping:' || true)
  [ "$runs" = 2 ] && [ "$skipped" = 2 ] \
    || die "the second run did not skip '$task' in both roles ($skipped of $runs) although every package is installed"
done

if [ "$real_agent" = 1 ]; then
  say "the agent helper, daas-agent --apply, in the chroot: a new login, its password again, refusals"
  helper() { # REQUEST-LINE: prints the reply line
    printf '%s\n' "$1" | chroot "$root" /usr/local/bin/daas-agent --apply 2>>"$work/helper.log"
  }
  user_request() { # NAME HASH
    printf '{"create_local_user":{"name":"%s","password_hash":"%s"}}' "$1" "$2"
  }
  shadow_hash() { awk -F: -v user="$1" '$1 == user { print $2 }' "$root/etc/shadow"; }
  helper_hash=$(openssl passwd -6 "helper-pw-$RANDOM$RANDOM")
  reply=$(helper "$(user_request helen "$helper_hash")") || die "daas-agent --apply exited with $?"
  [ "$reply" = '{"ok":true}' ] || die "daas-agent --apply did not create helen: $reply"
  IFS=: read -r _ _ uid _ _ home shell < <(chroot "$root" getent passwd helen) \
    || die "daas-agent --apply answered ok, but there is no account helen"
  if [ "$uid" -lt 1000 ] || [ "$home" != /home/helen ] || [ "$shell" != /bin/bash ]; then
    die "helen's account is not a person's login with /home/helen and bash: uid $uid, $home, $shell"
  fi
  [ "$(stat -c %u "$root/home/helen" 2>/dev/null)" = "$uid" ] || die "helen has no home of her own"
  [ -f "$root/home/helen/.xsession" ] || die "helen's home was not made from /etc/skel"
  [ "$(shadow_hash helen)" = "$helper_hash" ] || die "helen's /etc/shadow hash is not the one given"
  # An existing login (uid >= 1000) gets the new password, nothing else.
  second_hash=$(openssl passwd -6 "helper-pw-$RANDOM$RANDOM")
  reply=$(helper "$(user_request helen "$second_hash")")
  [ "$reply" = '{"ok":true}' ] || die "daas-agent --apply did not set helen's password again: $reply"
  [ "$(shadow_hash helen)" = "$second_hash" ] || die "helen's password is not the second one given"
  # A system account (it passes the name rule) is refused, its entry kept.
  daemon_before=$(shadow_hash daemon)
  reply=$(helper "$(user_request daemon "$helper_hash")")
  [ "$reply" = '{"ok":false,"error":"daemon is a system account (uid 1): choose another session user"}' ] \
    || die "daas-agent --apply did not refuse the system account daemon: $reply"
  [ "$(shadow_hash daemon)" = "$daemon_before" ] || die "daas-agent --apply changed daemon's password"
  reply=$(helper "$(user_request root "$helper_hash")")
  [[ "$reply" == '{"ok":false,"error":"root is reserved'* ]] || die "daas-agent --apply did not refuse root: $reply"
  reply=$(helper "$(user_request ivan "$helper_hash" | sed 's/}}$/,"uid":0}}/')")
  [[ "$reply" == "{\"ok\":false,\"error\":\"the request is not one the helper knows: unknown field \`uid\`"* ]] \
    || die "daas-agent --apply accepted an unknown field: $reply"
  chroot "$root" getent passwd ivan >/dev/null && die "daas-agent --apply created ivan from a bad request"
  for secret in "$helper_hash" "$second_hash"; do
    if grep -qF -- "$secret" "$work/helper.log"; then die "a password hash appears in the helper's log"; fi
  done
  grep -q 'created the local login helen' "$work/helper.log" || die "the helper did not log what it did"
else
  say "skipping the agent helper's run: the chroot holds a stand-in, not the agent"
fi

say "teardown.yml with a domain: the deletion fails here (no domain controller) without showing the password"
if playbook "$work/teardown.log" "$work/inventory.yml" "$work/vars.json" teardown.yml; then
  die "teardown.yml claimed to delete a computer account from a domain that does not exist"
fi
grep -q 'adcli delete-computer desktop-chroot failed' "$work/teardown.log" \
  || { tail -n 30 "$work/teardown.log" >&2; die "teardown.yml did not report adcli's failure"; }
no_secrets "$work/teardown.log"

say "warm pool: a build for nobody (--skip-tags per_user), then a claim's per-user part alone (--tags per_user)"
if ! playbook "$work/pool-base.log" "$work/inventory.yml" "$work/vars.json" deploy-desktop.yml \
  --skip-tags per_user -e daas_phase=base -e username= -e session_user= -e session_password_hash=; then
  tail -n 40 "$work/pool-base.log" >&2
  die "the warm pool's build (daas_phase=base) failed"
fi
grep -qF 'TASK [desktop-config : Create the session' "$work/pool-base.log" && die "the build ran a per_user task"
grep -qF 'TASK [vm-agent : Install the CA, the session' "$work/pool-base.log" || die "the build did not install the agent"
# Joined for no one: SSSD denies all, and the claim's access section waits
# for the agent's helper.
grep -qx 'access_provider = deny' "$root/etc/sssd/sssd.conf" || die "the pool's build did not make SSSD deny all"
grep -q 'ad_access_filter' "$root/etc/sssd/sssd.conf" && die "the pool's build wrote a user's access filter"
access_in=$root/etc/sssd/daas-access.conf.in
[ "$(stat -c '%a %U' "$access_in" 2>/dev/null)" = "600 root" ] || die "no daas-access.conf.in (0600, root) for the agent's helper"
[ "$(grep -o '@USER@' "$access_in" | wc -l)" = 1 ] || die "daas-access.conf.in must name the user exactly once"
grep -qF '(sAMAccountName=@USER@)' "$access_in" || die "daas-access.conf.in does not put the user in the filter: $(cat "$access_in")"
if [ "$real_agent" = 1 ]; then
  say "the agent helper lets a domain user in: SSSD's access section in conf.d, then SSSD restarted"
  # No systemd runs here: a stand-in systemctl records what it is asked.
  mv "$root/usr/bin/systemctl" "$root/usr/bin/systemctl.real"
  printf '#!/bin/sh\necho "$*" >>/tmp/systemctl-calls\n' >"$root/usr/bin/systemctl"
  chmod 0755 "$root/usr/bin/systemctl"
  reply=$(helper '{"allow_domain_user":{"name":"Erin (lab)"}}')
  mv "$root/usr/bin/systemctl.real" "$root/usr/bin/systemctl"
  [ "$reply" = '{"ok":true}' ] || die "daas-agent --apply did not let Erin (lab) in: $reply"
  [ "$(cat "$root/tmp/systemctl-calls")" = "restart sssd.service" ] \
    || die "the helper did not restart SSSD (and only that): $(cat "$root/tmp/systemctl-calls")"
  rm "$root/tmp/systemctl-calls"
  access=$root/etc/sssd/conf.d/daas-access.conf
  [ "$(stat -c '%a %U' "$access" 2>/dev/null)" = "600 root" ] || die "the helper's access section is not 0600 root"
  grep -qF '(sAMAccountName=Erin \28lab\29)' "$access" || die "the access section does not name Erin (lab), escaped: $(cat "$access")"
  grep -qx 'access_provider = ad' "$access" || die "the access section does not turn SSSD's AD access on"
  reply=$(helper '{"allow_domain_user":{"name":"e*"}}')
  [[ "$reply" == '{"ok":false,"error":"the domain account name must be'* ]] || die "daas-agent --apply accepted e*: $reply"
  grep -q 'let the domain user Erin (lab) log in' "$work/helper.log" || die "the helper did not log what it did"
  rm "$access"
fi
# The claiming user as the server passes it (tagged !unsafe), with template
# syntax in it: SSSD's filter must hold it as text, and nothing runs.
pwned=$work/pwned
claim_user="dave{{ lookup('pipe', 'touch $pwned') }}"
printf 'username: !unsafe "%s"\n' "$claim_user" >"$work/claim-user.yml"
if ! playbook "$work/pool-user.log" "$work/inventory.yml" "$work/vars.json" deploy-desktop.yml \
  --tags per_user -e daas_phase=user -e "@$work/claim-user.yml" -e session_user=carol -e "session_password_hash=$(cat "$work/claim-hash")"; then
  tail -n 40 "$work/pool-user.log" >&2
  die "the claim's per-user part (daas_phase=user) failed"
fi
no_secrets "$work/pool-base.log"
no_secrets "$work/pool-user.log"
grep -qF -- "$claim_password" "$work/pool-user.log" && die "the claim's password appears in its log"
grep -qF 'TASK [Gathering Facts]' "$work/pool-user.log" && die "the claim gathered facts"
grep -qE 'TASK \[(vm-agent|desktop-config : (Let xrdp|Set xrdp|Write pam_mount))' "$work/pool-user.log" \
  && die "the claim ran more than the per_user tasks"
chroot "$root" getent passwd carol >/dev/null || die "the claim did not create the session user carol"
"$venv/bin/python" - "$root/etc/shadow" "$claim_password" <<'EOF' || die "carol's password is not the claim's, literally"
import sys
from passlib.hash import sha512_crypt
entry = next(line for line in open(sys.argv[1]) if line.startswith("carol:"))
sys.exit(0 if sha512_crypt.verify(sys.argv[2], entry.split(":")[1]) else 1)
EOF
[ ! -e "$pwned" ] || die "the claiming user's name was run as a template"
escaped_user=${claim_user//(/\\28}
escaped_user=${escaped_user//)/\\29}
grep -qF "(sAMAccountName=$escaped_user)" "$root/etc/sssd/sssd.conf" \
  || die "the claim did not give $claim_user access in sssd.conf, as text: $(grep ad_access_filter "$root/etc/sssd/sssd.conf")"
grep -qx 'access_provider = ad' "$root/etc/sssd/sssd.conf" || die "the claim's per-user part left SSSD denying all"
say "claim: $(grep -c '^TASK \[' "$work/pool-user.log") tasks, $(recap "$work/pool-user.log")"

say "build-template.yml, then deploy-desktop.yml skips what the template carries"
if ! playbook "$work/template.log" "$work/inventory.yml" "$work/vars.json" build-template.yml; then
  tail -n 40 "$work/template.log" >&2
  die "build-template.yml failed"
fi
no_secrets "$work/template.log"
grep -q '"vm-agent"' "$root/etc/ansible/facts.d/daas_template.fact" \
  || die "build-template.yml did not record what the template carries"
if ! playbook "$work/run3.log" "$work/inventory.yml" "$work/vars.json" deploy-desktop.yml; then
  tail -n 60 "$work/run3.log" >&2
  die "deploy-desktop.yml failed on a template"
fi
no_secrets "$work/run3.log"
for task in "desktop-config : Set xrdp's listening port" "vm-agent : Install the agent's systemd unit" \
  "desktop-config : Enable pam_mount in the PAM stack" "vm-agent : Install the agent binary from the controller" \
  "desktop-config : Write pam_mount's volumes"; do
  runs=$(grep -cF "TASK [$task" "$work/run3.log" || true)
  skipped=$(grep -A1 -F "TASK [$task" "$work/run3.log" | grep -c '^skipping:' || true)
  [ "$runs" = "$skipped" ] || die "deploy-desktop.yml ran '$task' on a template that carries it"
done
DAAS_CHROOT=$root DAAS_AGENT_BINARY_USED=$agent_binary DAAS_SESSION_PASSWORD=$session_password DAAS_RDP_CERT=$work/rdp.pem \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q "$here/test_chroot_result.py"
say "on a template: $(grep -c '^ok:\|^changed:' "$work/run3.log") tasks run, against $(grep -c '^ok:\|^changed:' "$work/run2.log") without"

# Other shares than the template's (the server's [ansible.extra_vars]): the
# volumes alone are written again, not the whole template part.
"$venv/bin/python" - "$work" <<'EOF'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
vars = json.loads((work / "vars.json").read_text())
vars["desktop_config_pam_mount_volumes"] = [
    {"server": "fs02.ad.example.org", "path": "projects", "mountpoint": "~/P"}]
(work / "vars-other-shares.json").write_text(json.dumps(vars))
EOF
if ! playbook "$work/run4.log" "$work/inventory.yml" "$work/vars-other-shares.json" deploy-desktop.yml; then
  tail -n 60 "$work/run4.log" >&2
  die "deploy-desktop.yml failed with other shares than the template's"
fi
grep -A1 -F "TASK [desktop-config : Write pam_mount's volumes" "$work/run4.log" | grep -q '^changed:' \
  || die "other shares than the template's were not written"
grep -A1 -F "TASK [desktop-config : Set xrdp's listening port" "$work/run4.log" | grep -q '^skipping:' \
  || die "other shares than the template's applied the whole template part again"
grep -qF 'fs02.ad.example.org' "$root/etc/security/pam_mount.conf.xml" \
  || die "pam_mount.conf.xml does not mount the desktop's shares"
say "other shares than the template's: $(grep -c '^ok:\|^changed:' "$work/run4.log") tasks run"

say "no domain: ad-join and teardown.yml do nothing (fresh root)"
bare=$work/bare
fresh_root "$bare"
inventory desktop-chroot "$bare" >"$work/inventory-bare.yml"
playbook "$work/bare.log" "$work/inventory-bare.yml" "$work/vars-no-domain.json" deploy-desktop.yml --tags ad \
  || { tail -n 30 "$work/bare.log" >&2; die "deploy-desktop.yml --tags ad failed without a domain"; }
grep -qE '^desktop-chroot +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$work/bare.log" \
  || die "ad-join changed something without a domain"
[ ! -e "$bare/usr/sbin/sssd" ] || die "ad-join installed SSSD without a domain"
playbook "$work/bare-teardown.log" "$work/inventory-bare.yml" "$work/vars-no-domain.json" teardown.yml \
  || { tail -n 30 "$work/bare-teardown.log" >&2; die "teardown.yml failed without a domain"; }
say "a domain, but the desktop never got adcli (it never joined): teardown.yml has nothing to delete"
playbook "$work/bare-teardown-domain.log" "$work/inventory-bare.yml" "$work/vars.json" teardown.yml \
  || { tail -n 30 "$work/bare-teardown-domain.log" >&2; die "teardown.yml failed on a desktop that never joined"; }
grep -q 'nothing to delete' "$work/bare-teardown-domain.log" || die "teardown.yml did not say it had nothing to delete"
no_secrets "$work/bare-teardown-domain.log"

say "passed in $(($(date +%s) - start)) s (after the root was ready)"
