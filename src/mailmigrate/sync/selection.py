"""What a run copies, and under which names: the user's folder and message rules (`sync --include`,
`--exclude`, `--folder`, `--map`, `--rename`, `--no-special-use`, `--min-age`/`--max-age`,
`--min-size`/`--max-size`, `--just-folders`, `--special-use FOLDER=ROLE`, `--gmail-all-mail`).

Why a module of its own: the rules travel from the command line, the project file and the fleet's job
descriptions to the engine unchanged, so they are one plain value (:class:`Selection`) that turns into a
dict and back, and the engine only asks it questions ("is this folder wanted?", "what is its target
name?", "is this message wanted?").

Folder paths are matched as the decoded source path joined with ``/`` whatever the server's separator,
so one rule reads the same against Dovecot (``/``) and Cyrus or Courier (``.``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone

from ..errors import ConfigError
from ..model import FolderPath, MessageMeta

#: the roles --special-use takes, as the user writes them; "none" takes a folder's role away
ROLES = {"sent": "\\Sent", "drafts": "\\Drafts", "trash": "\\Trash", "junk": "\\Junk", "archive": "\\Archive",
         "all": "\\All", "flagged": "\\Flagged", "none": None}
GMAIL_ALL_MAIL = ("dedupe", "copy", "skip")


@dataclass(frozen=True)
class Selection:
    """The user's rules: which folders and messages are copied, and under which target names."""

    include: tuple[str, ...] = ()  # regexes: a folder is wanted when one matches (none given: all)
    exclude: tuple[str, ...] = ()  # regexes: a folder matching one is left out (wins over include)
    folders: tuple[str, ...] = ()  # only these folders (and their children with folder_recursive)
    folder_recursive: bool = False
    maps: tuple[tuple[str, str], ...] = ()  # OLD=NEW, exact folder (children follow it)
    renames: tuple[tuple[str, str], ...] = ()  # REGEX=REPLACEMENT, applied in order after maps
    special_use: bool = True  # map \Sent, \Drafts, ... onto the target's own folders of that role
    min_age: float | None = None  # days: only messages at least this old (INTERNALDATE)
    max_age: float | None = None  # days: only messages at most this old
    min_size: int | None = None  # bytes
    max_size: int | None = None
    just_folders: bool = False  # create the folder tree, copy no message
    search: str | None = None  # IMAP SEARCH keys the source server answers (IMAP sources only)
    special_uses: tuple[tuple[str, str], ...] = ()  # FOLDER=ROLE: a source folder's role, whatever it says
    gmail_all_mail: str = "dedupe"  # a Gmail source's [Gmail]/All Mail: dedupe | copy | skip (docs/PROVIDERS.md)

    def __post_init__(self) -> None:
        for rx in self.include + self.exclude + tuple(r for r, _ in self.renames):
            try:
                re.compile(rx)
            except re.error as e:
                raise ConfigError(f"folder rule {rx!r} is no valid regular expression: {e}") from None
        for old, new in self.maps:
            if not old or not new:
                raise ConfigError(f"--map {old}={new}: both the old and the new folder name are needed")
        for folder, role in self.special_uses:
            if not folder or role.lower() not in ROLES:
                raise ConfigError(f"--special-use {folder}={role}: give FOLDER=ROLE with ROLE one of "
                                  f"{', '.join(ROLES)}")
        if self.gmail_all_mail not in GMAIL_ALL_MAIL:
            raise ConfigError(f"--gmail-all-mail {self.gmail_all_mail}: one of {', '.join(GMAIL_ALL_MAIL)}")
        if self.search is not None and (not self.search.strip() or "\r" in self.search or "\n" in self.search):
            raise ConfigError("--search needs IMAP SEARCH keys on one line, e.g. 'SINCE 1-Jan-2024 NOT DELETED'")
        for name in ("min_age", "max_age", "min_size", "max_size"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name.replace('_', '-')} must not be negative")

    # --- travel ---------------------------------------------------------------------------------
    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Selection":
        if not d:
            return cls()
        d = dict(d)
        for k in ("include", "exclude", "folders"):
            d[k] = tuple(d.get(k) or ())
        for k in ("maps", "renames", "special_uses"):
            d[k] = tuple(tuple(p) for p in d.get(k) or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def with_rules(self, text: str | None) -> "Selection":
        """These rules with an account's own added (accounts file, 5th column), written as sync's options:
        ``--exclude '^Trash$' --max-size 20000000``.  Lists (--include, --exclude, --folder, --map,
        --rename) are added to; the others are replaced."""
        if not text or not text.strip():
            return self
        import shlex  # here: only an accounts file's rules are split like a shell line

        try:
            words = shlex.split(text)
        except ValueError as e:
            raise ConfigError(f"rules {text!r}: {e}") from None
        lists = {"--include": "include", "--exclude": "exclude", "--folder": "folders"}
        pairs = {"--map": "maps", "--rename": "renames", "--special-use": "special_uses"}
        texts = {"--search": ("search", str), "--gmail-all-mail": ("gmail_all_mail", str)}
        numbers = {**texts, "--min-age": ("min_age", float), "--max-age": ("max_age", float),
                   "--min-size": ("min_size", int), "--max-size": ("max_size", int)}
        flags = {"--folder-recursive": ("folder_recursive", True), "--no-special-use": ("special_use", False),
                 "--just-folders": ("just_folders", True)}
        changes: dict = {}
        i = 0
        while i < len(words):
            w = words[i]
            if w in flags:
                k, v = flags[w]
                changes[k] = v
                i += 1
                continue
            if w not in lists and w not in pairs and w not in numbers:
                known = ", ".join(sorted([*lists, *pairs, *numbers, *flags]))
                raise ConfigError(f"rules {text!r}: {w!r} is not a folder or message rule (known: {known})")
            if i + 1 >= len(words):
                raise ConfigError(f"rules {text!r}: {w} needs a value")
            v = words[i + 1]
            if w in lists:
                k = lists[w]
                changes[k] = changes.get(k, getattr(self, k)) + (v,)
            elif w in pairs:
                k = pairs[w]
                changes[k] = changes.get(k, getattr(self, k)) + (parse_pair(v, w),)
            else:
                k, kind = numbers[w]
                try:
                    changes[k] = kind(v)
                except ValueError:
                    raise ConfigError(f"rules {text!r}: {w} takes a number, not {v!r}") from None
            i += 2
        return replace(self, **changes)

    # --- folders --------------------------------------------------------------------------------
    @property
    def has_message_rules(self) -> bool:
        return any(v is not None for v in (self.min_age, self.max_age, self.min_size, self.max_size, self.search))

    @property
    def renames_folders(self) -> bool:
        return bool(self.maps or self.renames)

    def wants_folder(self, path: FolderPath) -> bool:
        name = "/".join(path)
        if self.folders:
            hit = False
            for f in self.folders:
                want = tuple(f.split("/"))
                if _same(path, want) or (self.folder_recursive and len(path) > len(want)
                                         and _same(path[:len(want)], want)):
                    hit = True
                    break
            if not hit:
                return False
        if self.include and not any(re.search(rx, name) for rx in self.include):
            return False
        return not any(re.search(rx, name) for rx in self.exclude)

    def target_name(self, source: FolderPath, planned: FolderPath) -> FolderPath | None:
        """The target path the user's --map/--rename rules give ``source``, or None when none applies
        (then the planned name, special use mapping included, stays)."""
        name = None
        for old, new in self.maps:
            want = tuple(old.split("/"))
            if _same(source[:len(want)], want) and len(source) >= len(want):
                name = "/".join(tuple(new.split("/")) + tuple(source[len(want):]))
                break
        current = name if name is not None else "/".join(planned)
        renamed = current
        for rx, repl in self.renames:
            renamed = re.sub(rx, repl, renamed)
        if name is None and renamed == current:
            return None
        parts = tuple(p for p in renamed.split("/") if p)
        if not parts:
            raise ConfigError(f"folder rules turn {'/'.join(source)!r} into an empty name")
        return parts

    def role_override(self, path: FolderPath) -> tuple[bool, str | None]:
        """(given, role) for a source folder: whether --special-use names it, and the role it gives (an
        RFC 6154 attribute such as ``\\Sent``, or None for "none").  The last rule for a folder wins."""
        given, role = False, None
        for folder, r in self.special_uses:
            if _same(path, tuple(folder.split("/"))):
                given, role = True, ROLES[r.lower()]
        return given, role

    # --- messages -------------------------------------------------------------------------------
    def wants_message(self, m: MessageMeta, now: datetime | None = None) -> bool:
        """False when a rule leaves the message out.  A message whose store gives no size or date is
        kept: a rule that cannot be checked does not lose mail."""
        if self.min_size is not None and m.size is not None and m.size < self.min_size:
            return False
        if self.max_size is not None and m.size is not None and m.size > self.max_size:
            return False
        if (self.min_age is not None or self.max_age is not None) and m.internaldate is not None:
            now = now or datetime.now(timezone.utc)
            d = m.internaldate if m.internaldate.tzinfo else m.internaldate.replace(tzinfo=timezone.utc)
            age = now - d
            if self.min_age is not None and age < timedelta(days=self.min_age):
                return False
            if self.max_age is not None and age > timedelta(days=self.max_age):
                return False
        return True


def _same(a: FolderPath, b: FolderPath) -> bool:
    if len(a) != len(b):
        return False
    if a and a[0].upper() == "INBOX" and b[0].upper() == "INBOX":
        return tuple(a[1:]) == tuple(b[1:])
    return tuple(a) == tuple(b)


def parse_pair(text: str, option: str) -> tuple[str, str]:
    """``OLD=NEW`` as given to --map or --rename (the first ``=`` splits)."""
    if "=" not in text:
        raise ConfigError(f"{option} {text!r}: expected OLD=NEW")
    a, b = text.split("=", 1)
    return a, b
