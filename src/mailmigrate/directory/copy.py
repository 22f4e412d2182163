"""``diff`` and ``copy`` between any two directories: what would change, then the change.

Copy is idempotent by construction: it reads the target first and only adds what is missing, so a
second run finds nothing to do.  An object that already exists on the target is left alone unless
``update_existing`` is given, and then only the fields the target can hold are compared and written.

Passwords: a hash goes over unchanged when the target accepts its scheme (see :mod:`.passwords`); clear
text goes over when the target takes clear text (writers hash it themselves); otherwise the
:class:`PasswordPolicy` decides per user (set a given password, generate a strong one, or create the
user without one) and the report says which, per user.  Generated passwords are carried in the report as
Secrets, for the caller to hand over through a 0600 file; they never reach a log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from ..model import Secret
from . import passwords
from .base import (
    DEFAULT_FIELDS,
    KINDS,
    Directory,
    DirectoryError,
    DirectoryReader,
    DirectoryWriter,
    PasswordHash,
    User,
    fold,
    password_scheme,
)

log = logging.getLogger(__name__)

_LIST_FIELDS = {"aliases", "forwards", "members", "groups", "targets", "send_as", "delegates", "admins"}
_NAME_FIELDS = {"mail", "company"}  # compared case-insensitively, like the list fields
#: A source that has no first/last name says nothing about it: the target may have had to fill it (LDAP's
#: ``sn`` is mandatory, so a user without one gets the login), and that is not a difference for ever.
_UNSAID_WHEN_EMPTY = {"first_name", "last_name"}


def _norm(name: str, value: Any) -> Any:
    if name in _LIST_FIELDS:
        return frozenset(fold(v) for v in value or ())
    if name in _NAME_FIELDS:
        return fold(value) if value else None
    if isinstance(value, str):
        return value.strip()
    return value


def changed_fields(old, new, fields: frozenset[str]) -> list[str]:
    """Names of the fields in ``fields`` where ``new`` differs from ``old`` (sorted, for stable reports)."""
    out = []
    for f in sorted(fields):
        if not hasattr(new, f) or (f in _UNSAID_WHEN_EMPTY and not getattr(new, f)):
            continue
        if _norm(f, getattr(old, f, None)) != _norm(f, getattr(new, f)):
            out.append(f)
    return out


@dataclass
class KindDiff:
    missing: list[str] = field(default_factory=list)  # in source, not in target (names as the source spells them)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> fields that differ
    only_in_target: list[str] = field(default_factory=list)
    same: int = 0
    disabled: list[str] = field(default_factory=list)  # of ``missing``: users disabled on the source

    @property
    def empty(self) -> bool:
        return not (self.missing or self.changed)


@dataclass
class DirectoryDiff:
    source: str
    target: str
    kinds: dict[str, KindDiff] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)  # kind -> objects the target cannot hold

    @property
    def empty(self) -> bool:
        return all(k.empty for k in self.kinds.values())

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "kinds": {k: {"missing": d.missing, "changed": d.changed, "only_in_target": d.only_in_target,
                          "same": d.same, **({"disabled": d.disabled} if k == "users" else {})}
                      for k, d in self.kinds.items()},
            "unsupported": self.unsupported,
        }

    def render(self) -> str:
        lines = [f"{self.source} -> {self.target}"]
        for kind, d in self.kinds.items():
            if not (d.missing or d.changed or d.only_in_target or d.same):
                continue
            lines.append(f"  {kind}: {len(d.missing)} to add, {len(d.changed)} differ, {d.same} same, "
                         f"{len(d.only_in_target)} only on target")
            off = set(d.disabled)
            lines += [f"    + {n}" + (" (disabled)" if n in off else "") for n in d.missing]
            lines += [f"    ~ {n} ({', '.join(f)})" for n, f in d.changed.items()]
        for kind, n in self.unsupported.items():
            lines.append(f"  {kind}: {n} not migrated: the target has no place for them")
        if self.empty:
            lines.append("  nothing to do")
        return "\n".join(lines)


def _fields_of(target) -> dict[str, frozenset[str]]:
    return getattr(target, "fields", None) or DEFAULT_FIELDS


def diff_directories(source: Directory, target: Directory, *, kinds=KINDS, fields=DEFAULT_FIELDS,
                     source_name: str = "", target_name: str = "") -> DirectoryDiff:
    """Compare two directories already read (pure)."""
    result = DirectoryDiff(source_name or source.name, target_name or target.name)
    for kind in KINDS:
        src, dst = getattr(source, kind), getattr(target, kind)
        if kind not in kinds:
            if src:
                result.unsupported[kind] = len(src)
            continue
        d = KindDiff()
        for key, obj in src.items():
            name = _name(obj)
            if key not in dst:
                d.missing.append(name)
                if getattr(obj, "enabled", True) is False:
                    d.disabled.append(name)
                continue
            ch = changed_fields(dst[key], obj, fields.get(kind, frozenset()))
            if ch:
                d.changed[name] = ch
            else:
                d.same += 1
        d.only_in_target = [_name(o) for k, o in dst.items() if k not in src]
        result.kinds[kind] = d
    return result


def diff(source: DirectoryReader, target: DirectoryReader) -> DirectoryDiff:
    """What ``copy`` would do: reads both directories, changes nothing."""
    src, dst = source.read(), target.read()  # read first: a writer may learn its kinds from the server
    kinds = getattr(target, "kinds", KINDS)
    return diff_directories(src, dst, kinds=kinds, fields=_fields_of(target),
                            source_name=source.describe(), target_name=target.describe())


def _name(obj) -> str:
    for attr in ("login", "name", "address"):
        if hasattr(obj, attr):
            return getattr(obj, attr)
    raise TypeError(type(obj).__name__)


# -- passwords ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPolicy:
    """What to do for a user whose password the target cannot take as it is.

    ``action`` is ``skip`` (create the user without a password: it cannot log in until one is set),
    ``set`` (use ``password`` for every such user) or ``generate`` (a strong random one per user).
    """

    action: str = "skip"
    password: Secret | None = None

    def __post_init__(self):
        if self.action not in ("skip", "set", "generate"):
            raise ValueError(f"unknown password action {self.action!r}")
        if self.action == "set" and not self.password:
            raise ValueError("password action 'set' needs a password")


@dataclass
class PasswordOutcome:
    """Per user: ``kept`` (hash or clear text carried over), ``set``, ``generated`` or ``none``."""

    user: str
    action: str
    reason: str = ""
    generated: Secret | None = None

    def as_dict(self) -> dict:  # the generated password is deliberately not in it
        return {"user": self.user, "action": self.action, "reason": self.reason}


def choose_password(user: User, target: DirectoryWriter, policy: PasswordPolicy) -> tuple[Any, PasswordOutcome]:
    """The password to give the target for ``user``, and what the report should say about it."""
    pw = user.password
    if isinstance(pw, Secret) and pw and target.accepts_clear:
        return pw, PasswordOutcome(user.login, "kept", "clear text")
    if isinstance(pw, PasswordHash):
        adapted = passwords.adapt(pw, target.password_schemes)
        if adapted is not None:
            how = f"{{{adapted.scheme}}} hash" + (f" (converted from {{{pw.scheme}}})" if adapted.scheme != pw.scheme
                                                   and adapted.value != pw.value else "")
            return adapted, PasswordOutcome(user.login, "kept", how)
        why = passwords.refusal(pw, target.password_schemes)
    elif isinstance(pw, Secret) and pw:
        why = "the target does not accept clear-text passwords"
    else:
        why = user.password_note or "the source has no password for this user"
    if policy.action == "set" and target.accepts_clear:
        return policy.password, PasswordOutcome(user.login, "set", why + "; the given password was set")
    if policy.action == "generate" and target.accepts_clear:
        g = passwords.generate()
        return g, PasswordOutcome(user.login, "generated", why + "; a new password was generated", g)
    return None, PasswordOutcome(user.login, "none", why + "; created without a password")


# -- copy ---------------------------------------------------------------------------------------------


@dataclass
class CopyReport:
    source: str
    target: str
    dry_run: bool = False
    created: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    left_alone: dict[str, list[str]] = field(default_factory=dict)  # exist on the target, differ, not updated
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, reason)
    unsupported: dict[str, int] = field(default_factory=dict)
    passwords: list[PasswordOutcome] = field(default_factory=list)
    #: Users disabled on the source: (login, the source's marker, how the target holds it).
    disabled: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def changes(self) -> int:
        return sum(map(len, self.created.values())) + sum(map(len, self.updated.values()))

    def generated_passwords(self) -> list[tuple[str, Secret]]:
        return [(p.user, p.generated) for p in self.passwords if p.generated is not None]

    def as_dict(self) -> dict:
        return {
            "source": self.source, "target": self.target, "dry_run": self.dry_run,
            "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
            "left_alone": self.left_alone,
            "failed": [{"kind": k, "name": n, "reason": r} for k, n, r in self.failed],
            "unsupported": self.unsupported,
            "passwords": [p.as_dict() for p in self.passwords],
            "disabled": [{"user": u, "source": src, "target": how} for u, src, how in self.disabled],
            "notes": self.notes,
        }

    def render(self) -> str:
        head = "would copy" if self.dry_run else "copied"
        lines = [f"{head} {self.source} -> {self.target}"]
        for kind in KINDS:
            c, u = self.created.get(kind, []), self.updated.get(kind, [])
            n, a = self.unchanged.get(kind, 0), self.left_alone.get(kind, [])
            if c or u or n or a:
                lines.append(f"  {kind}: {len(c)} created, {len(u)} updated, {n} unchanged, "
                             f"{len(a)} differ but left alone")
                lines += [f"    + {x}" for x in c] + [f"    ~ {x}" for x in u]
                lines += [f"    = {x} (exists on the target; --update-existing to change it)" for x in a]
        for kind, n in self.unsupported.items():
            lines.append(f"  {kind}: {n} not migrated: the target has no place for them")
        for p in self.passwords:
            if p.action != "kept":
                lines.append(f"  password of {p.user}: {p.reason}")
        for u, src, how in self.disabled:
            lines.append(f"  disabled: {u} ({src}) -> {how}")
        for k, n, r in self.failed:
            lines.append(f"  FAILED {k} {n}: {r}")
        lines += [f"  note: {x}" for x in self.notes]
        return "\n".join(lines)


def copy(source: DirectoryReader, target: DirectoryWriter, *, update_existing: bool = False,
         password_policy: PasswordPolicy = PasswordPolicy(), dry_run: bool = False,
         disabled_as_enabled: bool = False) -> CopyReport:
    """Make ``target`` hold what ``source`` holds.  Objects are created in :data:`KINDS` order.

    A user disabled on the source is created disabled, in the target's own form; where the target cannot
    hold that for this user the user is refused (named, with the reason), since an account someone
    switched off must not come back to life by moving servers, unless ``disabled_as_enabled`` says to
    create it enabled anyway (and the report says so per user)."""
    src = source.read()
    dst = target.read()
    report = CopyReport(source.describe(), target.describe(), dry_run=dry_run)
    report.notes += src.notes
    report.notes += _left_behind(src, target)
    fields = _fields_of(target)
    for kind in KINDS:
        objs = getattr(src, kind)
        if not objs:
            continue
        if kind not in target.kinds:
            report.unsupported[kind] = len(objs)
            continue
        existing = getattr(dst, kind)
        for key, obj in objs.items():
            name = _name(obj)
            try:
                if key not in existing:
                    obj = _with_password(obj, target, password_policy, report, dry_run)
                    if kind == "users":
                        obj = _disabled_state(obj, target, report, disabled_as_enabled)
                    if not dry_run:
                        target.add(obj)
                    report.created.setdefault(kind, []).append(name)
                    continue
                old = existing[key]
                ch = changed_fields(old, obj, fields.get(kind, frozenset()))
                pw_new = _password_update(obj, old, target) if update_existing and kind == "users" else None
                if not ch and pw_new is None:
                    report.unchanged[kind] = report.unchanged.get(kind, 0) + 1
                elif not update_existing:
                    report.left_alone.setdefault(kind, []).append(name)
                else:
                    new = replace(obj, password=pw_new if pw_new is not None else old.password) \
                        if kind == "users" else obj
                    if kind == "users" and "enabled" in ch:
                        new = _disabled_state(new, target, report, disabled_as_enabled)
                    if not dry_run:
                        target.update(old, new)
                    report.updated.setdefault(kind, []).append(name)
            except DirectoryError as e:
                report.failed.append((kind, name, str(e)))
                for p in report.passwords[-1:]:
                    if p.user == name and p.generated is not None:  # never set: not to be handed over
                        p.generated, p.action = None, "none"
                        p.reason += "; not used, the user was not created"
                log.warning("%s %s: %s", kind, name, e)
    if not dry_run:
        target.commit()
    return report


def _with_password(obj, target: DirectoryWriter, policy: PasswordPolicy, report: CopyReport,
                   dry_run: bool = False):
    if not isinstance(obj, User):
        return obj
    pw, outcome = choose_password(obj, target, policy)
    if dry_run and outcome.generated is not None:
        # nothing is set in a dry run, so nothing is generated: a password handed over must be the one set
        outcome.generated, pw = None, None
        outcome.reason = outcome.reason.replace("a new password was generated", "a new password would be generated")
    report.passwords.append(outcome)
    return replace(obj, password=pw)


def _disabled_state(user: User, target: DirectoryWriter, report: CopyReport, disabled_as_enabled: bool) -> User:
    """The user as it may be written: disabled ones checked against what the target can hold."""
    if user.enabled:
        return user
    marker = user.disabled_by or "disabled on the source"
    if target.can_disable(user):
        report.disabled.append((user.login, marker, target.disabled_form(user)))
        return user
    if not disabled_as_enabled:
        raise DirectoryError(f"user {user.login} is disabled on the source ({marker}) and {target.describe()} "
                             f"cannot hold it disabled ({target.disabled_form(user)}): not created, so that it "
                             f"does not arrive enabled (--disabled-as-enabled creates it enabled)")
    report.disabled.append((user.login, marker, "created ENABLED as asked (--disabled-as-enabled): "
                            + target.disabled_form(user)))
    return replace(user, enabled=True)


def _left_behind(src: Directory, target: DirectoryWriter) -> list[str]:
    """Notes for source data the target has no field for, which would otherwise vanish without a word."""
    notes = []
    kinds, fields = target.kinds, _fields_of(target)
    if "groups" in kinds and "gid" not in fields.get("groups", frozenset()):
        with_gid = [f"{g.name} ({g.gid})" for g in src.groups.values() if g.gid is not None]
        if with_gid:
            notes.append(f"{len(with_gid)} group(s) have a gidNumber that the target's groups do not keep "
                         f"(ldap targets keep it with group_style=posix): " + _some(with_gid))
    if "users" in kinds and "shadow:" not in target.extra_prefixes:
        users = [u.login for u in src.users.values() if any(k.startswith("shadow:") for k in u.extra)]
        if users:
            notes.append(f"{len(users)} user(s) have shadowAccount attributes (password ageing, expiry) "
                         f"that the target has no place for; not migrated: " + _some(users))
    return notes


def _some(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _password_update(user: User, old: User, target: DirectoryWriter):
    """A password to write on update, or None when the target's password is already this one (or unknowable)."""
    pw = user.password
    if isinstance(pw, PasswordHash):
        adapted = passwords.adapt(pw, target.password_schemes)
        if adapted is None:
            return None
        if isinstance(old.password, PasswordHash) and passwords.adapt(old.password, {adapted.scheme}) == adapted:
            return None
        if isinstance(old.password, PasswordHash) and old.password.value == adapted.value:
            return None
        return adapted
    if isinstance(pw, Secret) and pw and target.accepts_clear:
        return None if passwords.verify(pw, old.password) in (True, None) else pw
    return None


__all__ = ["diff", "copy", "diff_directories", "DirectoryDiff", "KindDiff", "CopyReport", "PasswordPolicy",
           "PasswordOutcome", "choose_password", "changed_fields", "password_scheme"]
