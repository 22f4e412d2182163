"""Store URLs and accounts files: the command line's contract, and where passwords may come from."""

import os

import pytest

from mailmigrate.errors import ConfigError
from mailmigrate.model import Secret
from mailmigrate.stores.registry import StoreOptions, build_store, parse_spec
from mailmigrate.sync.accounts import load_accounts_file, parse_accounts_csv, read_password_file


def test_imap_urls():
    s = parse_spec("imap://alice@example.org")
    assert (s.kind, s.host, s.port, s.user, s.tls) == ("imap", "example.org", 143, "alice", "starttls")
    s = parse_spec("imaps://bob%40dom.tld@[::1]:1993")
    assert (s.host, s.port, s.user, s.tls) == ("::1", 1993, "bob@dom.tld", "implicit")
    s = parse_spec("imap://u@h:10143?tls=none&master=star")
    assert s.tls == "none" and s.params["master"] == "star"
    s = parse_spec("imap://carol@dom.tld@mail.dom.tld")
    assert s.user == "carol@dom.tld" and s.host == "mail.dom.tld"


@pytest.mark.parametrize("bad", [
    "imap://u:secret@h", "imap://u@h?tls=ssl3", "imap://u@h:port", "ftp://x", "maildir:", "imap://u@h?foo=1",
    "imaps://u@h?tls=none",
])
def test_bad_urls_are_config_errors(bad):
    with pytest.raises(ConfigError):
        parse_spec(bad)


def test_password_in_url_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as e:
        parse_spec("imap://u:hunter22@h")
    assert "hunter22" not in str(e.value)


def test_plaintext_only_to_loopback():
    spec = parse_spec("imap://u@mail.example.org?tls=none")
    with pytest.raises(ConfigError, match="unencrypted"):
        build_store(spec, user=None, password=Secret("x"), options=StoreOptions(), side="source")


def test_path_templates(tmp_path):
    s = parse_spec(f"maildir:{tmp_path}/%d/%n/Maildir")
    assert s.resolved_path("ann@example.org") == f"{tmp_path}/example.org/ann/Maildir"
    with pytest.raises(ConfigError):
        s.resolved_path(None)


def test_accounts_csv():
    accs = parse_accounts_csv("source_user,target_user\n# comment\nann,anna\nbob\n\ncy,cy2,sp,tp\n")
    assert [(a.source_user, a.target_user) for a in accs] == [("ann", "anna"), ("bob", "bob"), ("cy", "cy2")]
    assert accs[2].source_password.reveal() == "sp" and "sp" not in repr(accs[2])
    with pytest.raises(ConfigError, match="line 2"):
        parse_accounts_csv("a,b\na,b\n")
    with pytest.raises(ConfigError, match="no accounts"):
        parse_accounts_csv("# nothing\n")


def test_accounts_file_with_passwords_must_be_private(tmp_path):
    p = tmp_path / "acc.csv"
    p.write_text("ann,ann,pw1,pw2\n")
    os.chmod(p, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_accounts_file(p)
    os.chmod(p, 0o600)
    assert load_accounts_file(p)[0].target_password.reveal() == "pw2"


def test_password_file(tmp_path):
    p = tmp_path / "pw"
    p.write_text("s3cret\n")
    os.chmod(p, 0o600)
    assert read_password_file(p, "source").reveal() == "s3cret"
    os.chmod(p, 0o640)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_password_file(p, "source")
