"""Dovecot acl plugin files: dovecot-acl lines, the shared-mailbox dictionary, Shared/ subscriptions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailmigrate.formats import dovecot_acl as acl


def test_acl_lines_are_read_by_kind():
    e = [acl.parse_acl_line(x) for x in ("owner lrwstipekxa", "  user=bob lr  ", "group=sales -w", "anyone",
                                         "group-override=x l", "# user=zed lr", "   ", "authenticated l")]
    assert e == [acl.AclEntry("owner", "", "lrwstipekxa"), acl.AclEntry("user", "bob", "lr"),
                 acl.AclEntry("group", "sales", "-w"), acl.AclEntry("anyone", "", ""),
                 acl.AclEntry("group-override", "x", "l"), None, None, acl.AclEntry("authenticated", "", "l")]
    assert [x.identifier for x in e if x] == ["owner", "user=bob", "group=sales", "anyone", "group-override=x",
                                              "authenticated"]


def test_rename_touches_only_the_names():
    text = "# shared by alice\n\nowner lrwstipekxa\n  user=bob\tlr\r\nuser=zed -w\ngroup=sales lr\nanyone l"
    out = acl.rename_acl(text, lambda kind, n: n.upper() if kind == "user" else n)
    assert out == "# shared by alice\n\nowner lrwstipekxa\n  user=BOB\tlr\r\nuser=ZED -w\ngroup=sales lr\nanyone l"
    assert acl.parse_acl(out) == {"owner": "lrwstipekxa", "user=BOB": "lr", "user=ZED": "-w", "group=sales": "lr",
                                  "anyone": "l"}


_lines = st.lists(st.one_of(
    st.builds(lambda k, n, r, sp: f"{sp}{k}={n} {r}", st.sampled_from(acl.NAMED_KINDS),
              st.text("abcxyz.@-_", min_size=1, max_size=10), st.text("-lrwstipekxa", max_size=11),
              st.sampled_from(["", " ", "\t"])),
    st.sampled_from(["owner lrwstipekxa", "anyone lr", "authenticated l", "# comment", ""]),
    st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_lines, st.sampled_from(["\n", "\r\n"]))
def test_rename_is_byte_exact_and_reversible(lines, nl):
    text = nl.join(lines)
    assert acl.rename_acl(text, lambda _k, n: n) == text
    there = acl.rename_acl(text, lambda _k, n: "X" + n)
    assert acl.rename_acl(there, lambda _k, n: n[1:] if n.startswith("X") else n) == text


def test_dictionary_file_and_shared_keys():
    data = (b"shared/shared-boxes/user/bob/alice\n1\nshared/shared-boxes/group/sales/alice\n1\n"
            b"shared/shared-boxes/anyone/carol\n1\npriv/other/key\nvalue with spaces\n")
    pairs = acl.parse_dict_file(data)
    assert pairs[-1] == ("priv/other/key", "value with spaces") and acl.dump_dict_file(pairs) == data
    assert [acl.shared_key_names(k) for k, _ in pairs] == [
        [("user", "bob"), ("owner", "alice")], [("group", "sales"), ("owner", "alice")], [("owner", "carol")], None]
    up = [acl.rename_shared_key(k, lambda role, n: f"{role}:{n}") for k, _ in pairs]
    assert up == ["shared/shared-boxes/user/user:bob/owner:alice", "shared/shared-boxes/group/group:sales/owner:alice",
                  "shared/shared-boxes/anyone/owner:carol", "priv/other/key"]
    assert acl.rename_shared_key("shared/shared-boxes/user/only-one", lambda _r, n: "x") == \
        "shared/shared-boxes/user/only-one"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20).filter(lambda s: "\n" not in s),
                          st.text(max_size=20).filter(lambda s: "\n" not in s)), max_size=6))
def test_dictionary_round_trip(pairs):
    assert acl.parse_dict_file(acl.dump_dict_file(pairs)) == pairs


def test_shared_subscription_lines():
    # the second form is how Dovecot 2.3 itself writes a "." of the owner in a version 2 file
    assert acl.shared_subscription_owner("Shared/bob/Team") == "bob"
    assert acl.shared_subscription_owner("Shared/bob@example\tcom/Team") == "bob@example.com"
    assert acl.shared_subscription_owner("Sent") is None and acl.shared_subscription_owner("Shared") is None
    assert acl.rename_shared_subscription("Shared/bob/Work\tPlans", lambda o: o + "@x.org") == \
        "Shared/bob@x.org/Work\tPlans"
    assert acl.rename_shared_subscription("Shared/bob@example\tcom/Team", lambda o: o) == \
        "Shared/bob@example\tcom/Team"
    assert acl.rename_shared_subscription("INBOX", lambda o: "never") == "INBOX"
