"""The CommuniGate store over the generated sample: every account is found, every message comes back with
the generator's exact bytes, flags and date, keys stay put, and a damaged store costs only what is damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailmigrate.errors import ConfigError, FolderFailed
from mailmigrate.model import INBOX
from mailmigrate.stores.communigate import VALIDITY, CommuniGateStore, discover, main_domain_name
from samples import generator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    dest = tmp_path_factory.mktemp("cgp") / "store"
    manifest = generator("make_communigate").build(dest)
    return dest, manifest


def test_committed_sample_is_what_the_generator_writes(tmp_path):
    fresh = tmp_path / "store"
    generator("make_communigate").build(fresh)
    committed = ROOT / "examples" / "communigate"
    files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    for rel in files:
        assert (fresh / rel).read_bytes() == (committed / rel).read_bytes(), rel


def test_discover_walks_main_domain_other_domains_and_subdirectories(sample):
    base, manifest = sample
    found = discover(base)
    assert found == [("example.com", "alice"), ("example.com", "bob"), ("example.com", "carol"),
                     ("example.org", "dave"), ("example.org", "erin"), ("shop.example.net", "frank")]
    assert set(found) == set(manifest)


def test_main_domain_name_from_main_settings_or_primary_domain(sample, tmp_path):
    base, _ = sample
    assert main_domain_name(base, "ignored.example") == "example.com"
    other = tmp_path / "cg"
    (other / "Accounts" / "x.macnt").mkdir(parents=True)
    assert main_domain_name(other, "Primary.Example") == "primary.example"
    assert discover(other, "primary.example") == [("primary.example", "x")]


def test_every_message_byte_exact_with_flags_and_dates(sample):
    base, manifest = sample
    total = 0
    for (domain, account), folders in manifest.items():
        with CommuniGateStore(base, account, domain) as store:
            listed = {f.path: f for f in store.list_folders()}
            assert set(listed) == set(folders), (domain, account)
            for path, expected in folders.items():
                if not listed[path].selectable:
                    assert expected == []
                    continue
                status, metas = store.list_messages(path)
                assert status.validity == VALIDITY and status.count == len(expected)
                got = {m.key: (m, b.read()) for m, b in store.fetch(path, [m.key for m in metas])}
                assert [got[m.key][1] for m in metas] == [data for data, _, _ in expected], (account, path)
                assert [m.flags for m in metas] == [flags for _, flags, _ in expected]
                assert [m.internaldate for m in metas] == [when for _, _, when in expected]
                assert [m.size for m in metas] == [len(data) for data, _, _ in expected]
                assert store.fetch_problems() == []
                total += len(expected)
    assert total == 24


def test_folders_nested_special_use_and_hierarchy_only(sample):
    base, _ = sample
    with CommuniGateStore(base, "alice") as store:
        by_path = {f.path: f for f in store.list_folders()}
    assert by_path[("Work", "Projects", "2024")].selectable is False
    assert by_path[("Work", "Projects", "2024", "Q1")].selectable is True
    assert by_path[("Sent",)].special_use == "\\Sent"
    assert by_path[("Entwürfe",)].special_use == "\\Drafts"  # decoded from modified UTF-7 on disk
    assert list(by_path)[0] == INBOX


def test_keys_uids_content_hashes_and_mdir_ids(sample):
    base, _ = sample
    with CommuniGateStore(base, "alice", "example.com") as s:
        assert [m.key for m in s.list_messages(INBOX)[1]] == ["101", "102", "103", "104", "105"]
        assert [m.uid for m in s.list_messages(INBOX)[1]] == [101, 102, 103, 104, 105]
        assert [m.key for m in s.list_messages(("Work", "Projects"))[1]] == ["1000", "1001"]
    with CommuniGateStore(base, "dave", "example.org") as s:
        keys = [m.key for m in s.list_messages(("Archive",))[1]]
        # twins without UIDs: same hash, different occurrence; stable across listings
        assert keys[0].split(":")[0] == keys[1].split(":")[0] and keys[0] != keys[1]
        assert keys[0].endswith(":0") and keys[1].endswith(":1")
        assert [m.key for m in s.list_messages(("Archive",))[1]] == keys


def test_unknown_status_letter_is_kept_and_logged(sample, caplog):
    base, _ = sample
    with CommuniGateStore(base, "alice") as s:
        metas = s.list_messages(INBOX)[1]
    assert "$CGP_X" in metas[3].flags
    assert any("'X'" in r.getMessage() for r in caplog.records)


def test_fetch_after_new_mail_arrives_rereads_the_index(sample, tmp_path):
    base, _ = sample
    copy = tmp_path / "cg"
    shutil.copytree(base, copy)
    gen = generator("make_communigate")
    with CommuniGateStore(copy, "bob") as s:
        keys = [m.key for m in s.list_messages(INBOX)[1]]
        inbox = copy / "Accounts" / "bob.mbox"
        new = b"Subject: late\n\narrived during the run\n"
        with open(inbox, "ab") as f:
            f.write(gen.cgm.write_message(new, "x@y", set(), 3, gen.T0))
        fetched = dict((m.key, b.read()) for m, b in s.fetch(INBOX, keys + ["3"]))
        assert set(fetched) == {"1", "2", "3"} and fetched["3"] == new


def test_unknown_account_or_domain_is_a_config_error(sample):
    base, _ = sample
    with pytest.raises(ConfigError, match="account nobody"):
        CommuniGateStore(base, "nobody").open()
    with pytest.raises(ConfigError, match="domain nowhere.example"):
        CommuniGateStore(base, "alice", "nowhere.example").open()
    with pytest.raises(ConfigError):
        CommuniGateStore(base / "missing", "alice").open()


def test_store_is_read_only(sample):
    base, _ = sample
    s = CommuniGateStore(base, "alice")
    assert s.kind == "communigate" and not s.writable
    with pytest.raises(NotImplementedError):
        s.create_folder(("New",))


# --- damage -----------------------------------------------------------------------------------------------


@pytest.fixture
def damaged(sample, tmp_path):
    base, manifest = sample
    copy = tmp_path / "cg"
    shutil.copytree(base, copy)
    inbox = copy / "Accounts" / "alice.macnt" / "INBOX.mbox"
    data = inbox.read_bytes()
    inbox.write_bytes(data[: data.index(b"Subject: Gone") + 9])  # cut inside the last message's header
    (copy / "Accounts" / "alice.macnt" / "Sent.mbox").write_bytes(b"garbage, not a mailbox\n")
    (copy / "Domains" / "example.org" / "dave.macnt" / "account.settings").write_bytes(
        b'{\n  RealName = "Dave;\n  Password = x;\n')
    return copy, manifest


def test_truncated_mbox_copies_the_intact_messages_and_reports_the_cut_one(damaged):
    base, manifest = damaged
    expected = manifest[("example.com", "alice")][INBOX]
    with CommuniGateStore(base, "alice") as s:
        metas = s.list_messages(INBOX)[1]
        assert len(metas) == 5
        got = [b.read() for _, b in s.fetch(INBOX, [m.key for m in metas])]
        assert got == [data for data, _, _ in expected[:4]]
        (key, reason), = s.fetch_problems()
        assert key == "105" and "INBOX.mbox" in reason and "truncated" in reason and "line" in reason
        assert s.damaged(INBOX) and "INBOX.mbox" in s.damaged(INBOX)[0]


def test_unreadable_mailbox_fails_its_folder_only(damaged):
    base, manifest = damaged
    with CommuniGateStore(base, "alice") as s:
        with pytest.raises(FolderFailed) as ei:
            s.list_messages(("Sent",))
        assert "Sent.mbox" in str(ei.value) and "line 1" in str(ei.value)
        _, metas = s.list_messages(("Work",))
        assert [b.read() for _, b in s.fetch(("Work",), [m.key for m in metas])] == \
            [d for d, _, _ in manifest[("example.com", "alice")][("Work",)]]


def test_broken_settings_do_not_stop_the_mail(damaged):
    base, manifest = damaged
    assert ("example.org", "dave") in discover(base)
    with CommuniGateStore(base, "dave", "example.org") as s:
        _, metas = s.list_messages(INBOX)
        assert [b.read() for _, b in s.fetch(INBOX, [m.key for m in metas])] == \
            [d for d, _, _ in manifest[("example.org", "dave")][INBOX]]


# --- the contract factory, exercised here until the shared contract suite runs it -------------------------


def test_contract_factory_round_trip(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from contract.communigate_factory import make_communigate_store
    from mailmigrate.model import AppendItem, Body

    store, populate = make_communigate_store(tmp_path)
    first = [AppendItem(Body.from_bytes(b"Subject: a\r\n\r\nA\r\n"), frozenset({"\\Seen"})),
             (b"Subject: b\n\nno final newline", {"\\Flagged"})]
    populate({"INBOX": [b"Subject: in\n\nx\n"], "Work/Deep": first, ("Caf\u00e9",): [b"Subject: c\n\n\n"]})
    with store:
        assert {f.path for f in store.list_folders()} == {INBOX, ("Work",), ("Work", "Deep"), ("Caf\u00e9",)}
        _, metas = store.list_messages(("Work", "Deep"))
        assert [b.read() for _, b in store.fetch(("Work", "Deep"), [m.key for m in metas])] == \
            [b"Subject: a\r\n\r\nA\r\n", b"Subject: b\n\nno final newline"]
        assert [m.flags for m in metas] == [{"\\Seen"}, {"\\Flagged"}]
        populate({"INBOX": [b"Subject: later\n\ny\n"]})
        _, metas = store.list_messages(INBOX)
        assert [m.key for m in metas] == ["1", "2"]
        assert [b.read() for _, b in store.fetch(INBOX, ["2"])] == [b"Subject: later\n\ny\n"]
        _, metas = store.list_messages(("Caf\u00e9",))
        assert [b.read() for _, b in store.fetch(("Caf\u00e9",), [m.key for m in metas])] == [b"Subject: c\n\n\n"]


def test_uw_imap_internal_data_message_is_not_migrated(tmp_path, caplog):
    from datetime import datetime, timezone

    from mailmigrate.formats import communigate_mailbox as cgm

    t = datetime(2023, 3, 1, tzinfo=timezone.utc)
    internal = (b"From: Mail System Internal Data <MAILER-DAEMON@old.example.com>\n"
                b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1677663000 0000000002\n\n"
                b"This text is part of the internal format of your mail folder.\n")
    real = b"Subject: real\n\nhello\n"
    acc = tmp_path / "Accounts" / "ann.macnt"
    acc.mkdir(parents=True)
    (acc / "INBOX.mbox").write_bytes(cgm.write_message(internal, "MAILER-DAEMON", set(), 1, t)
                                     + cgm.write_message(real, "a@b", set(), 2, t))
    with caplog.at_level("INFO"), CommuniGateStore(tmp_path, "ann", primary_domain="example.com") as s:
        _, metas = s.list_messages(INBOX)
        assert [b.read() for _, b in s.fetch(INBOX, [m.key for m in metas])] == [real]
    assert "Mail System Internal Data" in caplog.text and "skipped" in caplog.text


def test_boundary_error_is_reported_as_such(tmp_path):
    """Issue 16: an empty message between two separators is a boundary error, named with its line, not a
    0-byte message for the target to refuse."""
    acc = tmp_path / "Accounts" / "ann.macnt"
    acc.mkdir(parents=True)
    (acc / "INBOX.mbox").write_bytes(b"From <a@b> (S-1) Wed Mar  1 09:30:00 2023\nSubject: one\n\nx\n\n"
                                     b"From <a@b> (S-2) Wed Mar  1 09:31:00 2023\n"
                                     b"From <a@b> (S-3) Wed Mar  1 09:32:00 2023\nSubject: three\n\ny\n")
    with CommuniGateStore(tmp_path, "ann", primary_domain="example.com") as s:
        _, metas = s.list_messages(INBOX)
        got = [b.read() for _, b in s.fetch(INBOX, [m.key for m in metas])]
        assert got == [b"Subject: one\n\nx\n", b"Subject: three\n\ny\n"]
        (key, reason), = s.fetch_problems()
        assert key == "2" and "boundary error" in reason and "line 6" in reason and "INBOX.mbox" in reason
