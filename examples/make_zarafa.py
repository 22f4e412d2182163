"""Generate examples/zarafa/: a Zarafa installation's configuration and directory, as mailmigrate meets them.

* ``etc-zarafa/``: an administrator's /etc/zarafa: Zarafa's defaults with some directives changed
  (database credentials, LDAP plugin, hosted mode, attachments in files, a log level), an obsolete one,
  TLS files under ``ssl/`` and the ``webapp`` link to /usr/share/zarafa-webapp.
* ``zarafa-example-config/``: Zarafa's shipped defaults (what "changed" is measured against).
* ``kopano-example-config/``: Kopano's shipped defaults, which a fresh /etc/kopano holds.
* ``kopano-example-config-new/``: a later Kopano release's server.cfg with new options (upgrade check).
* ``slapcat.ldif``: a slapcat export of a Zarafa-schema directory (users, a contact, groups, a company,
  a server, an address list, a dynamic group), with slapcat's operational attributes.

The files are short, written for mailmigrate, and only as long as the tests need: they are not copies of
the real shipped files.  Run ``python examples/make_zarafa.py`` to regenerate; tests call :func:`build`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

ZARAFA_SERVER = """\
# Zarafa server settings
server_bind = 0.0.0.0
server_tcp_port = 236
server_socket = file:///var/run/zarafa
server_pipe_priority = /var/run/zarafa-prio
run_as_user = zarafa
run_as_group = zarafa
pid_file = /var/run/zarafa-server.pid
log_method = file
log_file = /var/log/zarafa/server.log
log_level = 3
mysql_host = localhost
mysql_port = 3306
mysql_user = root
mysql_password =
mysql_database = zarafa
attachment_storage = database
attachment_path = /var/lib/zarafa/attachments
attachment_compression = 6
user_plugin = db
user_plugin_config = /etc/zarafa/ldap.cfg
enable_hosted_zarafa = false
enable_distributed_zarafa = false
license_socket = /var/run/zarafa-licensed
server_ssl_key_file = /etc/zarafa/ssl/server.pem
server_ssl_ca_file = /etc/zarafa/ssl/cacert.pem
"""

ZARAFA_LDAP = """\
# Zarafa LDAP user plugin
ldap_uri = ldap://localhost:389/
ldap_bind_user =
ldap_bind_passwd =
ldap_search_base = dc=example,dc=com
ldap_user_unique_attribute = uid
ldap_quotaoverride_attribute = zarafaQuotaOverride
ldap_hardquota_attribute = zarafaQuotaHard
ldap_sendas_attribute = zarafaSendAsPrivilege
ldap_user_search_filter = (objectClass=zarafa-user)
"""

ZARAFA_GATEWAY = """\
server_socket = file:///var/run/zarafa
pid_file = /var/run/zarafa-gateway.pid
run_as_user = zarafa
imap_enable = yes
log_file = /var/log/zarafa/gateway.log
"""

ZARAFA_LICENSED = """\
server_socket = file:///var/run/zarafa
license_path = /etc/zarafa/license
"""

KOPANO_SERVER = """\
# Kopano server settings
server_listen = *:236
#server_socket = /var/run/kopano/server.sock
#server_pipe_priority = /var/run/kopano/prio.sock
#run_as_user = kopano
#run_as_group = kopano
#pid_file = /var/run/kopano/server.pid
log_method = file
log_file = /var/log/kopano/server.log
log_level = 3
mysql_host = localhost
mysql_port = 3306
mysql_user = root
mysql_password =
mysql_database = kopano
attachment_storage = files
attachment_path = /var/lib/kopano/attachments
attachment_compression = 6
user_plugin = db
user_plugin_config = /etc/kopano/ldap.cfg
#enable_hosted_kopano = false
#enable_distributed_kopano = false
server_ssl_key_file = /etc/kopano/ssl/server.pem
server_ssl_ca_file = /etc/kopano/ssl/cacert.pem
"""

KOPANO_LDAP = """\
# Kopano LDAP user plugin
ldap_uri = ldap://localhost:389/
ldap_bind_user =
ldap_bind_passwd =
ldap_search_base = dc=example,dc=com
ldap_user_unique_attribute = uid
ldap_quotaoverride_attribute = kopanoQuotaOverride
ldap_hardquota_attribute = kopanoQuotaHard
ldap_sendas_attribute = kopanoSendAsPrivilege
ldap_user_search_filter = (objectClass=kopano-user)
"""

KOPANO_GATEWAY = """\
#server_socket = /var/run/kopano/server.sock
#pid_file = /var/run/kopano/gateway.pid
#run_as_user = kopano
imap_enable = no
log_file = /var/log/kopano/gateway.log
"""

KOPANO_SERVER_NEW = KOPANO_SERVER + """\
#shared_reminders = yes
#statsclient_url = unix:/var/run/kopano/statsd.sock
#kcoidc_issuer_identifier =
"""

# What the administrator changed on the Zarafa machine.
CHANGES = {
    "server.cfg": {
        "mysql_user": "zarafa", "mysql_password": "Kj8-not-real", "mysql_database": "zarafa",
        "attachment_storage": "files", "user_plugin": "ldap", "enable_hosted_zarafa": "true",
        "log_level": "5", "license_socket": "/var/run/zarafa-licensed.sock",
    },
    "ldap.cfg": {"ldap_search_base": "dc=example,dc=com", "ldap_bind_user": "cn=admin,dc=example,dc=com",
                 "ldap_bind_passwd": "secret-not-real"},
    "gateway.cfg": {"imap_enable": "no"},
}


def _set(text: str, name: str, value: str) -> str:
    out = []
    for line in text.splitlines():
        if line.split("=", 1)[0].strip() == name:
            line = f"{name} = {value}"
        out.append(line)
    return "\n".join(out) + "\n"


LDIF = """\
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: example
o: Example
structuralObjectClass: organization
entryUUID: 4c1a3e60-0001-1000-8000-000000000001
creatorsName: cn=admin,dc=example,dc=com
createTimestamp: 20190102030405Z
entryCSN: 20190102030405.000001Z#000000#000#000000
modifiersName: cn=admin,dc=example,dc=com
modifyTimestamp: 20190102030405Z

