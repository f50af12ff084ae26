"""Fixtures shared by the integration tests: a fresh AIRFLOW_HOME (so a fresh embedded store), the
simulator with connections, and a store on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.simulator import GatewaySimulator


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AIRFLOW_HOME, so that every test gets its own embedded store."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def sim(sms_simulator: GatewaySimulator, sms_connections: dict[str, str], home: Path) -> GatewaySimulator:
    return sms_simulator


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_args(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path) -> Iterator[dict[str, Any]]:
    """Store keyword arguments: the embedded SQLite file, or a PostgreSQL connection with private tables."""
    if request.param == "sqlite":
        yield {}
        return
    uri = os.environ.get("SMS_TEST_POSTGRES_URI", "")
    if not uri:
        if os.environ.get("SMS_REQUIRE_POSTGRES") == "1":
            pytest.fail("SMS_REQUIRE_POSTGRES=1 but SMS_TEST_POSTGRES_URI is not set", pytrace=False)
        pytest.skip("PostgreSQL tests need SMS_TEST_POSTGRES_URI (bash .ci/postgres.sh prints it)")
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_PG", uri)
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield {"store_conn_id": "sms_test_pg", "store_table_prefix": prefix}
    import psycopg

    from airflow_provider_sms.store import drop_statements

    with psycopg.connect(uri, autocommit=True) as conn:
        for statement in drop_statements(prefix):
            conn.execute(statement)
