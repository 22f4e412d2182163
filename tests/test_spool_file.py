"""A large body spills to a temporary file that has no name: nothing is left behind on the disk whatever
happens to the run, and the file is where the administrator's TMPDIR says (a /tmp too small for a large
message is a known trouble on appliances).  Opened with O_TMPFILE, as the tempfile module would, without
that module's 3-4 ms at the first large message of every run; tempfile still where that fails."""

from __future__ import annotations

import os

from mailmigrate.model import BodyWriter, spool_file


def _where(f) -> str:
    return os.readlink(f"/proc/self/fd/{f.fileno()}")


def test_a_spilled_body_has_no_name_and_sits_in_tmpdir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    w = BodyWriter(threshold=10)
    data = b"Subject: big\r\n\r\n" + b"x" * 5000
    for i in range(0, len(data), 1000):
        w.write(data[i:i + 1000])
    body = w.finish()
    try:
        f = body.file
        assert f is not None and os.fstat(f.fileno()).st_nlink == 0
        assert _where(f).startswith(str(tmp_path))
        assert list(tmp_path.iterdir()) == []
        assert body.read() == data and body.size == len(data)
    finally:
        body.close()


def test_a_tmpdir_that_is_not_there_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    f = spool_file()
    try:
        f.write(b"abc")
        f.seek(0)
        assert f.read() == b"abc" and os.fstat(f.fileno()).st_nlink == 0
        assert not _where(f).startswith(str(tmp_path))
    finally:
        f.close()