dn: ou=People,dc=example,dc=com
objectClass: organizationalUnit
ou: People
structuralObjectClass: organizationalUnit
entryUUID: 4c1a3e60-0001-1000-8000-000000000002

dn: ou=Groups,dc=example,dc=com
objectClass: organizationalUnit
ou: Groups
structuralObjectClass: organizationalUnit
entryUUID: 4c1a3e60-0001-1000-8000-000000000003

dn: uid=ann,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: zarafa-user
uid: ann
cn: Ann Example
sn: Example
mail: ann@example.com
zarafaAccount: 1
zarafaAdmin: 1
zarafaQuotaOverride: 1
zarafaQuotaHard: 2048
zarafaAliases: a.example@example.com
zarafaEnabledFeatures: imap
zarafaSendAsPrivilege: bob
structuralObjectClass: inetOrgPerson
entryUUID: 4c1a3e60-0001-1000-8000-000000000004

dn: uid=bob,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: zarafa-user
uid: bob
cn:: Qm9iIE3DvGxsZXI=
sn:: TcO8bGxlcg==
mail: bob@example.com
zarafaAccount: 1
zarafaSharedStoreOnly: 0
zarafaDisabledFeatures: pop3
structuralObjectClass: inetOrgPerson
entryUUID: 4c1a3e60-0001-1000-8000-000000000005

dn: cn=Carol Contact,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: zarafa-contact
cn: Carol Contact
sn: Contact
mail: carol@partner.example.org
uidNumber: 5001
zarafaAccount: 1
zarafaHidden: 0
structuralObjectClass: inetOrgPerson
entryUUID: 4c1a3e60-0001-1000-8000-000000000006

