"""NethServer 7's groupware, SOGo and WebTop, to NethServer 8: each user's calendars, task lists and contacts
through the two servers' own CalDAV/CardDAV endpoints, with the groupware engine's promises (intent before
each PUT, UIDs kept, reruns copy what changed, ``abort`` takes back only our copies).

Why through DAV and not their databases: NS8 runs SOGo and WebTop again, but in other versions with other
schemas; what both sides keep speaking is CalDAV/CardDAV, and a copy made that way is checked the way a
client sees it.  What DAV does not carry (mail filters, preferences, ACLs of shared calendars, WebTop's notes,
reminders' delivery state) is listed by finish as not carried, application by application.

Where each server's DAV lives on NS7 (NethServer/nethserver-sogo, ``templates/etc/httpd/conf.d/zzz_SOGo.conf``
and ``sogo.conf/60general``, ``75dav``): SOGo answers under ``/SOGo/dav/<user>/`` when the ``sogod`` record's
``Dav`` property is enabled; users named in ``AdminUsers`` (default ``admin``) are SOGo super users, who may
read and write every user's collections.  WebTop 5 (NethServer's user manual, "WebTop"): ``/webtop-dav``, and
its administrator can act as any user by logging in as ``admin!<user>`` with the administrator's password.
Both are configurable: the URL and the login are templates (``%u`` the NS7 user ``name@domain``, ``%n`` the
name, ``%d`` the domain), so the same code serves a SOGo super user (one login, the user in the path) and
WebTop's impersonation (the user in the login).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError, MailmigrateError
from ...formats.esmith import read_esmith, write_esmith
from ...model import Secret
from ...stores.dav import parse_dav_url
from ...sync.groupware import GroupwareState, remove_copies, sync_groupware, verify_copy
from ...sync.state import StateDB


@dataclass(frozen=True)
class DavApp:
    name: str
    #: its record in NS7's ``configuration`` database
    db_key: str
    #: NS7's DAV under the host, with the user in the path (SOGo) or not (WebTop: the login names the user)
    source_path: str
    #: the login on NS7 per user, when the server impersonates (WebTop); None: one service login
    source_login: str | None
    #: the event that applies a changed record on a live NS7
    event: str
    not_carried: tuple[str, ...]


DAV_APPS = {
    "sogo": DavApp("sogo", "sogod", "/SOGo/dav/%n/", None, "nethserver-sogo-update", (
        "mail filters and vacation messages (Sieve scripts: carried by the mail application)",
        "preferences and the web interface's settings (SOGo's user profile table)",
        "calendar and address book sharing rights (SOGo's ACL table)",
        "ActiveSync device states (devices resynchronise)")),
    "webtop": DavApp("webtop", "webtop", "/webtop-dav/server.php/", "admin!%u", "nethserver-webtop5-update", (
        "notes, and reminders' delivery state (not served over DAV)",
        "preferences, signatures and mail identities (WebTop's settings tables)",
        "calendar and address book sharing rights",
        "ActiveSync device states (devices resynchronise)")),
}


@dataclass
class DavLink:
    """One application's two DAV sides.  ``source``/``target``: caldav:// URLs (the address books are read
    at the same URL with carddav://), templates in %u/%n/%d; ``*_user``: the login, a template too (a
    service account's name, or WebTop's ``admin!%u``)."""

    source: str
    target: str
    source_user: str | None
    target_user: str | None
    source_password: Secret | None
    target_password: Secret | None
    insecure: bool = False
    #: per kind ("calendar", "addressbook"): False leaves it out (a server with calendars only)
    kinds: tuple[str, ...] = field(default=("calendar", "addressbook"))


def _expand(template: str | None, user: str) -> str | None:
    if template is None:
        return None
    name, _, domain = user.partition("@")
    return template.replace("%u", user).replace("%n", name).replace("%d", domain)


def check_source(cfg_path: Path, app: DavApp) -> None:
    """NS7 must serve the application and its DAV: a disabled SOGo DAV answers nothing to copy from, and
    copying zero items would look like success."""
    cfg = read_esmith(cfg_path)
    rec = cfg.get(app.db_key)
    if rec is None:
        raise ConfigError(f"{app.name}: NS7's configuration database has no {app.db_key} record: the application "
                          f"is not installed on NS7 (skip it)")
    if app.name == "sogo" and rec.props.get("Dav", "enabled") != "enabled":
        raise ConfigError(f"{app.name}: SOGo's DAV access is disabled on NS7 ({app.db_key} Dav={rec.props['Dav']}); "
                          f"on NS7 run: config setprop {app.db_key} Dav enabled; signal-event {app.event}")


class _Sides:
    """The stores of one user and kind, opened and closed together."""

    def __init__(self, link: DavLink, app: DavApp, user: str, kind: str):
        scheme = "caldav" if kind == "calendar" else "carddav"

        def open_side(url_template: str, login_template: str | None, password: Secret | None):
            url = _expand(url_template, user)
            if not url.startswith(("caldav://", "carddav://")):
                raise ConfigError(f"{app.name}: {url_template}: give a caldav:// URL (contacts are read at the same "
                                  f"URL as carddav://)")
            url = scheme + url[url.index(":"):]
            # a service login reads or writes another user's home: the URL's path is that home; a login that
            # is the user (WebTop's admin!USER impersonation) finds its home from its own principal
            service = "%" in url_template and "%" not in (login_template or "")
            return parse_dav_url(url, _expand(login_template, user), password, insecure=link.insecure,
                                 home_from_path=service)

        self.src = open_side(link.source, link.source_user if link.source_user is not None else app.source_login,
                             link.source_password)
        self.tgt = open_side(link.target, link.target_user, link.target_password)
        self.key = f"{app.name} {user} {kind}"

    def __enter__(self):
        self.src.open()
        try:
            self.tgt.open()
        except BaseException:
            self.src.close()
            raise
        return self

    def __exit__(self, *exc):
        self.src.close()
        self.tgt.close()


def state_path(state_dir: Path, app: str) -> Path:
    return state_dir / f"ns7-{app}-dav.db"


def _each(state_dir: Path, app: DavApp, link: DavLink, users: list[str], work, fail) -> None:
    """``work(user, kind, sides, state)`` for each user and kind on the application's groupware state, the
    two sides open; a side that cannot be reached or refuses goes to ``fail(user, kind, error)`` and the
    other users and kinds still go on."""
    db = StateDB.open(state_path(state_dir, app.name))
    try:
        state = GroupwareState(db._conn)
        for user in users:
            for kind in link.kinds:
                try:
                    with _Sides(link, app, user, kind) as s:
                        work(user, kind, s, state)
                except MailmigrateError as e:
                    fail(user, kind, e)
    finally:
        db.close()


def _what(kind: str) -> str:
    return "calendars" if kind == "calendar" else "contacts"


def copy_all(state_dir: Path, app: DavApp, link: DavLink, users: list[str], log, action: str) -> dict:
    """Every user's collections, one user and kind after another; a user whose server refuses is an error
    naming the user, and the others still move."""
    totals = {"users": len(users), "copied": 0, "updated": 0, "failed": 0, "collections": 0}

    def work(user, kind, s, state):
        r = sync_groupware(s.src, s.tgt, state, s.key)
        if r.error:
            log.error(action, f"{app.name}: {user}: {_what(kind)}: {r.error}")
            totals["failed"] += 1
        for pr in r.problems:
            log.error(action, f"{app.name}: {user}: {_what(kind)}: {pr.folder}"
                              f"{'/' + pr.message if pr.message else ''}: {pr.reason}")
        for k in ("copied", "updated", "failed", "collections"):
            totals[k] += getattr(r.counters, k)

    def fail(user, kind, e):
        log.error(action, f"{app.name}: {user}: {_what(kind)}: {e}")
        totals["failed"] += 1

    _each(state_dir, app, link, users, work, fail)
    log.info(action, f"{app.name}: {totals['users']} user(s), {totals['collections']} collection(s), "
                     f"{totals['copied']} item(s) copied, {totals['updated']} updated, {totals['failed']} failed")
    return totals


def verify_all(state_dir: Path, app: DavApp, link: DavLink, users: list[str], log) -> bool:
    """Every NS7 item's UID in the NS8 collection it was copied to; each missing one an error naming user,
    collection and UID."""
    bad = []

    def work(user, kind, s, state):
        for m in verify_copy(s.src, s.tgt, state, s.key)["missing"]:
            log.error("finish", f"{app.name}: {user}: {m} has no copy on NS8")
            bad.append(user)

    def fail(user, kind, e):
        log.error("finish", f"{app.name}: {user}: not verified: {e}")
        bad.append(user)

    _each(state_dir, app, link, users, work, fail)
    return not bad


def abort_all(state_dir: Path, app: DavApp, link: DavLink, users: list[str], log) -> int:
    """Our copies taken back from NS8 (If-Match), collections we created removed when empty; NS7 untouched."""
    if not state_path(state_dir, app.name).exists():
        return 0
    removed = [0]

    def work(user, kind, s, state):
        n, kept = remove_copies(s.tgt, state, s.key)
        removed[0] += n
        for k in kept:
            log.warning("abort", f"{app.name}: {user}: {k}: kept")

    _each(state_dir, app, link, users, work, lambda user, kind, e: log.error("abort", f"{app.name}: {user}: {e}"))
    return removed[0]


def disable_source(cfg_path: Path, app: DavApp, log) -> None:
    cfg = read_esmith(cfg_path)
    rec = cfg.get(app.db_key)
    if rec is not None:
        rec.props["status"] = "disabled"
        write_esmith(cfg_path, cfg)
    log.info("finish", f"NS7 {app.name} disabled ({app.db_key} status=disabled); on the NS7 host run: "
                       f"signal-event {app.event}")


def not_carried(app: DavApp, log) -> None:
    for what in app.not_carried:
        log.warning("finish", f"{app.name}: not carried over DAV: {what}")
