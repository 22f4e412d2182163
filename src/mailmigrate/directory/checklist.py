"""The post-migration checklist as a comparison of two directory readings.

Kopano's upgrade notes end with a list to check by hand before going back into production: users,
groups, companies, group memberships, send-as permissions, contacts, address lists, dynamic groups.
Any path can read its directory before and after and get the same list checked, object by object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .base import Directory, fold


#: Lines shown per list before the rest is summarised: one lost group of 1,600 members is one finding.
SHOWN = 10
_HEADS = (" <- ", " -> ", " may send as ", " forwards to ", " gid ", ": ")


def _listed(label: str, items: list[str], limit: int) -> list[str]:
    pad = f"{label}:".ljust(9)
    if len(items) <= limit:
        return [f"         {pad}{x}" for x in items]
    out = [f"         {pad}{x}" for x in items[:limit // 2]]
    by: dict[str, int] = {}
    for x in items[limit // 2:]:
        head = next((x.split(sep, 1)[0] + sep.rstrip() for sep in _HEADS if sep in x), "")
        by[head] = by.get(head, 0) + 1
    rest = len(items) - limit // 2
    groups = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    if groups and groups[0][0]:
        detail = "; ".join(f"{n:,} of {h}" for h, n in groups[:5] if h) + (" ..." if len(groups) > 5 else "")
        out.append(f"         ... and {rest:,} more {label} ({detail}; --json lists them all)")
    else:
        out.append(f"         ... and {rest:,} more {label} (--json lists them all)")
    return out


@dataclass
class CheckItem:
    name: str
    before: int
    after: int
    missing: list[str] = field(default_factory=list)  # there before, gone after
    added: list[str] = field(default_factory=list)  # not there before

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass
class Checklist:
    items: list[CheckItem]

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [
            {"check": i.name, "ok": i.ok, "before": i.before, "after": i.after, "missing": i.missing,
             "added": i.added} for i in self.items]}

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def render(self, limit: int = SHOWN) -> str:
        """Up to ``limit`` lines per list; a longer one is summarised (JSON keeps every line)."""
        lines = []
        for i in self.items:
            mark = "ok  " if i.ok else "FAIL"
            lines.append(f"[{mark}] {i.name}: {i.before} before, {i.after} after")
            lines += _listed("missing", i.missing, limit)
            lines += _listed("new", i.added, limit)
        lines.append("all checks passed" if self.ok else "some checks failed")
        return "\n".join(lines)


def _names(d: dict) -> dict[str, str]:
    return {k: getattr(v, "login", None) or getattr(v, "name", None) or getattr(v, "address") for k, v in d.items()}


def _memberships(d: Directory) -> dict[str, str]:
    out = {}
    for g in d.groups.values():
        for m in g.members:
            out[f"{fold(g.name)}\0{fold(m)}"] = f"{g.name} <- {m}"
        for s in g.groups:
            out[f"{fold(g.name)}\0group:{fold(s)}"] = f"{g.name} <- group {s}"
    return out


def _send_as(d: Directory) -> dict[str, str]:
    out = {}
    for owner in list(d.users.values()) + list(d.groups.values()):
        name = getattr(owner, "login", None) or owner.name
        for who in owner.send_as:
            out[f"{fold(name)}\0{fold(who)}"] = f"{who} may send as {name}"
    return out


def _aliases(d: Directory) -> dict[str, str]:
    """Every address that delivers somewhere: user and group aliases, and stand-alone aliases."""
    out = {}
    for u in d.users.values():
        for a in u.aliases:
            out[f"{fold(a)}\0{fold(u.login)}"] = f"{a} -> {u.login}"
    for g in d.groups.values():
        for a in g.aliases:
            out[f"{fold(a)}\0{fold(g.name)}"] = f"{a} -> group {g.name}"
    for a in d.aliases.values():
        for t in a.targets:
            out[f"{fold(a.address)}\0{fold(t)}"] = f"{a.address} -> {t}"
    return out


def _forwards(d: Directory) -> dict[str, str]:
    out = {}
    for u in d.users.values():
        for f in u.forwards:
            keep = " (keeping a copy)" if u.keep_copy else ""
            out[f"{fold(u.login)}\0{fold(f)}\0{u.keep_copy}"] = f"{u.login} forwards to {f}{keep}"
    return out


def _enabled_state(before: Directory, after: Directory) -> CheckItem:
    """Users present on both sides whose enabled state changed: a disabled account must not come back to
    life, and an active one must not be locked out, by a migration."""
    changed = []
    for key, b in before.users.items():
        a = after.users.get(key)
        if a is not None and a.enabled != b.enabled:
            changed.append(f"{b.login}: {'enabled' if b.enabled else 'disabled'} before, "
                           f"{'enabled' if a.enabled else 'disabled'} after")
    return CheckItem("disabled users", sum(not u.enabled for u in before.users.values()),
                     sum(not u.enabled for u in after.users.values()), sorted(changed))


def _group_ids(d: Directory) -> dict[str, str]:
    return {f"{fold(g.name)}\0{g.gid}": f"{g.name} gid {g.gid}" for g in d.groups.values() if g.gid is not None}


def _item(name: str, before: dict[str, str], after: dict[str, str]) -> CheckItem:
    return CheckItem(name, len(before), len(after),
                     sorted(v for k, v in before.items() if k not in after),
                     sorted(v for k, v in after.items() if k not in before))


def compare(before: Directory, after: Directory, *, group_ids: bool = False) -> Checklist:
    """``group_ids``: also check that every group keeps its gid, for a target that stores gids (files on
    disk are owned by the number, not the name)."""
    extra = [_item("group ids", _group_ids(before), _group_ids(after))] if group_ids else []
    return Checklist([
        _item("users", _names(before.users), _names(after.users)),
        _item("groups", _names(before.groups), _names(after.groups)),
        _enabled_state(before, after),
        _item("companies", _names(before.companies), _names(after.companies)),
        _item("group memberships", _memberships(before), _memberships(after)),
        _item("send-as permissions", _send_as(before), _send_as(after)),
        _item("aliases", _aliases(before), _aliases(after)),
        _item("forwards", _forwards(before), _forwards(after)),
        _item("contacts", _names(before.contacts), _names(after.contacts)),
        _item("address lists", _names(before.address_lists), _names(after.address_lists)),
        _item("dynamic groups", _names(before.dynamic_groups), _names(after.dynamic_groups)),
    ] + extra)
