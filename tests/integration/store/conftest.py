"""Every store test runs on an embedded SQLite file and, when ``SMS_TEST_POSTGRES_URI`` is set, on
PostgreSQL through psycopg 3 and psycopg2 (each test with its own table prefix, dropped afterwards)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_sms.store import (
    SmsStore,
)
from tests.integration.store.support import BACKENDS, PG_CONN_ID, Backend, drop_tables, postgres_uri


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    kind = request.param
    if kind == "sqlite":
        path = str(tmp_path / "store.db")
        db = Backend("sqlite", "sms_", lambda: SmsStore(path=path), lambda: sqlite3.connect(path), "?")
        try:
            yield db
        finally:
            for store in db.stores:
                store.close()
        return
    uri = postgres_uri()
    import psycopg

    if kind == "postgres-psycopg2":
        # The hook picks its driver from this module flag (psycopg 3 whenever SQLAlchemy 2 is
        # installed); clearing it makes it connect through psycopg2, the execute_values path.
        import airflow.providers.postgres.hooks.postgres as postgres_hooks

        monkeypatch.setattr(postgres_hooks, "USE_PSYCOPG3", False)
    monkeypatch.setenv(f"AIRFLOW_CONN_{PG_CONN_ID.upper()}", uri)
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    db = Backend(kind, prefix, lambda: SmsStore(PG_CONN_ID, table_prefix=prefix), lambda: psycopg.connect(uri), "%s")
    try:
        yield db
    finally:
        for store in db.stores:
            store.close()
        drop_tables(uri, prefix)


@pytest.fixture
def store(backend: Backend) -> SmsStore:
    return backend.open()
