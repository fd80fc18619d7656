#!/usr/bin/env bash
# Builds the Debian packages from the debug binaries (build.sh --profile
# dev), then, in throwaway copies of the Debian 12 root the Ansible tests
# build (ansible/tests/chroot-roles.sh):
#   - daas-server and daas-cli installed with `apt-get install ./*.deb`
#     (their Depends and Recommends from Debian 12's mirror): the user
#     daas, its folders, the conffile, the unit (not enabled),
#     `systemd-analyze verify` and `systemd-analyze security` on it,
#     `daas-server --check` as daas before the PKI (refused, naming `pki
#     init`), after it without Terraform and ansible-playbook (refused,
#     naming both; the start too), and with stand-ins for them (passes,
#     showing the real ssh), a start as daas (it listens, writes its data,
#     stops on SIGTERM), then `dpkg -r` (the conffile stays) and `dpkg -P`
#     (it goes);
#   - daas-agent alone: installed, its unit enabled and verified, purged.
#
# Root (chroot). Needs deb.debian.org (DAAS_DEBIAN_MIRROR) for the apt-get
# in the server's root. Caches: ${DAAS_CACHE_DIR:-/var/tmp/daas-cache} (the
# root, built with debootstrap from the mirror when missing; the .debs apt
# downloads, shared with ansible/tests/chroot-roles.sh). The copies live
# in /dev/shm when it has room (DAAS_CHROOT_WORK_DIR chooses), deleted at
# the end (DAAS_KEEP_CHROOT=1 keeps them). Nothing is mounted in them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$here/../.." && pwd)

say() { printf 'deb-test: %s\n' "$*"; }
die() { printf 'deb-test: error: %s\n' "$*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
timed() { local t0; t0=$(date +%s); "$@"; printf '    (%s s)\n' "$(($(date +%s) - t0))"; }

[ "$(id -u)" = 0 ] || die "needs root (chroot(2))"
started=$(date +%s)

# ---- the Debian 12 root of ansible/tests/chroot-roles.sh: same inputs, same key ----
cache=${DAAS_CACHE_DIR:-/var/tmp/daas-cache}
suite=bookworm
mirror=${DAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=systemd-sysv,python3,python3-apt,sudo,ca-certificates
key=$(printf '%s\n' "v2" "$suite" "$mirror" "$include" | sha256sum | cut -c1-16)
base=$cache/chroot-debian12-$key
roles_test=$root_dir/ansible/tests/chroot-roles.sh
for line in "suite=$suite" 'mirror=${DAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}' "include=$include" \
  'key=$(printf '"'%s\\n'"' "v2" "$suite" "$mirror" "$include" | sha256sum | cut -c1-16)' \
  'base=$cache/chroot-debian12-$key'; do
  grep -qxF -- "$line" "$roles_test" \
    || die "$roles_test builds its root differently now (no line $line): update the copy of its inputs in $0"
done

work_parent=${DAAS_CHROOT_WORK_DIR:-}
if [ -z "$work_parent" ]; then
  work_parent=/var/tmp
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] \
    && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt $((2 * 1024 * 1024)) ]; then
    work_parent=/dev/shm
  fi
