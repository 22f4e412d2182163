"""Limits that hold across every worker of a fleet, kept in Redis.

* :class:`Slots` — a counting semaphore with expiry: a sorted set per (role, server) whose members are the
  holders' tokens scored by their expiry time (Redis' own clock).  Taking a slot first drops expired
  members, so a worker killed with SIGKILL gives its slots back after ``ttl`` seconds; live holders
  refresh theirs from a heartbeat thread.  One Lua script per operation: atomic on the server.
* :class:`SlotStore` — wraps a store so that every open connection holds one slot of its server.
* :class:`RedisRateLimiter` — the engine's per-server messages/s and bytes/s budget, shared by the fleet.

Source and target slots are separate keys (``mm:slots:source:<server>``, ``mm:slots:target:<server>``), and
every connection pair takes its source slot before its target slot, so a holder never waits for a kind of
slot while blocking others from the kind it holds; the engine opens both sides at once, so the target's
store takes its account's source slot first (``after``).  A slot that cannot be had within ``wait``
seconds is a TemporaryFailure, which the engine retries after releasing everything.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
import weakref

from ..errors import TemporaryFailure
from ..sync.limits import RateBudget

log = logging.getLogger("mailmigrate.fleet")

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""

_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = 0
for i, tok in ipairs(ARGV) do
  if i > 1 and redis.call('ZSCORE', KEYS[1], tok) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), tok)
    n = n + 1
  end
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 60)
return n
"""

_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nf = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, nf)
redis.call('SET', KEYS[1], tostring(start + tonumber(ARGV[1])), 'EX', 3600)
return tostring(start - now)
"""


def slot_key(role: str, server: str) -> str:
    return f"mm:slots:{role}:{server}"


class Slots:
    """The connection slots of one fleet; one instance per worker process."""

    def __init__(self, redis_url: str, *, ttl: float = 30.0, wait: float = 600.0):
        import redis

        self.r = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=10)
        self.ttl = ttl
        self.wait = wait
        self._acquire = self.r.register_script(_ACQUIRE)
        self._refresh = self.r.register_script(_REFRESH)
        self._held: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, key: str, limit: int, wait: float | None = None) -> str:
        token = secrets.token_hex(8)
        wait = self.wait if wait is None else wait
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            if self._acquire(keys=[key], args=[limit, self.ttl, token]):
                with self._lock:
                    self._held.setdefault(key, set()).add(token)
                self._start_heartbeat()
                return token
            if time.monotonic() >= deadline:
                raise TemporaryFailure(f"no free connection slot for {key.split(':', 3)[-1]} after "
                                       f"{wait:.0f}s ({limit} in use across the fleet)")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 1.0)

    def release(self, key: str, token: str) -> None:
        with self._lock:
            self._held.get(key, set()).discard(token)
        try:
            self.r.zrem(key, token)
        except Exception as e:  # the slot expires on its own
            log.warning("could not release a connection slot (%s); it expires in %.0fs", e, self.ttl)

    def holders(self, key: str) -> int:
        now = self.r.time()
        return self.r.zcount(key, now[0] + now[1] / 1e6, "+inf")

    def _start_heartbeat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._beat = threading.Thread(target=self._heartbeat, args=(weakref.ref(self),),
                                          name="mailmigrate-slots", daemon=True)
            self._beat.start()

    @staticmethod
    def _heartbeat(ref) -> None:
        while True:
            self = ref()
            if self is None:
                return
            interval = self.ttl / 3
            with self._lock:
                held = {k: list(v) for k, v in self._held.items() if v}
            for key, tokens in held.items():
                try:
                    self._refresh(keys=[key], args=[self.ttl, *tokens])
                except Exception as e:
                    log.warning("connection slot heartbeat failed: %s", e)
            stop = self._stop
            del self
            if stop.wait(interval):
                return

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = [(k, t) for k, ts in self._held.items() for t in ts]
        for k, t in held:
            self.release(k, t)


class SlotStore:
    """A store whose open connection holds one slot of its server; clones hold their own.

    An account's first connection waits for a slot; its extra connections (clones, for folders in
    parallel) only take a free one and otherwise fail at once, which the engine answers by going on with
    fewer connections — waiting there, while holding the first slot, could deadlock the fleet.

    ``after`` (the target's store gets its account's source store): the source's slot is taken before this
    one's, whichever side opens first.  The engine opens source and target at the same time; a target that
    took its slot first and then waited for the source's, while another account held a source slot and
    waited for a target slot, stopped the fleet until the slot wait ran out."""

    def __init__(self, store, slots: Slots, key: str, limit: int, *, wait: bool = True,
                 after: "SlotStore | None" = None):
        self._inner = store
        self._slots = slots
        self._key = key
        self._limit = limit
        self._wait = wait
        self._after = after
        self._taking = threading.Lock()
        self._token: str | None = None

    def open(self) -> None:
        if self._after is not None and self._wait:
            self._after._take()
        self._take()
        try:
            self._inner.open()
        except BaseException:
            self._release()
            raise

    def _take(self) -> None:
        with self._taking:  # the other side's thread may be taking this slot for it right now
            if self._token is None:
                self._token = self._slots.acquire(self._key, self._limit, None if self._wait else 0.0)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._release()

    def reconnect(self) -> None:
        """A new connection under the slot already held.  Giving the slot back and waiting for one while
        the account's target holds its own would break the source-before-target order that keeps the
        fleet from deadlocking."""
        try:
            self._inner.close()
        except Exception:  # the old connection is given up either way
            pass
        try:
            self._inner.open()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            self._slots.release(self._key, token)

    def clone(self):
        inner = self._inner.clone()
        return None if inner is None else SlotStore(inner, self._slots, self._key, self._limit, wait=False)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class RedisRateLimiter(RateBudget):
    """Same contract as :class:`mailmigrate.sync.limits.RateLimiter`, one budget for the whole fleet."""

    def __init__(self, redis_url: str, server: str, messages_per_second: float | None = None,
                 bytes_per_second: float | None = None):
        import redis

        super().__init__(messages_per_second, bytes_per_second)
        self.r = redis.Redis.from_url(redis_url, socket_timeout=30)
        self.key = f"mm:rate:{server}"
        self._script = self.r.register_script(_RATE)

    def acquire(self, messages: int, nbytes: int) -> float:
        if not self.active:
            return 0.0
        return self._sleep(float(self._script(keys=[self.key], args=[repr(self.cost(messages, nbytes))])))
