"""File permissions of the seed and the attachment directory move, on trees under a temporary root."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from mailmigrate.paths.kopano.attachments_move import AttachmentMove
from mailmigrate.paths.kopano.permissions import Permissions


def _mode(p):
    return p.stat().st_mode & 0o7777


@pytest.fixture
def tree(tmp_path):
    etc = tmp_path / "etc" / "kopano"
    (etc / "ssl").mkdir(parents=True)
    (etc / "server.cfg").write_text("x = 1\n")
    (etc / "ssl" / "server.pem").write_text("key\n")
    (etc / "README").write_text("not a cfg\n")
    for p in (etc, etc / "ssl"):
        os.chmod(p, 0o755)
    for p in (etc / "server.cfg", etc / "ssl" / "server.pem", etc / "README"):
        os.chmod(p, 0o644)
    att = tmp_path / "var" / "lib" / "kopano" / "attachments" / "3" / "4"
    att.mkdir(parents=True)
    (att / "43").write_bytes(b"attachment")
    return tmp_path


def test_modes_planned_then_applied_then_nothing_left(tree):
    p = Permissions(tree, user="no-such-user-mm", group="no-such-group-mm")
    dry = p.plan().run(dry_run=True).render()
    assert f"chmod 640 {tree}/etc/kopano/server.cfg" in dry and f"chmod 750 {tree}/etc/kopano/ssl" in dry
    assert "does not exist here" in dry
    assert _mode(tree / "etc/kopano/server.cfg") == 0o644, "the dry run changed a mode"
    assert p.plan().run(dry_run=False).ok
    assert _mode(tree / "etc/kopano/server.cfg") == 0o640 and _mode(tree / "etc/kopano") == 0o750
    assert _mode(tree / "etc/kopano/ssl") == 0o750 and _mode(tree / "etc/kopano/ssl/server.pem") == 0o640
    assert _mode(tree / "etc/kopano/README") == 0o644  # only *.cfg and ssl files
    assert p.plan().run(dry_run=True).outcomes[0].status == "done"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_ownership_moves_from_old_to_new_user_when_both_exist(tree):
    """'daemon' plays zarafa and 'nobody'/'nogroup' play kopano: real users of any Debian system."""
    new_u, new_g = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
    old = pwd.getpwnam("daemon")
    f = tree / "var/lib/kopano/attachments/3/4/43"
    other = tree / "var/lib/kopano/attachments/3/4"
    os.chown(f, old.pw_uid, old.pw_gid)
    p = Permissions(tree, user="nobody", group="nogroup", old_user="daemon", old_group="daemon")
    assert p.plan().run(dry_run=False).ok
    assert (f.stat().st_uid, f.stat().st_gid) == (new_u.pw_uid, new_g.gr_gid)
    assert other.stat().st_uid == 0, "a file not owned by the old user was re-owned"
    cfg = tree / "etc/kopano/server.cfg"
    assert (cfg.stat().st_uid, cfg.stat().st_gid) == (0, new_g.gr_gid)


@pytest.mark.parametrize("force_copy", [False, True])
def test_attachment_move_rename_or_copy_and_server_cfg(tmp_path, force_copy):
    src = tmp_path / "var/lib/zarafa/attachments"
    files = {f"{i % 10}/{(i // 10) % 20}/{i}": os.urandom(100 + i) for i in range(1, 60, 7)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    dst = tmp_path / "var/lib/kopano/attachments"
    cfg = tmp_path / "server.cfg"
    cfg.write_text("attachment_path = /var/lib/zarafa/attachments\n")
    m = AttachmentMove(src, dst, server_cfg=str(cfg), force_copy=force_copy)
    dry = m.plan().run(dry_run=True).render()
    assert ("copy" if force_copy else "rename") in dry and "attachment_path" in dry
    assert not dst.exists()
    assert m.plan().run(dry_run=False).ok
    assert {str(p.relative_to(dst)): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == files
    assert not any(src.iterdir())
    assert "attachment_path = " + str(dst) in cfg.read_text()
    assert (tmp_path / "server.cfg.mailmigrate-orig").read_text().endswith("zarafa/attachments\n")
    assert all(o.status == "done" for o in m.plan().run(dry_run=False).outcomes)


def test_attachment_copy_resumes_after_interruption(tmp_path):
    """Half the files copied and removed, one copied but not yet removed: the rerun ends with each once."""
    src, dst = tmp_path / "a", tmp_path / "b"
    files = {f"{i}/0/{i}": os.urandom(50) for i in range(6)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    for rel in list(files)[:3]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(files[rel])
        if rel != list(files)[2]:
            (src / rel).unlink()
    assert AttachmentMove(src, dst, force_copy=True).plan().run(dry_run=False).ok
    assert {str(p.relative_to(dst)): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("copy", [False, True])
def test_attachments_move_never_deletes_or_overwrites_a_different_file(tmp_path, copy):
    """Kopano already ran and wrote attachments of its own: a same-named file with the same size but other
    bytes made the move delete the Zarafa file (same size) or overwrite Kopano's (other size)."""
    src, dst = tmp_path / "zarafa" / "attachments", tmp_path / "kopano" / "attachments"
    for d in (src / "1" / "2", dst / "1" / "2"):
        d.mkdir(parents=True)
    (src / "1" / "2" / "21").write_bytes(b"zarafa's attachment")
    (dst / "1" / "2" / "21").write_bytes(b"kopano's attachment")  # same size, other bytes
    (src / "1" / "2" / "31").write_bytes(b"short")
    (dst / "1" / "2" / "31").write_bytes(b"a longer one of Kopano")  # other size
    (src / "1" / "2" / "41").write_bytes(b"identical")
    (dst / "1" / "2" / "41").write_bytes(b"identical")
    (src / "1" / "2" / "51").write_bytes(b"only in zarafa")
    res = AttachmentMove(src, dst, force_copy=copy).plan().run(dry_run=False)
    assert not res.ok
    err = next(o.error for o in res.outcomes if o.status == "failed")
    assert "21" in err and "31" in err and "both kept" in err
    assert (src / "1/2/21").read_bytes() == b"zarafa's attachment" and (dst / "1/2/21").read_bytes() == b"kopano's attachment"
    assert (src / "1/2/31").read_bytes() == b"short" and (dst / "1/2/31").read_bytes() == b"a longer one of Kopano"
    assert not (src / "1/2/41").exists() and (dst / "1/2/41").read_bytes() == b"identical"
    assert (dst / "1/2/51").read_bytes() == b"only in zarafa" and not (src / "1/2/51").exists()


