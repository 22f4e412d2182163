"""The overview cg2kms prints without -migrate: what is in a CommuniGate store, before anything is moved.

An administrator plans the cutover from it (how much mail, which passwords must be reset because they
cannot be read), so it reads every mailbox through the same store the migration uses: a folder the overview
counts is a folder the migration will copy, and damage shows up here first, naming file and line.  It never
shows a password, only whether one is readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError, MailmigrateError
from ...stores.communigate import (
    CommuniGateStore,
    LINK_KEY_PREFIX,
    account_mailboxes,
    base_domain_dirs,
    domain_accounts,
    main_domain_name,
)
from .accounts import CGAccount, CGDomain, read_account, read_domain
from .carryover import TARGETS, LeftBehind, carries_aliases, left_behind, writer_class


@dataclass
class FolderOverview:
    path: tuple[str, ...]
    format: str | None  # "mbox" | "mdir" | None (hierarchy only)
    messages: int = 0
    size: int = 0
    role: str | None = None  # special use (\Sent...) or CommuniGate box role (CalendarBox...)
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "/".join(self.path)


@dataclass
class AccountOverview:
    account: CGAccount
    folders: list[FolderOverview] = field(default_factory=list)
    left_behind: list[LeftBehind] = field(default_factory=list)  # addresses the chosen target will not have

    @property
    def messages(self) -> int:
        return sum(f.messages for f in self.folders)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.folders)

    @property
    def problems(self) -> list[str]:
        out = [self.account.error] if self.account.error else []
        for f in self.folders:
            out.extend(f.problems)
        return out


@dataclass
class DomainOverview:
    domain: CGDomain
    main: bool
    accounts: list[AccountOverview] = field(default_factory=list)


@dataclass
class Overview:
    base: str
    main_domain: str
    domains: list[DomainOverview] = field(default_factory=list)
    target_directory: str = "kerio"  # a key of carryover.TARGETS

    @property
    def accounts(self) -> list[AccountOverview]:
        return [a for d in self.domains for a in d.accounts]


def build_overview(base_path, *, domain: str | None = None, user: str | None = None,
                   primary_domain: str | None = None, target_directory: str = "kerio") -> Overview:
    """``target_directory``: the kind of directory the migration will create users in (a key of
    :data:`~.carryover.TARGETS`), so each account lists the addresses that target will not have."""
    base = Path(base_path)
    if target_directory not in TARGETS:
        raise ConfigError(f"target directory must be one of {', '.join(TARGETS)}, not {target_directory!r}")
    dirs = base_domain_dirs(base, primary_domain)
    main = main_domain_name(base, primary_domain)
    if domain is not None and domain.lower() not in dirs:
        raise ConfigError(f"domain {domain} is not in {base} (domains: {', '.join(dirs)})")
    ov = Overview(str(base), main, target_directory=target_directory)
    carried = carries_aliases(writer_class(target_directory))
    found_user = False
    for name, d in dirs.items():
        if domain is not None and name != domain.lower():
            continue
        locs = domain_accounts(name, d)
        dom = read_domain(name, d, [loc.name for loc in locs])
        dov = DomainOverview(dom, main=(name == main and d.name == "Accounts"))
        for loc in locs:
            if user is not None and loc.name.lower() != user.lower():
                continue
            found_user = True
            aov = _account_overview(base, loc, dom, primary_domain)
            aov.left_behind = left_behind(aov.account, aliases_carried=carried, target=TARGETS[target_directory])
            dov.accounts.append(aov)
        ov.domains.append(dov)
    if user is not None and not found_user:
        where = f"domain {domain}" if domain else "any domain"
        raise ConfigError(f"account {user} is not in {where} of {base}")
    return ov


def _account_overview(base: Path, loc, dom: CGDomain, primary_domain) -> AccountOverview:
    acc = read_account(loc, dom)
    aov = AccountOverview(acc)
    roles = {v: k for k, v in acc.calendar_boxes.items()}
    store = CommuniGateStore.at(base, loc)
    folders = {f.path: f for f in store.list_folders()}
    for path, mb in account_mailboxes(loc).items():
        info = folders.get(path)
        fov = FolderOverview(path, mb.kind, role=roles.get("/".join(path)) or (info.special_use if info else None))
        if mb.kind is not None:
            try:
                _, metas = store.list_messages(path)
                metas = [m for m in metas if not m.key.startswith(LINK_KEY_PREFIX)]  # links are problems
                fov.messages = len(metas)
                fov.size = sum(m.size or 0 for m in metas)
                fov.problems.extend(store.damaged(path))
            except MailmigrateError as e:
                fov.problems.append(str(e))
        aov.folders.append(fov)
    return aov


# --- output ----------------------------------------------------------------------------------------------


def to_json(ov: Overview) -> dict:
    """The overview as plain data; passwords appear only as their state."""
    return {
        "base": ov.base,
        "main_domain": ov.main_domain,
        "target_directory": ov.target_directory,
        "domains": [
            {
                "name": d.domain.name,
                "main": d.main,
                "domain_aliases": d.domain.domain_aliases,
                "errors": d.domain.errors,
                "accounts": [
                    {
                        "name": a.account.name,
                        "address": a.account.address,
                        "kind": a.account.kind,
                        "real_name": a.account.real_name,
                        "password": a.account.password_state,
                        "password_encryption": a.account.password_encryption,
                        "password_encryption_from": a.account.password_encryption_from,
                        "forwarding": a.account.forwarding,
                        "aliases": a.account.aliases,
                        "not_carried_over": [x.as_dict() for x in a.left_behind],
                        "messages": a.messages,
                        "size": a.size,
                        "problems": a.problems,
                        "folders": [
                            {"name": f.name, "path": list(f.path), "format": f.format, "role": f.role,
                             "messages": f.messages, "size": f.size, "problems": f.problems}
                            for f in a.folders
                        ],
                    }
                    for a in d.accounts
                ],
            }
            for d in ov.domains
        ],
        "totals": {
            "domains": len(ov.domains),
            "accounts": len(ov.accounts),
            "messages": sum(a.messages for a in ov.accounts),
            "size": sum(a.size for a in ov.accounts),
            "unreadable_passwords": sum(1 for a in ov.accounts if a.account.password_state != "readable"),
            "problems": sum(len(a.problems) for a in ov.accounts) + sum(len(d.domain.errors) for d in ov.domains),
            "addresses_not_carried_over": sum(len(x.addresses) for a in ov.accounts for x in a.left_behind),
        },
    }


def summaries(base_path, domains, *, primary_domain: str | None = None) -> dict[str, dict]:
    """address -> what the overview found for that account (password state, folders, messages, size,
    problems), for the named domains: a project keeps it with each unit, so the status shows what a start
    is about to copy without reading the store again."""
    out: dict[str, dict] = {}
    for domain in sorted({d.lower() for d in domains}):
        for d in to_json(build_overview(base_path, domain=domain, primary_domain=primary_domain))["domains"]:
            for a in d["accounts"]:
                out[a["address"].lower()] = {
                    "kind": a["kind"], "password": a["password"], "messages": a["messages"], "size": a["size"],
                    "folders": sum(1 for f in a["folders"] if f["format"]), "problems": a["problems"]}
    return out


def dumps(ov: Overview) -> str:
    return json.dumps(to_json(ov), indent=2, ensure_ascii=False)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def render(ov: Overview, console) -> None:
    """Tables on a rich Console: one per domain (accounts and their folders), then the totals."""
    from rich.table import Table

    for d in ov.domains:
        title = d.domain.name + (" (main domain)" if d.main else "")
        if d.domain.domain_aliases:
            title += " - also " + ", ".join(d.domain.domain_aliases)
        t = Table(title=title, title_justify="left")
        for col, just in (("Account", "left"), ("Folder", "left"), ("Format", "left"), ("Messages", "right"),
                          ("Size", "right"), ("Password", "left"), ("Real name / forwarding / aliases", "left")):
            t.add_column(col, justify=just)
        for a in d.accounts:
            acc = a.account
            notes = [acc.real_name or ""]
            if acc.forwarding:
                notes.append("forwards to " + ", ".join(acc.forwarding))
            if acc.aliases:
                notes.append("aliases " + ", ".join(acc.aliases))
            pw = {"readable": "readable", "encrypted": "[yellow]encrypted[/]", "none": "[red]none[/]"}[acc.password_state]
            t.add_row(f"[bold]{acc.name}[/]", f"({acc.kind})", "", str(a.messages), human_size(a.size),
                      pw, "; ".join(n for n in notes if n))
            for f in a.folders:
                label = "  " * (len(f.path) - 1) + f.path[-1] + (f" [dim]{f.role}[/]" if f.role else "")
                t.add_row("", label, f.format or "-", str(f.messages) if f.format else "",
                          human_size(f.size) if f.format else "", "", "")
            for p in a.problems:
                t.add_row("", "[red]damaged[/]", "", "", "", "", f"[red]{_escape(p)}[/]")
            for x in a.left_behind:
                t.add_row("", "[yellow]not carried over[/]", "", "", "", "",
                          f"[yellow]{x.kind}: {_escape(', '.join(x.addresses))}[/]")
        console.print(t)
        for e in d.domain.errors:
            console.print(f"[red]{_escape(e)}[/]")
    tot = to_json(ov)["totals"]
    console.print(
        f"{tot['domains']} domains, {tot['accounts']} accounts, {tot['messages']} messages, "
        f"{human_size(tot['size'])}; {tot['unreadable_passwords']} passwords not readable; "
        f"{tot['problems']} problems")
    if tot["addresses_not_carried_over"]:
        where = TARGETS[ov.target_directory] or "a migration without a target directory"
        console.print(
            f"[yellow]{tot['addresses_not_carried_over']} addresses (aliases, domain aliases, forwarding) are not "
            f"carried over to {where}: create them there by hand before the cutover (mail to an address the target "
            f"lacks bounces); --target-directory names another target[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
