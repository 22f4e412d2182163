"""A project unit's calendars and contacts: copied with its mail at start, sync and finish, verified at
finish by UID, counted in the report.

Configured in the project file::

    [groupware]
    calendars = { source = "caldav://old.example.org/", target = "caldav://new.example.org/" }
    contacts = { source = "carddav://old.example.org/", target = "carddav://new.example.org/" }
    # source_password_file / target_password_file: default the [source] / [target] ones

The account's users log in on each side (the URLs name no user), so one section serves every unit.
A target that only a service account can write for every user (Kerio, a DAV server's admin) takes
``target_user`` and ``target_password_file``; its URLs then name the user's home with ``%u`` (the unit's
address), ``%n`` (its local part) and ``%d`` (its domain): Kerio Connect keeps a user's calendars under
``/calendars/DOMAIN/USER/`` (its user guide, "CalDAV support").  In a ``communigate`` project a pair may leave out ``source``: the
calendar, task and contact boxes of the project's CommuniGate tree are the source (cg2kms carries the same).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, MailmigrateError
from ..model import Account, Secret
from ..stores.groupware_urls import is_groupware_url, open_groupware_store
from ..sync.groupware import GroupwareResult, GroupwareState, sync_groupware, verify_copy

PAIRS = ("calendars", "contacts")


@dataclass
class GroupwarePair:
    what: str  # calendars | contacts
    source: str
    target: str
    #: the service account that logs in on the target for every unit (None: each unit's own user)
    target_user: str | None = None


def parse_section(project_name: str, sec: dict | None, rel, *,
                  default_source=None) -> tuple[list[GroupwarePair], dict]:
    """[groupware] -> the pairs and the password files (made relative to the project file by ``rel``).

    ``default_source(what)`` gives the source URL of a pair that names none (a path whose own store holds
    the groupware, as CommuniGate's does); without it a pair needs both URLs."""
    if not sec:
        return [], {}
    unknown = set(sec) - set(PAIRS) - {"source_password_file", "target_password_file", "target_user"}
    if unknown:
        raise ConfigError(f"project {project_name}: [groupware] does not know {', '.join(sorted(unknown))}")
    target_user = sec.get("target_user") or None
    if target_user is not None and not isinstance(target_user, str):
        raise ConfigError(f"project {project_name}: [groupware] target_user must be a login name")
    pairs = []
    for what in PAIRS:
        p = sec.get(what)
        if p is None:
            continue
        if isinstance(p, dict) and not p.get("source") and default_source is not None:
            p = {**p, "source": default_source(what)}
        if not isinstance(p, dict) or not p.get("source") or not p.get("target"):
            raise ConfigError(f"project {project_name}: [groupware] {what} needs source and target URLs")
        if target_user and "%u" not in p["target"] and "%n" not in p["target"]:
            raise ConfigError(f"project {project_name}: [groupware] {what}: with target_user the target URL names "
                              f"each user's home with %u or %n (e.g. caldav://dav.example.org/%u/)")
        for side in ("source", "target"):
            if not is_groupware_url(p[side]):
                raise ConfigError(f"project {project_name}: [groupware] {what} {side} {p[side]!r} is not a "
                                  f"caldav://, carddav:// or vdir: URL")
            if p[side].lower().startswith("vdir:") and not p[side][5:].startswith("/"):
                p = {**p, side: "vdir:" + str(rel(p[side][5:]))}
        pairs.append(GroupwarePair(what, p["source"], p["target"], target_user))
    files = {k: str(rel(sec[k])) for k in ("source_password_file", "target_password_file") if sec.get(k)}
    return pairs, files


def _open_target(pair: GroupwarePair, acc: Account, password: Secret | None):
    """The unit's target collection home: as the unit's user, or as the pair's service account with the
    user's home named in the URL."""
    if pair.target_user is None:
        return open_groupware_store(pair.target, user=acc.target_user, password=acc.target_password or password,
                                    target=True)
    user = acc.target_user or ""
    local, _, domain = user.partition("@")
    url = pair.target.replace("%u", user).replace("%n", local).replace("%d", domain)
    return open_groupware_store(url, user=pair.target_user, password=password, target=True, home_from_path=True)


def sync_unit(pairs: list[GroupwarePair], acc: Account, state_conn, *, passwords: tuple[Secret | None, Secret | None],
              delete: bool) -> list[tuple[str, GroupwareResult]]:
    """Every configured pair for one account; a pair that cannot log in is that pair's error."""
    state = GroupwareState(state_conn)
    out = []
    for pair in pairs:
        src = open_groupware_store(pair.source, user=acc.source_user, password=acc.source_password or passwords[0])
        tgt = _open_target(pair, acc, passwords[1])
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
        tgt = _open_target(pair, acc, passwords[1])
        key = f"{src.describe()} -> {tgt.describe()}"
        entry = {"what": pair.what, "collections": 0, "source_items": 0, "target_items": 0, "missing": [],
                 "error": None}
        try:
            src.open()
            tgt.open()
            entry.update(verify_copy(src, tgt, state, key))
        except MailmigrateError as e:
            entry["error"] = str(e)
        finally:
            src.close()
            tgt.close()
        if entry["missing"] or entry["error"]:
            result["ok"] = False
        result["pairs"].append(entry)
    return result
