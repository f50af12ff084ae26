"""What the store tests share: the databases under test (SQLite, PostgreSQL through psycopg 3 and
psycopg2) and small builders of records."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_sms.records import DeliveryReport, SendReceipt
from airflow_provider_sms.store import (
    SmsStore,
    TaskIdentity,
    drop_statements,
)

PG_CONN_ID = "sms_test_pg"
VENDOR = "paasw_v2"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
TASK = TaskIdentity(dag_id="dag", run_id="manual__1", task_id="send", map_index=0)
CODES = {"delivered": "DELIVRD", "failed": "UNDELIV", "pending": ""}
REPORT_COLUMNS = {
    "vendor",
    "batch_id",
    "mobile",
    "status",
    "code",
    "description",
    "reported_at",
    "reported_mobile",
    "raw",
    "conn_id",
    "fetched_at",
    "seq",
}


def postgres_uri() -> str:
    uri = os.environ.get("SMS_TEST_POSTGRES_URI", "")
    if uri:
        return uri
    if os.environ.get("SMS_REQUIRE_POSTGRES") == "1":
        pytest.fail(
            "SMS_REQUIRE_POSTGRES=1 but SMS_TEST_POSTGRES_URI is not set: "
            'run eval "$(bash .ci/postgres.sh | tail -1)" first',
            pytrace=False,
        )
    pytest.skip("PostgreSQL tests need SMS_TEST_POSTGRES_URI (bash .ci/postgres.sh prints it)")


def drop_tables(uri: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        for statement in drop_statements(prefix):
            conn.execute(statement)


@dataclass
class Backend:
    """A database under test: opens stores on it and runs raw SQL on a separate connection."""

    name: str
    prefix: str
    opener: Callable[[], SmsStore]
    connect: Callable[[], Any]
    param: str
    stores: list[SmsStore] = field(default_factory=list)

    def open(self) -> SmsStore:
        store = self.opener()
        self.stores.append(store)
        return store

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Raw SQL, ``{p}`` standing for the table prefix and ``?`` for a parameter."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql.replace("{p}", self.prefix).replace("?", self.param), tuple(params))
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return [tuple(row) for row in rows]
        finally:
            conn.close()

    def table_exists(self, table: str) -> bool:
        if self.name == "sqlite":
            sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        return self.query(sql, (self.prefix + table,))[0][0] == 1

    def report_row(self, batch_id: str, mobile: str, vendor: str = VENDOR) -> dict[str, Any] | None:
        columns = sorted(REPORT_COLUMNS)
        rows = self.query(
            f"SELECT {', '.join(columns)} FROM {{p}}delivery_reports WHERE vendor = ? AND batch_id = ? AND mobile = ?",
            (vendor, batch_id, mobile),
        )
        return dict(zip(columns, rows[0], strict=True)) if rows else None

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {{p}}{table}")[0][0])

    def assert_counters_exact(self) -> None:
        """Every request's counters equal a recount over its sent messages and their reports."""
        recount = """SELECT COUNT(*) FROM {p}sent_messages s JOIN {p}delivery_reports d
            ON d.vendor = s.vendor AND d.batch_id = s.batch_id AND d.mobile = s.mobile
            WHERE s.idempotency_key = r.idempotency_key AND d.status = ?"""
        rows = self.query(
            f"""SELECT r.idempotency_key, r.total, r.delivered, r.failed,
                (SELECT COUNT(*) FROM {{p}}sent_messages s WHERE s.idempotency_key = r.idempotency_key),
                ({recount}), ({recount.replace("?", "'failed'")})
            FROM {{p}}requests r WHERE r.state = 'accepted'""".replace("d.status = ?)", "d.status = 'delivered')", 1),
        )
        assert rows, "no accepted requests to check"
        for key, total, delivered, failed, sent, real_delivered, real_failed in rows:
            assert (total, delivered, failed) == (sent, real_delivered, real_failed), key


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("postgres-psycopg2", id="postgres-psycopg2", marks=pytest.mark.postgres),
]


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"138{start + i:08d}" for i in range(count)]


def receipt(batch_id: str, mobiles: Sequence[str], vendor: str = VENDOR) -> SendReceipt:
    return SendReceipt(vendor=vendor, batch_id=batch_id, mobiles=tuple(mobiles), submitted_at=T0)


def report(
    batch_id: str,
    mobile: str,
    status: str = "delivered",
    *,
    code: str | None = None,
    at: datetime | None = T0,
    vendor: str = VENDOR,
    raw: dict[str, Any] | None = None,
) -> DeliveryReport:
    return DeliveryReport(
        vendor=vendor,
        batch_id=batch_id,
        mobile=mobile,
        status=status,  # type: ignore[arg-type]
        code=CODES[status] if code is None else code,
        description=status,
        reported_at=at,
        raw=raw,
    )


def record(store: SmsStore, key: str, batch_id: str, mobiles: Sequence[str], vendor: str = VENDOR) -> None:
    store.record_accepted(key, receipt(batch_id, mobiles, vendor), conn_id="sms_test", task=TASK)


def progress(store: SmsStore, key: str) -> tuple[int, int, int]:
    found = store.accepted_requests([key])[key]
    return found.total, found.delivered, found.failed
