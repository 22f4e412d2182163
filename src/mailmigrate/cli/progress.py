"""The terminal's live progress for any number of accounts.

One overall line (messages and bytes against what is known so far, rate, ETA) above the accounts that are
running now; finished accounts collapse into a counter, so 500 accounts are never 500 bars. Labels are the
account's user, shortened in the middle, not the URLs (`imaps://ann@old:993 -> imaps://ann@new` shows as
`ann`). The numbers are counted here, under one lock, from the engine's progress events; the drawing is
rich's Live, redrawn a few times a second.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from ..sync.engine import Progress

#: how many running accounts are drawn one per line; the rest are counted
SHOWN = 8


def account_label(account: str, width: int = 32) -> str:
    """The user an account key names (``SRC -> TGT``), both when they differ, shortened in the middle."""
    sides = account.split(" -> ")

    def who(side: str) -> str:
        m = re.match(r"^[a-z+]+://(?:([^@/?]+)@)?([^/?]*)", side)
        if m:
            return m.group(1) or m.group(2)
        path = side.split(":", 1)[-1].rstrip("/")
        parts = [p for p in path.split("/") if p and p.lower() not in ("maildir", "mail")]
        return parts[-1] if parts else side

    names = [who(s) for s in sides]
    label = names[0] if len(names) == 1 or names[0] == names[-1] else f"{names[0]} → {names[-1]}"
    return label if len(label) <= width else label[: (width - 1) // 2] + "…" + label[-(width // 2):]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class _Account:
    label: str
    folder: str = ""
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)


class Counts:
    """Everything the display shows, updated from the engine's threads."""

    def __init__(self, accounts: int):
        self.accounts = accounts
        self.lock = threading.Lock()
        self.running: dict[str, _Account] = {}
        self.ok = self.failed = 0
        self.failed_labels: list[str] = []
        self.msgs_total = self.msgs_done = self.bytes_total = self.bytes_done = 0
        self.finished_bytes = 0  # what the finished accounts had to copy: the estimate for those waiting
        self.bytes_by_account: dict[str, int] = {}
        self.started = time.monotonic()

    def rates(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.msgs_done / elapsed, self.bytes_done / elapsed

    def eta(self) -> tuple[float | None, bool]:
        """Seconds left and whether that is an estimate: accounts that have not started yet are reckoned
        at the mean size of those that finished."""
        _, brate = self.rates()
        left = self.bytes_total - self.bytes_done
        finished = self.ok + self.failed
        waiting = self.accounts - finished - len(self.running)
        guessed = waiting > 0
        if guessed and finished:
            left += waiting * self.finished_bytes / finished
        if brate <= 0 or left <= 0 or (guessed and not finished):
            return None, guessed
        return left / brate, guessed

    def final_line(self) -> str:
        elapsed = time.monotonic() - self.started
        mrate, brate = self.rates()
        return (f"{self.ok + self.failed}/{self.accounts} account(s) in {_duration(elapsed)}: "
                f"{self.msgs_done} messages, {_size(self.bytes_done)} at {mrate:.0f} msg/s, {_size(brate)}/s"
                + (f"; {self.failed} failed" if self.failed else ""))


class ScaledProgress(Progress):
    """Live terminal progress for one account or ten thousand: context manager around a run."""

    def __init__(self, accounts: int, console=None, refresh_per_second: float = 4):
        from rich.console import Console

        self.counts = Counts(accounts)
        self.console = console or Console(stderr=True)
        self._refresh = refresh_per_second
        self._live = None

    # --- the engine's events -------------------------------------------------------------------
    def account_start(self, account):
        with self.counts.lock:
            self.counts.running.setdefault(account, _Account(account_label(account)))

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        c = self.counts
        with c.lock:
            a = c.running.setdefault(account, _Account(account_label(account)))
            a.folder, a.total = folder, a.total + to_copy
            c.msgs_total += to_copy
            c.bytes_total += bytes_to_copy
            c.bytes_by_account[account] = c.bytes_by_account.get(account, 0) + bytes_to_copy

    def copied(self, account, folder, messages, nbytes):
        c = self.counts
        with c.lock:
            a = c.running.get(account)
            if a is not None:
                a.done += messages
            c.msgs_done += messages
            c.bytes_done += nbytes

    def account_done(self, account, result):
        c = self.counts
        with c.lock:
            a = c.running.pop(account, None)
            c.finished_bytes += c.bytes_by_account.pop(account, 0)
            if result.error or result.counters.failed:
                c.failed += 1
                c.failed_labels.append(a.label if a else account_label(account))
            else:
                c.ok += 1

    # --- drawing -----------------------------------------------------------------------------------
    def render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        c = self.counts
        with c.lock:
            running = sorted(c.running.values(), key=lambda a: a.started)
            mrate, brate = c.rates()
            eta, guessed = c.eta()
            head = Table.grid(padding=(0, 1))
            head.add_column(min_width=12)
            head.add_column(width=20)
            head.add_column()
            head.add_row(
                Text("all accounts", style="bold"),
                ProgressBar(total=max(c.bytes_total, 1), completed=c.bytes_done, width=20),
                Text(f"{c.msgs_done}/{c.msgs_total} msgs  ETA "
                     f"{('~' if guessed else '') + _duration(eta) if eta is not None else '–'}  {mrate:.0f} msg/s  "
                     f"{_size(c.bytes_done)}/{_size(c.bytes_total)}  {_size(brate)}/s", no_wrap=True,
                     overflow="ellipsis"))
            finished = c.ok + c.failed
            waiting = c.accounts - finished - len(running)
            line = f"accounts: {finished}/{c.accounts} done ({c.ok} ok"
            line += f", {c.failed} failed: {', '.join(c.failed_labels[-3:])}{' …' if c.failed > 3 else ''})" \
                if c.failed else ")"
            line += f", {len(running)} running, {max(waiting, 0)} waiting"
            head.add_row(Text(""), Text(""), Text(line, style="red" if c.failed else "", no_wrap=True,
                                                  overflow="ellipsis"))
            for a in running[:SHOWN]:
                head.add_row(Text(a.label, overflow="ellipsis", no_wrap=True),
                             ProgressBar(total=max(a.total, 1), completed=a.done, width=20),
                             Text(f"{a.done}/{a.total}  {a.folder}", overflow="ellipsis", no_wrap=True))
            if len(running) > SHOWN:
                head.add_row(Text(""), Text(""), Text(f"… and {len(running) - SHOWN} more running"))
            return head

    def __enter__(self):
        from rich.live import Live

        class _Renderable:  # Live asks for a fresh picture at each refresh
            def __init__(self, owner):
                self.owner = owner

            def __rich__(self):
                return self.owner.render()

        self._live = Live(_Renderable(self), console=self.console, refresh_per_second=self._refresh,
                          transient=True)
        self._live.start()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.stop()
        self.console.print(self.counts.final_line())
