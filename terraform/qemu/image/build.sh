#!/usr/bin/env bash
# Builds the DaaS local desktop template: Debian 12 with cloud-init, sshd,
# python3, XFCE and xrdp, made with debootstrap into a qcow2 disk with its
# kernel and initrd beside it (the VM boots them directly, no bootloader),
# then configured by ansible/playbooks/build-template.yml (as a Proxmox
# template would be), so that a desktop's playbook run skips that part.
#
#   image/build.sh --cache-dir DIR [--flavor xfce|dev] [--agent-binary FILE] [--verbose]
#
# --flavor dev (the catalog's second template) adds a developer's tools
# (build-essential, git, python3-venv) and lands in debian12-dev-<hash>/.
# The image lands in DIR/debian12-xfce-<hash>/ (disk.qcow2, vmlinuz,
# initrd.img, manifest.json, build.log); <hash> covers this script (and so
# its package lists), every file under image/files/ and what
# build-template.yml reads (the roles, group_vars) and the agent binary
# given (the template carries it: a desktop's playbook copies the server's
# only when it differs), so a rebuild happens only when one of them
# changes. Needs the project's venv (scripts/setup.sh). The folder's path is
# the LAST line on stdout; progress goes to stderr. Needs root (debootstrap,
# chroot); installs the host tools it and the qemu module need with apt-get
# when missing.
#
# Environment: DAAS_DEBIAN_MIRROR (default http://deb.debian.org/debian) and
# DAAS_DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security)
# say where packages come from; they are recorded, not hashed.
set -euo pipefail

NAME=debian12-xfce
SUITE=bookworm
MIRROR=${DAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DAAS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# debootstrap --variant=minbase --include: what a cloud-init VM needs to boot
# and be reached. python3-cffi-backend: debootstrap does not resolve the
# virtual packages python3-cryptography (cloud-init) needs.
BOOTSTRAP_PACKAGES=(
  systemd-sysv udev openssh-server python3 sudo iproute2 netbase
  isc-dhcp-client ifupdown linux-image-cloud-amd64 cloud-init
  python3-cffi-backend
)
# Installed with apt (--no-install-recommends) in the tree afterwards.
# locales: cloud-init's locale module fails without en_US.UTF-8.
# libpam-systemd: a logind session (XDG_RUNTIME_DIR) for RDP logins.
SYSTEM_PACKAGES=(
  locales qemu-guest-agent e2fsprogs ca-certificates procps python3-apt
  libpam-systemd
)
# xauth: xrdp's session manager adds the X cookie with it. libpam-mount,
# cifs-utils, keyutils: the rest of the desktop-config role's packages, so
# that the playbook finds them all and skips apt (30-40 s under emulation).
# xclip: the clipboard from a shell (the end-to-end test reads and sets it).
DESKTOP_PACKAGES=(xfce4 xfce4-terminal xrdp xorgxrdp dbus-x11 xauth libpam-mount cifs-utils keyutils xclip)
# The ad-join role's packages (adcli, SSSD, Kerberos): a desktop joins
# Active Directory without apt.
AD_PACKAGES=(
  sssd sssd-tools libnss-sss libpam-sss adcli krb5-user libsasl2-modules-gssapi-mit
)
# Free space left in the template's file system; a VM's overlay is resized to
# its disk_gb and cloud-init grows the file system at first boot.
FREE_MB=2048

# command on the host -> Debian package (the qemu module needs the last two).
HOST_TOOLS=(
  debootstrap:debootstrap mkfs.ext4:e2fsprogs unshare:util-linux
  flock:util-linux qemu-img:qemu-utils genisoimage:genisoimage
  qemu-system-x86_64:qemu-system-x86
)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
FILES_DIR="$SCRIPT_DIR/files"
REPO=$(cd "$SCRIPT_DIR/../../.." && pwd)
ANSIBLE_DIR="$REPO/ansible"
# What build-template.yml reads: the image carries what it makes.
TEMPLATE_INPUTS=(playbooks/build-template.yml playbooks/group_vars roles ansible.cfg)

usage() {
  sed -n '2,26p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

CACHE_DIR=""
AGENT_BINARY=""
VERBOSE=0
FLAVOR=xfce
while (($#)); do
  case $1 in
    --flavor) FLAVOR=${2:?--flavor needs xfce or dev}; shift 2 ;;
    --flavor=*) FLAVOR=${1#*=}; shift ;;
    --cache-dir) CACHE_DIR=${2:?--cache-dir needs a folder}; shift 2 ;;
    --cache-dir=*) CACHE_DIR=${1#*=}; shift ;;
    --agent-binary) AGENT_BINARY=${2:?--agent-binary needs a file}; shift 2 ;;
    --agent-binary=*) AGENT_BINARY=${1#*=}; shift ;;
    --verbose | -v) VERBOSE=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; usage ;;
  esac
