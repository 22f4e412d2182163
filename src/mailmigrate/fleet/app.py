"""The Celery application of a fleet: broker by URL (redis:// or amqp://), late acknowledgement.

A job is acknowledged only when it finished (``acks_late``), and a job whose worker process died is put
back (``reject_on_worker_lost``): a worker killed with SIGKILL mid-account has its account run again
elsewhere, and the engine's intents and fingerprints make that second run exact.  With RabbitMQ a lost
worker machine's jobs come back as soon as its connection drops; with Redis they come back after the
visibility timeout (``--visibility-timeout``; longer than the longest account, or a slow account is
started twice — harmless, the second waits for the account's lock, but wasteful).
"""

from __future__ import annotations

import os

QUEUE = "mailmigrate"
TASK = "mailmigrate.sync_one_account"


def broker_from(url: str | None) -> str:
    url = url or os.environ.get("MAILMIGRATE_BROKER")
    if not url:
        from ..errors import ConfigError

        raise ConfigError("--executor celery needs --broker URL (redis://HOST:6379/0 or amqp://USER@HOST:5672//) "
                          "or MAILMIGRATE_BROKER")
    return url


def make_app(broker: str, *, visibility_timeout: float = 3600.0, restore_interval: float = 10.0):
    from celery import Celery

    app = Celery("mailmigrate", broker=broker, set_as_current=False)
    transport = {}
    if broker.startswith(("redis://", "rediss://")):
        transport = {"visibility_timeout": visibility_timeout, "unacked_restore_interval": restore_interval,
                     "unacked_restore_throttle": 1}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    from . import tasks

    app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)(
        tasks.sync_one_account)
    return app
