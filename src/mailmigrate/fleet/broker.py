"""Talking to the broker outside a worker: sending an account's job, and seeing which jobs it still holds.

Each job's message id is derived from its run and account (:func:`jobs.task_id`), so the command following a
run can tell, on a Redis broker, whether a queued account's job is still there (in the queue, or taken by a
worker and not yet acknowledged) or was lost with the broker's memory.  RabbitMQ offers no such look inside a
queue without consuming it; its queue is durable, so only the silence of a running job tells there.
"""

from __future__ import annotations

import json
import logging

from .app import QUEUE, TASK, make_app
from .jobs import task_id

log = logging.getLogger("mailmigrate.fleet")

#: kombu's Redis transport: priority lists beside the queue's own, and the hash of taken, unacknowledged jobs
_PRIORITY_SEP, _PRIORITY_STEPS = "\x06\x16", (3, 6, 9)
_UNACKED = "unacked"


def publish(broker: str, desc: dict, accounts: list[tuple[str, dict]]) -> None:
    """Send one job per (state name, job arguments); kombu/redis/amqp errors propagate to the caller."""
    app = make_app(broker)
    try:
        with app.producer_or_acquire() as producer:
            for name, args in accounts:
                app.send_task(TASK, args=[desc, args], task_id=task_id(desc["run_id"], name), producer=producer)
    finally:
        app.close()


def is_redis(broker: str) -> bool:
    return broker.startswith(("redis://", "rediss://"))


def held_ids(broker: str) -> set[str] | None:
    """The ids of every job the Redis broker holds (queued or taken and unacknowledged); None for a broker
    that cannot be looked into.  Connection errors propagate: the caller decides."""
    if not is_redis(broker):
        return None
    import redis

    r = redis.Redis.from_url(broker, socket_timeout=10, socket_connect_timeout=5)
    try:
        ids: set[str] = set()
        for key in [QUEUE] + [f"{QUEUE}{_PRIORITY_SEP}{n}" for n in _PRIORITY_STEPS]:
            for raw in r.lrange(key, 0, -1):
                ids.update(_message_id(raw))
        for raw in r.hvals(_UNACKED):
            try:
                ids.update(_message_id(json.dumps(json.loads(raw)[0])))
            except (ValueError, IndexError, TypeError):
                continue
        return ids
    finally:
        r.close()


def _message_id(raw) -> list[str]:
    try:
        found = json.loads(raw).get("headers", {}).get("id")
    except (ValueError, AttributeError):
        return []
    return [found] if isinstance(found, str) else []
