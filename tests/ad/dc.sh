#!/usr/bin/env bash
# A throwaway Samba Active Directory domain controller for the tests and the
# demo (root; Debian 12's samba-ad-dc 4.17):
#
#   tests/ad/dc.sh start     provision and start it (idempotent; ~15 s)
#   tests/ad/dc.sh stop      stop it and remove everything it made
#   tests/ad/dc.sh status    exit 0 when it is running
#   tests/ad/dc.sh env [--export]  the server's settings for it: NAME=value
#                            lines (for `env`), or `export` lines for a shell
#   tests/ad/dc.sh computer NAME   exit 0 when computer account NAME exists
#   tests/ad/dc.sh password USER   the path of USER's password file
#   tests/ad/dc.sh member add|remove USER   USER in daas-users or not
#
# The DC runs in its own network namespace at 10.99.0.1 (a veth pair; the
# host side is 10.99.0.2), so nothing of it listens on the host's addresses.
# QEMU desktops on user networking reach it there through the host.
#
# What it holds (realm DAAS.TEST, domain DAAS, DC dc1.daas.test):
#   - OU=Desktops: where desktops join; the domain's machine account quota
#     is 0, so only delegated accounts can join;
#   - daas-join: may create and delete computer objects in OU=Desktops and
#     set what a join sets on them (the delegation of a real site, see
#     ansible/roles/ad-join/README.md), nothing else;
#   - alice and carol, members of daas-users; bob, member of nothing;
#     carol is also in daas-admins (the portal's administrators), alice in
#     daas-team-leads (tests make it an organisation's administrators);
#   - dave, in daas-users and daas-developers (a group the template catalog
#     names: the portal shows him the templates that are for it); mallory, in no group, whose user principal name
#     is dave@daas.example (an alternative UPN suffix): a portal whose
#     web.ldap.domain is daas.example must not sign her in as dave;
#   - {{'x'~'y'}}, in daas-users: an account name that is Jinja (AD allows
#     braces, quotes and tildes), to show the portal's user name reaches
#     Ansible literally;
#   - daas-portal: the account the portal rechecks users' groups as;
#   - LDAPS with a certificate for dc1.daas.test from a CA of its own
#     ($DAAS_AD_DIR/tls/ca.pem), for the web portal's sign-in;
#   - the share `homes` ([homes]: each user gets their own folder, with a
#     welcome.txt), served by the DC itself.
# Passwords are random, in $DAAS_AD_DIR/passwords/USER (mode 0600).
#
# Environment: DAAS_AD_DIR (/var/tmp/daas-ad), DAAS_AD_NETNS (daas-ad).
set -euo pipefail

DIR=${DAAS_AD_DIR:-/var/tmp/daas-ad}
NETNS=${DAAS_AD_NETNS:-daas-ad}
REALM=DAAS.TEST
DOMAIN=daas.test
WORKGROUP=DAAS
DC_HOST=dc1
DC_IP=10.99.0.1
HOST_IP=10.99.0.2
VETH_HOST=daasad0
VETH_DC=daasad1
BASE_DN=DC=daas,DC=test
OU_DN=OU=Desktops,$BASE_DN
GROUP=daas-users
TEMPLATE_USER="{{'x'~'y'}}"
ALT_UPN_SUFFIX=daas.example
ADMIN_GROUP=daas-admins
DEV_GROUP=daas-developers
LEAD_GROUP=daas-team-leads
TLS_DIR=$DIR/tls
CONF=$DIR/etc/smb.conf
WINBINDD_DIR=/run/samba/winbindd
NETNS_ETC=/etc/netns/$NETNS
# objectClass computer, and the attributes and rights a join writes on it.
COMPUTER_CLASS=bf967a86-0de6-11d0-a285-00aa003049e2

