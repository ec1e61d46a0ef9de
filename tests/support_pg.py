"""Helpers for tests that need PostgreSQL (127.0.0.1:5432, trust auth, user postgres).

A test that needs PostgreSQL and cannot reach it is skipped locally but FAILS when
CI=true, as with Redis (tests/support.py). SIDELINE_PG_URL overrides the SQLAlchemy
address (`pg_url`), SIDELINE_POSTGRES_URL the libpq one (`postgres_url`).
"""

from __future__ import annotations

import os

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_DATABASE = "test"


def pg_url(driver: str = "postgresql+psycopg") -> str:
    """The SQLAlchemy URL of the test database."""
    return os.environ.get("SIDELINE_PG_URL",
                          f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}")


def postgres_url() -> str:
    """The libpq (psycopg) URL of the test database: SIDELINE_POSTGRES_URL, else the default."""
    return os.environ.get("SIDELINE_POSTGRES_URL",
                          f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}")


def require_postgres(url: str | None = None) -> None:
    """Skip (or, under CI=true, fail) when psycopg is missing or PostgreSQL unreachable
    (at `url`, default `pg_url("postgresql")`)."""
    url = url or pg_url("postgresql")
    try:
        import psycopg  # noqa: PLC0415 (only the PostgreSQL tests need the driver)

        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # ImportError or any connection error: the same verdict
        message = (f"PostgreSQL at {url} is unreachable ({exc}); start it or set "
                   "SIDELINE_PG_URL / SIDELINE_POSTGRES_URL")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
