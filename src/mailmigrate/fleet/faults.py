"""Which failures are the fleet's own (its state database, Redis, the broker) rather than an account's.

Apart from the modules that talk to the broker: the task module, which the Celery app imports to register
it, asks this question on every exception, and reaching it through the follower made the app, the broker,
the follower and the task one import cycle.
"""

from __future__ import annotations

from ..errors import StateUnreachable


def infrastructure_error(e: BaseException) -> bool:
    """True when ``e`` says the fleet's own services failed (the state database, Redis, the broker) rather
    than anything about the account: such a job is tried again, never finished with an error."""
    if isinstance(e, StateUnreachable):
        return True
    try:
        import psycopg
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
    except ImportError:  # pragma: no cover - a dependency of the fleet
        pass
    try:
        import redis
        if isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions
        if isinstance(e, kombu.exceptions.OperationalError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False