fi
work=$(mktemp -d "$work_parent/daas-deb-test.XXXXXX")
server_pid=
cleanup() {
  set +e
  [ -z "$server_pid" ] || kill -KILL "$server_pid" 2>/dev/null
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

# ---- helpers ----
in_root() { # ROOT CMD...: a command in the root, with a clean environment
  local r=$1
  shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$r" "$@"
}
daas_uid=
daas_gid=
as_daas() { # ROOT CMD...: a command in the root as the user daas, with the unit's umask
  local r=$1
  shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/var/lib/daas NO_COLOR=1 \
    chroot --userspec="$daas_uid:$daas_gid" --groups="$daas_gid" "$r" sh -c 'umask 077; exec "$@"' sh "$@"
}
owner_mode() { # ROOT PATH: "user:group mode", as the root sees it
  in_root "$1" stat -c '%U:%G %a' "$2"
}
expect() { # WHAT GOT WANT
  [ "$2" = "$3" ] || die "$1: got '$2', want '$3'"
  say "ok: $1: $3"
}
fresh_root() { # DEST: a private copy of the cached root, where no service starts
  cp -a "$base" "$1"
  printf '#!/bin/sh\n# No service starts in this chroot.\nexit 101\n' >"$1/usr/sbin/policy-rc.d"
  chmod 0755 "$1/usr/sbin/policy-rc.d"
}
# The .debs of earlier runs (this test's and chroot-roles.sh's), so apt-get
# downloads only what is new; keep_debs puts back what it downloaded.
apt_archives=$cache/apt-archives-$suite
with_debs() { # ROOT
  mkdir -p "$apt_archives"
  find "$apt_archives" -maxdepth 1 -name '*.deb' -exec cp -l -t "$1/var/cache/apt/archives/" {} + 2>/dev/null \
    || find "$apt_archives" -maxdepth 1 -name '*.deb' -exec cp -t "$1/var/cache/apt/archives/" {} +
}
keep_debs() { # ROOT
  find "$1/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -newer "$base/.complete" \
    -exec cp -n -t "$apt_archives/" {} + 2>/dev/null || true
}
verify_unit() { # ROOT UNIT: systemd-analyze verify must say nothing
  local out
  out=$(in_root "$1" systemd-analyze verify "/lib/systemd/system/$2" 2>&1) \
    || die "systemd-analyze verify $2 failed: $out"
  [ -z "$out" ] || die "systemd-analyze verify complains about $2: $out"
  say "ok: systemd-analyze verify $2"
}
# The Depends of a package the root does not satisfy, one per line.
unmet_depends() { # ROOT DEB
  local clause alt name op ver have ok
  local -a clauses alts
  IFS=',' read -r -a clauses <<<"$(dpkg-deb -f "$2" Depends)"
  for clause in "${clauses[@]}"; do
    ok=0
    IFS='|' read -r -a alts <<<"$clause"
    for alt in "${alts[@]}"; do
      read -r name op ver <<<"$(sed -E 's/^ *([^ (]+) *(\(([<>=]+) *([^)]+)\))? *$/\1 \3 \4/' <<<"$alt")"
      have=$(in_root "$1" dpkg-query -W -f='${db:Status-Status} ${Version}' "$name" 2>/dev/null || true)
      [ "${have%% *}" = installed ] || continue
      if [ -z "$op" ] || dpkg --compare-versions "${have#* }" "$op" "$ver"; then
        ok=1
        break
      fi
    done
    [ "$ok" = 1 ] || sed -E 's/^ +| +$//g' <<<"$clause"
  done
}
# Every key of the reference (`daas-server --help`) is in FILE, set or
# shown commented, in the same table; the example tables (NAME) aside.
missing_reference_keys() { # FILE
  local keys='
    { line = $0; sub(/^# ?/, "", line) }
    line ~ /^\[\[?[A-Za-z0-9_.]+\]\]?/ { section = line; sub(/^\[+/, "", section); sub(/\].*/, "", section); next }
    section ~ /NAME/ { next }
    line ~ /^[a-z_]+ *=/ { key = line; sub(/ *=.*/, "", key); print (section == "" ? key : section "." key) }'
  comm -23 <(awk "$keys" "$root_dir/server/src/config/reference.toml" | sort -u) <(awk "$keys" "$1" | sort -u)
}

# ---- 1. the packages ----
step "build the packages from the debug binaries (deploy/debian/build.sh --profile dev)"
build() {
  (cd "$root_dir" && cargo build --quiet --workspace --bins)
  mapfile -t debs < <("$here/build.sh" --profile dev --fast --out "$work/debs")
  [ "${#debs[@]}" = 3 ] || die "build.sh made ${#debs[@]} packages, not 3"
  ls -l "${debs[@]}" | awk '{ printf "    %s %s\n", $5, $NF }'
}
timed build
server_deb=$(printf '%s\n' "${debs[@]}" | grep '/daas-server_')
cli_deb=$(printf '%s\n' "${debs[@]}" | grep '/daas-cli_')
agent_deb=$(printf '%s\n' "${debs[@]}" | grep '/daas-agent_')

step "package contents: the conffile, the reference's keys in it"
contents() {
  expect "conffiles of daas-server" "$(dpkg-deb --ctrl-tarfile "$server_deb" | tar -xOf - ./conffiles)" /etc/daas/config.toml
  local missing
  missing=$(missing_reference_keys "$here/config.toml")
  [ -z "$missing" ] || die "deploy/debian/config.toml lacks keys of server/src/config/reference.toml: $(paste -sd' ' <<<"$missing")"
  say "ok: deploy/debian/config.toml has every key of the reference"
  local server_files agent_files
  server_files=$(dpkg-deb -c "$server_deb")
  agent_files=$(dpkg-deb -c "$agent_deb")
  grep -q '^-rwxr-xr-x .* \./usr/share/daas/terraform/proxmox/inventory$' <<<"$server_files" \
    || die "the proxmox module's inventory hook is not in daas-server (executable)"
  if grep -E '/tests/|\.tfstate|\.pyc$|/vault\.yml$|/test-[a-z]*\.yml$' <<<"$server_files"; then
    die "daas-server carries test files, state or a vault (above)"
  fi
  if grep -E '\./(etc/daas/.+|usr/local/)' <<<"$agent_files"; then
    die "daas-agent carries files it must not (above)"
  fi
  say "ok: the proxmox module with its inventory hook, no tests, state or vault"
}
timed contents

# ---- 2. the cached Debian 12 root, copied ----
step "the Debian 12 root of the Ansible tests, copied twice ($work_parent)"
roots() {
  exec 9>"$cache/.chroot-test.lock"
  flock 9 # one builder at a time; chroot-roles.sh holds it while it runs
  if [ ! -f "$base/.complete" ]; then
    command -v debootstrap >/dev/null || {
      say "installing debootstrap (apt-get)"
      apt-get -o DPkg::Lock::Timeout=300 update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
          --no-install-recommends debootstrap >/dev/null
    } || die "cannot install debootstrap"
    say "building the Debian 12 root (debootstrap, about a minute) in $base"
    rm -rf "$base.tmp"
    debootstrap --variant=minbase --include="$include" "$suite" "$base.tmp" "$mirror" \
      >"$cache/debootstrap-$key.log" 2>&1 \
      || die "debootstrap failed: see $cache/debootstrap-$key.log"
    chroot "$base.tmp" apt-get clean
    rm -rf "$base.tmp"/var/lib/apt/lists/*
    touch "$base.tmp/.complete"
    rm -rf "$base"
    mv "$base.tmp" "$base"
  fi
  fresh_root "$work/server"
  fresh_root "$work/agent"
  flock -u 9
  exec 9>&-
  say "$(in_root "$work/server" cat /etc/debian_version) from $base"
}
timed roots
server_root=$work/server
agent_root=$work/agent
cp "$server_deb" "$cli_deb" "$server_root/tmp/"
cp "$agent_deb" "$agent_root/tmp/"

# ---- 3. daas-server ----
step "apt-get install ./daas-server.deb ./daas-cli.deb (Depends and Recommends from $mirror)"
install_server() {
  local dep
  with_debs "$server_root"
  cp -L /etc/resolv.conf "$server_root/etc/resolv.conf"
  in_root "$server_root" apt-get -o Acquire::Retries=3 update -qq >"$work/apt-update.log" 2>&1 \
    || { cat "$work/apt-update.log" >&2; die "apt-get update in the root failed (is $mirror reachable?)"; }
  in_root "$server_root" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y \
    "/tmp/$(basename "$server_deb")" "/tmp/$(basename "$cli_deb")" >"$work/apt-server.log" 2>&1 \
    || { cat "$work/apt-server.log" >&2; die "apt-get install daas-server daas-cli failed"; }
  keep_debs "$server_root"
  for dep in openssh-client curl jq; do
    expect "$dep (a Depends)" "$(in_root "$server_root" dpkg-query -W -f='${db:Status-Status}' "$dep")" installed
  done
  # Debian 12's ansible-core (2.14) is older than the Recommends (>= 2.18):
  # apt leaves it out, the config's virtual environment is used instead.
  [ "$(in_root "$server_root" dpkg-query -W -f='${db:Status-Status}' ansible-core 2>/dev/null)" != installed ] \
    || die "apt installed Debian 12's ansible-core (2.14) for the Recommends ansible-core (>= 2.18)"
  say "ok: no ansible-core from Debian 12 (too old for the Recommends)"
  in_root "$server_root" daas-server --version
  in_root "$server_root" daas --version
  daas_uid=$(in_root "$server_root" id -u daas) && daas_gid=$(in_root "$server_root" id -g daas) \
    || die "no user daas after the install"
}
timed install_server

step "what the postinst made: user daas, /var/lib/daas, /etc/daas/pki, the conffile, the unit not enabled"
installed_server() {
  local entry
  entry=$(in_root "$server_root" getent passwd daas) || die "no user daas"
  IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
  [ "$uid" -lt 1000 ] || die "daas is not a system user (uid $uid)"
  expect "home of daas" "$home" /var/lib/daas
  expect "shell of daas" "$shell" /usr/sbin/nologin
  expect "/var/lib/daas" "$(owner_mode "$server_root" /var/lib/daas)" "daas:daas 750"
  expect "/etc/daas/pki" "$(owner_mode "$server_root" /etc/daas/pki)" "daas:daas 700"
  expect "/etc/daas/config.toml" "$(owner_mode "$server_root" /etc/daas/config.toml)" "root:root 644"
  in_root "$server_root" dpkg-query -W -f='${Conffiles}\n' daas-server | grep -q '^ /etc/daas/config.toml [0-9a-f]\{32\}$' \
    || die "/etc/daas/config.toml is not a conffile of daas-server"
  say "ok: /etc/daas/config.toml is a conffile"
  [ ! -e "$server_root/etc/systemd/system/multi-user.target.wants/daas-server.service" ] \
    || die "the install enabled daas-server (it must wait for the PKI and the config)"
  say "ok: daas-server.service is installed, not enabled"
  # A second configure (what an upgrade runs) keeps everything as it is.
  in_root "$server_root" env DPKG_MAINTSCRIPT_PACKAGE=daas-server DPKG_MAINTSCRIPT_NAME=postinst \
    /var/lib/dpkg/info/daas-server.postinst configure "$(dpkg-deb -f "$server_deb" Version)" \
    || die "the postinst failed when run again"
  expect "/var/lib/daas after a second configure" "$(owner_mode "$server_root" /var/lib/daas)" "daas:daas 750"
  expect "users named daas" "$(in_root "$server_root" getent passwd | grep -c '^daas:')" 1
}
timed installed_server

step "systemd-analyze verify and security daas-server.service (in the root)"
analyze_server() {
  verify_unit "$server_root" daas-server.service
  # What verify cannot see: the unit's user and data folder are the package's.
  local unit=$server_root/lib/systemd/system/daas-server.service
  expect "User= of the unit" "$(sed -n 's/^User=//p' "$unit")" daas
  expect "StateDirectory= of the unit" "/var/lib/$(sed -n 's/^StateDirectory=//p' "$unit")" /var/lib/daas
  local exposure
  exposure=$(in_root "$server_root" systemd-analyze security --offline=true --threshold=20 \
    /lib/systemd/system/daas-server.service 2>&1) \
    || { printf '%s\n' "$exposure" | grep '✗' >&2; die "daas-server.service is exposed more than 2.0 (systemd-analyze security)"; }
  say "ok: $(printf '%s\n' "$exposure" | grep -o 'Overall exposure level.*' | sed 's/ *[^ ]*$//')"
}
timed analyze_server

step "daas-server --check as daas: refused before the PKI, then without the tools (naming them), passes with them (README's steps)"
check_server() {
  local out want
  if out=$(as_daas "$server_root" daas-server --check --config /etc/daas/config.toml 2>&1); then
    die "--check passed without a PKI"
  fi
  grep -q 'tls.ca.*pki init' <<<"$out" || die "--check without a PKI did not say what to do: $out"
  say "ok: without a PKI: $(head -c 160 <<<"$out")"
  as_daas "$server_root" daas-server pki init --dir /etc/daas/pki --dns daas.example.org >/dev/null
  expect "the server key" "$(owner_mode "$server_root" /etc/daas/pki/server-key.pem)" "daas:daas 600"
  # Neither is in Debian 12 (Terraform: HashiCorp; ansible-core 2.18+: a
  # virtual environment); ssh is, and the package depends on it.
  local check cmd
  for check in --check ''; do
    cmd="daas-server${check:+ $check}"
    if out=$(as_daas "$server_root" daas-server ${check:+"$check"} --config /etc/daas/config.toml 2>&1); then
      die "$cmd passed without terraform and ansible-playbook: $out"
    fi
    for want in "terraform: not found: no executable \`terraform\` on PATH (/usr/sbin:/usr/bin:/sbin:/bin) (terraform.binary); Terraform is not in Debian: install \`terraform\` from HashiCorp's apt repository" \
      'ansible-playbook: not found: /opt/daas/venv/bin/ansible-playbook is not an executable file (ansible.binary); install ansible-core 2.18+'; do
      grep -qF -- "$want" <<<"$out" || die "$cmd without the tools does not say: $want; it says: $out"
    done
    ! grep -q '^  ssh:' <<<"$out" || die "$cmd finds no ssh, though openssh-client is a Depends: $out"
    say "ok: $cmd without terraform and ansible-playbook: refused, naming both"
  done
  # Stand-ins where HashiCorp's package and the config's virtual environment
  # put them: what is checked here is the package, not those.
  mkdir -p "$server_root/opt/daas/venv/bin"
  printf '#!/bin/sh\necho "Terraform v1.5.7 (stand-in)"\n' >"$server_root/usr/bin/terraform"
  printf '#!/bin/sh\necho "ansible-playbook [core 2.18.0] (stand-in)"\n' >"$server_root/opt/daas/venv/bin/ansible-playbook"
  chmod 0755 "$server_root/usr/bin/terraform" "$server_root/opt/daas/venv/bin/ansible-playbook"
  out=$(as_daas "$server_root" daas-server --check --config /etc/daas/config.toml 2>&1) \
    || die "daas-server --check failed with the tools there: $out"
  for want in 'data_dir: "/var/lib/daas"' 'module_dir: "/usr/share/daas/terraform/proxmox"' \
    'playbook: "/usr/share/daas/ansible/playbooks/deploy-desktop.yml"' 'ca: "/etc/daas/pki/ca.pem"' \
    '  terraform: /usr/bin/terraform (Terraform v1.5.7 (stand-in))' \
    '  ansible-playbook: /opt/daas/venv/bin/ansible-playbook (ansible-playbook [core 2.18.0] (stand-in))' \
    '  ssh: /usr/bin/ssh (OpenSSH_'; do
    grep -qF -- "$want" <<<"$out" || die "--check does not show $want: $out"
  done
  say "ok: daas-server --check --config /etc/daas/config.toml passes as daas: $(grep -F '  ssh: /' <<<"$out" | sed 's/^ *//')"
}
timed check_server

step "daas-server starts as daas (listens, writes /var/lib/daas), stops on SIGTERM"
run_server() {
  local log=$work/server.log port='' i
  # A simple command, not a function: $! is the server itself (chroot, sh
  # and env exec it).
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/var/lib/daas NO_COLOR=1 \
    chroot --userspec="$daas_uid:$daas_gid" --groups="$daas_gid" "$server_root" \
    sh -c 'umask 077; exec "$@"' sh env DAAS_LISTEN=127.0.0.1:0 daas-server --config /etc/daas/config.toml \
    >"$log" 2>&1 &
  server_pid=$!
  for i in $(seq 1 100); do
    port=$(sed -n 's/^daas-server listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
    [ -z "$port" ] || break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; die "daas-server exited at start"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$log" >&2; die "daas-server did not listen within 10 s"; }
  say "ok: listening on 127.0.0.1:$port"
  expect "the database" "$(owner_mode "$server_root" /var/lib/daas/daas.sqlite3)" "daas:daas 600"
  expect "the SSH key" "$(owner_mode "$server_root" /var/lib/daas/ssh/id_ed25519)" "daas:daas 600"
  kill -TERM "$server_pid"
  local t0=$SECONDS status=0
  wait "$server_pid" || status=$?
  server_pid=
  expect "exit status after SIGTERM" "$status" 0
  say "ok: stopped in $((SECONDS - t0)) s (the unit gives it 45 s)"
}
timed run_server

step "dpkg -r keeps the conffile, dpkg -P removes it (and keeps data and PKI)"
remove_server() {
  in_root "$server_root" dpkg -r daas-server >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log" >&2; die "dpkg -r failed"; }
  expect "status after dpkg -r" "$(in_root "$server_root" dpkg-query -W -f='${Status}' daas-server)" "deinstall ok config-files"
  [ -f "$server_root/etc/daas/config.toml" ] || die "dpkg -r removed /etc/daas/config.toml"
  [ ! -e "$server_root/usr/bin/daas-server" ] || die "dpkg -r left /usr/bin/daas-server"
  [ ! -e "$server_root/lib/systemd/system/daas-server.service" ] || die "dpkg -r left the unit"
  say "ok: removed, /etc/daas/config.toml kept"
  in_root "$server_root" dpkg -P daas-server >"$work/dpkg-p.log" 2>&1 || { cat "$work/dpkg-p.log" >&2; die "dpkg -P failed"; }
  [ -z "$(in_root "$server_root" dpkg-query -W -f='${Status}' daas-server 2>/dev/null)" ] \
    || in_root "$server_root" dpkg-query -W -f='${Status}' daas-server | grep -q 'not-installed' \
    || die "daas-server is still known to dpkg after a purge"
  [ ! -e "$server_root/etc/daas/config.toml" ] || die "dpkg -P left /etc/daas/config.toml"
  [ -f "$server_root/var/lib/daas/daas.sqlite3" ] && [ -f "$server_root/etc/daas/pki/ca-key.pem" ] \
    || die "dpkg -P removed the data or the CA"
  say "ok: purged: the conffile is gone; /var/lib/daas and /etc/daas/pki are kept"
  in_root "$server_root" daas --version >/dev/null || die "removing daas-server took daas-cli"
}
timed remove_server

# ---- 4. daas-agent alone ----
step "daas-agent alone on a fresh Debian 12 root: dpkg -i, the unit and the helper's socket enabled and verified, dpkg -P"
agent_alone() {
  [ -z "$(unmet_depends "$agent_root" "$agent_deb")" ] || die "daas-agent has unmet dependencies on Debian 12: $(unmet_depends "$agent_root" "$agent_deb")"
  in_root "$agent_root" dpkg -i "/tmp/$(basename "$agent_deb")" >"$work/dpkg-agent.log" 2>&1 \
    || { cat "$work/dpkg-agent.log" >&2; die "dpkg -i daas-agent failed"; }
  in_root "$agent_root" daas-agent --version
  ! in_root "$agent_root" getent passwd daas >/dev/null || die "daas-agent created a user"
  local wants=$agent_root/etc/systemd/system/multi-user.target.wants/daas-agent.service
  expect "daas-agent.service enabled" "$(readlink "$wants")" /lib/systemd/system/daas-agent.service
  verify_unit "$agent_root" daas-agent.service
  local sock=$agent_root/etc/systemd/system/sockets.target.wants/daas-agent-helper.socket
  expect "daas-agent-helper.socket enabled" "$(readlink "$sock")" /lib/systemd/system/daas-agent-helper.socket
  local lib=$agent_root/lib/systemd/system
  grep -qx 'ExecStart=/usr/bin/daas-agent --apply' "$lib/daas-agent-helper@.service" \
    || die "daas-agent-helper@.service does not run /usr/bin/daas-agent --apply"
  # An instance is what systemd runs (the template itself cannot be verified).
  cp "$lib/daas-agent-helper@.service" "$lib/daas-agent-helper@0-test.service"
  verify_unit "$agent_root" daas-agent-helper.socket
  verify_unit "$agent_root" daas-agent-helper@0-test.service
  rm "$lib/daas-agent-helper@0-test.service"
  in_root "$agent_root" dpkg -P daas-agent >"$work/dpkg-agent-p.log" 2>&1 \
    || { cat "$work/dpkg-agent-p.log" >&2; die "dpkg -P daas-agent failed"; }
  [ ! -e "$wants" ] && [ ! -L "$wants" ] || die "the purge left the unit enabled"
  [ ! -e "$sock" ] && [ ! -L "$sock" ] || die "the purge left the helper's socket enabled"
  [ ! -e "$agent_root/usr/bin/daas-agent" ] || die "the purge left /usr/bin/daas-agent"
  say "ok: purged, the units' links are gone"
}
timed agent_alone

printf '\ndeploy/debian/test.sh: all checks passed in %s s\n' "$(($(date +%s) - started))"
