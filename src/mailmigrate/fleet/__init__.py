"""The fleet executor: per-account sync jobs on Celery workers, PostgreSQL as the shared state, Redis for
limits that hold across every worker.  Sits beside the workflow layer, above sync (see docs/fleet.md)."""