done
[[ -n $CACHE_DIR ]] || { echo "build.sh: --cache-dir DIR is required" >&2; usage; }
# What a flavor adds to the desktop, and its name.
case $FLAVOR in
  xfce) FLAVOR_PACKAGES=() ;;
  dev)
    NAME=debian12-dev
    FLAVOR_PACKAGES=(build-essential git python3-venv)
    ;;
  *) echo "build.sh: --flavor is xfce or dev, not '$FLAVOR'" >&2; usage ;;
esac
if [[ -n $AGENT_BINARY ]]; then
  [[ -f $AGENT_BINARY && -x $AGENT_BINARY ]] || { echo "build.sh: --agent-binary $AGENT_BINARY is not an executable file" >&2; exit 2; }
  AGENT_BINARY=$(cd "$(dirname "$AGENT_BINARY")" && pwd)/$(basename "$AGENT_BINARY")
fi

T0=$SECONDS
log() { printf '[image %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap and chroot need it)"

# ---- host tools ----------------------------------------------------------
# Never removes a package: apt-get --no-remove stops instead. A qemu-utils
# from bookworm-backports (as the project's build machines have) cannot live
# beside bookworm's qemu-system-x86, so qemu-system-x86 then comes from
# backports at the same version, through a source list of this run's own.
install_host_packages() {
  local apt_host=(apt-get -o DPkg::Lock::Timeout=300 -q -y)
  local pkgs=("$@") v tmp status=0
  export DEBIAN_FRONTEND=noninteractive
  "${apt_host[@]}" update >&2 || die "apt-get update failed"
  if "${apt_host[@]}" install --no-install-recommends --no-remove "${pkgs[@]}" >&2; then
    return 0
  fi
  v=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  [[ $v == *bpo12* ]] || die "could not install ${pkgs[*]} (see apt-get's message above)"
  log "qemu-utils $v is from bookworm-backports: taking qemu-system-x86 from there too"
  tmp=$(mktemp -d)
  echo "deb $MIRROR $SUITE-backports main" >"$tmp/backports.list"
  mkdir -p "$tmp/lists/partial"
  local o=(-o "Dir::Etc::sourcelist=$tmp/backports.list" -o "Dir::State::lists=$tmp/lists"
    -o APT::Sandbox::User=root)
  pkgs=("${pkgs[@]/#qemu-system-x86/qemu-system-x86=$v}")
  pkgs=("${pkgs[@]/#qemu-utils/qemu-utils=$v}")
  { "${apt_host[@]}" "${o[@]}" update >&2 &&
    "${apt_host[@]}" "${o[@]}" -t "$SUITE-backports" install --no-install-recommends \
      --no-remove "${pkgs[@]}" >&2; } || status=$?
  rm -rf "$tmp"
  ((status == 0)) || die "could not install ${pkgs[*]} (see apt-get's message above)"
}

missing=()
for pair in "${HOST_TOOLS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing host packages: ${missing[*]}"
  install_host_packages "${missing[@]}"
fi

# ---- cache key -----------------------------------------------------------
inputs_hash() {
  {
    echo "name=$NAME suite=$SUITE arch=amd64"
    sha256sum <"$SCRIPT_PATH"
    if [[ -d $FILES_DIR ]]; then
      (cd "$FILES_DIR" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
    fi
    (cd "$ANSIBLE_DIR" && find "${TEMPLATE_INPUTS[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
    if [[ -n $AGENT_BINARY ]]; then echo "agent $(sha256sum <"$AGENT_BINARY")"; fi
  } | sha256sum | cut -c1-12
}
HASH=$(inputs_hash)
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd -P)
FINAL="$CACHE_DIR/$NAME-$HASH"

ready() { [[ -f $FINAL/manifest.json && -f $FINAL/disk.qcow2 ]]; }

# One build at a time on a machine (they share the package cache and two
# cores are busy enough with one); a second caller waits, then finds the
# image ready.
exec {LOCK_FD}>"$CACHE_DIR/.build.lock"
if ! flock -n "$LOCK_FD"; then
  log "another build holds $CACHE_DIR/.build.lock; waiting for it"
  flock "$LOCK_FD"
fi
if ready; then
  log "image $NAME-$HASH is ready (cached)"
  echo "$FINAL"
  exit 0
fi

# ---- build ---------------------------------------------------------------
# A full disk shows up late and cryptically (a cut log, mkfs.ext4 failing
# without a word): say so before starting, and again before the disk image.
free_mb() { df -P -m "$1" | awk 'NR == 2 { print $4 }'; }
need_space() {
  local mb=$1 what=$2 free
  free=$(free_mb "$CACHE_DIR")
  ((free >= mb)) || die "not enough free disk space for $what: about $mb MiB needed in $CACHE_DIR, $free MiB free (free some, or pass --cache-dir on a larger disk)"
}
# The tree (~1 GiB), the raw disk and its qcow2 copy (each about the tree's size).
need_space 3584 "the image build"

WORK="$CACHE_DIR/.build-$NAME-$HASH.$$"
ROOT="$WORK/root"
OUT="$WORK/out"
LOG="$WORK/build.log"
DEBS="$CACHE_DIR/debs"
CHILD=""
DONE=0

# Processes whose root is the build tree (a service a package started
# despite policy-rc.d); ours to stop.
kill_tree_processes() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    if [[ $r == "$ROOT" || $r == "$ROOT"/* ]]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [[ -d $WORK ]]; then
    kill_tree_processes
    # Every mount of the build lives in a private mount namespace; should
    # one have leaked anyway, take it down before removing the tree.
    awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
      sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [[ $DONE != 1 && -f $LOG ]]; then
      cp "$LOG" "$CACHE_DIR/$NAME-$HASH.failed.log" 2>/dev/null || true
      log "build failed after $((SECONDS - T0)) s; log: $CACHE_DIR/$NAME-$HASH.failed.log"
    fi
    rm -rf --one-file-system "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command with its output in the build log, printing a line of
# progress every 15 s (all of it with --verbose).
run() {
  local what=$1 start=$SECONDS next=$((SECONDS + 15)) status=0
  shift
  log "$what ..."
  echo "=== $what: $*" >>"$LOG"
  # Its own process group (set -m), so a stop takes all of it down. Its
  # input is not the terminal: a background group that touches it (apt,
  # dpkg) is stopped by the kernel (SIGTTIN, SIGTTOU) and the build hangs.
  set -m
  if ((VERBOSE)); then
    "$@" </dev/null > >(tee -a "$LOG" >&2) 2>&1 &
  else
    "$@" </dev/null >>"$LOG" 2>&1 &
  fi
  CHILD=$!
  set +m
  while kill -0 "$CHILD" 2>/dev/null; do
    sleep 1
    if ((!VERBOSE && SECONDS >= next)); then
      log "  $what: $((SECONDS - start)) s, $(tail -n 1 "$LOG" | tr -d '\r' | cut -c1-90)"
      next=$((SECONDS + 15))
    fi
  done
  wait "$CHILD" || status=$?
  CHILD=""
  if ((status != 0)); then
    log "FAILED: $what (exit $status); last lines of the log:"
    tail -n 40 "$LOG" | sed 's/^/    /' >&2
    return "$status"
  fi
  log "  $what: done in $((SECONDS - start)) s"
}

# A command inside the tree, with /proc and the shared package cache mounted
# in a mount namespace of its own (gone when it ends, whatever happens).
in_tree() {
  unshare --mount --propagation private -- /bin/sh -c '
    set -e
    root=$1 debs=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --bind "$debs" "$root/var/cache/apt/archives"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"
  ' in_tree "$ROOT" "$DEBS" "$@"
}

debootstrap_tree() {
  # Its own mounts (proc, sys) stay in a private namespace too.
  unshare --mount --propagation private -- debootstrap --variant=minbase \
    --include="$(IFS=,; echo "${BOOTSTRAP_PACKAGES[*]}")" \
    --components=main --cache-dir="$DEBS" "$SUITE" "$ROOT" "$MIRROR"
}

install_packages() {
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  # No service starts in the tree (xrdp would listen on the host).
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  echo "en_US.UTF-8 UTF-8" >"$ROOT/etc/locale.gen"
  # No fsync per file while building (the disk image is made at the end).
  echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/daas-build"
  local apt="apt-get -q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false"
  in_tree /bin/sh -c "set -e
    $apt update
    $apt dist-upgrade
    $apt install ${SYSTEM_PACKAGES[*]} ${DESKTOP_PACKAGES[*]} ${AD_PACKAGES[*]} ${FLAVOR_PACKAGES[*]}
    locale-gen
    update-locale LANG=en_US.UTF-8
    usermod -a -G ssl-cert xrdp
    # Short-lived desktops: no apt runs of their own (heavy under emulation).
    systemctl disable apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
    # Nor e2scrub (LVM snapshots; there are none): seconds of boot saved.
    systemctl disable e2scrub_reap.service e2scrub_all.timer 2>/dev/null || true
    # SSSD has no configuration until the ad-join role joins a domain (and
    # enables it then); started at boot it would only fail. Its responder
    # sockets too: every user lookup at boot would try to start a responder
    # that fails, and sssd.conf's services= starts them itself.
    systemctl disable sssd.service 2>/dev/null || true
    for u in nss pam pam-priv autofs ssh sudo pac; do
      systemctl disable sssd-\$u.socket 2>/dev/null || true
    done
    kernel=\$(dpkg-query -W -f='\${Depends}' linux-image-cloud-amd64 | grep -o 'linux-image-[^ ,]*' | head -n 1)
    old=\$(dpkg-query -W -f='\${Package}\n' 'linux-image-[0-9]*' | grep -vx \"\$kernel\" || true)
    if [ -n \"\$old\" ]; then $apt purge \$old; fi
    $apt autoremove --purge"
}

# The desktop template's configuration, by the playbook a Proxmox site runs
# on its template VM (ansible/playbooks/build-template.yml), through
# Ansible's chroot connection; services stay off (policy-rc.d). With the
# agent binary when given.
template_tree() {
  local collections inventory="$WORK/template-inventory.yml"
  [[ -x $REPO/.venv/bin/ansible-playbook ]] || die "$REPO/.venv is missing: run scripts/setup.sh"
  collections=$("$ANSIBLE_DIR/collections.sh") || die "no community.general collection (ansible/collections.sh)"
  printf 'all:\n  hosts:\n    %s:\n      ansible_connection: community.general.chroot\n      ansible_host: %s\n      ansible_python_interpreter: /usr/bin/python3\n' \
    "$NAME" "$ROOT" >"$inventory"
  (cd "$ANSIBLE_DIR" && env ANSIBLE_CONFIG="$ANSIBLE_DIR/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$collections" \
    ANSIBLE_NOCOLOR=1 "$REPO/.venv/bin/ansible-playbook" -i "$inventory" -e daas_start_services=false \
    ${AGENT_BINARY:+-e "daas_agent_binary=$AGENT_BINARY"} playbooks/build-template.yml)
}

configure_tree() {
  local f
  (cd "$FILES_DIR" && find . -type f) | while read -r f; do
    install -D -m 0644 -o root -g root "$FILES_DIR/$f" "$ROOT/${f#./}"
  done
  echo "$NAME" >"$ROOT/etc/hostname"
  # A fresh identity per VM: systemd makes the machine id, cloud-init the
  # SSH host keys, dhclient the resolver file.
  : >"$ROOT/etc/machine-id"
  rm -f "$ROOT/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
  rm -f "$ROOT"/etc/ssh/ssh_host_* "$ROOT/etc/resolv.conf"
  # xrdp's keys and the TLS certificate too (a drop-in makes them at its start).
  rm -f "$ROOT/etc/xrdp/rsakeys.ini" "$ROOT/etc/ssl/private/ssl-cert-snakeoil.key" \
    "$ROOT/etc/ssl/certs/ssl-cert-snakeoil.pem"
  rm -rf "$ROOT"/var/lib/cloud/*
  rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/dpkg/dpkg.cfg.d/daas-build"
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
    "$ROOT"/var/cache/apt/archives/partial "$ROOT"/tmp/* "$ROOT"/var/tmp/*
  mkdir -p "$ROOT/var/lib/apt/lists/partial" "$ROOT/var/cache/apt/archives/partial"
  # Emptied, not removed: xrdp (not root) cannot create its log file.
  find "$ROOT/var/log" -type f -name '*.log' -exec truncate -s 0 {} +
}

extract_boot() {
  local kernel
  kernel=$(cd "$ROOT/boot" && ls vmlinuz-* | sort -V | tail -n 1)
  KERNEL_VERSION=${kernel#vmlinuz-}
  [[ -f $ROOT/boot/initrd.img-$KERNEL_VERSION ]] || die "no initrd for $KERNEL_VERSION"
  cp "$ROOT/boot/vmlinuz-$KERNEL_VERSION" "$OUT/vmlinuz"
  cp "$ROOT/boot/initrd.img-$KERNEL_VERSION" "$OUT/initrd.img"
}

make_disk() {
  local used_mb size_mb
  used_mb=$(du -sm "$ROOT" | cut -f1)
  # ext4 metadata and reserve (~10 %), the free space, whole GiB.
  size_mb=$(((used_mb * 11 / 10 + FREE_MB + 1023) / 1024 * 1024))
  DISK_MB=$size_mb
  log "  tree: $used_mb MiB; disk: $size_mb MiB"
  need_space $((used_mb * 2 + 256)) "the disk image (raw, then qcow2)"
  truncate -s "${size_mb}M" "$WORK/disk.raw"
  run "mkfs.ext4 from the tree" mkfs.ext4 -q -F -L daas-root -d "$ROOT" "$WORK/disk.raw"
  run "convert to qcow2" qemu-img convert -f raw -O qcow2 "$WORK/disk.raw" "$OUT/disk.qcow2"
  rm -f "$WORK/disk.raw"
  chmod 0444 "$OUT/disk.qcow2"
}

json_list() {
  local first=1 x
  printf '['
  for x in "$@"; do
    ((first)) || printf ', '
    printf '"%s"' "$x"
    first=0
  done
  printf ']'
}

write_manifest() {
  local seconds=$1 files
  mapfile -t files < <(cd "$FILES_DIR" && find . -type f | sed 's|^\./|/|' | LC_ALL=C sort)
  cat >"$OUT/manifest.json" <<EOF
{
  "name": "$NAME",
  "hash": "$HASH",
  "suite": "$SUITE",
  "mirror": "$MIRROR",
  "security_mirror": "$SECURITY_MIRROR",
  "bootstrap_packages": $(json_list "${BOOTSTRAP_PACKAGES[@]}"),
  "system_packages": $(json_list "${SYSTEM_PACKAGES[@]}"),
  "desktop_packages": $(json_list "${DESKTOP_PACKAGES[@]}"),
  "ad_packages": $(json_list "${AD_PACKAGES[@]}"),
  "flavor": "$FLAVOR",
  "flavor_packages": $(json_list "${FLAVOR_PACKAGES[@]}"),
  "files": $(json_list "${files[@]}"),
  "agent_binary_sha256": "$(if [[ -n $AGENT_BINARY ]]; then sha256sum <"$AGENT_BINARY" | cut -d' ' -f1; fi)",
  "script_sha256": "$(sha256sum <"$SCRIPT_PATH" | cut -d' ' -f1)",
  "kernel_version": "$KERNEL_VERSION",
  "kernel_cmdline": "console=ttyS0 root=/dev/vda rw net.ifnames=0",
  "disk_virtual_mb": $DISK_MB,
  "disk_file_bytes": $(stat -c %s "$OUT/disk.qcow2"),
  "build_seconds": $seconds,
  "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
}

log "building $NAME-$HASH in $WORK (takes minutes)"
rm -rf --one-file-system "$CACHE_DIR"/.build-"$NAME"-*.* 2>/dev/null || true
mkdir -p "$ROOT" "$OUT" "$DEBS/partial"
: >"$LOG"
run "debootstrap $SUITE (minbase)" debootstrap_tree
run "apt: updates, system and desktop packages" install_packages
run "desktop template: ansible/playbooks/build-template.yml" template_tree
run "configure the tree" configure_tree
extract_boot
make_disk
mv "$LOG" "$OUT/build.log"
LOG="$OUT/build.log"
write_manifest $((SECONDS - T0))
mv -T "$OUT" "$FINAL"
DONE=1
log "image $NAME-$HASH ready in $((SECONDS - T0)) s: $(du -sh "$FINAL/disk.qcow2" | cut -f1) disk, kernel $KERNEL_VERSION"
echo "$FINAL"
