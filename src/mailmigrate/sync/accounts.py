"""The accounts to move and their passwords, from the command line, the environment and a CSV file.

Passwords never come from argv (every user on the machine can read a process's arguments): they come from
the environment, from a file, or from the accounts file, which must then not be readable by others (the
rules, and the filter every password read is given to, are in credentials.py).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

# password_from and read_password_file are used by a dozen commands and paths under these names
from ..credentials import SECRETS, Secret, check_private, password_from, read_password_file  # noqa: F401
from ..errors import ConfigError
from ..model import Account
from .selection import Selection


def parse_accounts_csv(text: str, *, origin: str = "accounts file") -> list[Account]:
    """``source_user,target_user[,source_password,target_password[,rules]]`` a line (``rules``: this
    account's own folder and message rules in sync's option syntax, see sync.selection); ``#`` comments, blank
    lines and a header line starting with ``source_user`` are skipped; an empty target_user means the
    same as the source user."""
    accounts: list[Account] = []
    seen: set[tuple[str, str]] = set()
    reader = csv.reader(io.StringIO(text))
    for lineno, row in enumerate(reader, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if lineno == 1 and cells[0].lower() in ("source_user", "source", "user"):
            continue
        if len(cells) > 5:
            raise ConfigError(f"{origin}, line {lineno}: at most 5 columns "
                              "(source_user,target_user,source_password,target_password,rules)")
        src = cells[0]
        if not src:
            raise ConfigError(f"{origin}, line {lineno}: source_user is empty")
        tgt = cells[1] if len(cells) > 1 and cells[1] else src
        sp = Secret(row[2]) if len(row) > 2 and row[2] else None
        tp = Secret(row[3]) if len(row) > 3 and row[3] else None
        SECRETS.add(sp)
        SECRETS.add(tp)
        if (src, tgt) in seen:
            raise ConfigError(f"{origin}, line {lineno}: {src} -> {tgt} is listed twice")
        seen.add((src, tgt))
        rules = cells[4] if len(cells) > 4 and cells[4] else None
        if rules:
            try:
                Selection().with_rules(rules)  # said now, with the line, not when the account's turn comes
            except ConfigError as e:
                raise ConfigError(f"{origin}, line {lineno}: {e}") from None
        accounts.append(Account(src, tgt, sp, tp, rules))
    if not accounts:
        raise ConfigError(f"{origin} lists no accounts")
    return accounts


def load_accounts_file(path: str | os.PathLike) -> list[Account]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"accounts file {p}: {e.strerror}") from None
    accounts = parse_accounts_csv(text, origin=f"accounts file {p}")
    if any(a.source_password or a.target_password for a in accounts):
        check_private(p, "accounts file with passwords")
    return accounts
