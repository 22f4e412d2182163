"""The configuration takeover on trees shaped like the real files (issue 17): Zarafa 7.2's shipped
installer/linux/server.cfg and ldap.openldap.cfg (vorlon/zarafa-debian) with an administrator's usual edits,
into Kopano 8.5+ (RELNOTES 8.5.0: /etc/kopano is no longer prepopulated) and into a Kopano whose ldap.cfg
includes /usr/share/kopano/ldap.openldap.cfg (Kopano-dev/kopano-core, installer/linux/ldap.cfg, 8.7.9).
Each line below is written from those files' directives and defaults, not copied from them."""

from __future__ import annotations

from pathlib import Path

from mailmigrate.paths.kopano import cfgfile
from mailmigrate.paths.kopano.config import ConfigMigration

# Zarafa 7.2 installer/linux/server.cfg: server_bind 0.0.0.0 (line 7), server_tcp_enabled yes (10),
# server_tcp_port 236 (13), server_pipe_name /var/run/zarafa (19), run_as_user/run_as_group empty (49, 52),
# license_socket /var/run/zarafa-licensed (69), mysql_database zarafa (128), attachment_path (134),
# server_ssl_enabled no / server_ssl_port 237 (144, 147), user_plugin db / user_plugin_config (300, 303).
ZARAFA_SERVER_DEFAULT = """\
# SERVER SETTINGS
server_bind\t\t= 0.0.0.0
server_tcp_enabled\t= yes
server_tcp_port\t\t= 236
server_pipe_enabled\t= yes
server_pipe_name\t= /var/run/zarafa
server_pipe_priority\t= /var/run/zarafa-prio
run_as_user\t\t= \nrun_as_group\t\t= \nlicense_socket\t\t= /var/run/zarafa-licensed
mysql_host\t\t= localhost
mysql_user\t\t= root
mysql_password\t\t= \nmysql_database\t\t= zarafa
attachment_storage\t= files
attachment_path\t\t= /var/lib/zarafa/attachments
server_ssl_enabled\t= no
server_ssl_port\t\t= 237
user_plugin\t\t= db
user_plugin_config\t= /etc/zarafa/ldap.cfg
"""
# the administrator's edits: LDAP, TLS on, a database password, hosted mode
ZARAFA_SERVER = ZARAFA_SERVER_DEFAULT.replace("user_plugin\t\t= db", "user_plugin\t\t= ldap") \
    .replace("server_ssl_enabled\t= no", "server_ssl_enabled\t= yes") \
    .replace("mysql_user\t\t= root", "mysql_user\t\t= zarafa") \
    .replace("mysql_password\t\t= \n", "mysql_password\t\t= Kj8-not-real\n") + "enable_hosted_zarafa = true\n"

# Zarafa 7.2 installer/linux/ldap.openldap.cfg: ldap_host localhost (9), ldap_port 389 (14), ldap_protocol
# ldap (20), ldap_uri empty (26), ldap_bind_user (38), ldap_search_base (60), !propmap (200).
ZARAFA_LDAP_DEFAULT = """\
ldap_host = localhost
ldap_port = 389
ldap_protocol = ldap
ldap_uri =
ldap_bind_user = cn=admin,cn=users,dc=zarafa,dc=com
ldap_bind_passwd =
ldap_search_base = dc=zarafa,dc=com
ldap_user_unique_attribute = uidNumber
!propmap /etc/zarafa/ldap.propmap.cfg
"""
ZARAFA_LDAP = ZARAFA_LDAP_DEFAULT.replace("ldap_host = localhost", "ldap_host = ldap1.example.org ldap2.example.org") \
    .replace("cn=admin,cn=users,dc=zarafa,dc=com", "cn=admin,dc=example,dc=org") \
    .replace("ldap_bind_passwd =", "ldap_bind_passwd = Lp9-not-real") \
    .replace("dc=zarafa,dc=com", "dc=example,dc=org")


def zarafa_tree(tmp: Path) -> tuple[Path, Path]:
    etc, defaults = tmp / "etc" / "zarafa", tmp / "zarafa-example-config"
    for d, server, ldap in ((etc, ZARAFA_SERVER, ZARAFA_LDAP), (defaults, ZARAFA_SERVER_DEFAULT, ZARAFA_LDAP_DEFAULT)):
        d.mkdir(parents=True)
        (d / "server.cfg").write_text(server)
        (d / "ldap.cfg").write_text(ldap)
    return etc, defaults


def as_kopano_reads(root: Path, rel: str) -> dict[str, str]:
    """A .cfg as kopano-server's parser reads it: !include followed (relative to ``root``), last one wins."""
    out: dict[str, str] = {}
    for line in (root / rel.lstrip("/")).read_text().splitlines():
        s = line.strip()
        if s.startswith("!include"):
            out.update(as_kopano_reads(root, s[len("!include"):].strip()))
        elif s.startswith("!propmap"):
            out["!propmap"] = s[len("!propmap"):].strip()
        else:
            out.update(cfgfile.active(line))
    return out


