"""Issue 19: copied mail is private.  A Maildir target written by mailmigrate holds files 0600 and
directories 0700 whatever the umask (before: 0644/0755, readable by every local user); a root the
administrator made group-shared (0770) keeps that convention for the group, as Dovecot does, never for
others."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from test_sync_local import write_msg

T0 = 1_600_000_000


def _modes(root):
    files, dirs = set(), set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirs.add(stat.S_IMODE(os.lstat(dirpath).st_mode))
        files.update(stat.S_IMODE(os.lstat(os.path.join(dirpath, f)).st_mode) for f in filenames)
    return files, dirs


def _sync(src, dst, state):
    # umask 022 as in a login shell: what open() and mkdir() would give is 0644/0755.
    code = ("import os, sys; os.umask(0o022); from mailmigrate.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "sync", f"maildir:{src}", f"maildir:{dst}", "--state",
                        str(state)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def _source(tmp_path):
    src = tmp_path / "src"
    write_msg(src, f"{T0}.M1.host", b"Subject: a\r\n\r\na\r\n", "S", T0)
    write_msg(src / ".Work", f"{T0}.W1.host", b"Subject: w\r\n\r\nw\r\n", "", T0)
    (src / "subscriptions").write_text("Work\n")
    return src


def test_a_new_maildir_target_is_private(tmp_path):
    src = _source(tmp_path)
    dst = tmp_path / "dst"
    _sync(src, dst, tmp_path / "s.db")
    files, dirs = _modes(dst)
    assert files == {0o600} and dirs == {0o700}
    assert len(list(dst.rglob("cur/*"))) == 2


def test_a_group_shared_root_keeps_its_group_never_others(tmp_path):
    src = _source(tmp_path)
    dst = tmp_path / "dst"
    dst.mkdir()
    os.chmod(dst, 0o775)
    _sync(src, dst, tmp_path / "s.db")
    files, dirs = _modes(dst)
    assert files == {0o660} and dirs - {0o775} == {0o770}
