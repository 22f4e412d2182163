"""Limits that hold across every worker of a fleet, kept in Redis.

* :class:`Slots` — a counting semaphore in a sorted set per (role, server).  A member is bound to its
  holder's dedicated Redis connection (``<run_id>:<client id>:<token>``): taking a slot drops the members
  whose connection is gone, so a SIGKILLed worker frees its slots at once, while a stopped one (SIGSTOP, VM
  pause) keeps them — and its IMAP connections, which the kernel keeps open — so the limit holds.  A thread
  watches that connection; when it fails every slot counts as lost and the connections under them are cut
  (``on_lost``).  One Lua script per operation: atomic on the server.
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
from ..stores.wrapper import StoreWrapper
from ..sync.limits import RateBudget

log = logging.getLogger("mailmigrate.fleet")

# ARGV: limit, ttl, member, run_id, live client ids...  A member "<run_id>:<client id>:<token>" is held for
# as long as its holder's identity connection is open on this very server (the ids come from CLIENT LIST,
# which a script cannot call; a stale list only keeps a dead member longer, since ids are never reused
# within a run_id).  Other members (not client-bound) keep the old expiry rule.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local live = {}
for i = 5, #ARGV do live[ARGV[i]] = true end
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local run, cid = string.match(m, '^(%x+):(%d+):')
  if run then
    if run ~= ARGV[4] or not live[cid] then redis.call('ZREM', KEYS[1], m) end
  elseif tonumber(redis.call('ZSCORE', KEYS[1], m)) <= now then
    redis.call('ZREM', KEYS[1], m)
  end
end
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

    #: seconds after a Redis (re)start during which no slot is granted, so that every holder of the old
    #: server has noticed its identity connection is gone (the watcher checks every WATCH seconds)
    WATCH = 1.0
    GRACE = 5.0

    def __init__(self, redis_url: str, *, ttl: float = 30.0, wait: float = 600.0):
        import redis

        self.r = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=10)
        # The identity connection: a slot is held while this connection is open (see _ACQUIRE).
        self._ident = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2,
                                           single_connection_client=True, retry_on_timeout=False)
        self._identity: tuple[str, int] | None = None
        self._on_lost: list = []
        self.ttl = ttl
        self.wait = wait
        self._acquire = self.r.register_script(_ACQUIRE)
        self._refresh = self.r.register_script(_REFRESH)
        self._held: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._ident_lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._watch: threading.Thread | None = None

    def _whoami(self) -> tuple[str, int]:
        """(run_id, client id) of the identity connection, opening it if there is none."""
        with self._ident_lock:
            if self._identity is None:
                run_id = self._ident.info("server")["run_id"]
                self._identity = (run_id, int(self._ident.client_id()))
            return self._identity

    def on_lost(self, callback) -> None:
        """``callback(key, token)`` is called (from the watcher thread) for every slot lost because the
        identity connection failed: its holder must stop using the connection under it at once."""
        # weakly: a worker makes a SlotStore per account, which must not live on in this list
        self._on_lost = [w for w in self._on_lost if w() is not None]
        self._on_lost.append(weakref.WeakMethod(callback))

    def acquire(self, key: str, limit: int, wait: float | None = None) -> str:
        wait = self.wait if wait is None else wait
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            try:
                run_id, cid = self._whoami()
                info = self.r.info("server")
                if info["run_id"] != run_id:  # Redis restarted since our identity was taken
                    self._lose_all()
                    continue
                member = f"{run_id}:{cid}:{secrets.token_hex(8)}"
                granted = False
                if info["uptime_in_seconds"] >= self.GRACE:
                    live = [c["id"] for c in self.r.client_list()]
                    granted = bool(self._acquire(keys=[key], args=[limit, self.ttl, member, run_id, *live]))
            except Exception as e:  # Redis unreachable: no slot can be known to be free
                log.warning("connection slots unavailable: %s", e)
                self._lose_all()
                granted = False
            if granted:
                with self._lock:
                    self._held.setdefault(key, set()).add(member)
                self._start_heartbeat()
                return member
            if time.monotonic() >= deadline:
                raise TemporaryFailure(f"no free connection slot for {key.split(':', 3)[-1]} after "
                                       f"{wait:.0f}s ({limit} in use across the fleet)")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 1.0)

    def _lose_all(self) -> None:
        """The identity connection is gone: every slot of this process may now be someone else's."""
        with self._ident_lock:
            self._identity = None
            try:
                self._ident.close()
            except Exception:
                pass
        with self._lock:
            lost = [(k, t) for k, ts in self._held.items() for t in ts]
            self._held.clear()
        for k, t in lost:
            log.warning("connection slot %s lost (Redis connection failed); closing its connection",
                        k.split(":", 3)[-1])
            for ref in list(self._on_lost):
                cb = ref()
                if cb is None:
                    continue
                try:
                    cb(k, t)
                except Exception as e:
                    log.warning("closing a connection whose slot was lost failed: %s", e)

    def holds(self, key: str, token: str) -> bool:
        with self._lock:
            return token in self._held.get(key, ())

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
        if self._watch is None or not self._watch.is_alive():
            self._watch = threading.Thread(target=self._watcher, args=(weakref.ref(self),),
                                           name="mailmigrate-slots-watch", daemon=True)
            self._watch.start()
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

    @staticmethod
    def _watcher(ref) -> None:
        """Every WATCH seconds: is the identity connection still the same one on the same server?"""
        while True:
            self = ref()
            if self is None:
                return
            with self._ident_lock:
                ident = self._identity
            if ident is not None:
                try:
                    with self._ident_lock:
                        same = int(self._ident.client_id()) == ident[1]  # a silent reconnect gets a new id
                except Exception:
                    same = False
                if not same:
                    self._lose_all()
            stop = self._stop
            del self
            if stop.wait(Slots.WATCH):
                return

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = [(k, t) for k, ts in self._held.items() for t in ts]
        for k, t in held:
            self.release(k, t)


class SlotStore(StoreWrapper):
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
        super().__init__(store)
        self._slots = slots
        self._key = key
        self._limit = limit
        self._wait = wait
        self._after = after
        self._taking = threading.Lock()
        self._token: str | None = None
        slots.on_lost(self._lost)

    def _lost(self, key: str, token: str) -> None:
        """The slot was lost (Redis connection failed): end the connection under it now, from the watcher
        thread, so that a read blocked on it ends as a lost connection; the next open/reconnect takes a
        slot again before connecting."""
        if token != self._token:
            return
        self._token = None
        abort = getattr(self._inner, "abort", None)
        if abort is not None:
            abort()

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
            if self._token is not None and not self._slots.holds(self._key, self._token):
                self._token = None  # lost while this side was idle
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
            if self._token is None or not self._slots.holds(self._key, self._token):
                # the slot was lost under the old connection: take one again, source before target
                if self._after is not None and self._wait:
                    self._after._take()
                self._take()
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