def test_kopano_8_5_with_an_empty_etc_kopano_gets_a_complete_working_configuration(tmp_path):
    """Kopano >= 8.5 ships no /etc/kopano files: the takeover used to carry nothing (14 warnings, exit 0)
    and kopano-server would start with user_plugin = db and root without a password."""
    etc, defaults = zarafa_tree(tmp_path)
    kopano = tmp_path / "etc" / "kopano"
    kopano.mkdir()
    res = ConfigMigration(etc, kopano, mode="changed", zarafa_defaults=defaults).plan().run(dry_run=False)
    assert res.ok
    server = as_kopano_reads(tmp_path, "etc/kopano/server.cfg")
    assert server["user_plugin"] == "ldap" and server["user_plugin_config"] == "/etc/kopano/ldap.cfg"
    assert server["mysql_password"] == "Kj8-not-real" and server["mysql_user"] == "zarafa"
    assert server["mysql_database"] == "zarafa"  # the database's own name: never an empty new one
    assert server["run_as_user"] == server["run_as_group"] == "kopano"  # ZCP's empty value meant root
    assert server["enable_hosted_kopano"] == "true"
    # 8.5 replaced the listener directives: what they said is kept in the new ones
    assert server["server_listen"] == "*:236" and server["server_listen_tls"] == "*:237"
    for gone in ("server_bind", "server_tcp_port", "server_tcp_enabled", "server_ssl_enabled", "server_ssl_port"):
        assert gone not in server
    ldap = as_kopano_reads(tmp_path, "etc/kopano/ldap.cfg")
    assert ldap["ldap_uri"] == "ldap://ldap1.example.org:389 ldap://ldap2.example.org:389"
    assert ldap["ldap_bind_user"] == "cn=admin,dc=example,dc=org" and ldap["ldap_search_base"] == "dc=example,dc=org"
    assert ldap["!propmap"] == "/etc/kopano/ldap.propmap.cfg"  # Kopano's propmap, not Zarafa's
    for f in ("server.cfg", "ldap.cfg"):
        assert "/zarafa" not in "\n".join(line for line in (kopano / f).read_text().splitlines()
                                          if not line.lstrip().startswith("#"))


def test_an_included_file_makes_directives_known_and_the_database_name_is_kept(tmp_path):
    """Kopano's ldap.cfg begins with !include /usr/share/kopano/ldap.openldap.cfg: names documented there are
    known, so the administrator's search base and bind user are carried, not dropped as unknown."""
    etc, defaults = zarafa_tree(tmp_path)
    kopano = tmp_path / "etc" / "kopano"
    kopano.mkdir()
    # Kopano 8.7.9 installer/linux/ldap.cfg: line 9 includes the OpenLDAP file; ldap_uri empty (16)
    (kopano / "ldap.cfg").write_text("!include /usr/share/kopano/ldap.openldap.cfg\nldap_uri =\n"
                                     "#!propmap /etc/kopano/ldap.propmap.cfg\n")
    # Kopano 8.7.9 installer/linux/server.cfg: server_listen = *:236 active (16), run_as commented (59, 62)
    (kopano / "server.cfg").write_text("server_listen = *:236\n#server_listen_tls =\n#run_as_user = kopano\n"
                                       "#run_as_group = kopano\n#mysql_database = kopano\n#user_plugin = db\n"
                                       "#user_plugin_config = /etc/kopano/ldap.cfg\n#mysql_user = root\n"
                                       "#mysql_password =\n#enable_hosted_kopano = false\n")
    share = tmp_path / "root" / "usr" / "share" / "kopano"
    share.mkdir(parents=True)
    (share / "ldap.openldap.cfg").write_text("#ldap_bind_user =\n#ldap_bind_passwd =\n#ldap_search_base =\n"
                                             "ldap_user_unique_attribute = uidNumber\n")
    m = ConfigMigration(etc, kopano, mode="changed", zarafa_defaults=defaults, include_root=tmp_path / "root")
    res = m.plan().run(dry_run=False)
    assert res.ok
    ldap = cfgfile.active((kopano / "ldap.cfg").read_text())
    assert ldap["ldap_search_base"] == "dc=example,dc=org" and ldap["ldap_bind_user"] == "cn=admin,dc=example,dc=org"
    assert ldap["ldap_uri"] == "ldap://ldap1.example.org:389 ldap://ldap2.example.org:389"
    server = cfgfile.active((kopano / "server.cfg").read_text())
    assert server["user_plugin"] == "ldap" and server.get("mysql_database", "zarafa") == "zarafa"
    assert server["server_listen_tls"] == "*:237"
    lines = [ln for o in res.outcomes for ln in o.lines]
    assert any("mysql_database = zarafa is kept" in ln for ln in lines) or "mysql_database" not in server


def test_a_loopback_default_listener_is_not_narrower_than_zarafas(tmp_path):
    """Kopano's last release listens on loopback by default (ECServer.cpp: server_listen "*%lo:236"); a
    Zarafa that listened on 0.0.0.0 keeps listening where it did, and the administrator is told."""
    etc, defaults = zarafa_tree(tmp_path)
    kopano = tmp_path / "etc" / "kopano"
    kopano.mkdir()
    (kopano / "server.cfg").write_text("#server_listen = *%lo:236\n#server_listen_tls =\n#user_plugin = db\n"
                                       "#user_plugin_config = /etc/kopano/ldap.cfg\n")
    res = ConfigMigration(etc, kopano, mode="changed", zarafa_defaults=defaults).plan().run(dry_run=False)
    server = cfgfile.active((kopano / "server.cfg").read_text())
    assert server["server_listen"] == "*:236"
    assert any("listens on loopback only" in ln for o in res.outcomes for ln in o.lines)
