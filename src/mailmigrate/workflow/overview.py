"""A project seen whole: totals, rate, ETA, and one page of units filtered and sorted.

The dashboard shows these and the command line could; they live here so that no interface computes them
(a project of 10,000 accounts must not ship 10,000 rows to a browser to be counted there).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .states import BUSY

DONE_STATES = ("migrated", "skipped")
SORT_KEYS = ("unit", "state", "updated", "copied", "failed", "messages")
PER_PAGE_MAX = 500


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def _counter(u: dict, key: str) -> int:
    return int(((u.get("last_result") or {}).get("counters") or {}).get(key) or 0)


def source_size(u: dict) -> tuple[int, int] | None:
    """(messages, bytes) the source holds for a unit, from what was measured last: a verification, else the
    source overview an init took (CommuniGate); None where nothing measured it yet."""
    v = u.get("verification")
    if v and v.get("totals"):
        return int(v["totals"]["source_messages"]), int(v["totals"]["source_bytes"])
    f = u.get("found")
    if f:
        return int(f.get("messages") or 0), int(f.get("size") or 0)
    return None


def remaining(u: dict) -> int | None:
    """Messages a unit still has to copy, as far as known."""
    if u["state"] in DONE_STATES:
        return 0
    v = u.get("verification")
    if v and v.get("totals"):
        return int(v["totals"]["missing"])
    p = u.get("progress") or {}
    if u["state"] in BUSY and p.get("total"):
        return max(0, int(p["total"]) - int(p.get("done") or 0))
    size = source_size(u)
    return size[0] if size else None


@dataclass
class Totals:
    units: int
    by_state: dict[str, int]
    done_units: int
    running: int
    failed: int
    source_messages: int
    source_bytes: int
    verified_messages: int
    verified_bytes: int
    copied_last: int
    copied_messages: int
    copied_bytes: int
    remaining_messages: int
    unknown_units: int
    rate_msgs_per_min: float
    rate_bytes_per_min: float
    eta_seconds: float | None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["eta"] = human_duration(self.eta_seconds) if self.eta_seconds is not None else None
        return d


def totals(status: list[dict], rate: list[dict], copied: tuple[int, int] = (0, 0), *, window: int = 5) -> Totals:
    """Project totals; ``copied`` is what every action copied so far (messages, bytes). The rate is the mean of the last ``window`` minutes that copied anything, so a
    pause between two runs does not read as a collapse; the ETA is what is left at that rate."""
    by_state = Counter(u["state"] for u in status)
    src_m = src_b = ver_m = ver_b = left = unknown = 0
    for u in status:
        size = source_size(u)
        if size:
            src_m, src_b = src_m + size[0], src_b + size[1]
        v = u.get("verification")
        if v and v.get("totals"):
            ver_m += int(v["totals"]["target_messages"])
            ver_b += int(v["totals"]["target_bytes"])
        r = remaining(u)
        if r is None:
            unknown += 1
        else:
            left += r
    recent = rate[-window:]
    msgs = sum(r["messages"] for r in recent) / len(recent) if recent else 0.0
    nbytes = sum(r["bytes"] for r in recent) / len(recent) if recent else 0.0
    # Units nobody measured yet make any ETA a guess: there is none until something is left to copy.
    eta = (left / msgs * 60) if msgs > 0 and left else (0.0 if left == 0 and not unknown else None)
    return Totals(
        units=len(status), by_state=dict(sorted(by_state.items())),
        done_units=sum(by_state[s] for s in DONE_STATES), running=sum(by_state[s] for s in BUSY),
        failed=by_state["failed"], source_messages=src_m, source_bytes=src_b, verified_messages=ver_m,
        verified_bytes=ver_b, copied_last=sum(_counter(u, "copied") for u in status), copied_messages=copied[0],
        copied_bytes=copied[1], remaining_messages=left,
        unknown_units=unknown, rate_msgs_per_min=msgs, rate_bytes_per_min=nbytes, eta_seconds=eta)


def _sort_key(key: str):
    if key == "copied":
        return lambda u: _counter(u, "copied")
    if key == "failed":
        return lambda u: (_counter(u, "failed"), bool(u.get("last_error")))
    if key == "messages":
        return lambda u: (source_size(u) or (0, 0))[0]
    if key == "updated":
        return lambda u: u.get("updated") or ""
    if key == "state":
        return lambda u: (u["state"], u["unit"])
    return lambda u: u["unit"]


@dataclass
class Page:
    rows: list[dict]
    matching: int
    page: int
    pages: int
    per: int


def _matching(status: list[dict], q: str, state: str) -> list[dict]:
    q = q.strip().lower()
    return [u for u in status
            if (not state or u["state"] == state
                or (state == "problem" and (u.get("last_error") or _counter(u, "failed"))))
            and (not q or q in u["unit"].lower() or q in (u.get("last_error") or "").lower())]


def select(status: list[dict], *, q: str = "", state: str = "", sort: str = "unit", desc: bool = False,
           page: int = 1, per: int = 50) -> Page:
    """One page of the units matching a text (in the name or the last error) and a state ("problem": a
    unit with an error or failed messages)."""
    rows = _matching(status, q, state)
    rows.sort(key=_sort_key(sort if sort in SORT_KEYS else "unit"), reverse=desc)
    per = max(1, min(int(per), PER_PAGE_MAX))
    pages = max(1, -(-len(rows) // per))
    page = max(1, min(int(page), pages))
    return Page(rows[(page - 1) * per: page * per], len(rows), page, pages, per)


def matching_names(status: list[dict], *, q: str = "", state: str = "") -> list[str]:
    """Every unit a filter matches, on every page: what "act on all matching" acts on."""
    return [u["unit"] for u in _matching(status, q, state)]