dn: cn=staff,ou=Groups,dc=example,dc=com
objectClass: posixGroup
objectClass: zarafa-group
cn: staff
gidNumber: 2000
memberUid: ann
memberUid: bob
mail: staff@example.com
zarafaAccount: 1
zarafaSecurityGroup: 1
structuralObjectClass: posixGroup
entryUUID: 4c1a3e60-0001-1000-8000-000000000007

dn: ou=Acme,dc=example,dc=com
objectClass: organizationalUnit
objectClass: zarafa-company
ou: Acme
zarafaAccount: 1
zarafaQuotaOverride: 1
zarafaQuotaWarn: 10000
zarafaViewPrivilege: Acme
structuralObjectClass: organizationalUnit
entryUUID: 4c1a3e60-0001-1000-8000-000000000008

dn: uid=dave,ou=Acme,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: zarafa-user
uid: dave
cn: Dave Acme
sn: Acme
mail: dave@acme.example
zarafaAccount: 1
structuralObjectClass: inetOrgPerson
entryUUID: 4c1a3e60-0001-1000-8000-000000000009

dn: cn=mail1,dc=example,dc=com
objectClass: device
objectClass: zarafa-server
cn: mail1
zarafaAccount: 1
zarafaFilePath: file:///var/run/zarafa
zarafaHttpPort: 236
zarafaSslPort: 237
zarafaContainsPublic: 1
structuralObjectClass: device
entryUUID: 4c1a3e60-0001-1000-8000-00000000000a

dn: cn=mail2,dc=example,dc=com
objectClass: device
objectClass: zarafa-server
cn: mail2
zarafaAccount: 1
zarafaFilePath: /var/run/zarafad/server.sock
zarafaHttpPort: 236
structuralObjectClass: device
entryUUID: 4c1a3e60-0001-1000-8000-00000000000b

dn: cn=Sales list,dc=example,dc=com
objectClass: zarafa-addresslist
cn: Sales list
zarafaAccount: 1
zarafaFilter: (mail=*@example.com)
zarafaBase: ou=People,dc=example,dc=com
structuralObjectClass: zarafa-addresslist
entryUUID: 4c1a3e60-0001-1000-8000-00000000000c

dn: cn=Everyone dyn,dc=example,dc=com
objectClass: zarafa-dynamicgroup
cn: Everyone dyn
mail: everyone@example.com
zarafaAccount: 1
zarafaFilter: (objectClass=zarafa-user)
structuralObjectClass: zarafa-dynamicgroup
entryUUID: 4c1a3e60-0001-1000-8000-00000000000d

"""


def build(dest: Path) -> Path:
    """Write the sample tree into ``dest`` (created; existing contents replaced) and return it."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    defaults = {"server.cfg": ZARAFA_SERVER, "ldap.cfg": ZARAFA_LDAP, "gateway.cfg": ZARAFA_GATEWAY,
                "licensed.cfg": ZARAFA_LICENSED}
    zd = dest / "zarafa-example-config"
    zd.mkdir(parents=True)
    for name, text in defaults.items():
        (zd / name).write_text(text)
    etc = dest / "etc-zarafa"
    (etc / "ssl").mkdir(parents=True)
    for name, text in defaults.items():
        for k, v in CHANGES.get(name, {}).items():
            text = _set(text, k, v)
        (etc / name).write_text(text)
        os.chmod(etc / name, 0o640)
    (etc / "ssl" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
    (etc / "ssl" / "cacert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a real cert\n-----END CERTIFICATE-----\n")
    os.symlink("/usr/share/zarafa-webapp", etc / "webapp")
    kd = dest / "kopano-example-config"
    kd.mkdir()
    for name, text in {"server.cfg": KOPANO_SERVER, "ldap.cfg": KOPANO_LDAP, "gateway.cfg": KOPANO_GATEWAY}.items():
        (kd / name).write_text(text)
    kn = dest / "kopano-example-config-new"
    kn.mkdir()
    (kn / "server.cfg").write_text(KOPANO_SERVER_NEW)
    (dest / "slapcat.ldif").write_text(LDIF)
    return dest


if __name__ == "__main__":
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "zarafa")
    print(f"wrote {out}")
