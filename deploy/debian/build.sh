#!/usr/bin/env bash
# Builds the Debian packages of the workspace with dpkg-deb, from the
# binaries cargo built (no cargo-deb):
#
#   daas-server  daas-server, its systemd unit, /etc/daas/config.toml
#                (conffile), the Terraform module terraform/proxmox and the
#                playbooks under /usr/share/daas, the agent binary the
#                playbook copies to desktops (/usr/lib/daas/daas-agent)
#   daas-cli     the `daas` command, for servers and workstations
#   daas-agent   the in-VM agent and its unit, alone, for desktop templates
#
#   deploy/debian/build.sh [--profile NAME] [--build] [--out DIR] [--fast] [--no-strip]
#
#   --profile NAME  cargo profile the binaries come from: release (default),
#                   dev (target/debug) or any other; from
#                   ${CARGO_TARGET_DIR:-target}/<its folder>
#   --build         run `cargo build --locked --workspace --bins` for it first
#   --out DIR       where the .deb files go (default: target/debian)
#   --fast          gzip -1 instead of xz (tests)
#   --no-strip      keep the debug symbols
#
# Prints the path of each package. Needs dpkg-deb, dpkg-shlibdeps
# (dpkg-dev) and strip (binutils).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { printf 'deploy/debian/build.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

profile=release
build=0
out=$root/target/debian
compress=(-Zxz)
strip=1
while [ $# -gt 0 ]; do
  case $1 in
    --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
    --build) build=1; shift ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    --no-strip) strip=0; shift ;;
    -h | --help) usage 0 ;;
    *) printf 'deploy/debian/build.sh: unknown argument %s\n' "$1" >&2; usage ;;
  esac
done

for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev)"
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
case $profile in
  dev | debug) cargo_profile=dev bin_dir=$target_dir/debug ;;
  *) cargo_profile=$profile bin_dir=$target_dir/$profile ;;
esac
if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --locked --quiet --profile "$cargo_profile" --workspace --bins)
fi
for bin in daas-server daas daas-agent; do
  [ -x "$bin_dir/$bin" ] || die "no $bin_dir/$bin: build it (cargo build --profile $cargo_profile --workspace --bins, or --build)"
done

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
arch=$(dpkg --print-architecture)
maintainer=${DAAS_DEB_MAINTAINER:-DaaS maintainers <daas@example.invalid>}
# Reproducible timestamps: the last commit's, when there is one.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null); then
  export SOURCE_DATE_EPOCH=$epoch
fi

