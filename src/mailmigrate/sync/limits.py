"""Per-server rate limits, shared by every account of a run that talks to the same server.

Providers throttle migrations (or fall over under them): an administrator sets messages per second and
bytes per second per target server, and mailmigrate keeps under them whatever --jobs and --connections say.
A token bucket per server; waiting happens before each batch is appended, never in the middle of one.
"""

from __future__ import annotations

import threading
import time


class RateBudget:
    """What a limiter's budget is and what a batch costs in it, whoever keeps the clock.

    The local limiter below and the fleet's Redis one (``fleet.limits``) keep the time of the next free
    slot in different places but must charge a batch the same, or one run would throttle differently from
    the other on the same settings; the engine also reads ``mps``/``bps`` to size its batches.
    """

    def __init__(self, messages_per_second: float | None = None, bytes_per_second: float | None = None):
        self.mps = messages_per_second
        self.bps = bytes_per_second

    @property
    def active(self) -> bool:
        return bool(self.mps or self.bps)

    def cost(self, messages: int, nbytes: int) -> float:
        """Seconds of budget a batch takes: whichever of the two limits it strains more decides."""
        return max(messages / self.mps if self.mps else 0.0, nbytes / self.bps if self.bps else 0.0)

    @staticmethod
    def _sleep(seconds: float) -> float:
        """Sleep out a reservation that starts in the future; the seconds slept, for the caller's report."""
        if seconds > 0:
            time.sleep(seconds)
        return max(seconds, 0.0)


class RateLimiter(RateBudget):
    def __init__(self, messages_per_second: float | None = None, bytes_per_second: float | None = None):
        super().__init__(messages_per_second, bytes_per_second)
        self._lock = threading.Lock()
        self._next_free = time.monotonic()

    def acquire(self, messages: int, nbytes: int) -> float:
        """Reserve room for a batch; sleeps as long as the budget requires; returns the time slept."""
        if not self.active:
            return 0.0
        cost = self.cost(messages, nbytes)
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + cost
        return self._sleep(start - now)


class Limits:
    """One limiter per server name, created on first use."""

    def __init__(self, messages_per_second: float | None = None, bytes_per_second: float | None = None):
        self.mps = messages_per_second
        self.bps = bytes_per_second
        self._by_server: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_server(self, name: str) -> RateLimiter:
        with self._lock:
            if name not in self._by_server:
                self._by_server[name] = RateLimiter(self.mps, self.bps)
            return self._by_server[name]
