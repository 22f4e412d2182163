"""Configuration takeover /etc/zarafa -> /etc/kopano, both ways of the seed, on the shipped sample tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailmigrate.errors import ConfigError
from mailmigrate.paths.kopano import cfgfile
from mailmigrate.paths.kopano.config import ConfigMigration, translate_path
from mailmigrate.paths.plan import BACKUP_SUFFIX
from samples import zarafa_sample


@pytest.fixture
def sample(tmp_path):
    s = zarafa_sample(tmp_path)
    shutil.copytree(s / "kopano-example-config", tmp_path / "etc" / "kopano")
    return s, tmp_path / "etc" / "kopano"


def _cfg(path: Path) -> dict[str, str]:
    return cfgfile.active(path.read_text())


def test_changed_mode_carries_only_changed_directives_into_kopano_defaults(sample):
    s, kopano = sample
    m = ConfigMigration(s / "etc-zarafa", kopano, mode="changed", zarafa_defaults=s / "zarafa-example-config")
    dry = m.plan().run(dry_run=True)
    assert _cfg(kopano / "server.cfg")["log_level"] == "3", "a dry run changed a file"
    text = dry.render()
    assert "+log_level = 5" in text and "+enable_hosted_kopano = true" in text
    assert "Kj8-not-real" not in text and "secret-not-real" not in text  # passwords masked in the diff

    log = kopano.parent / "takeover.log"
    res = m.plan().run(dry_run=False, log_path=log)
    assert res.ok
    server = _cfg(kopano / "server.cfg")
    assert server["log_level"] == "5" and server["user_plugin"] == "ldap"
    assert server["mysql_password"] == "Kj8-not-real" and server["mysql_user"] == "zarafa"
    assert server["enable_hosted_kopano"] == "true" and "enable_hosted_zarafa" not in server
    # unchanged Zarafa defaults do not override Kopano's new defaults
    assert "server_socket" not in server and "run_as_user" not in server and "pid_file" not in server
    assert "license_socket" not in server  # unknown to Kopano: warned about, not carried
    assert any("license_socket" in ln for o in res.outcomes for ln in o.lines)
    assert _cfg(kopano / "ldap.cfg")["ldap_bind_user"] == "cn=admin,dc=example,dc=com"
    assert (kopano / "ssl" / "server.pem").read_bytes() == (s / "etc-zarafa" / "ssl" / "server.pem").read_bytes()
    # overwritten files keep their first original beside them
    orig = kopano / ("server.cfg" + BACKUP_SUFFIX)
    assert orig.read_text() == (s / "kopano-example-config" / "server.cfg").read_text()
    assert "Kj8-not-real" not in log.read_text()

    snapshot = {p: p.read_bytes() for p in kopano.rglob("*") if p.is_file()}
    again = m.plan().run(dry_run=False, log_path=log)
    assert [o.status for o in again.outcomes] == ["done"]
    assert {p: p.read_bytes() for p in kopano.rglob("*") if p.is_file()} == snapshot
    assert orig.read_text() == (s / "kopano-example-config" / "server.cfg").read_text()


def test_changed_mode_without_zarafa_defaults_compares_against_kopano(sample):
    s, kopano = sample
    m = ConfigMigration(s / "etc-zarafa", kopano, mode="changed")
    t = m.compute()
    server = cfgfile.active(t.desired["server.cfg"].data.decode())
    assert server["log_level"] == "5"
    # translated Zarafa default equals Kopano's: nothing to carry
    assert server.get("attachment_path") == "/var/lib/kopano/attachments"
    assert any("--zarafa-defaults" in n for n in t.notes)


def test_copy_mode_keeps_kopano_orig_and_fixes_up(sample):
    s, kopano = sample
    extra = kopano / "only-in-kopano.cfg"
    extra.write_text("foo = 1\n")
    m = ConfigMigration(s / "etc-zarafa", kopano, mode="copy")
    res = m.plan().run(dry_run=False, log_path=kopano.parent / "log")
    assert res.ok, res.render()
    orig = kopano.parent / "kopano-orig"
    assert (orig / "only-in-kopano.cfg").exists() and not extra.exists()
    assert (orig / "server.cfg").read_text() == (s / "kopano-example-config" / "server.cfg").read_text()
    server = _cfg(kopano / "server.cfg")
    assert server["enable_hosted_kopano"] == "true" and server["enable_distributed_kopano"] == "false"
    assert not {"enable_hosted_zarafa", "enable_distributed_zarafa"} & set(server)
    assert server["server_socket"] == "file:///var/run/kopano/server.sock"
    assert server["server_pipe_priority"] == "/var/run/kopano/prio.sock"
    assert server["pid_file"] == "/var/run/kopano/server.pid"
    assert server["log_file"] == "/var/log/kopano/server.log"
    assert server["attachment_path"] == "/var/lib/kopano/attachments"
    # the database keeps its name (issue 17: kopano-server would create an empty "kopano" database)
    assert server["mysql_database"] == "zarafa" and server["run_as_user"] == "kopano"
    assert server["server_ssl_key_file"] == "/etc/kopano/ssl/server.pem"
    assert os.readlink(kopano / "webapp") == "/usr/share/kopano-webapp"
    assert _cfg(kopano / "ldap.cfg")["ldap_hardquota_attribute"] == "kopanoQuotaHard"
    warnings = "\n".join(ln for o in res.outcomes for ln in o.lines)
    assert "server_bind" in warnings and "license_socket" in warnings
    assert (kopano / "server.cfg").stat().st_mode & 0o777 == 0o640

    # rerun: nothing left to do, kopano-orig untouched
    again = m.plan().run(dry_run=True)
    assert [o.status for o in again.outcomes] == ["done", "done"]


def test_copy_mode_can_keep_the_zarafa_ldap_schema(sample):
    s, kopano = sample
    m = ConfigMigration(s / "etc-zarafa", kopano, mode="copy", ldap_schema="zarafa")
    m.plan().run(dry_run=False)
    ldap = _cfg(kopano / "ldap.cfg")
    assert ldap["ldap_hardquota_attribute"] == "zarafaQuotaHard"
    assert ldap["ldap_user_search_filter"] == "(objectClass=zarafa-user)"


def test_changed_mode_with_zarafa_schema_points_kopano_defaults_at_zarafa_attributes(sample):
    s, kopano = sample
    m = ConfigMigration(s / "etc-zarafa", kopano, zarafa_defaults=s / "zarafa-example-config",
                        ldap_schema="zarafa")
    m.plan().run(dry_run=False)
    assert _cfg(kopano / "ldap.cfg")["ldap_sendas_attribute"] == "zarafaSendAsPrivilege"


@pytest.mark.parametrize("old,new", [
    ("file:///var/run/zarafa", "file:///var/run/kopano/server.sock"),
    ("/var/run/zarafad/server.sock", "/var/run/kopano/server.sock"),
    ("/var/run/zarafa-server.sock", "/var/run/kopano/server.sock"),
    ("file:///var/run/zarafa-search", "file:///var/run/kopano/search.sock"),
    ("/var/run/zarafa-spooler.pid", "/var/run/kopano/spooler.pid"),
    ("/var/lib/zarafa/attachments", "/var/lib/kopano/attachments"),
    ("/var/lib/zarafa-other", "/var/lib/zarafa-other"),
    ("/usr/share/zarafa-webapp", "/usr/share/kopano-webapp"),
])
def test_path_rewrites(old, new):
    assert translate_path(old) == new


def test_set_directive_is_idempotent_and_keeps_layout():
    text = "# head\n#log_level = 3\nfoo\t=  bar   # not a comment\n"
    once = cfgfile.set_directive(text, "log_level", "6")
    assert once == "# head\n#log_level = 3\nlog_level = 6\nfoo\t=  bar   # not a comment\n"
    assert cfgfile.set_directive(once, "log_level", "6") == once
    assert cfgfile.set_directive(once, "new_one", "x").endswith("new_one = x\n")


def test_missing_zarafa_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        ConfigMigration(tmp_path / "nope", tmp_path / "kopano")
