"""A throwaway PostgreSQL database per test on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import uuid

import pytest

ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"


def make_database(prefix: str = "mm_test"):
    psycopg = pytest.importorskip("psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL on 127.0.0.1: {e}")
    admin.execute(f"CREATE DATABASE {name}")
    return admin, name, f"postgresql://postgres@127.0.0.1/{name}"


def drop_database(admin, name: str) -> None:
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()
