"""Pure rules of the NethServer paths: pseudonyms, filter lists, folder names, forwards, ACLs, quotas, connectors."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mailmigrate.formats.esmith import Record
from mailmigrate.paths.nethserver import ns8, rules

D = "example.com"
PM = f"postmaster@{D}"


def acc(**recs):
    return {k.replace("_", "."): Record(t, p) for k, (t, p) in recs.items()}


def test_recursive_pseudonym_ends_at_the_user():
    a = acc(alice=("user", {}), x=("pseudonym", {"Account": "alice"}), y=("pseudonym", {"Account": "x"}),
            z=("pseudonym", {"Account": "y"}))
    plan = rules.flatten_pseudonyms(a, D)
    assert {p.key: p.targets for p in plan.pseudonyms} == {"x@": (f"alice@{D}",), "y@": (f"alice@{D}",),
                                                          "z@": (f"alice@{D}",)}
    assert plan.errors == 0


def test_dangling_and_looping_pseudonyms_go_to_postmaster_as_errors():
    a = acc(ghost=("pseudonym", {"Account": "nobody"}), l1=("pseudonym", {"Account": "l2"}),
            l2=("pseudonym", {"Account": "l1"}), empty=("pseudonym", {}))
    plan = rules.flatten_pseudonyms(a, D)
    assert all(p.targets == (PM,) for p in plan.pseudonyms)
    assert plan.errors == 4
    assert any("nobody does not exist" in n.text for n in plan.notes)


def test_admin_and_ibay_targets_go_to_postmaster_as_warnings():
    a = acc(admin=("user", {}), shared=("ibay", {}), boss=("pseudonym", {"Account": "admin"}),
            docs=("pseudonym", {"Account": "shared"}))
    plan = rules.flatten_pseudonyms(a, D)
    assert [p.targets for p in plan.pseudonyms] == [(PM,), (PM,)]
    assert plan.errors == 0 and {n.level for n in plan.notes} == {rules.WARNING}


def test_reserved_pseudonyms_are_skipped():
    a = acc(alice=("user", {}), postmaster=("pseudonym", {"Account": "alice"}),
            everyone=("pseudonym", {"Account": "alice"}), **{"postmaster@example.org": ("pseudonym", {"Account": "alice"})})
    plan = rules.flatten_pseudonyms(a, D)
    assert plan.pseudonyms == []
    assert len(plan.notes) == 3


def test_groups_expand_to_members_nested_and_deduplicated():
    a = acc(alice=("user", {}), bob=("user", {}), carol=("user", {}),
            sales=("group", {"Members": "alice,bob"}), staff=("group", {"Members": "sales, carol,bob"}),
            team=("pseudonym", {"Account": "staff"}), internal=("pseudonym", {"Account": "bob", "Visible": "internal"}))
    plan = rules.flatten_pseudonyms(a, D)
    by = {p.key: p for p in plan.pseudonyms}
    assert by["team@"].targets == (f"alice@{D}", f"bob@{D}", f"carol@{D}")
    assert by["internal@"].access == "private" and by["team@"].access == "public"


def test_external_target_is_kept_and_qualified_local_target_resolves():
    a = acc(alice=("user", {}), out=("pseudonym", {"Account": "someone@partner.example"}),
            q=("pseudonym", {"Account": f"alice@{D}"}))
    by = {p.key: p.targets for p in rules.flatten_pseudonyms(a, D).pseudonyms}
    assert by == {"out@": ("someone@partner.example",), "q@": (f"alice@{D}",)}


names = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4)


@given(st.dictionaries(names, st.tuples(st.sampled_from(["user", "group", "pseudonym", "ibay"]),
                                        st.lists(names, max_size=3)), max_size=12))
def test_flattening_always_ends_at_users_postmaster_or_nothing_else(spec):
    a = {}
    for k, (t, refs) in spec.items():
        props = {"Members": ",".join(refs)} if t == "group" else {"Account": refs[0]} if refs and t == "pseudonym" else {}
        a[k] = Record(t, props)
    plan = rules.flatten_pseudonyms(a, D)
    users = {f"{k}@{D}" for k, r in a.items() if r.type == "user" and k != "admin"}
    for p in plan.pseudonyms:
        assert p.targets, p
        assert set(p.targets) <= users | {PM}
        if PM in p.targets:
            assert plan.notes  # never silently


def test_filter_rules():
    assert rules.filter_rule("*@Spam.Example") == ("spam.example", None)
    assert rules.filter_rule("boss@partner.example") == ("boss@partner.example", None)
    for bad in ("*spam*", "bad?.example", "x*@example.com", "*@*.example", "*"):
        value, note = rules.filter_rule(bad)
        assert value is None and note.level == rules.WARNING and bad in note.text


def test_wbl_lists_and_what_cannot_be_carried():
    fl = rules.translate_wbl({"*@friends.example": "White", "junk.example": "Black", "x@y": "Grey"},
                             {"alice@example.com": "White", "bob@example.com": "Black"})
    assert fl.sender_white == ["friends.example"] and fl.sender_black == ["junk.example"]
    assert fl.recipient_white == ["alice@example.com"]
    assert len(fl.notes) == 2


def test_merge_list_is_idempotent():
    once = rules.merge_list("a.example", ["b.example", "a.example"])
    assert once == "a.example,b.example"
    assert rules.merge_list(once, ["b.example", "a.example"]) == once


@given(st.text(alphabet="ab\\5c.", max_size=12))
def test_listescape_round_trip_and_no_raw_backslash_left(name):
    esc = rules.listescape(name)
    if "\\5c" not in name:
        assert rules.unlistescape(esc) == name
    assert all(esc[i:i + 3] == "\\5c" for i, ch in enumerate(esc) if ch == "\\")


def test_listescape_as_the_seed_renames():
    assert rules.listescape("Work\\Projects") == "Work\\5cProjects"


def test_forward_props():
    assert rules.forward_props({"EmailForward": "local"}) == ({}, [])
    both, _ = rules.forward_props({"EmailForward": "both", "ForwardAddress": "a@x, b@y"})
    assert both == {"MailForwardStatus": "enabled", "MailForwardAddress": "a@x,b@y", "MailForwardKeepMessageCopy": "yes"}
    fw, _ = rules.forward_props({"EmailForward": "forward", "ForwardAddress": "a@x"})
    assert fw["MailForwardKeepMessageCopy"] == "no"
    assert rules.forward_props({"EmailForward": "forward"})[1][0].level == rules.WARNING


def test_not_migrated_props_are_stripped_and_named():
    kept, gone = rules.strip_not_migrated({"FirstName": "A", "PasswordSet": "yes", "TCPPort": "25"})
    assert kept == {"FirstName": "A"} and gone == ["PasswordSet", "TCPPort"]


def test_fetchmail_to_getmail():
    props, notes = rules.fetchmail_to_getmail("k", {"account": "alice", "active": "YES", "nokeep": "YES",
                                                    "password": "pw", "popserver": "pop.x", "username": "u"}, D)
    assert props["Account"] == f"alice@{D}" and props["Delete"] == "0" and props["status"] == "enabled"
    assert props["Retriever"] == "SimplePOP3Retriever" and notes == []
    props, _ = rules.fetchmail_to_getmail("k", {"account": "alice", "active": "NO", "popserver": "p"}, D)
    assert props["Delete"] == "-1" and props["status"] == "disabled"


# -- NS7 -> NS8 ------------------------------------------------------------------------------------------


def test_acl_conversion():
    src = ("owner lrwstipekxa\nuser=bob@example.com akeilprwts\ngroup=sales@example.com lrs\n"
           "user=root akeilprwts\nuser=root@example.com lr\nanyone lr\nauthenticated lrs\n# note\n"
           "user=carol@example.com -akeilprwts\n")
    assert ns8.convert_acl(src) == ("owner lrwstipekxa\nuser=bob akxeilprwts\ngroup=sales lrs\nanyone lr\n"
                                    "authenticated lrs\n# note\nuser=carol -akxeilprwts\n")


@given(st.sampled_from(["user", "group"]), st.text(alphabet=string.ascii_lowercase + ".", min_size=1, max_size=8),
       st.text(alphabet="lrwsteipkxa", max_size=11))
def test_acl_line_keeps_rights_other_than_the_full_set(kind, name, rights):
    line = f"{kind}={name}@example.com {rights}"
    out = ns8.convert_acl_line(line)
    if kind == "user" and name == "root":
        assert out is None
        return
    ident, _, r = out.partition(" ")
    assert ident == f"{kind}={name}"
    assert r == (ns8.NS8_FULL_RIGHTS if rights == ns8.NS7_FULL_RIGHTS else rights.strip())


def test_shared_paths_and_dictionary():
    assert ns8.convert_shared_path('fileinto "Shared/bob@example.com/Team";') == 'fileinto "Shared/bob/Team";'
    data = (b"shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n"
            b"shared/shared-boxes/anyone/carol@example.com\n1\n")
    out, notes = ns8.convert_shared_dict(data)
    assert out == b"shared/shared-boxes/user/alice/bob\n1\nshared/shared-boxes/anyone/carol\n1\n" and not notes


def test_quota_conversion():
    assert ns8.quota_mb(15) == 1536  # 15 x 102.4
    assert ns8.quota_mb(7) == 717  # 716.8 rounded up
    assert ns8.quota_mb(195) == 19968  # below 20000: as computed
    assert ns8.quota_mb(201) == 21504  # 20582.4 -> 21 GiB
    assert ns8.quota_mb(250) == 25600  # exactly 25 GiB


@given(st.integers(min_value=1, max_value=100000))
def test_quota_never_shrinks_and_is_whole_gib_above_the_threshold(v):
    mb = ns8.quota_mb(v)
    assert mb >= v * 102.4 - 1e-6
    if mb > 20000:
        assert mb % 1024 == 0 and mb - v * 102.4 < 1024


def test_relay_rule_from_smart_host():
    assert ns8.relay_rule({"SmartHostStatus": "disabled", "SmartHostName": "x"}) is None
    r = ns8.relay_rule({"SmartHostStatus": "enabled", "SmartHostName": "relay.x", "SmartHostPort": "587",
                        "SmartHostUsername": "u", "SmartHostPassword": "p"})
    assert (r["rule_subject"], r["host"], r["port"], r["username"], r["password"]) == ("*", "relay.x", 587, "u", "p")


def test_getmail_tasks():
    t, notes = ns8.getmail_to_task("a@isp", {"Retriever": "SimpleIMAPSSLRetriever", "Server": "imap.isp",
                                             "Account": "alice@example.com", "Delete": "-1", "Password": "s3cret"})
    assert (t.protocol, t.tls, t.scheduled, t.delete_on_remote, t.deliver_to) == ("imap", True, True, False, "alice")
    assert "s3cret" not in repr(t) and "password" not in t.as_dict(with_password=False)
    t, notes = ns8.getmail_to_task("b@old", {"Retriever": "SimplePOP3Retriever", "Server": "pop.old",
                                             "Account": "bob@example.com", "Delete": "3"})
    assert (t.protocol, t.scheduled, t.delete_on_remote, t.delete_after_days) == ("pop3", False, True, 3)
    assert {n.level for n in notes} == {rules.WARNING} and len(notes) == 2
