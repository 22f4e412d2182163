"""SME short names -> NethServer user@domain in ACL files, the shared-mailbox index and Shared/ subscriptions:
the pure transforms, their idempotence and the names they cannot place."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mailmigrate.formats.maildir import SUBSCRIPTIONS_V2_HEADER as V2
from mailmigrate.paths.nethserver.identifiers import Qualifier

D = "example.com"


def q() -> Qualifier:
    return Qualifier(frozenset({"alice", "bob", "carol", "admin"}), D)


def test_acl_user_lines_get_the_domain_and_nothing_else_changes():
    src = ("# Work shared with bob\nowner lrwstipekxa\nuser=bob lr\nuser=zed lr\ngroup=sales lrs\n"
           "group-override=bob l\nanyone l\nauthenticated lr\nuser=carol@example.com lrw\nuser=admin -w\n"
           "user=bob@other.example l\n")
    qq = q()
    out = qq.acl(src)
    assert out == ("# Work shared with bob\nowner lrwstipekxa\nuser=bob@example.com lr\nuser=zed lr\ngroup=sales lrs\n"
                   "group-override=bob l\nanyone l\nauthenticated lr\nuser=carol@example.com lrw\n"
                   "user=admin@example.com -w\nuser=bob@other.example l\n")
    # zed was deleted on SME; bob@other.example is nobody the import moved: both kept and reported
    assert qq.take_unknown() == ["bob@other.example", "zed"]
    assert qq.take_unknown() == []
    assert qq.acl(out) == out  # a rerun appends nothing
    assert qq.take_unknown() == ["bob@other.example", "zed"]


def test_shared_dictionary_keys_get_the_domain_and_the_public_entry():
    src = (b"shared/shared-boxes/user/alice/bob\n1\nshared/shared-boxes/user/bob/alice\n1\n"
           b"shared/shared-boxes/anyone/carol\n1\nshared/shared-boxes/group/sales/bob\n1\n"
           b"shared/shared-boxes/user/zed/alice\n1\n")
    qq = q()
    out = qq.shared_dict(src)
    assert out == (b"shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n"
                   b"shared/shared-boxes/user/bob@example.com/alice@example.com\n1\n"
                   b"shared/shared-boxes/anyone/carol@example.com\n1\n"
                   b"shared/shared-boxes/group/sales/bob@example.com\n1\n"
                   b"shared/shared-boxes/user/zed/alice@example.com\n1\n"
                   b"shared/shared-boxes/anyone/vmail\n1\n")
    assert qq.take_unknown() == ["zed"]  # the group is no account and is not reported
    assert qq.shared_dict(out) == out
    # an index that already has the public folders' entry keeps it once, where it was
    has = b"shared/shared-boxes/anyone/vmail\n1\nshared/shared-boxes/user/alice/bob\n1\n"
    assert qq.shared_dict(has) == (b"shared/shared-boxes/anyone/vmail\n1\n"
                                   b"shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n")


def test_a_short_and_a_qualified_key_for_one_share_become_one_entry():
    src = (b"shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n"
           b"shared/shared-boxes/user/alice/bob\n1\nshared/shared-boxes/anyone/vmail\n1\n")
    assert q().shared_dict(src) == (b"shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n"
                                    b"shared/shared-boxes/anyone/vmail\n1\n")


def test_subscriptions_to_shared_folders_come_over_with_the_owner_qualified():
    engine_wrote = V2 + b"INBOX\nSent\n"
    sme = V2 + b"INBOX\nSent\nShared/bob/Team\nShared/zed/Old\nShared/carol/Lists\tWeekly\n"
    qq = q()
    out = qq.subscriptions(engine_wrote, sme)
    assert out == V2 + b"INBOX\nSent\nShared/bob@example.com/Team\nShared/zed/Old\nShared/carol@example.com/Lists\tWeekly\n"
    assert qq.take_unknown() == ["zed"]
    assert qq.subscriptions(out, sme) == out  # a rerun adds and appends nothing
    # no subscriptions file yet on the target: one is written, in Dovecot's version 2 form
    assert qq.subscriptions(None, b"Shared/bob/Team\n") == V2 + b"Shared/bob@example.com/Team\n"
    # nothing shared: the target is left byte for byte, and a missing one stays missing
    odd = b"V\t2\n\nINBOX\n\n\nSent"
    assert qq.subscriptions(odd, V2 + b"INBOX\n") is odd
    assert qq.subscriptions(None, V2 + b"INBOX\n") is None
    # an earlier short line on the target is rewritten in place, not duplicated
    assert qq.subscriptions(V2 + b"Shared/bob/Team\nSent\n", sme) == \
        V2 + b"Shared/bob@example.com/Team\nSent\nShared/zed/Old\nShared/carol@example.com/Lists\tWeekly\n"


_name = st.sampled_from(["alice", "bob", "zed", "alice@example.com", "bob@other.example", "sales", "vmail"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.builds(lambda k, n, r: f"{k}={n} {r}", st.sampled_from(["user", "group", "group-override"]), _name,
              st.text("lrwstipekxa-", max_size=5)),
    st.sampled_from(["owner lrwstipekxa", "anyone lr", "authenticated l", "# x", ""]),
    st.text(string.printable.replace("\n", "").replace("\r", ""), max_size=20)), max_size=8))
def test_acl_qualification_is_idempotent_and_only_adds_the_domain(lines):
    text = "\n".join(lines) + "\n"
    once = q().acl(text)
    assert q().acl(once) == once
    assert once.replace(f"@{D}", "") == text.replace(f"@{D}", "")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "group", "anyone"]), _name, _name), max_size=6))
def test_dictionary_qualification_is_idempotent(keys):
    data = b"".join((f"shared/shared-boxes/{k}/{a}/{b}" if k != "anyone" else f"shared/shared-boxes/anyone/{b}")
                    .encode() + b"\n1\n" for k, a, b in keys)
    once = q().shared_dict(data)
    assert q().shared_dict(once) == once
