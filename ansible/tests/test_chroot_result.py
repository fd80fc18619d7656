"""What deploy-desktop.yml left in the chroot of chroot-roles.sh.

Run by chroot-roles.sh after the first run, with DAAS_CHROOT (the root),
DAAS_AGENT_BINARY_USED (the binary the role copied) and
DAAS_SESSION_PASSWORD (the session user's password) in the environment.
"""

import hashlib
import os
import re
import stat
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

ROOT = Path(os.environ.get("DAAS_CHROOT", "/nonexistent"))

pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason="DAAS_CHROOT is not set (run chroot-roles.sh)")


def path(p):
    return ROOT / p.lstrip("/")


def text(p):
    return path(p).read_text()


def mode(p):
    return stat.S_IMODE(path(p).lstat().st_mode)


def owner(p):
    st = path(p).lstat()
    return st.st_uid, st.st_gid


def installed_packages():
    status = text("/var/lib/dpkg/status")
    found = set()
    for entry in status.split("\n\n"):
        name = re.search(r"^Package: (\S+)$", entry, re.M)
        state = re.search(r"^Status: (.+)$", entry, re.M)
        if name and state and state.group(1) == "install ok installed":
            found.add(name.group(1))
    return found


def group_members(group):
    for line in text("/etc/group").splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return fields[3].split(",") if fields[3] else []
    raise AssertionError(f"no group {group}")


def ini_section(content, section):
    match = re.search(rf"^\[{re.escape(section)}\]\n(.*?)(?=^\[|\Z)", content, re.M | re.S)
    assert match, f"no [{section}] section"
    return match.group(1)


# ---- desktop-config ----


@pytest.mark.parametrize(
    "package",
    ["xfce4", "xfce4-session", "xfce4-terminal", "dbus-x11", "xrdp", "xorgxrdp", "libpam-mount", "cifs-utils", "keyutils"],
)
def test_desktop_packages_are_installed(package):
    assert package in installed_packages()


def test_recommended_packages_are_left_out():
    # xfce4 recommends xfce4-goodies' neighbours such as xorg and desktop-base.
    assert "desktop-base" not in installed_packages()


def test_xrdp_may_read_its_tls_key():
    assert "xrdp" in group_members("ssl-cert")


def test_xrdp_serves_the_certificate_the_server_made():
    want = Path(os.environ["DAAS_RDP_CERT"]).read_text()
    assert text("/etc/xrdp/daas-cert.pem").strip() == want.strip()
    assert mode("/etc/xrdp/daas-cert.pem") == 0o644
    assert "PRIVATE KEY" in text("/etc/xrdp/daas-key.pem")
    assert mode("/etc/xrdp/daas-key.pem") == 0o640
    xrdp_gid = next(int(l.split(":")[2]) for l in text("/etc/group").splitlines() if l.startswith("xrdp:"))
    assert owner("/etc/xrdp/daas-key.pem") == (0, xrdp_gid)
    globals_ = ini_section(text("/etc/xrdp/xrdp.ini"), "Globals")
    assert re.search(r"^certificate=/etc/xrdp/daas-cert.pem$", globals_, re.M)
    assert re.search(r"^key_file=/etc/xrdp/daas-key.pem$", globals_, re.M)


def test_new_homes_start_xfce():
    assert text("/etc/skel/.xsession") == "xfce4-session\n"
    assert mode("/etc/skel/.xsession") == 0o644


def test_colord_polkit_rule():
    rule = "/etc/polkit-1/rules.d/45-allow-colord.rules"
    assert "org.freedesktop.color-manager." in text(rule)
    assert "polkit.Result.YES" in text(rule)
    assert mode(rule) == 0o644


def test_xrdp_port_and_keepalive_in_globals_only():
    ini = text("/etc/xrdp/xrdp.ini")
    globals_ = ini_section(ini, "Globals")
    assert re.search(r"^port=3389$", globals_, re.M)
    assert re.search(r"^tcp_keepalive=true$", globals_, re.M)
    assert re.search(r"^port=-1$", ini_section(ini, "Xorg"), re.M), "the [Xorg] port must be left alone"


def test_the_templates_clipboard_policy_is_in_xrdp():
    # daas_clipboard "to-desktop": nothing copied in the desktop leaves it.
    security = ini_section(text("/etc/xrdp/sesman.ini"), "Security")
    assert re.findall(r"^Restrict\w+Clipboard=.*$", security, re.M) == [
        "RestrictOutboundClipboard=all",
        "RestrictInboundClipboard=none",
    ]
    assert re.findall(r"^cliprdr=.*$", text("/etc/xrdp/xrdp.ini"), re.M) == ["cliprdr=true"]


def test_pam_mount_mounts_the_users_share_with_kerberos():
    conf = "/etc/security/pam_mount.conf.xml"
    assert mode(conf) == 0o644
    tree = ET.fromstring(text(conf))
    volumes = tree.findall("volume")
    assert len(volumes) == 1
    volume = volumes[0].attrib
    assert volume["fstype"] == "cifs"
    assert volume["server"] == "fs01.ad.example.org"
    assert volume["path"] == "homes/%(USER)"
    assert volume["mountpoint"] == "~/H"
    assert volume["uid"] == "10000-4294967294"
    options = volume["options"].split(",")
    assert "sec=krb5" in options and "cruid=%(USERUID)" in options
    assert "nosuid" in options and "nodev" in options
    assert tree.find("mkmountpoint").attrib == {"enable": "1", "remove": "true"}


