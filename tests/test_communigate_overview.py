"""The overview an administrator plans the cutover with: accounts, folders, counts, sizes, password state
(never the password), aliases and forwarding; as a table and as JSON; damage shown, the rest still listed."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from rich.console import Console

from mailmigrate.cli.main import main
from mailmigrate.errors import ConfigError
from mailmigrate.paths.communigate.accounts import password_state, read_account
from mailmigrate.paths.communigate.overview import build_overview, dumps, render, to_json
from mailmigrate.stores.communigate import locate
from samples import generator

PASSWORDS = ['Wonder land "42"', "c4rol", "erin-pw", "fr4nk!", "Ul7yJ3Pz0kQ2vXc9", "X9Yhashed"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    dest = tmp_path_factory.mktemp("cgp") / "store"
    return dest, generator("make_communigate").build(dest)


def test_json_overview_counts_sizes_and_password_states(sample):
    base, manifest = sample
    data = to_json(build_overview(base))
    assert data["main_domain"] == "example.com"
    assert [d["name"] for d in data["domains"]] == ["example.com", "example.org", "shop.example.net"]
    accounts = {a["address"]: a for d in data["domains"] for a in d["accounts"]}
    assert set(accounts) == {f"{a}@{d}" for d, a in manifest}
    for (domain, account), folders in manifest.items():
        a = accounts[f"{account}@{domain}"]
        assert a["messages"] == sum(len(m) for m in folders.values())
        assert a["size"] == sum(len(d) for m in folders.values() for d, _, _ in m)
        assert {tuple(f["path"]) for f in a["folders"]} == set(folders)
    assert {k: v["password"] for k, v in accounts.items()} == {
        "alice@example.com": "readable", "bob@example.com": "encrypted", "carol@example.com": "readable",
        "dave@example.org": "encrypted", "erin@example.org": "readable", "frank@shop.example.net": "readable"}
    assert accounts["alice@example.com"]["kind"] == "multi" and accounts["bob@example.com"]["kind"] == "single"
    assert accounts["alice@example.com"]["aliases"] == ["ali", "a.archer"]
    assert accounts["alice@example.com"]["forwarding"] == ["alice.archer@elsewhere.org"]
    assert accounts["erin@example.org"]["forwarding"] == ["erin@new.example.net"]
    assert accounts["carol@example.com"]["real_name"] == "Carol \u00c7elik"
    roles = {f["name"]: f["role"] for f in accounts["alice@example.com"]["folders"]}
    assert roles["Calendar"] == "CalendarBox" and roles["Contacts"] == "ContactsBox" and roles["Sent"] == "\\Sent"
    assert data["domains"][1]["domain_aliases"] == ["example.net", "example.info"]
    assert data["totals"] == {"domains": 3, "accounts": 6, "messages": 24, "size": data["totals"]["size"],
                              "unreadable_passwords": 2, "problems": 0, "addresses_not_carried_over": 21}


def test_no_password_ever_appears(sample):
    base, _ = sample
    ov = build_overview(base)
    out = io.StringIO()
    render(ov, Console(file=out, width=200))
    text = dumps(ov) + out.getvalue() + repr(read_account(locate(base, "alice")))
    for pw in PASSWORDS:
        assert pw not in text


def test_readable_password_is_kept_as_a_secret(sample):
    base, _ = sample
    alice = read_account(locate(base, "alice"))
    assert alice.password_readable and alice.password.reveal() == 'Wonder land "42"'
    bob = read_account(locate(base, "bob"))
    assert not bob.password_readable and bob.password is None and bob.password_encryption == "A-crpt"


@pytest.mark.parametrize("settings, state", [
    ({"Password": "pw"}, "readable"),
    ({"Password": "pw", "PasswordEncryption": "clear"}, "readable"),
    ({"Password": "\x01hash"}, "encrypted"),
    ({"Password": "looks-plain", "PasswordEncryption": "A-crpt"}, "encrypted"),
    ({"PasswordEncryption": "clear"}, "none"),
    ({"Password": ""}, "none"),
])
def test_password_state_rules(settings, state):
    assert password_state(settings)[0] == state


def test_table_shows_domains_accounts_folders_and_totals(sample):
    base, _ = sample
    out = io.StringIO()
    render(build_overview(base), Console(file=out, width=200))
    text = out.getvalue()
    for word in ("example.com (main domain)", "example.org - also example.net, example.info", "shop.example.net",
                 "alice", "Projects", "Q1", "Entwürfe", "encrypted", "readable", "forwards to erin@new.example.net",
                 "aliases info, sales", "6 accounts, 24 messages"):
        assert word in text, word


def test_filters_by_domain_and_user(sample):
    base, _ = sample
    data = to_json(build_overview(base, domain="example.org", user="erin"))
    assert [(d["name"], [a["name"] for a in d["accounts"]]) for d in data["domains"]] == [("example.org", ["erin"])]
    with pytest.raises(ConfigError):
        build_overview(base, domain="nowhere.example")
    with pytest.raises(ConfigError):
        build_overview(base, user="nobody")


def test_damaged_store_overview_names_file_and_line_and_lists_the_rest(sample, tmp_path):
    base, _ = sample
    copy = tmp_path / "cg"
    shutil.copytree(base, copy)
    inbox = copy / "Accounts" / "alice.macnt" / "INBOX.mbox"
    inbox.write_bytes(inbox.read_bytes()[:-30])
    (copy / "Domains" / "example.org" / "dave.macnt" / "account.settings").write_bytes(b"{\n RealName = (\n")
    data = to_json(build_overview(copy))
    accounts = {a["address"]: a for d in data["domains"] for a in d["accounts"]}
    assert len(accounts) == 6
    alice_problems = accounts["alice@example.com"]["problems"]
    assert any("INBOX.mbox" in p and "truncated" in p for p in alice_problems)
    dave = accounts["dave@example.org"]
    assert any("account.settings, line 3" in p for p in dave["problems"])
    assert dave["messages"] == 5  # the mail is still there
    assert data["totals"]["problems"] == 2


def test_cli_json_table_and_exit_status(sample, tmp_path, capsys):
    base, _ = sample
    assert main(["communigate", "overview", str(base), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["accounts"] == 6
    assert main(["communigate", "overview", str(base), "--domain", "example.com", "--user", "bob"]) == 0
    out = capsys.readouterr().out
    assert "bob" in out and "alice" not in out
    assert main(["communigate", "overview", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    copy = tmp_path / "cg"
    shutil.copytree(base, copy)
    (copy / "Accounts" / "bob.settings").write_bytes(b"{ broken")
    assert main(["communigate", "overview", str(copy), "--json"]) == 1


def test_cli_names_the_addresses_the_target_will_not_get(sample, capsys, monkeypatch):
    """Before the cutover: per account, every alias, domain-alias address and forwarding target that the
    chosen target directory will not have (mail to them would bounce, or no longer be passed on)."""
    base, _ = sample
    assert main(["communigate", "overview", str(base), "--json"]) == 0  # default target: Kerio
    data = json.loads(capsys.readouterr().out)
    left = {a["address"]: {x["kind"]: x["addresses"] for x in a["not_carried_over"]}
            for d in data["domains"] for a in d["accounts"]}
    assert left["alice@example.com"] == {"alias": ["ali@example.com", "a.archer@example.com"],
                                         "forwarding": ["alice.archer@elsewhere.org"]}
    assert left["bob@example.com"] == {"alias": ["robert@example.com"]}
    assert left["erin@example.org"]["alias"] == ["info@example.org", "sales@example.org"]
    assert "sales@example.info" in left["erin@example.org"]["domain alias"]
    assert left["carol@example.com"] == left["frank@shop.example.net"] == {}
    # An LDAP directory takes user aliases (the migration writes them when it creates the user).
    assert main(["communigate", "overview", str(base), "--json", "--target-directory", "ldap"]) == 0
    ldap = {a["address"]: [x["kind"] for x in a["not_carried_over"]]
            for d in json.loads(capsys.readouterr().out)["domains"] for a in d["accounts"]}
    assert ldap["alice@example.com"] == ["forwarding"] and ldap["bob@example.com"] == []
    monkeypatch.setenv("COLUMNS", "200")  # a table row per address list, not wrapped
    assert main(["communigate", "overview", str(base), "--domain", "example.com", "--target-directory",
                 "passwd-file"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "alias: ali@example.com, a.archer@example.com" in text and "alias: robert@example.com" in text
    assert "not carried over to a passwd-file" in text
