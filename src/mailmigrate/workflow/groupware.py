"""A project unit's calendars and contacts: copied with its mail at start, sync and finish, verified at
finish by UID, counted in the report.

Configured in the project file::

    [groupware]
    calendars = { source = "caldav://old.example.org/", target = "caldav://new.example.org/" }
    contacts = { source = "carddav://old.example.org/", target = "carddav://new.example.org/" }
    # source_password_file / target_password_file: default the [source] / [target] ones

The account's users log in on each side (the URLs name no user), so one section serves every unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, MailmigrateError
from ..formats.ical import item_info
from ..model import Account, Secret
from ..stores.groupware_urls import is_groupware_url, open_groupware_store
from ..sync.groupware import GroupwareResult, GroupwareState, sync_groupware

PAIRS = ("calendars", "contacts")


@dataclass
class GroupwarePair:
    what: str  # calendars | contacts
    source: str
    target: str


def parse_section(project_name: str, sec: dict | None, rel) -> tuple[list[GroupwarePair], dict]:
    """[groupware] -> the pairs and the password files (made relative to the project file by ``rel``)."""
    if not sec:
        return [], {}
    unknown = set(sec) - set(PAIRS) - {"source_password_file", "target_password_file"}
    if unknown:
        raise ConfigError(f"project {project_name}: [groupware] does not know {', '.join(sorted(unknown))}")
    pairs = []
    for what in PAIRS:
        p = sec.get(what)
        if p is None:
            continue
        if not isinstance(p, dict) or not p.get("source") or not p.get("target"):
            raise ConfigError(f"project {project_name}: [groupware] {what} needs source and target URLs")
        for side in ("source", "target"):
            if not is_groupware_url(p[side]):
                raise ConfigError(f"project {project_name}: [groupware] {what} {side} {p[side]!r} is not a "
                                  f"caldav://, carddav:// or vdir: URL")
            if p[side].lower().startswith("vdir:") and not p[side][5:].startswith("/"):
                p = {**p, side: "vdir:" + str(rel(p[side][5:]))}
        pairs.append(GroupwarePair(what, p["source"], p["target"]))
    files = {k: str(rel(sec[k])) for k in ("source_password_file", "target_password_file") if sec.get(k)}
    return pairs, files


def sync_unit(pairs: list[GroupwarePair], acc: Account, state_conn, *, passwords: tuple[Secret | None, Secret | None],
              delete: bool) -> list[tuple[str, GroupwareResult]]:
    """Every configured pair for one account; a pair that cannot log in is that pair's error."""
    state = GroupwareState(state_conn)
    out = []
    for pair in pairs:
        src = open_groupware_store(pair.source, user=acc.source_user, password=acc.source_password or passwords[0])
        tgt = open_groupware_store(pair.target, user=acc.target_user, password=acc.target_password or passwords[1],
                                   target=True)
        key = f"{src.describe()} -> {tgt.describe()}"
        try:
            src.open()
            tgt.open()
            out.append((pair.what, sync_groupware(src, tgt, state, key, delete=delete)))
        except MailmigrateError as e:
            out.append((pair.what, GroupwareResult(key, error=str(e))))
        finally:
            src.close()
            tgt.close()
    return out


def verify_unit(pairs: list[GroupwarePair], acc: Account, state_conn, *,
                passwords: tuple[Secret | None, Secret | None]) -> dict:
    """Every source item's UID present in the target collection it maps to: collections and items per pair."""
    state = GroupwareState(state_conn)
    result = {"ok": True, "pairs": []}
    for pair in pairs:
        src = open_groupware_store(pair.source, user=acc.source_user, password=acc.source_password or passwords[0])
        tgt = open_groupware_store(pair.target, user=acc.target_user, password=acc.target_password or passwords[1],
                                   target=True)
        key = f"{src.describe()} -> {tgt.describe()}"
        entry = {"what": pair.what, "collections": 0, "source_items": 0, "target_items": 0, "missing": [],
                 "error": None}
        try:
            src.open()
            tgt.open()
            mapping = state.collections(key)
            tcols = {c.name: c for c in tgt.collections()}
            for c in src.collections():
                entry["collections"] += 1
                want = {item_info(src.get(c, n).data).uid or n for n in src.list_items(c)}
                entry["source_items"] += len(want)
                t = tcols.get((mapping.get(c.name) or {}).get("target", c.name))
                have = {item_info(tgt.get(t, n).data).uid or n for n in tgt.list_items(t)} if t else set()
                entry["target_items"] += len(want & have)
                entry["missing"] += [f"{c.name}: {u}" for u in sorted(want - have)]
        except MailmigrateError as e:
            entry["error"] = str(e)
        finally:
            src.close()
            tgt.close()
        if entry["missing"] or entry["error"]:
            result["ok"] = False
        result["pairs"].append(entry)
    return result