def pam_modules(service):
    modules = []
    for line in text(f"/etc/pam.d/{service}").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found = re.search(r"(pam_\w+\.so)", line)
            if found:
                modules.append(found.group(1))
    return modules


def test_pam_session_order_homes_then_sssd_then_mounts():
    session = pam_modules("common-session")
    for module in ("pam_mkhomedir.so", "pam_sss.so", "pam_mount.so"):
        assert module in session, session
    assert session.index("pam_mkhomedir.so") < session.index("pam_mount.so"), session
    assert "pam_mount.so" in pam_modules("common-auth")


def test_session_user_has_a_hashed_password():
    user = next(line.split(":") for line in text("/etc/passwd").splitlines() if line.startswith("bob:"))
    assert user[5] == "/home/bob" and user[6] == "/bin/bash"
    assert int(user[2]) >= 1000
    assert path("/home/bob/.xsession").is_file(), "the home was not made from /etc/skel"
    shadow = next(line.split(":") for line in text("/etc/shadow").splitlines() if line.startswith("bob:"))
    assert shadow[1].startswith("$6$"), "not a SHA-512 crypt hash"
    password = os.environ.get("DAAS_SESSION_PASSWORD")
    if password:
        assert sha512_crypt.verify(password, shadow[1])
        assert password not in text("/etc/shadow").replace(shadow[1], "")


# ---- ad-join (prepared, not joined) ----


@pytest.mark.parametrize("package", ["sssd", "libpam-sss", "libnss-sss", "adcli", "krb5-user"])
def test_ad_packages_are_installed(package):
    assert package in installed_packages()


def test_sssd_configuration():
    conf = "/etc/sssd/sssd.conf"
    assert mode(conf) == 0o600 and owner(conf) == (0, 0)
    domain = ini_section(text(conf), "domain/ad.daas-test.invalid")
    settings = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in domain.splitlines() if "=" in line and not line.startswith("#"))
    )
    assert settings["use_fully_qualified_names"] == "False"
    assert settings["fallback_homedir"] == "/home/%u"
    assert settings["access_provider"] == "ad"
    assert settings["ad_gpo_map_remote_interactive"] == "+xrdp-sesman"
    assert settings["ad_access_filter"] == (
        "DOM:ad.daas-test.invalid:"
        "(|(sAMAccountName=alice)(memberOf:1.2.840.113556.1.4.1941:=CN=DaaS Admins,OU=Groups,DC=ad,DC=example,DC=org))"
    )
    assert settings["krb5_realm"] == "AD.DAAS-TEST.INVALID"


def test_resolver_uses_the_domains_dns_servers():
    resolv = text("/etc/resolv.conf")
    assert "search ad.daas-test.invalid" in resolv
    servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert servers, resolv
    dhclient = text("/etc/dhcp/dhclient.conf")
    assert f"supersede domain-name-servers {', '.join(servers)};" in dhclient
    assert 'supersede domain-search "ad.daas-test.invalid";' in dhclient


def test_kerberos_configuration():
    assert "default_realm = AD.DAAS-TEST.INVALID" in text("/etc/krb5.conf")


# ---- vm-agent ----


def test_agent_binary():
    binary = "/usr/local/bin/daas-agent"
    assert mode(binary) == 0o755 and owner(binary) == (0, 0)
    used = os.environ.get("DAAS_AGENT_BINARY_USED")
    if used:
        digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
        assert digest(path(binary)) == digest(used)


@pytest.mark.parametrize(
    "file, expected_mode",
    [
        ("/etc/daas", 0o755),
        ("/etc/daas/agent.toml", 0o600),
        ("/etc/daas/ca.pem", 0o644),
        ("/etc/daas/agent.pem", 0o644),
        ("/etc/daas/agent-key.pem", 0o600),
    ],
)
def test_agent_files_and_modes(file, expected_mode):
    assert mode(file) == expected_mode
    assert owner(file) == (0, 0)


def test_agent_credential_contents():
    assert text("/etc/daas/ca.pem").startswith("-----BEGIN CERTIFICATE-----")
    assert text("/etc/daas/agent.pem").startswith("-----BEGIN CERTIFICATE-----")
    assert re.match(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text("/etc/daas/agent-key.pem"))


def test_agent_config_holds_the_keys_the_agent_reads():
    config = tomllib.loads(text("/etc/daas/agent.toml"))
    assert config == {
        "endpoint": "https://10.0.2.2:50051",
        "session_id": "6f1c7a9e-2b3d-4c5e-8f70-1a2b3c4d5e6f",
        "ca": "/etc/daas/ca.pem",
        "cert": "/etc/daas/agent.pem",
        "key": "/etc/daas/agent-key.pem",
        "tls_server_name": "localhost",
        "xrdp_port": 3389,
    }


def test_agent_unit():
    unit = "/etc/systemd/system/daas-agent.service"
    assert mode(unit) == 0o644
    content = text(unit)
    for line in (
        "ExecStart=/usr/local/bin/daas-agent --config /etc/daas/agent.toml",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "WantedBy=multi-user.target",
    ):
        assert re.search(rf"^{re.escape(line)}$", content, re.M), line


@pytest.mark.parametrize("unit", ["daas-agent.service", "xrdp.service", "sssd.service"])
def test_services_are_enabled(unit):
    assert path(f"/etc/systemd/system/multi-user.target.wants/{unit}").is_symlink(), unit
