"""The file copies of the NethServer paths (homes, sieve scripts, ACL files): what they leave on the target,
what a large unchanged file costs, and that a copy is on disk before it is reported."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

from mailmigrate.paths.nethserver import mailboxes
from mailmigrate.paths.nethserver.mailboxes import copy_file, copy_tree

MB = 1 << 20


def _big(path: Path, size: int, last: bytes = b"x") -> None:
    block = bytes(range(256)) * (MB // 256)
    with open(path, "wb") as f:
        for _ in range(size // MB - 1):
            f.write(block)
        f.write(block[:-1] + last)


def test_an_unchanged_big_file_is_compared_without_reading_it_whole(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    _big(src, 30 * MB)
    _big(dst, 30 * MB)
    os.utime(dst, ns=(1_000_000_000, 1_000_000_000))
    tracemalloc.start()
    try:
        copied = copy_file(src, dst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert copied is False
    assert dst.stat().st_mtime_ns == 1_000_000_000  # left alone
    assert peak < 4 * MB, f"comparing two 30 MB files took {peak / MB:.1f} MB"
    # same size, one byte different at the very end: still copied
    _big(dst, 30 * MB, last=b"y")
    assert copy_file(src, dst) is True
    assert dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime_ns == src.stat().st_mtime_ns


def test_a_tree_copy_keeps_content_mtime_mode_and_links_and_a_rerun_copies_nothing(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "Mail" / "deep").mkdir(parents=True)
    files = {src / "notes.txt": (b"hello\n", 0o640), src / "Mail" / "deep" / "m1": (b"x" * 5000, 0o600),
             src / "Mail" / "script.sieve": (b"keep;\n", 0o644)}
    for i, (p, (data, mode)) in enumerate(files.items()):
        p.write_bytes(data)
        p.chmod(mode)
        os.utime(p, ns=(1_500_000_000_123_456_789 + i, 1_500_000_000_123_456_789 + i))
    os.symlink("Mail/script.sieve", src / ".dovecot.sieve")
    (dst / "Mail").mkdir(parents=True)
    (dst / "Mail" / "script.sieve").write_bytes(b"stale;\n")  # same size as the source's, other bytes

    assert copy_tree(src, dst) == 3
    for p, (data, mode) in files.items():
        q = dst / p.relative_to(src)
        assert q.read_bytes() == data
        assert q.stat().st_mtime_ns == p.stat().st_mtime_ns
        assert q.stat().st_mode & 0o7777 == mode
    assert os.readlink(dst / ".dovecot.sieve") == "Mail/script.sieve"
    assert not [p for p in dst.rglob("*") if "mailmigrate-tmp" in p.name]
    assert copy_tree(src, dst) == 0


def test_copies_are_synced_before_they_replace_the_target_and_each_directory_once(tmp_path, monkeypatch):
    """A power loss after the step reported its copies must not lose them: each file's data is synced
    under its temporary name (before the rename publishes it), and each directory that got new entries
    is synced once, however many files it got."""
    src, dst = tmp_path / "src", tmp_path / "home" / "u"
    for d in ("a", "a/b", "c"):
        (src / d).mkdir(parents=True)
        for i in range(5):
            (src / d / f"f{i}").write_bytes(b"mail %d\n" % i)
    (src / "unchanged").write_bytes(b"same\n")
    dst.mkdir(parents=True)
    (dst / "unchanged").write_bytes(b"same\n")
    synced: list[tuple[str, bool]] = []
    real = os.fsync

    def spy(fd):
        p = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((p, os.path.isdir(p)))
        return real(fd)

    monkeypatch.setattr(mailboxes.os, "fsync", spy)
    assert copy_tree(src, dst) == 15
    files = [p for p, isdir in synced if not isdir]
    dirs = [p for p, isdir in synced if isdir]
    expected = {str(dst / d / f".f{i}.mailmigrate-tmp") for d in ("a", "a/b", "c") for i in range(5)}
    assert sorted(files) == sorted(expected)
    # a, a/b and c got files; dst got the new a and c; a got the new b.  dst's parent got nothing.
    assert sorted(dirs) == sorted(str(dst / d) for d in ("a", "a/b", "c", "."))
    synced.clear()
    assert copy_tree(src, dst) == 0
    assert synced == []

    # a single file copied on its own syncs its directory itself
    (src / "a" / "f0").write_bytes(b"changed\n")
    assert copy_file(src / "a" / "f0", dst / "a" / "f0") is True
    assert [p for p, _ in synced] == [str(dst / "a" / ".f0.mailmigrate-tmp"), str(dst / "a")]