log() { printf 'dc.sh: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

[[ $(id -u) == 0 ]] || die "run as root (network namespace, samba)"

install_samba() {
  local missing=()
  command -v samba >/dev/null || missing+=(samba-ad-dc samba-ad-provision)
  command -v ldbsearch >/dev/null || missing+=(ldb-tools)
  [[ -e /lib/x86_64-linux-gnu/libnss_winbind.so.2 ]] || missing+=(libnss-winbind)
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (services kept stopped)"
  # Debian starts smbd/nmbd on install: a policy-rc.d that refuses keeps
  # them stopped (only this script's DC runs, in its namespace).
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [[ -e $policy ]] && had_policy=1
  if ((!had_policy)); then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
  fi
  local status=0
  { apt-get -o DPkg::Lock::Timeout=300 -qq update &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq -y \
      install --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  ((had_policy)) || rm -f "$policy"
  ((status == 0)) || die "apt-get install ${missing[*]} failed"
}

pid_of_samba() {
  local pid
  pid=$(cat "$DIR/run/samba.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

tcp_open() { (exec 3<>"/dev/tcp/$DC_IP/$1") 2>/dev/null; }

running() {
  pid_of_samba >/dev/null && ip netns list | grep -qw "$NETNS" && tcp_open 389 && tcp_open 88
}

stop() {
  local pid
  if pid=$(pid_of_samba); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if ip netns list | grep -qw "$NETNS"; then
    # Whatever is left in the namespace (samba's children, a stray smbd).
    local pids
    mapfile -t pids < <(ip netns pids "$NETNS" 2>/dev/null || true)
    ((${#pids[@]} == 0)) || kill -9 "${pids[@]}" 2>/dev/null || true
    ip netns delete "$NETNS"
  fi
  ip link delete "$VETH_HOST" 2>/dev/null || true
  # smbd and wbinfo find winbindd only at this compiled-in place.
  rm -rf "$DIR" "$WINBINDD_DIR" "$NETNS_ETC"
  rmdir /etc/netns 2>/dev/null || true
}

random_password() { # letters, digits and symbols: meets AD's complexity rule
  printf 'Daas-%s-9x' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
}

new_password() { # USER
  local f=$DIR/passwords/$1
  (umask 077 && random_password >"$f")
  cat "$f"
}

tool() { samba-tool "$@" -s "$CONF" -H "$DIR/private/sam.ldb"; }

write_conf() {
  mkdir -p "$DIR/etc" "$DIR/log" "$DIR/run" "$DIR/homes"
  cat >"$CONF" <<EOF
# Written by tests/ad/dc.sh: a test DC in network namespace $NETNS.
[global]
	netbios name = ${DC_HOST^^}
	realm = $REALM
	workgroup = $WORKGROUP
	server role = active directory domain controller
	interfaces = $VETH_DC
	bind interfaces only = yes
	private dir = $DIR/private
	binddns dir = $DIR/bind-dns
	lock directory = $DIR
	state directory = $DIR/state
	cache directory = $DIR/cache
	pid directory = $DIR/run
	ncalrpc dir = $DIR/run/ncalrpc
	log file = $DIR/log/samba.log
	logging = file
	# The records of dc1 were written by the provisioning; nothing to update.
	dns update command = /bin/true
	# LDAPS with a certificate that names the DC (Samba's own has no
	# subjectAltName, which TLS clients such as rustls require).
	tls enabled = yes
	tls keyfile = $TLS_DIR/dc-key.pem
	tls certfile = $TLS_DIR/dc.pem
	tls cafile = $TLS_DIR/ca.pem
	idmap_ldb:use rfc2307 = yes
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes

[homes]
	comment = Home folders
	path = $DIR/homes/%U
	browseable = no
	read only = no
	valid users = %S
	create mask = 0600
	directory mask = 0700

[sysvol]
	path = $DIR/state/sysvol
	read only = no

[netlogon]
	path = $DIR/state/sysvol/$DOMAIN/scripts
	read only = no
EOF
}

tls_certificates() { # a CA and the DC's certificate (EC P-256, 2 years)
  mkdir -p "$TLS_DIR"
  local fqdn=$DC_HOST.$DOMAIN
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 730 \
    -subj "/O=DaaS test domain/CN=DaaS test domain CA" -keyout "$TLS_DIR/ca-key.pem" \
    -out "$TLS_DIR/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$fqdn" \
    -keyout "$TLS_DIR/dc-key.pem" -out "$TLS_DIR/dc.csr" 2>/dev/null
  openssl x509 -req -in "$TLS_DIR/dc.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca-key.pem" \
    -CAcreateserial -days 730 -out "$TLS_DIR/dc.pem" \
    -extfile <(printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' "$fqdn") \
    2>/dev/null
  chmod 600 "$TLS_DIR/dc-key.pem" "$TLS_DIR/ca-key.pem"
  rm -f "$TLS_DIR/dc.csr"
}

provision() {
  mkdir -p "$DIR/passwords"
  chmod 711 "$DIR" # the users' folders below are theirs
  chmod 700 "$DIR/passwords"
  local admin_pw
  admin_pw=$(new_password administrator)
  # The provisioning writes its own smb.conf; ours replaces it afterwards.
  samba-tool domain provision --use-rfc2307 --realm="$REALM" --domain="$WORKGROUP" \
    --server-role=dc --dns-backend=SAMBA_INTERNAL --host-name="$DC_HOST" --host-ip="$DC_IP" \
    --adminpass="$admin_pw" --targetdir="$DIR" \
    --option="interfaces=$VETH_DC" --option="bind interfaces only=yes" \
    >"$DIR/log/provision.log" 2>&1 || die "samba-tool domain provision failed: see $DIR/log/provision.log"
  write_conf
  tls_certificates

  # Only delegated accounts may join: no quota of ten joins for every user.
  ldbmodify -H "$DIR/private/sam.ldb" >/dev/null <<EOF
dn: $BASE_DN
changetype: modify
replace: ms-DS-MachineAccountQuota
ms-DS-MachineAccountQuota: 0
EOF
  tool ou create "$OU_DN" --description="DaaS desktops" >/dev/null

  local pw sid
  pw=$(new_password daas-join)
  tool user create daas-join "$pw" --description="Joins DaaS desktops to $OU_DN" >/dev/null
  tool user setexpiry daas-join --noexpiry >/dev/null
  sid=$(ldbsearch -H "$DIR/private/sam.ldb" "(sAMAccountName=daas-join)" objectSid |
    sed -n 's/^objectSid: //p')
  [[ $sid == S-1-5-* ]] || die "no objectSid for daas-join"
  # Create and delete computer objects in the OU; on the computers in it:
  # reset the password, write the account restrictions (userAccountControl),
  # the validated dNSHostName and servicePrincipalName, the operating
  # system attributes and msDS-SupportedEncryptionTypes.
  local sddl="(OA;CI;CCDC;$COMPUTER_CLASS;;$sid)"
  sddl+="(OA;CIIO;CR;00299570-246d-11d0-a768-00aa006e0529;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;WP;4c164200-20c0-11d0-a768-00aa006e0529;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;SW;72e39547-7b18-11d1-adef-00c04fd8d5cd;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;SW;f3a64788-5306-11d1-a9c5-0000f80367c1;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;WP;3e978925-8c01-11d0-afda-00c04fd930c9;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;WP;3e978926-8c01-11d0-afda-00c04fd930c9;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;WP;3e978927-8c01-11d0-afda-00c04fd930c9;$COMPUTER_CLASS;$sid)"
  sddl+="(OA;CIIO;WP;20119867-1d04-4ab7-9371-cfc3d5df0afd;$COMPUTER_CLASS;$sid)"
  tool dsacl set --objectdn="$OU_DN" --sddl="$sddl" >/dev/null

  tool group add "$GROUP" --description="May log in to DaaS desktops" >/dev/null
  local user uid=10001
  for user in alice bob carol; do
    pw=$(new_password "$user")
    tool user create "$user" "$pw" --uid-number="$uid" --gid-number=10000 \
      --login-shell=/bin/bash --unix-home="/home/$user" >/dev/null
    tool user setexpiry "$user" --noexpiry >/dev/null
    # Their share: a folder of their own, owned by their id on the DC.
    install -d -m 0700 -o "$uid" -g 10000 "$DIR/homes/$user"
    printf 'Hello %s: this file is on your share on %s.\n' "$user" "$DC_HOST.$DOMAIN" \
      >"$DIR/homes/$user/welcome.txt"
    chown "$uid:10000" "$DIR/homes/$user/welcome.txt"
    uid=$((uid + 1))
  done
  # The account the portal rechecks signed-in users' groups as.
  tool user create daas-portal "$(new_password daas-portal)" \
    --description="Reads users' groups for the DaaS portal" >/dev/null
  tool user setexpiry daas-portal --noexpiry >/dev/null
  for user in dave mallory "$TEMPLATE_USER"; do
    tool user create "$user" "$(new_password "$user")" >/dev/null
    tool user setexpiry "$user" --noexpiry >/dev/null
  done
  # An alternative UPN suffix (a site's e-mail domain, say).
  ldbmodify -H "$DIR/private/sam.ldb" >/dev/null <<EOF
dn: CN=mallory,CN=Users,$BASE_DN
changetype: modify
replace: userPrincipalName
userPrincipalName: dave@$ALT_UPN_SUFFIX
EOF
  tool group addmembers "$GROUP" alice,carol,dave >/dev/null
  tool group addmembers "$GROUP" "$TEMPLATE_USER" >/dev/null
  tool group add "$ADMIN_GROUP" --description="Administrators of the DaaS portal" >/dev/null
  tool group addmembers "$ADMIN_GROUP" carol >/dev/null
  tool group add "$DEV_GROUP" --description="Developers (templates for them)" >/dev/null
  tool group addmembers "$DEV_GROUP" dave >/dev/null
  tool group add "$LEAD_GROUP" --description="Team leads (an organisation's administrators)" >/dev/null
  tool group addmembers "$LEAD_GROUP" alice >/dev/null
}

network() {
  ip netns add "$NETNS"
  # Files here replace /etc's for what runs in the namespace: smbd finds
  # the domain's users through winbind (for [homes]).
  mkdir -p "$NETNS_ETC"
  sed -E 's/^(passwd|group):.*/\1: files winbind/' /etc/nsswitch.conf >"$NETNS_ETC/nsswitch.conf"
  ip link add "$VETH_HOST" type veth peer name "$VETH_DC" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NETNS" addr add "$DC_IP/30" dev "$VETH_DC"
  ip -n "$NETNS" link set "$VETH_DC" up
  ip -n "$NETNS" link set lo up
}

start() {
  if running; then
    log "already running ($DOMAIN at $DC_IP, $DIR)"
    return 0
  fi
  stop # leftovers of an earlier run
  install_samba
  if [[ -S $WINBINDD_DIR/pipe ]] && pgrep -x winbindd >/dev/null; then
    die "a winbindd already runs on this machine ($WINBINDD_DIR): the test DC needs that place"
  fi
  local t0=$SECONDS
  mkdir -p "$DIR/log"
  network
  provision
  # Not holding the lock (fd 9) for as long as it runs.
  ip netns exec "$NETNS" samba -s "$CONF" -D 9>&- || die "samba did not start: see $DIR/log/"
  local ports=(53 88 389 445 464 636 3268)
  for _ in $(seq 150); do
    local all=1 p
    for p in "${ports[@]}"; do tcp_open "$p" || all=0; done
    ((all)) && break
    pid_of_samba >/dev/null || die "samba exited: see $DIR/log/"
    sleep 0.2
  done
  for p in "${ports[@]}"; do tcp_open "$p" || die "port $p of $DC_IP is not open after 30 s: see $DIR/log/"; done
  log "$DOMAIN up at $DC_IP in $((SECONDS - t0)) s ($DIR)"
}

env_lines() { # [--export]
  running || die "the DC is not running (tests/ad/dc.sh start)"
  if [[ ${1:-} == --export ]]; then
    q() { printf 'export %s=%q\n' "$1" "$2"; }
  else
    q() { printf '%s=%s\n' "$1" "$2"; }
  fi
  q DAAS_SECRETS__AD_JOIN_PASSWORD_FILE "$DIR/passwords/daas-join"
  q DAAS_ANSIBLE__EXTRA_VARS__AD_JOIN_DOMAIN "$DOMAIN"
  q DAAS_ANSIBLE__EXTRA_VARS__AD_JOIN_USER daas-join
  q DAAS_ANSIBLE__EXTRA_VARS__AD_JOIN_COMPUTER_OU "$OU_DN"
  q DAAS_ANSIBLE__EXTRA_VARS__AD_JOIN_DNS_SERVERS "[\"$DC_IP\"]"
  q DAAS_ANSIBLE__EXTRA_VARS__AD_JOIN_ADMIN_GROUP_DNS "[\"CN=$GROUP,CN=Users,$BASE_DN\"]"
  q DAAS_ANSIBLE__EXTRA_VARS__DESKTOP_CONFIG_PAM_MOUNT_VOLUMES \
    "[{server=\"$DC_HOST.$DOMAIN\",path=\"homes\",mountpoint=\"~/H\"}]"
  # The web portal's sign-in (used when web.listen is set).
  q DAAS_WEB__LDAP__URL "ldaps://$DC_HOST.$DOMAIN"
  q DAAS_WEB__LDAP__CONNECT "$DC_IP:636"
  q DAAS_WEB__LDAP__CA_FILE "$TLS_DIR/ca.pem"
  q DAAS_WEB__LDAP__BASE_DN "$BASE_DN"
  q DAAS_WEB__LDAP__DOMAIN "$DOMAIN"
  q DAAS_WEB__ALLOWED_GROUP "$GROUP"
  q DAAS_WEB__ADMIN_GROUP "$ADMIN_GROUP"
  q DAAS_WEB__LDAP__BIND_USER daas-portal
  q DAAS_SECRETS__WEB_LDAP_PASSWORD_FILE "$DIR/passwords/daas-portal"
}

computer() { # NAME
  local name=${1:?computer NAME}
  [[ $name =~ ^[A-Za-z0-9-]{1,15}$ ]] || die "not a computer name: $name"
  ldbsearch -H "$DIR/private/sam.ldb" "(sAMAccountName=$name\$)" dn 2>/dev/null | grep '^dn: '
}

# One start or stop at a time (tests of several processes share the DC).
lock() {
  exec 9>/run/lock/daas-ad-dc.lock
  flock -w 300 9 || die "another tests/ad/dc.sh has held /run/lock/daas-ad-dc.lock for 5 min"
}

case ${1:-} in
  start) lock && start ;;
  stop) lock && stop ;;
  status) running ;;
  env) env_lines "${2:-}" ;;
  computer) computer "${2:-}" ;;
  member) # add|remove USER: in daas-users or not (the portal's recheck test)
    case ${2:-} in
      add) sub=addmembers ;;
      remove) sub=removemembers ;;
      *) die "usage: member add|remove USER" ;;
    esac
    running || die "the DC is not running (tests/ad/dc.sh start)"
    tool group "$sub" "$GROUP" "${3:?member add|remove USER}" >/dev/null ;;
  password)
    f=$DIR/passwords/${2:?password USER}
    [[ -f $f ]] || die "no password for ${2}"
    echo "$f"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