umask 022
stage=$(mktemp -d "${TMPDIR:-/tmp}/daas-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/debian"
# dpkg-shlibdeps reads debian/control and wants the binaries under debian/PKG/.
printf 'Source: daas\n\nPackage: daas-server\nArchitecture: any\n' >"$stage/debian/control"

put() { # MODE SRC DEST
  install -D -m "$1" "$2" "$3"
}
put_bin() { # SRC DEST
  mkdir -p "$(dirname "$2")"
  if [ "$strip" = 1 ]; then
    strip --strip-unneeded -o "$2" "$1"
  else
    cp "$1" "$2"
  fi
  chmod 0755 "$2"
}
# The files of a folder of the repository whose relative paths match
# INCLUDE and not EXCLUDE (extended regular expressions), keeping the
# executable bit (0755) or not (0644).
put_tree() { # SRC_DIR DEST_DIR INCLUDE EXCLUDE
  local src=$1 dest=$2 file mode
  while IFS= read -r file; do
    mode=0644
    [ -x "$src/$file" ] && mode=0755
    put "$mode" "$src/$file" "$dest/$file"
  done < <(cd "$src" && find . -type f -printf '%P\n' | grep -E -- "$3" | grep -vE -- "$4" | sort)
}
put_doc() { # PKG
  local doc=$stage/debian/$1/usr/share/doc/$1
  mkdir -p "$doc"
  cat >"$doc/copyright" <<'EOF'
Upstream-Name: daas
Source: the DaaS orchestrator's repository

Files: *
Copyright: the DaaS orchestrator authors
License: Apache-2.0
 On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
}

# ---- daas-server ----
pkg=$stage/debian/daas-server
put_bin "$bin_dir/daas-server" "$pkg/usr/bin/daas-server"
put_bin "$bin_dir/daas-agent" "$pkg/usr/lib/daas/daas-agent"
put 0644 "$here/daas-server.service" "$pkg/lib/systemd/system/daas-server.service"
put 0644 "$here/config.toml" "$pkg/etc/daas/config.toml"
# The production module (not its tests, nor any local state or tfvars).
put_tree "$root/terraform/proxmox" "$pkg/usr/share/daas/terraform/proxmox" \
  '^([^/]+\.tf|inventory|README\.md|terraform\.tfvars\.example)$' '^$'
# The playbooks the config names, the template's, their roles and site
# settings (not the test playbooks, nor a local vault).
ansible_src=$root/ansible
ansible_dest=$pkg/usr/share/daas/ansible
put 0644 "$ansible_src/ansible.cfg" "$ansible_dest/ansible.cfg"
put 0644 "$ansible_src/README.md" "$ansible_dest/README.md"
for book in deploy-desktop.yml teardown.yml build-template.yml group_vars/all/main.yml group_vars/all/vault.yml.example; do
  put 0644 "$ansible_src/playbooks/$book" "$ansible_dest/playbooks/$book"
done
ln -s ../roles "$ansible_dest/playbooks/roles"
put_tree "$ansible_src/roles" "$ansible_dest/roles" '.' '(^|/)__pycache__/|\.(pyc|retry)$'
put 0644 "$root/README.md" "$pkg/usr/share/doc/daas-server/README.md"
put 0644 "$here/README.md" "$pkg/usr/share/doc/daas-server/README.Debian"
put_doc daas-server
for script in postinst prerm postrm; do
  put 0755 "$here/daas-server.$script" "$pkg/DEBIAN/$script"
done
printf '/etc/daas/config.toml\n' >"$pkg/DEBIAN/conffiles"

# ---- daas-cli ----
pkg=$stage/debian/daas-cli
put_bin "$bin_dir/daas" "$pkg/usr/bin/daas"
put_doc daas-cli

# ---- daas-agent: the unit is the vm-agent role's, with the package's binary ----
pkg=$stage/debian/daas-agent
put_bin "$bin_dir/daas-agent" "$pkg/usr/bin/daas-agent"
role=$root/ansible/roles/vm-agent
role_list() { # KEY: the items of the list KEY in the role's defaults, space-separated
  awk -v key="$1:" '$1 == key { on = 1; next } on && /^  - / { print $2; next } { on = 0 }' \
    "$role/defaults/main.yml" | paste -sd' '
}
caps=$(role_list vm_agent_capabilities)
[ -n "$caps" ] || die "no vm_agent_capabilities in $role/defaults/main.yml"
helper_caps=$(role_list vm_agent_helper_capabilities)
[ -n "$helper_caps" ] || die "no vm_agent_helper_capabilities in $role/defaults/main.yml"
# The agent's unit, and its root helper's socket and service (without the
# helper, the agent answers UNSUPPORTED and claims fall back to the
# playbook). The helper's unit leaves sss_cache in place: the package cannot
# know whether SSSD will be installed (the role binds it to /bin/true when
# it is; the flushes then cost about a second a claim).
for name in daas-agent.service daas-agent-helper.socket daas-agent-helper@.service; do
  unit=$pkg/lib/systemd/system/$name
  mkdir -p "$(dirname "$unit")"
  sed -e "s|^# {{ ansible_managed }} (role vm-agent)\$|# Package daas-agent: $name of the vm-agent role (ansible/roles/vm-agent), with /usr/bin/daas-agent.|" \
    -e 's|{{ vm_agent_config_path }}|/etc/daas/agent.toml|g' \
    -e 's|{{ vm_agent_binary_path }}|/usr/bin/daas-agent|g' \
    -e "s%{{ vm_agent_capabilities | join(' ') }}%$caps%g" \
    -e "s%{{ vm_agent_helper_capabilities | join(' ') }}%$helper_caps%g" \
    -e '/^{% if vm_agent_sss_cache/,/^{% endif %}/d' \
    "$role/templates/$name.j2" >"$unit"
  chmod 0644 "$unit"
  if grep -n '{[{%#]' "$unit" >&2; then
    die "the vm-agent role's $name template has placeholders build.sh does not know (above)"
  fi
done
mkdir -p "$pkg/etc/daas"
put_doc daas-agent
for script in postinst prerm postrm; do
  put 0755 "$here/daas-agent.$script" "$pkg/DEBIAN/$script"
done

# ---- control files, checksums, packages ----
shlibs() { # BINARY...: the Depends of these binaries' shared libraries
  (cd "$stage" && dpkg-shlibdeps -O "${@/#/-e}" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}
control() { # PKG DEPENDS RECOMMENDS SUGGESTS SUMMARY DESCRIPTION
  local dir=$stage/debian/$1 size
  size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
  mkdir -p "$dir/DEBIAN"
  {
    printf 'Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: %s\n' "$1" "$version" "$arch" "$maintainer"
    printf 'Installed-Size: %s\nSection: admin\nPriority: optional\n' "$size"
    [ -z "$2" ] || printf 'Depends: %s\n' "$2"
    [ -z "$3" ] || printf 'Recommends: %s\n' "$3"
    [ -z "$4" ] || printf 'Suggests: %s\n' "$4"
    printf 'Description: %s\n%s\n' "$5" "$6"
  } >"$dir/DEBIAN/control"
  # Checksums of every file but the conffiles (dpkg keeps theirs).
  (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | sort \
    | grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles 2>/dev/null || true) \
    | xargs -r -d '\n' md5sum) >"$dir/DEBIAN/md5sums"
}

server_shlibs=$(shlibs debian/daas-server/usr/bin/daas-server debian/daas-server/usr/lib/daas/daas-agent)
# What the server runs: ssh (openssh-client: the boot wait and Ansible's
# connection), terraform and ansible-playbook; curl and jq run the proxmox
# module's inventory hook. Terraform is not in Debian: HashiCorp's apt
# repository has `terraform`. ansible-core 2.18+ comes from Debian where
# it is that new (apt leaves Debian 12's 2.14 out), else from a virtual
# environment (python3-venv). `daas-server --check` names any that is
# missing. A PostgreSQL store needs nothing here but the network; what the
# binary links is in $server_shlibs. adcli deletes computer accounts from
# the orchestrator (ad_join_teardown_host).
control daas-server \
  "$server_shlibs, adduser, openssh-client, curl, jq" \
  "daas-cli (= $version), terraform, ansible-core (>= 2.18), python3-venv, ca-certificates" \
  "adcli" \
  "DaaS orchestrator: Linux desktops on demand (server)" \
  " daas-server clones desktops with Terraform (Proxmox VE), configures them
 with Ansible (Active Directory join, xrdp), streams every stage over a
 gRPC API with mutual TLS and reaps idle desktops. Runs as the systemd
 service daas-server, user daas, data in /var/lib/daas."
control daas-cli \
  "$(shlibs debian/daas-cli/usr/bin/daas)" "" "" \
  "DaaS orchestrator: Linux desktops on demand (command line client)" \
  " daas creates, lists, watches, destroys and connects to desktops of a
 daas-server, over gRPC with a client certificate."
control daas-agent \
  "$(shlibs debian/daas-agent/usr/bin/daas-agent)" "" "" \
  "DaaS orchestrator: in-desktop agent" \
  " daas-agent runs inside each desktop and reports its activity (input
 idle time, RDP clients, logged-in users) to daas-server. For desktop
 templates: the unit is enabled and starts once the vm-agent role has
 written /etc/daas/agent.toml."

mkdir -p "$out"
for name in daas-server daas-cli daas-agent; do
  deb=$out/${name}_${version}_${arch}.deb
  dpkg-deb --root-owner-group "${compress[@]}" --build "$stage/debian/$name" "$deb" >/dev/null
  printf '%s\n' "$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
done
