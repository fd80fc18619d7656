#!/bin/bash
# Warms a warm pool's desktop for its user's first login, before anyone
# claims it. One XFCE session of a throwaway local login, started through
# xrdp's own session manager (xrdp-sesrun) as a user's is:
#   - loads what a first login reads from disk (Xorg, GTK, XFCE, fonts,
#     icons) into the page cache;
#   - writes XFCE's first-run configuration (the panel's, xfconf's), which
#     becomes /etc/skel's, so that the user's first login starts as a second
#     one does (unless /etc/skel already has an XFCE configuration).
# The session, the login and its home are removed at the end, whatever
# happens. Under emulation this takes 20-40 s and saves the user about
# 8 s of a 19 s first login (BENCHMARKS.md).
#
#   warm-first-login.sh [SECONDS]   the longest wait for the session (120)
#
# Prints what it did; exits 1 with the reason when it could not warm (the
# desktop works as well without: only its first login is slower).
set -euo pipefail

WARM_USER=daas-warmup
# Its account's comment: an account of that name without it is not ours.
WARM_COMMENT="DaaS first-login warm-up"
WAIT=${1:-120}
# What XFCE writes at a first login that /etc/skel takes (not caches, not
# the session's state).
SKEL_DIRS=(.config/xfce4 .config/Thunar)
# The processes of a session that is up: the desktop and the panel's plugins.
UP_PROCESSES=(xfdesktop xfce4-panel)

[[ $WAIT =~ ^[0-9]+$ ]] || { echo "warm-first-login: SECONDS must be a number, not '$WAIT'" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "warm-first-login: must run as root" >&2; exit 2; }
command -v xrdp-sesrun >/dev/null || { echo "warm-first-login: no xrdp-sesrun (xrdp is not installed)" >&2; exit 1; }

say() { echo "warm-first-login: $*"; }

# Asks logind to end the throwaway login's session; waits up to 20 s for
# its processes to go.
end_session() {
  loginctl terminate-user "$WARM_USER" 2>/dev/null || true
  for _ in $(seq 20); do
    pgrep -u "$WARM_USER" >/dev/null || break
    sleep 1
  done
}

# Ends the throwaway session and removes its login (also what a run cut
# before its end left).
remove_login() {
  local entry
  entry=$(getent passwd "$WARM_USER") || return 0
  if [[ $(cut -d: -f5 <<<"$entry") != "$WARM_COMMENT" ]]; then
    echo "warm-first-login: a login named $WARM_USER exists and is not the warm-up's: left alone, not warmed" >&2
    exit 1
  fi
  end_session
  pkill -KILL -u "$WARM_USER" 2>/dev/null || true
  sleep 1
  # What its session left in the shared temporary folders (dbus-launch's).
  find /tmp /var/tmp -xdev -user "$WARM_USER" -delete 2>/dev/null || true
  userdel --remove "$WARM_USER" 2>/dev/null || userdel --force --remove "$WARM_USER"
}
remove_login
trap remove_login EXIT

t0=$SECONDS
useradd --system --create-home --shell /bin/bash --comment "$WARM_COMMENT" "$WARM_USER"
home=$(getent passwd "$WARM_USER" | cut -d: -f6)
# A random password it is never told again, given on pipes (no argument,
# no file).
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
# (chpasswd's warning about a password outside the dictionary is not shown.)
printf '%s:%s\n' "$WARM_USER" "$password" | chpasswd 2>/dev/null ||
  { echo "warm-first-login: chpasswd could not set the throwaway login's password" >&2; exit 1; }
# These are the options of Debian 12's xrdp-sesrun (xrdp 0.9.21): one that
# takes other arguments fails here, and the desktop is not warmed.
out=$(timeout 60 xrdp-sesrun -F 3 -g 1280x800 -b 32 -t Xorg "$WARM_USER" 3< <(printf '%s\n' "$password") 2>&1) || {
  echo "warm-first-login: xrdp-sesrun failed (exit $?): $(tail -n 3 <<<"$out")" >&2
  exit 1
}
unset password

up() {
  local p
  for p in "${UP_PROCESSES[@]}"; do pgrep -u "$WARM_USER" -x "$p" >/dev/null || return 1; done
  # The panel's plugins (each its own process) and xfconf's files: written
  # a few seconds after the panel has loaded its first-run configuration.
  pgrep -u "$WARM_USER" -f '^/usr/lib/.*/xfce4/panel/wrapper' >/dev/null &&
    [[ -s $home/.config/xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml ]]
}
until up; do
  if ((SECONDS - t0 >= WAIT)); then
    echo "warm-first-login: the session was not up after $WAIT s (running: $(pgrep -u "$WARM_USER" -d, -l || true))" >&2
    exit 1
  fi
  sleep 1
done
say "a session of $WARM_USER was up in $((SECONDS - t0)) s"
# Let xfconf write what the session changed, then end it: its daemon saves
# at exit as well.
sleep 3
end_session

# The panel's directory menu names the home it was made in: without the
# setting it opens the user's own. The desktop's icon positions are not kept.
stage=$(mktemp -d)
trap 'rm -rf "$stage"; remove_login' EXIT
for d in "${SKEL_DIRS[@]}"; do
  if [[ -e /etc/skel/$d ]]; then
    say "/etc/skel/$d exists: kept"
    continue
  fi
  [[ -d $home/$d ]] || continue
  mkdir -p "$stage/$d"
  cp -a "$home/$d/." "$stage/$d/"
  rm -rf "$stage/$d/desktop"
  find "$stage/$d" -name xfce4-panel.xml -exec \
    sed -i "\\|<property name=\"base-directory\" type=\"string\" value=\"$home\"/>|d" {} +
  # Nothing of the throwaway login may reach a user: no file naming it.
  if named=$(grep -rlsF -e "$WARM_USER" -e "$home" "$stage/$d"); then
    say "$d names $WARM_USER ($(tr '\n' ' ' <<<"$named")): not copied to /etc/skel"
    continue
  fi
  chown -R root:root "$stage/$d"
  chmod -R go-w "$stage/$d"
  mkdir -p "/etc/skel/$(dirname "$d")"
  mv -T "$stage/$d" "/etc/skel/$d"
  say "XFCE's first-run $d copied to /etc/skel"
done
say "warmed in $((SECONDS - t0)) s"