@pytest.fixture
def tmpfs(tmp_path):
    """A small real file system of its own (tmpfs, 400 KiB), unmounted after the test."""
    import subprocess

    mounted = []

    def make(name: str):
        d = tmp_path / name
        d.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(d)]).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)])


def test_attachments_move_checks_free_space_before_copying(tmp_path, tmpfs):
    src, dst = tmp_path / "zarafa", tmpfs("kopano")
    src.mkdir()
    (src / "big").write_bytes(b"x" * (1 << 20))  # 1 MiB into a 400 KiB file system
    (src / "small").write_bytes(b"y")
    res = AttachmentMove(src, dst).plan().run(dry_run=False)
    assert not res.ok and "free" in res.outcomes[0].error
    assert (src / "big").exists() and (src / "small").exists() and not any(dst.iterdir())


def test_a_separately_mounted_attachment_directory_is_re_pointed_not_copied(tmp_path, tmpfs):
    src, dst = tmpfs("zarafa-attachments"), tmp_path / "kopano" / "attachments"
    (src / "1").mkdir()
    (src / "1" / "11").write_bytes(b"attachment")
    dry = AttachmentMove(src, dst).plan().run(dry_run=True).render()
    assert "umount" in dry and "/etc/fstab" in dry
    res = AttachmentMove(src, dst).plan().run(dry_run=False)
    assert not res.ok and "fstab" in res.outcomes[0].error
    assert (src / "1" / "11").read_bytes() == b"attachment" and not dst.exists()
