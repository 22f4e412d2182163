"""Hostile input: each malformed message and hostile folder name either arrives byte-exact or is reported
with its reason, and nothing else is affected.  Plus fuzzing of the local-format parsers."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats import maildir as mdfmt
from mailmigrate.formats import mbox as mbfmt
from mailmigrate.formats import mutf7
from servers import imapcheck
from test_sync_imap import env_for, mm, populate, snapshot

MALFORMED = {
    "bare LF": b"Subject: bare\n\nonly LF line ends\n",
    "NUL bytes": b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    "8-bit headers": b"Subject: \xe4\xf6\xfc \xff\r\nFrom: \xc3\xa9@x\r\n\r\nbody\r\n",
    "line over 100 KB": b"Subject: long\r\n\r\n" + b"y" * 150_000 + b"\r\n",
    "broken MIME": b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\n--other\r\nno end\r\n",
    "no headers": b"just a body, no header block at all\r\n",
    "0 bytes": b"",
    "CR only": b"Subject: cr\rno LF at all\r",
}

FOLDERS = ["sep/inside", "back\\slash", "amp&er", "日本語のフォルダ", "x" * 200, "CaseFold", "casefold", "tab\there"]


def test_malformed_messages_copy_exactly_or_are_reported(imap_accounts, tmp_path):
    src, dst = imap_accounts
    c = imapcheck.connect(src.port, src.user, src.password)
    accepted = {}
    for name, data in MALFORMED.items():
        typ, resp = c.append("INBOX", None, None, data) if data else ("NO", [b"empty"])
        if typ == "OK":
            accepted[name] = data
    c.logout()
    assert len(accepted) >= 5  # Dovecot takes most of them as they are
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json", env=env_for(src, dst),
           check=False)
    s = json.loads(p.stdout)
    have = snapshot(src)["INBOX"]
    got = snapshot(dst)["INBOX"]
    problems = s["accounts"][0]["problems"]
    # every message either arrived exactly or is listed with a reason; none arrived changed
    assert s["copied"] + s["failed"] == sum(have.values())
    assert sum(got.values()) == s["copied"]
    for key in got:
        assert key in have
    for prob in problems:
        assert prob["folder"] == "INBOX" and prob["message"] and prob["reason"]


def test_hostile_folder_names(imap_accounts, tmp_path):
    src, dst = imap_accounts
    c = imapcheck.connect(src.port, src.user, src.password)
    made = []
    for f in FOLDERS:
        typ, _ = c.create(imapcheck._q(mutf7.encode(f)))
        if typ == "OK":
            made.append(f)
            imapcheck.append(c, mutf7.encode(f), f"Subject: in {f}\r\n\r\nx\r\n".encode(), "\\Seen")
    c.logout()
    assert "CaseFold" in made and "casefold" in made and "back\\slash" in made
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json", env=env_for(src, dst),
           check=False)
    s = json.loads(p.stdout)
    target = snapshot(dst)
    source = snapshot(src)
    failed_folders = {pr["folder"] for pr in s["accounts"][0]["problems"]}
    for f in made:
        if f in failed_folders:
            continue
        assert target.get(f) == source[f], f"folder {f!r} differs"
    assert len(failed_folders) + sum(1 for f in made if target.get(f) == source[f]) == len(made)


def test_maildir_target_refuses_nothing_silently(imap_accounts, tmp_path):
    """Into a Maildir, a "." in a name stays one folder (escaped), never a new level."""
    src, _ = imap_accounts
    populate(src, {"a.b": [(b"Subject: d\r\n\r\nd\r\n", "")], "a": [(b"Subject: e\r\n\r\ne\r\n", "")]})
    out = tmp_path / "Maildir"
    s = json.loads(mm("sync", src.url(), f"maildir:{out}", "--state", tmp_path / "s.db", "--json",
                      env={"MAILMIGRATE_SOURCE_PASSWORD": src.password}).stdout)
    assert s["copied"] == 2
    folders = {mdfmt.dirname_to_folder(d.name) for d in out.iterdir() if d.name.startswith(".")}
    assert folders == {("a.b",), ("a",)}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_mbox_scan(data):
    entries = list(mbfmt.scan(io.BytesIO(data)))
    for e in entries:
        assert 0 <= e.offset <= len(data) and e.length >= 0 and e.offset + e.length <= len(data)
        mbfmt.read_message(io.BytesIO(data), e).finish()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200).filter(lambda b: b"\n" not in b), max_size=5))
def test_mbox_write_read_round_trip(bodies):
    data = b"".join(mbfmt.write_message(b + b"\n") for b in bodies)
    got = [mbfmt.read_message(io.BytesIO(data), e).finish().read() for e in mbfmt.scan(io.BytesIO(data))]
    assert got == [b + b"\n" for b in bodies]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_maildir_names(name):
    try:
        n = mdfmt.parse_name(name)
    except FormatError:
        return
    assert n.unique and ":" not in n.unique


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4))
def test_maildir_folder_names_round_trip(path):
    path = tuple(path)
    if path[0].upper() == "INBOX" or any("\u2024" in c or "\u2215" in c for c in path):
        return
    assert mdfmt.dirname_to_folder(mdfmt.folder_to_dirname(path)) == path


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_mutf7_round_trip_and_fuzz(name):
    assert mutf7.decode(mutf7.encode(name)) == name
    try:
        mutf7.decode(name)
    except FormatError:
        pass
