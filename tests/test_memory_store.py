"""The in-memory store's fault hooks do what the engine tests count on: a fault fires once, at the write it
names, with the write done or not done as asked, and a dropped connection stays dead until reopened."""

import pytest

from mailmigrate.errors import ConnectionLost, MessageRejected
from mailmigrate.model import AppendItem, Body
from mailmigrate.stores.memory import MemoryMailbox, MemoryStore


class Crash(BaseException):
    pass


def _items(*datas):
    return [AppendItem(Body.from_bytes(d)) for d in datas]


def test_a_write_fails_before_or_after_it_takes_effect():
    mb = MemoryMailbox()
    s = MemoryStore(mb)
    s.open()
    mb.faults.fail_write(2, Crash, applied=False)
    s.append(("INBOX",), _items(b"one"))
    with pytest.raises(Crash):
        s.append(("INBOX",), _items(b"two"))
    assert [d for _, d, _ in mb.contents(("INBOX",))] == [b"one"]
    mb.faults.fail_write(1, Crash, applied=True)
    with pytest.raises(Crash):
        s.append(("INBOX",), _items(b"three"))
    assert [d for _, d, _ in mb.contents(("INBOX",))] == [b"one", b"three"]
    s.append(("INBOX",), _items(b"four"))  # each fault fires once
    assert len(mb.contents(("INBOX",))) == 3


def test_a_refused_message_refuses_its_batch_and_names_its_index():
    mb = MemoryMailbox()
    s = MemoryStore(mb)
    s.open()
    mb.faults.refuse(lambda data: data == b"c")
    with pytest.raises(MessageRejected) as e:
        s.append(("INBOX",), _items(b"a", b"b", b"c", b"d"))
    assert e.value.index == 2 and mb.contents(("INBOX",)) == []
    with pytest.raises(MessageRejected):
        s.append(("INBOX",), _items(b"c"))
    assert s.append(("INBOX",), _items(b"a")) == ["1"]
    mb.faults.clear()
    assert s.append(("INBOX",), _items(b"c")) == ["2"]


def test_a_dropped_connection_stays_dead_until_reopened_and_uids_never_repeat():
    mb = MemoryMailbox()
    s, other = MemoryStore(mb), MemoryStore(mb)
    s.open()
    other.open()
    first = mb.deliver(("INBOX",), b"x")
    mb.expunge(("INBOX",), first)
    mb.drop_connections()
    for store in (s, other):
        with pytest.raises(ConnectionLost):
            store.list_folders()
        with pytest.raises(ConnectionLost):
            store.list_folders()
    s.open()
    assert s.append(("INBOX",), _items(b"y")) != [first]


def test_a_fetch_breaks_mid_stream_at_the_message_asked():
    mb = MemoryMailbox()
    for d in (b"a", b"b", b"c"):
        mb.deliver(("INBOX",), d)
    s = MemoryStore(mb)
    s.open()
    mb.faults.fail_fetch(2, lambda: ConnectionLost("reset"))
    got = []
    with pytest.raises(ConnectionLost):
        for _, body in s.fetch(("INBOX",), ["1", "2", "3"]):
            got.append(body.read())
    assert got == [b"a"]
    assert [b.read() for _, b in s.fetch(("INBOX",), ["1", "2", "3"])] == [b"a", b"b", b"c"]
