"""Per-server rate limits, shared by every account of a run that talks to the same server.

Providers throttle migrations (or fall over under them): an administrator sets messages per second and
bytes per second per target server, and mailmigrate keeps under them whatever --jobs and --connections say.
A token bucket per server; waiting happens before each batch is appended, never in the middle of one.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, messages_per_second: float | None = None, bytes_per_second: float | None = None):
        self.mps = messages_per_second
        self.bps = bytes_per_second
        self._lock = threading.Lock()
        self._next_free = time.monotonic()

    @property
    def active(self) -> bool:
        return bool(self.mps or self.bps)

    def acquire(self, messages: int, nbytes: int) -> float:
        """Reserve room for a batch; sleeps as long as the budget requires; returns the time slept."""
        if not self.active:
            return 0.0
        cost = 0.0
        if self.mps:
            cost = max(cost, messages / self.mps)
        if self.bps:
            cost = max(cost, nbytes / self.bps)
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + cost
        wait = start - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)


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
