"""credentials.py: where a password may come from, the one redaction filter, the one writer of 0600 files."""

from __future__ import annotations

import logging
import os
import stat
import sys

import pytest

from mailmigrate import credentials
from mailmigrate.credentials import (SECRETS, Secret, SecretFilter, check_private, choose_password, open_private,
                                     password_from, read_password_file, write_private)
from mailmigrate.errors import ConfigError


def _mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_a_password_file_wins_over_the_environment_and_the_environment_over_nothing(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("from-the-file\n")
    f.chmod(0o600)
    monkeypatch.setenv("MM_TEST_PW", "from-the-env")
    assert password_from("MM_TEST_PW", f, "source").reveal() == "from-the-file"
    assert password_from("MM_TEST_PW", None, "source").reveal() == "from-the-env"
    monkeypatch.setenv("MM_TEST_PW", "")
    assert password_from("MM_TEST_PW", None, "source") is None
    monkeypatch.delenv("MM_TEST_PW")
    assert password_from("MM_TEST_PW", None, "source") is None


def test_a_password_file_others_can_read_is_refused_and_says_how_to_fix_it(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    f.chmod(0o640)
    with pytest.raises(ConfigError) as e:
        read_password_file(f, "target")
    assert "readable by other users (mode 0640)" in str(e.value) and f"chmod 600 {f}" in str(e.value)
    assert "s3cret" not in str(e.value)
    with pytest.raises(ConfigError, match="No such file"):
        check_private(tmp_path / "missing", "OAuth token file")
    f.write_text("\n")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        read_password_file(f, "target")


def test_every_password_read_is_redacted_on_a_handler_with_the_filter(tmp_path, monkeypatch):
    """The point of one filter: a password read anywhere through credentials is known to every channel."""
    f = tmp_path / "pw"
    f.write_text("file-pw-7Hq\n")
    f.chmod(0o600)
    monkeypatch.setenv("MM_TEST_PW", "env-pw-9Zx")
    read_password_file(f, "source")
    password_from("MM_TEST_PW", None, "target")
    out = tmp_path / "log"
    handler = logging.FileHandler(out, encoding="utf-8")
    handler.addFilter(SECRETS)
    logger = logging.getLogger("mailmigrate.test_credentials")
    logger.addHandler(handler)
    try:
        logger.warning("logged in with %s and %s", "file-pw-7Hq", "env-pw-9Zx")
        try:
            raise RuntimeError("server said: bad password env-pw-9Zx")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = out.read_text()
    assert "file-pw-7Hq" not in text and "env-pw-9Zx" not in text
    assert "logged in with *** and ***" in text and "bad password ***" in text


def test_the_filter_replaces_a_longer_password_whole_and_leaves_short_values():
    f = SecretFilter()
    f.add(Secret("abc"))
    f.add(Secret("abcdef"))
    f.add(Secret("xy"))  # too short to replace without making every log unreadable
    f.add(None)
    rec = logging.LogRecord("mailmigrate", logging.INFO, __file__, 1, "pw %s, short %s", ("abcdef", "xy"), None)
    assert f.filter(rec) is True
    assert rec.getMessage() == "pw ***, short xy"


def test_choose_password_applies_the_master_rule():
    run, own = Secret("run"), Secret("own")
    assert choose_password(run, own, None) == (own, None)  # no master: the account's own first
    assert choose_password(run, None, None) == (run, None)
    assert choose_password(run, own, "admin") == (run, "admin")  # the master's password, through the master
    # an accounts-file password in a run without a master password: the account logs in as itself
    assert choose_password(None, own, "admin") == (own, None)
    assert choose_password(None, None, "admin") == (None, "admin")


def test_secret_lives_in_credentials_and_hides_itself():
    from mailmigrate.model import Secret as ModelSecret

    assert ModelSecret is Secret
    s = Secret("hunter22")
    assert "hunter22" not in repr(s) + str(s) + f"{s}"


def test_write_private_is_0600_from_the_first_byte_even_with_an_open_umask(tmp_path):
    p = tmp_path / "f.pass"
    old = os.umask(0)
    try:
        write_private(p, "a\tpw\n")
    finally:
        os.umask(old)
    assert _mode(p) == 0o600 and p.read_text() == "a\tpw\n"
    write_private(p, b"b\tpw2\n", append=True)
    assert p.read_text() == "a\tpw\nb\tpw2\n"
    write_private(p, "c\n")
    assert p.read_text() == "c\n"
    with pytest.raises(FileExistsError):
        write_private(p, "d\n", exclusive=True)
    assert p.read_text() == "c\n"


def test_write_private_narrows_a_file_others_could_read_before_writing(tmp_path):
    p = tmp_path / "tokens"
    p.write_text("old\n")
    p.chmod(0o644)
    fd = open_private(p, append=True)
    try:
        assert _mode(p) == 0o600
        os.write(fd, b"secret\n")
    finally:
        os.close(fd)
    assert p.read_text() == "old\nsecret\n"


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="O_NOFOLLOW")
def test_write_private_refuses_a_planted_symbolic_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "out.pass"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        write_private(link, "pw\n")
    assert victim.read_text() == "keep\n"


def test_the_module_sits_at_the_bottom(tmp_path):
    """Importing credentials pulls in no store, sync or interface module (it is below them all)."""
    import subprocess

    code = ("import sys, mailmigrate.credentials; "
            "print(sorted(m for m in sys.modules if m.startswith('mailmigrate.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(credentials.__file__))})
    assert eval(out.stdout) == ["mailmigrate.credentials", "mailmigrate.errors"]
