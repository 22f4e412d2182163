"""A store says how far a refusal reaches (errors.py ``scope``); the engine acts on that and never reads an
IMAP response code itself.  Here: the IMAP store's translation, over the server's own answers."""

from __future__ import annotations

import itertools

import pytest

from mailmigrate.errors import FolderFailed, MailmigrateError, ServerRefused
from mailmigrate.imap.connection import Connection
from mailmigrate.imap.parser import parse_response, split_raw
from mailmigrate.model import AppendItem, Body, Secret
from mailmigrate.stores.imap import ImapStore
from mailmigrate.stores.imap_refusals import scopes_refusals
from mailmigrate.stores.memory import MemoryMailbox, MemoryStore

_users = itertools.count()


def _refusal(line: bytes) -> MailmigrateError:
    (r,) = [parse_response(p) for p in split_raw(line)]
    return Connection("h", 1, tls="none").error_for(r, "COMMAND")


@pytest.mark.parametrize("line,scope", [
    (b"M1 NO [TRYCREATE] Mailbox doesn't exist\r\n", "folder"),
    (b"M1 NO [NONEXISTENT] Unknown mailbox\r\n", "folder"),
    (b"M1 NO [CANNOT] Invalid mailbox name\r\n", "folder"),
    (b"M1 BAD [CLIENTBUG] Invalid arguments\r\n", "folder"),
    (b"M1 NO Mailbox is a \\Noselect name\r\n", "folder"),
    (b"M1 NO [NOPERM] Permission denied\r\n", "account"),
    (b"M1 NO [EXPIRED] Password expired\r\n", "account"),
    (b"M1 NO [OVERQUOTA] Quota exceeded\r\n", "account"),
    (b"M1 NO [TOOBIG] Message too large\r\n", "message"),
])
def test_the_imap_store_gives_each_refusal_its_scope(line, scope):
    """Raised by a method of the store, also mid-stream; a scope the raiser set itself stays."""
    err = _refusal(line)

    @scopes_refusals
    class Refusing(MemoryStore):
        def list_folders(self):
            raise err

        def fetch(self, path, keys):
            yield from ()
            raise err

    s = Refusing(MemoryMailbox())
    with pytest.raises(MailmigrateError) as e:
        s.list_folders()
    assert e.value.scope == scope
    with pytest.raises(MailmigrateError) as e:
        list(s.fetch(("INBOX",), ["1"]))
    assert e.value.scope == scope
    assert ServerRefused("x", code="TRYCREATE", scope="account").scope == "account"


def test_the_connection_alone_does_not_narrow_a_refusal():
    """Only the store knows what it asked for: the protocol layer's refusal stays account-wide."""
    assert _refusal(b"M1 NO [TRYCREATE] Mailbox doesn't exist\r\n").scope == "account"


@pytest.fixture
def dovecot_store(dovecot_pair):
    src, _ = dovecot_pair
    user = f"scopes{next(_users)}"
    src.add_user(user, "pw")
    s = ImapStore("127.0.0.1", src.port, user=user, password=Secret("pw"), tls="none")
    s.open()
    yield s
    s.close()


def test_a_missing_folder_is_the_folders_trouble_on_a_real_server(dovecot_store):
    s = dovecot_store
    with pytest.raises(MailmigrateError) as e:
        s.delete_folder(("Never there",))
    assert isinstance(e.value, ServerRefused) and e.value.scope == "folder"
    with pytest.raises(MailmigrateError) as e:
        s.append(("Never there",), [AppendItem(Body.from_bytes(b"Subject: x\r\n\r\nx\r\n"))])
    assert e.value.code == "TRYCREATE" and e.value.scope == "folder"
    with pytest.raises(FolderFailed) as e:
        s.list_messages(("Never there",))
    assert e.value.scope == "folder"


# --- the engine acts on the scope the store gave, not on a response code -------------------------------------

def _run(tmp_path, error):
    from mailmigrate.sync.engine import SyncOptions, sync_account
    from mailmigrate.sync.state import StateDB

    src, tgt = MemoryMailbox(), MemoryMailbox()
    for folder in ("Alpha", "Beta"):
        for i in range(2):
            src.deliver((folder,), f"Subject: {folder} {i}\r\n\r\nbody\r\n".encode())
    src.faults.fail_fetch(1, error)  # the first message read, in whichever folder comes first
    state = StateDB.open(tmp_path / "state.db")
    try:
        result = sync_account(MemoryStore(src), MemoryStore(tgt), account_name="acc", state=state,
                              options=SyncOptions(connections=1, max_attempts=1, backoff_base=0.0))
    finally:
        state.close()
    copied = {f: len(tgt.folders[(f,)].messages) for f in ("Alpha", "Beta") if (f,) in tgt.folders}
    return result, copied


def test_a_refusal_the_store_scoped_to_its_folder_costs_that_folder_only(tmp_path):
    """NOPERM with the folder's scope: before, the engine read the code and stopped the whole account."""
    result, copied = _run(tmp_path, lambda: ServerRefused("not yours", code="NOPERM", scope="folder"))
    assert result.error is None and result.counters.failed == 1
    assert sorted(copied.values()) in ([0, 2], [2])  # one folder reported, the other copied whole
    assert [p.kind for p in result.problems if "not yours" in p.describe()] == ["folder"]


def test_a_refusal_the_store_scoped_to_the_account_stops_it(tmp_path):
    """TRYCREATE with the account's scope: before, the engine read the code and went on with the next folder."""
    result, copied = _run(tmp_path, lambda: ServerRefused("no more", code="TRYCREATE", scope="account"))
    assert result.error is not None and "no more" in result.error
    assert result.counters.failed == 0 and sum(copied.values()) == 0
