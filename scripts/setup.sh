#!/usr/bin/env bash
# Installs what a fresh machine lacks for building, testing and the demo:
# Debian packages (PostgreSQL among them), the Ansible virtual environment
# (.venv) and a check for Terraform.
# Idempotent: a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (Rust 1.94 or newer is needed)"
command -v terraform >/dev/null \
  || die "terraform is not on PATH; install Terraform 1.5+ (https://developer.hashicorp.com/terraform/install)"

if ! command -v python3 >/dev/null; then
  say "installing python3 (apt-get)"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi

# Debian packages the tests and the demo use: an X server and input for the
# agent's idle test, jq for the scripts, curl for the HTTP side's tests,
# dpkg-dev (dpkg-shlibdeps, strip) for the Debian packages (deploy/debian).
missing=()
for pair in Xvfb:xvfb xdotool:xdotool xauth:xauth jq:jq curl:curl dpkg-shlibdeps:dpkg-dev strip:binutils; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt-get)"
  [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}: sudo apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL for the store tests and the replicas' demo (scripts/postgres.sh
# runs a cluster of its own; the system's is never started here).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  say "installing postgresql-15 (apt-get)"
  [ "$(id -u)" = 0 ] || die "need root to install postgresql-15: sudo apt-get install postgresql-15"
  # 101: the package's own cluster is not started (policy-rc.d).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql-15 >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

venv=.venv
stamp=$venv/.requirements.sha256
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/ansible-playbook" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the Python virtual environment $venv (ansible-core)"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    say "installing python3-venv (apt-get)"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi
# Other ansible-core releases, for the tests that no request value is ever
# templated whatever the release (server/tests/it/ansible_injection.rs).
for version in $(grep -v '^#' scripts/ansible-versions.txt); do
  other=.venv-ansible/$version
  if [ ! -x "$other/bin/ansible-playbook" ]; then
    say "creating $other (ansible-core $version)"
    python3 -m venv "$other"
    "$other/bin/pip" install --quiet --disable-pip-version-check "ansible-core==$version"
  fi
done
# promtool, for the metrics' lint (server/tests/it/dashboard.rs): taken out of
# Debian's prometheus package, which is not installed (it would start the
# server); the .deb is cached.
if [ ! -x "$venv/bin/promtool" ]; then
  cache=${DAAS_CACHE_DIR:-/var/tmp/daas-cache}/prometheus-deb
  mkdir -p "$cache"
  if ! compgen -G "$cache/prometheus_*.deb" >/dev/null; then
    say "downloading promtool (apt-get download prometheus)"
    get() { (cd "$cache" && apt-get -qq -o APT::Sandbox::User=root download prometheus); }
    get || { apt-get -o DPkg::Lock::Timeout=300 update -qq && get; }
  fi
  deb=$(compgen -G "$cache/prometheus_*.deb" | sort -V | tail -n 1)
  tmp=$(mktemp -d)
  dpkg-deb -x "$deb" "$tmp"
  install -m 0755 "$tmp/usr/bin/promtool" "$venv/bin/promtool"
  rm -rf "$tmp"
fi
# The browser tests (server/tests/it/browser.rs): Debian's Chromium, driven by
# playwright-core from npm (tests/browser; `playwright install` cannot
# download browsers here, and need not).
if [ ! -x /usr/lib/chromium/chromium ]; then
  say "installing chromium (apt-get)"
  [ "$(id -u)" = 0 ] || die "need root to install chromium: sudo apt-get install chromium"
  apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
browser_stamp=tests/browser/node_modules/.package-lock.sha256
want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$browser_stamp" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || die "npm is not installed (Node 18+ is needed for the browser tests)"
  say "installing the browser tests' npm packages (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$browser_stamp"
fi
say "ready: $("$venv/bin/ansible-playbook" --version 2>/dev/null | sed -n 1p), $(terraform version 2>/dev/null | sed -n 1p)"
