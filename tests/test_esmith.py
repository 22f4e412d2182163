"""e-smith database files: what SME/NethServer write must read back as their own tools read it, and ours
must read back identically; locking must keep out a concurrent e-smith writer."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats.esmith import EsmithDb, Record, dump_esmith, parse_esmith, read_esmith, write_esmith

SAMPLE = b"""# DO NOT MODIFY THIS FILE.
# updated: Mon Jan  1 00:00:00 2024

admin=user|EmailForward|local|FirstName|Local|LastName|Administrator|PasswordSet|yes
alice=user|EmailForward|both|FirstName|Alice|ForwardAddress|alice@elsewhere.org|LastName|Smith
alice.smith=pseudonym|Account|alice|Visible|internal
staff=group|Description|All staff|Members|alice,bob
SystemName=mail
note=note|Text|first line\\nsecond line|Pipe|a\\|b
"""


def test_reads_records_types_props_and_plain_values():
    db = parse_esmith(SAMPLE)
    assert list(db) == ["admin", "alice", "alice.smith", "staff", "SystemName", "note"]
    assert db["alice"].type == "user"
    assert db["alice"].props["ForwardAddress"] == "alice@elsewhere.org"
    assert db["staff"].props["Members"] == "alice,bob"
    assert db["SystemName"] == Record("mail", {})
    assert db["note"].props["Text"] == "first line\nsecond line"
    assert db["note"].props["Pipe"] == "a\\|b"  # escaped pipe is not a separator, kept as written
    assert [k for k, _ in db.of_type("pseudonym")] == ["alice.smith"]
    assert db.prop("alice.smith", "Account") == "alice"


def test_dump_sorts_escapes_newlines_and_drops_pipes():
    db = EsmithDb(b=Record("user", {"Z": "1", "A": "x|y", "M": "two\nlines"}), a=Record("plain"))
    text = dump_esmith(db).decode()
    body = [l for l in text.splitlines() if not l.startswith("#")]
    assert body == ["a=plain", "b=user|A|xy|M|two\\nlines|Z|1"]
    assert parse_esmith(dump_esmith(db))["b"].props == {"A": "xy", "M": "two\nlines", "Z": "1"}


def test_trailing_backslash_cannot_eat_the_separator():
    db = EsmithDb(k=Record("t", {"a": "ends\\", "b": "v"}))
    assert parse_esmith(dump_esmith(db))["k"].props == {"a": "ends", "b": "v"}


def test_errors_name_file_and_line():
    with pytest.raises(FormatError) as e:
        parse_esmith(b"ok=user\nbroken line\n", path="/db/accounts")
    assert e.value.path == "/db/accounts" and e.value.line == 2
    assert "/db/accounts, line 2" in str(e.value)


def test_unwritable_key_is_refused():
    with pytest.raises(ValueError):
        dump_esmith({"a=b": Record("x")})


def test_latin1_bytes_survive_a_read_write_cycle(tmp_path):
    raw = b"bob=user|FirstName|J\xf6rg|LastName|M\xfcller\n"
    p = tmp_path / "accounts"
    p.write_bytes(raw)
    write_esmith(p, read_esmith(p))
    assert b"J\xf6rg" in p.read_bytes() and parse_esmith(p.read_bytes()) == parse_esmith(raw)


def test_write_is_atomic_keeps_mode_and_reads_back(tmp_path):
    p = tmp_path / "accounts"
    p.write_bytes(SAMPLE)
    os.chmod(p, 0o600)
    db = read_esmith(p)
    db["carol"] = Record("user", {"FirstName": "Carol"})
    write_esmith(p, db)
    assert (p.stat().st_mode & 0o777) == 0o600
    again = read_esmith(p)
    assert again == db
    assert [f for f in os.listdir(tmp_path) if f not in ("accounts", "accounts.lock")] == []


def test_missing_file_reads_as_empty(tmp_path):
    assert read_esmith(tmp_path / "nothing") == {}


def test_writer_waits_for_a_reader_holding_the_lock(tmp_path):
    """An e-smith tool holding the shared lock must finish reading before we replace the file."""
    p = tmp_path / "accounts"
    p.write_bytes(SAMPLE)
    fd = os.open(str(p) + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    done = threading.Event()

    def writer():
        write_esmith(p, EsmithDb(x=Record("y")))
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    assert not done.is_set() and p.read_bytes() == SAMPLE
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    t.join(5)
    assert done.is_set() and list(read_esmith(p)) == ["x"]


# -- fuzz -------------------------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_bytes_never_crash(data):
    try:
        db = parse_esmith(data, path="f")
    except FormatError as e:
        assert e.path == "f" and e.line is not None
        return
    # whatever was read can be written and reads back the same (dump's cleaning is idempotent)
    again = parse_esmith(dump_esmith(_writable(db)))
    assert again == parse_esmith(dump_esmith(again))


def _writable(db):
    return EsmithDb({k: v for k, v in db.items() if "=" not in k and not k.lstrip().startswith("#")})


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="|\\\n"), max_size=12)
_key = _text.filter(lambda k: k and "=" not in k and not k.lstrip().startswith("#") and k.strip())
_val = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="|\\"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_key, st.builds(Record, _text, st.dictionaries(_text, _val, max_size=4)), max_size=6))
def test_round_trip(d):
    db = EsmithDb(d)
    assert parse_esmith(dump_esmith(db)) == db


def test_clear_password_lands_in_shadow_as_a_working_sha512_crypt(tmp_path):
    """A clear password written to an SME directory becomes the $6$ string SME's login checks (no crypt module)."""
    from mailmigrate.directory.base import User
    from mailmigrate.directory.esmith import EsmithDirectory
    from mailmigrate.formats import shacrypt
    from mailmigrate.model import Secret

    acc, shadow = tmp_path / "accounts", tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    w = EsmithDirectory(acc, shadow=shadow, domain="example.com")
    w.add(User(login="ann", password=Secret("s3cret pw")))
    w.commit()
    line = next(l for l in shadow.read_text().splitlines() if l.startswith("ann:"))
    h = line.split(":")[1]
    assert h.startswith("$6$") and shacrypt.verify("s3cret pw", h) and not shacrypt.verify("other", h)
