"""SmsStore against real databases, with nothing mocked.

Every store test runs on an embedded SQLite file. It also runs on PostgreSQL, through psycopg 3 and
through psycopg2, when ``SMS_TEST_POSTGRES_URI`` is set (``.ci/postgres.sh`` starts a server and
prints the URI). Without the URI those parameters are skipped, unless ``SMS_REQUIRE_POSTGRES=1`` asks
for them to fail. Each PostgreSQL test gets its own table prefix, and the tables are dropped afterwards.

The pure helpers (the replace rule, masked-number matching, JSON and time encoding) are tested at the
end of this module: a ``tests/unit/test_store.py`` would clash with this module's name, since the test
directories are not packages.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.numbers import mask_matches
from airflow_provider_sms.records import Balance, DeliveryReport, InboundMessage, SendReceipt
from airflow_provider_sms.store import (
    SCHEMA_VERSION,
    TABLES,
    BatchProgress,
    MaskResolver,
    SaveResult,
    SmsStore,
    TaskIdentity,
    drop_statements,
    report_replaces,
)
from airflow_provider_sms.store.database import json_text, utc_text
from airflow_provider_sms.store.schema import CREATE_STATEMENTS

pytestmark = pytest.mark.integration

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


# -------------------------------------------------------------------------------------------- schema


def test_backend_uses_the_intended_driver(backend: Backend) -> None:
    store = backend.open()
    assert store.dialect == ("sqlite" if backend.name == "sqlite" else "postgresql")
    driver = store.database.driver
    assert driver == {"sqlite": "sqlite3", "postgres": "psycopg", "postgres-psycopg2": "psycopg2"}[backend.name]


def test_schema_is_created_on_first_use_and_versioned(backend: Backend) -> None:
    store = backend.open()
    assert not backend.table_exists("requests"), "nothing may be created before the first call"
    assert store.accepted_requests(["k"]) == {}
    for table in TABLES:
        assert backend.table_exists(table), table
    assert backend.query("SELECT id, version FROM {p}schema_version") == [(1, SCHEMA_VERSION)]
    assert backend.query("SELECT COUNT(*) FROM {p}sent_messages") == [(0,)]  # the view

    again = backend.open()  # a second store on existing tables neither fails nor adds a version row
    assert again.accepted_requests(["k"]) == {}
    assert backend.query("SELECT COUNT(*) FROM {p}schema_version") == [(1,)]

    backend.query("UPDATE {p}schema_version SET version = 99")
    with pytest.raises(SmsConfigurationError, match="schema version 99"):
        backend.open().accepted_requests(["k"])


# Version 1 of the store, as the provider shipped it: a sent_messages row per number.
_V1_REQUESTS = """CREATE TABLE {p}requests (
    idempotency_key TEXT PRIMARY KEY, vendor TEXT NOT NULL, conn_id TEXT NOT NULL, batch_id TEXT,
    state TEXT NOT NULL, total BIGINT NOT NULL DEFAULT 0, delivered BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0, reason TEXT, dag_id TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT '', task_id TEXT NOT NULL DEFAULT '',
    map_index INTEGER NOT NULL DEFAULT -1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""
_V1_SENT_MESSAGES = """CREATE TABLE {p}sent_messages (
    vendor TEXT NOT NULL, batch_id TEXT NOT NULL, mobile TEXT NOT NULL, idempotency_key TEXT NOT NULL,
    conn_id TEXT NOT NULL, submitted_at TEXT, dag_id TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT '', task_id TEXT NOT NULL DEFAULT '',
    map_index INTEGER NOT NULL DEFAULT -1, PRIMARY KEY (vendor, batch_id, mobile))"""


def test_a_version_1_store_is_upgraded_in_place_keeping_every_send(backend: Backend) -> None:
    serial = "INTEGER PRIMARY KEY" if backend.name == "sqlite" else "BIGSERIAL PRIMARY KEY"
    for ddl in CREATE_STATEMENTS:
        later = ("send_plans", "requests_plan", "plan_numbers", "quarantine", "journal", "slots", "notifications")
        if any(name in ddl for name in later):
            continue  # schema 3 and later (notifications came after version 1 shipped)
        v1_ddl = _V1_REQUESTS if ddl.startswith("CREATE TABLE IF NOT EXISTS {p}requests (") else ddl
        backend.query(v1_ddl.replace("{serial_pk}", serial))
    backend.query(_V1_SENT_MESSAGES)
    backend.query("INSERT INTO {p}schema_version VALUES (1, 1, '2026-01-01T00:00:00+00:00')")
    backend.query("INSERT INTO {p}counters VALUES ('delivery_reports', 1), ('inbound_messages', 0)")
    backend.query(
        "INSERT INTO {p}requests (idempotency_key, vendor, conn_id, batch_id, state, total, delivered, "
        "task_id, map_index, created_at, updated_at) VALUES "
        "('k1', ?, 'sms_test', 'B1', 'accepted', 3, 1, 'send', 0, '2026-01-01T00:00:00+00:00', "
        "'2026-01-01T00:00:00+00:00'), "
        "('k2', ?, 'sms_test', NULL, 'unknown', 2, 0, 'send', 0, '2026-01-01T00:00:00+00:00', "
        "'2026-01-01T00:00:00+00:00')",
        (VENDOR, VENDOR),
    )
    for mobile in numbers(3):
        backend.query(
            "INSERT INTO {p}sent_messages (vendor, batch_id, mobile, idempotency_key, conn_id, submitted_at, "
            "task_id, map_index) VALUES (?, 'B1', ?, 'k1', 'sms_test', '2026-01-01T00:00:01+00:00', 'send', 0)",
            (VENDOR, mobile),
        )
    backend.query(
        "INSERT INTO {p}delivery_reports (vendor, batch_id, mobile, status, fetched_at, seq) "
        "VALUES (?, 'B1', ?, 'delivered', '2026-01-01T00:01:00+00:00', 1)",
        (VENDOR, numbers(1)[0]),
    )

    store = backend.open()
    assert progress(store, "k1") == (3, 1, 0)
    assert backend.query("SELECT version FROM {p}schema_version") == [(SCHEMA_VERSION,)]
    assert not backend.table_exists("sent_messages"), "the per-number table is gone: a view replaces it"
    assert sorted(backend.query("SELECT mobile, idempotency_key, submitted_at FROM {p}sent_messages")) == [
        (m, "k1", "2026-01-01T00:00:01+00:00") for m in numbers(3)
    ]
    assert store.pending_pairs(VENDOR, ["B1"]) == [("B1", m) for m in numbers(3)[1:]]
    assert store.accepted_requests(["k2"])["k2"].state == "unknown"

    store.save_reports([report("B1", numbers(3)[1], "failed")])
    assert progress(store, "k1") == (3, 1, 1)
    backend.assert_counters_exact()
    assert backend.open().accepted_requests(["k1"])["k1"].total == 3  # a second open finds the new version
    assert store.claim_quiet_period("k", 60) is True  # the notifier's table came with the upgrade
    assert store.claim_quiet_period("k", 60) is False


def test_a_version_3_store_keeps_its_journaled_pages_and_journals_replies_as_bytes_after_the_upgrade(
    backend: Backend,
) -> None:
    assert backend.open().open_journal("sms_test", "reports") == []  # creates the tables
    backend.query("ALTER TABLE {p}journal DROP COLUMN body")  # the schema 3 journal
    backend.query("DROP INDEX {p}requests_batch")
    backend.query("CREATE INDEX {p}requests_batch ON {p}requests (vendor, batch_id)")
    backend.query("UPDATE {p}schema_version SET version = 3")
    backend.query(
        "INSERT INTO {p}journal (conn_id, vendor, kind, source, records, fetched_at) "
        "VALUES ('sms_test', ?, 'reports', 'pull', ?, '2026-01-01T00:00:00+00:00')",
        (VENDOR, json.dumps([{"batchId": "B1"}])),
    )

    store = backend.open()
    [legacy] = store.open_journal("sms_test", "reports")
    assert backend.query("SELECT version FROM {p}schema_version") == [(SCHEMA_VERSION,)] == [(4,)]
    assert (legacy.records, legacy.body) == ([{"batchId": "B1"}], None)
    body = b'{"code":0,"data":[{"batchId":"B2"}],"\xff":1}'  # kept as it came, bytes that are not UTF-8 too
    reply = store.journal_reply(body, conn_id="sms_test", vendor=VENDOR, kind="reports")
    assert [(e.id, e.records, e.body) for e in store.open_journal("sms_test", "reports")][1:] == [(reply, None, body)]
    assert backend.open().open_journal("sms_test", "inbound") == []  # a second open finds version 4
    index_sql = (
        "SELECT sql FROM sqlite_master WHERE name = '{p}requests_batch'"
        if backend.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = '{p}requests_batch'"
    )
    [(definition,)] = backend.query(index_sql)
    assert "WHERE" in definition and "batch_id IS NOT NULL" in definition.replace("(", "").replace(")", "")


def test_table_prefix_must_be_an_identifier(tmp_path: Path) -> None:
    with pytest.raises(SmsConfigurationError, match="table_prefix"):
        SmsStore(path=str(tmp_path / "x.db"), table_prefix="sms; DROP TABLE x; --")
    with pytest.raises(SmsConfigurationError, match="not both"):
        SmsStore("some_conn", path=str(tmp_path / "x.db"))


# -------------------------------------------------------------------------------------------- sends


def test_record_accepted_is_idempotent(backend: Backend, store: SmsStore) -> None:
    record(store, "k1", "B1", numbers(3))
    first = store.accepted_requests(["k1", "missing"])
    assert set(first) == {"k1"}
    found = first["k1"]
    assert (found.state, found.batch_id, found.vendor, found.conn_id) == (
        "accepted",
        "B1",
        VENDOR,
        "sms_test",
    )
    assert (found.total, found.delivered, found.failed, found.pending) == (3, 0, 0, 3)
    assert found.task == TASK
    assert found.created_at.tzinfo is not None

    record(store, "k1", "B1", numbers(3))
    record(store, "k1", "B2", numbers(2, 100))  # a different batch for a recorded key is not taken
    assert store.accepted_requests(["k1"])["k1"] == found
    assert backend.count("requests") == 1
    assert backend.query("SELECT batch_id, COUNT(*) FROM {p}sent_messages GROUP BY batch_id") == [("B1", 3)]
    sent = backend.query("SELECT idempotency_key, conn_id, task_id, map_index FROM {p}sent_messages")
    assert set(sent) == {("k1", "sms_test", "send", 0)}

    record(store, "k2", "B3", ["13800000001", "13800000001", "13800000002"])
    assert progress(store, "k2") == (2, 0, 0)


def test_unknown_then_accepted(store: SmsStore) -> None:
    store.record_unknown("k", vendor=VENDOR, conn_id="sms_test", mobiles=numbers(5), task=TASK, reason="read timed out")
    unknown = store.accepted_requests(["k"])["k"]
    assert (unknown.state, unknown.batch_id, unknown.total, unknown.reason) == (
        "unknown",
        None,
        5,
        "read timed out",
    )

    record(store, "k", "B9", numbers(5))
    accepted = store.accepted_requests(["k"])["k"]
    assert (accepted.state, accepted.batch_id, accepted.total) == ("accepted", "B9", 5)
    assert accepted.reason == "read timed out", "the earlier doubt stays on record"
    assert accepted.created_at == unknown.created_at

    store.record_unknown("k", vendor=VENDOR, conn_id="sms_test", mobiles=numbers(5), task=TASK, reason="again")
    assert store.accepted_requests(["k"])["k"] == accepted, "unknown never downgrades an accepted request"


# -------------------------------------------------------------------------------------------- reports


def test_upsert_rules_and_counters(backend: Backend, store: SmsStore) -> None:
    a, b = numbers(2)
    record(store, "k1", "B1", [a, b])

    assert store.save_reports([report("B1", a, "pending")]) == SaveResult(1, 0, 0)
    assert progress(store, "k1") == (2, 0, 0)
    delivered = store.save_reports([report("B1", a, "delivered")])
    assert delivered == SaveResult(0, 1, 0) and delivered.statuses == {"delivered": 1}  # what the metrics count
    assert progress(store, "k1") == (2, 1, 0)
    seq = backend.report_row("B1", a)["seq"]  # type: ignore[index]

    # a pending report never replaces a final one; the same report again changes nothing
    assert store.save_reports([report("B1", a, "pending", at=T0 + timedelta(hours=1))]) == SaveResult(0, 0, 1)
    again = store.save_reports([report("B1", a, "delivered")])
    assert again == SaveResult(0, 0, 1) and again.statuses == {}  # a repeat is not counted again
    row = backend.report_row("B1", a)
    assert row is not None and (row["status"], row["seq"]) == ("delivered", seq)
    assert progress(store, "k1") == (2, 1, 0)

    # a newer final replaces an older one, and moves the count; an older final does not
    assert store.save_reports([report("B1", a, "failed", at=T0 + timedelta(minutes=5))]) == SaveResult(0, 1, 0)
    assert progress(store, "k1") == (2, 0, 1)
    assert store.save_reports([report("B1", a, "delivered", at=T0 - timedelta(minutes=5))]) == SaveResult(0, 0, 1)
    row = backend.report_row("B1", a)
    assert row is not None and (row["status"], row["code"]) == ("failed", "UNDELIV")
    assert row["seq"] > seq
    assert progress(store, "k1") == (2, 0, 1)

    # several reports for one message within one call are applied in order
    result = store.save_reports([report("B1", b, "pending"), report("B1", b, "delivered"), report("B1", b, "pending")])
    assert result == SaveResult(inserted=1, updated=1, unchanged=1)
    assert result.statuses == {"delivered": 1}  # one row written, in its final state
    assert backend.report_row("B1", b)["status"] == "delivered"  # type: ignore[index]
    assert progress(store, "k1") == (2, 1, 1)
    backend.assert_counters_exact()


def _oracle(reports: Sequence[DeliveryReport]) -> tuple[dict[tuple[str, str], DeliveryReport], SaveResult]:
    """The documented rule, applied one report at a time, written independently of the store."""
    state: dict[tuple[str, str], DeliveryReport] = {}
    inserted = updated = unchanged = 0
    for new in reports:
        key = (new.batch_id, new.mobile)
        old = state.get(key)
        if old is None:
            inserted += 1
            state[key] = new
            continue
        same = (old.status, old.code, old.description, old.reported_at) == (
            new.status,
            new.code,
            new.description,
            new.reported_at,
        )
        if same or (old.is_final and not new.is_final):
            unchanged += 1
        elif new.is_final and not old.is_final:
            updated += 1
            state[key] = new
        elif old.reported_at and (new.reported_at is None or new.reported_at < old.reported_at):
            unchanged += 1
        else:
            updated += 1
            state[key] = new
    return state, SaveResult(inserted, updated, unchanged)


def test_counters_stay_exact_under_random_repeats(backend: Backend, store: SmsStore) -> None:
    rng = random.Random(20240501)
    batches = {f"B{i}": numbers(40, 1000 * i) for i in range(3)}
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        record(store, f"k{i}", batch_id, mobiles)
    pool = [(b, m) for b, ms in batches.items() for m in ms] + [("ELSEWHERE", m) for m in numbers(10, 9000)]
    reports = [
        report(
            b,
            m,
            rng.choice(["pending", "delivered", "failed"]),
            at=rng.choice([None, T0 + timedelta(minutes=rng.randrange(30))]),
        )
        for b, m in (rng.choice(pool) for _ in range(900))
    ]
    store.page_size = 50  # many pages, with repeats inside pages and across them
    total = SaveResult(0, 0, 0)
    for start in range(0, len(reports), 300):
        got = store.save_reports(reports[start : start + 300], conn_id="sms_test")
        total = SaveResult(total.inserted + got.inserted, total.updated + got.updated, total.unchanged + got.unchanged)

    expected, expected_result = _oracle(reports)
    assert total == expected_result
    assert total.total == len(reports)
    for (batch_id, mobile), final in expected.items():
        row = backend.report_row(batch_id, mobile)
        assert row is not None
        assert (row["status"], row["reported_at"]) == (final.status, utc_text(final.reported_at)), (
            batch_id,
            mobile,
        )
    assert backend.count("delivery_reports") == len(expected)
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        finals = [expected.get((batch_id, m)) for m in mobiles]
        delivered = sum(1 for r in finals if r is not None and r.status == "delivered")
        failed = sum(1 for r in finals if r is not None and r.status == "failed")
        assert progress(store, f"k{i}") == (40, delivered, failed)
    backend.assert_counters_exact()


def test_masked_mobiles_resolve_to_the_one_sent_number(backend: Backend, store: SmsStore) -> None:
    vendor = "account_md5"
    record(store, "k1", "M1", ["13512349831", "13800000001", "13900000002"], vendor=vendor)
    record(store, "k2", "M2", ["13511119831", "13522229831"], vendor=vendor)

    result = store.save_reports(
        [
            report("M1", "135****9831", vendor=vendor),  # exactly one sent number matches
            report("M2", "135****9831", "failed", vendor=vendor),  # two match: ambiguous
            report("M1", "137****0000", vendor=vendor),  # none matches
            report("M3", "139****0002", vendor=vendor),  # a batch the store never sent
        ]
    )
    assert result == SaveResult(4, 0, 0)
    resolved = backend.report_row("M1", "13512349831", vendor)
    assert resolved is not None and resolved["reported_mobile"] == "135****9831"
    assert backend.report_row("M1", "135****9831", vendor) is None
    for batch_id, masked in (("M2", "135****9831"), ("M1", "137****0000"), ("M3", "139****0002")):
        row = backend.report_row(batch_id, masked, vendor)
        assert row is not None and row["reported_mobile"] is None, (batch_id, masked)
    assert progress(store, "k1") == (3, 1, 0)
    assert progress(store, "k2") == (2, 0, 0), "an ambiguous report must not count for either number"
    assert store.pending_pairs(vendor, ["M1"]) == [("M1", "13800000001"), ("M1", "13900000002")]

    assert store.save_reports([report("M1", "135****9831", vendor=vendor)]) == SaveResult(0, 0, 1)
    assert progress(store, "k1") == (3, 1, 0)
    backend.assert_counters_exact()


def test_batch_progress_and_status_counts(store: SmsStore) -> None:
    b1, b2 = numbers(4), numbers(3, 100)
    record(store, "k1", "B1", b1)
    record(store, "k2", "B2", b2)
    store.save_reports(
        [
            report("B1", b1[0]),
            report("B1", b1[1]),
            report("B1", b1[2], "failed", code="DB:0141"),
            report("B1", b1[3], "pending"),
            report("B2", b2[0], "failed", code="MK:0001"),
            report("OTHER", "13900000000", "failed", code="XX"),
            report("B1", b1[0], vendor="another_vendor"),
        ]
    )
    both = store.batch_progress(VENDOR, ["B1", "B2"])
    assert both == BatchProgress(total=7, delivered=2, failed=2)
    assert both.pending == 3
    assert store.batch_progress(VENDOR, ["B1", "B1"]) == BatchProgress(4, 2, 1)
    assert store.batch_progress(VENDOR, ["nope"]) == BatchProgress(0, 0, 0)
    assert store.batch_progress("another_vendor", ["B1"]) == BatchProgress(0, 0, 0)
    assert store.batch_progress(VENDOR, []) == BatchProgress(0, 0, 0)

    assert store.status_counts(VENDOR, ["B1", "B2"]) == {
        "by_status": {"delivered": 2, "failed": 2, "pending": 3},
        "by_code": {"DELIVRD": 2, "DB:0141": 1, "MK:0001": 1},
    }
    assert store.status_counts(VENDOR, ["OTHER"]) == {
        "by_status": {"delivered": 0, "failed": 1, "pending": 0},
        "by_code": {"XX": 1},
    }


def test_pending_pairs(store: SmsStore) -> None:
    b1, b2 = numbers(3), numbers(2, 100)
    record(store, "k1", "B1", b1)
    record(store, "k2", "B2", b2)
    store.save_reports([report("B1", b1[0]), report("B1", b1[1], "pending")])

    assert store.pending_pairs(VENDOR, ["B2", "B1"]) == [
        ("B2", b2[0]),
        ("B2", b2[1]),
        ("B1", b1[1]),
        ("B1", b1[2]),
    ]
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=3) == [("B2", b2[0]), ("B2", b2[1]), ("B1", b1[1])]
    assert store.pending_pairs(VENDOR, ["B1"], limit=0) == []
    # a start rotates the batches, wrapping around: limited calls can reach every batch
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=2, start=1) == [("B1", b1[1]), ("B1", b1[2])]
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=3, start=3) == [("B1", b1[1]), ("B1", b1[2]), ("B2", b2[0])]
    assert sorted(store.pending_pairs(VENDOR, None)) == sorted([("B1", b1[1]), ("B1", b1[2]), *(("B2", m) for m in b2)])
    assert store.pending_pairs("another_vendor", ["B1"]) == []

    store.save_reports([report("B1", m, "failed") for m in b1] + [report("B2", m) for m in b2])
    assert store.pending_pairs(VENDOR, ["B1", "B2"]) == []
    assert store.pending_pairs(VENDOR, None) == []


def test_report_for_a_batch_the_store_did_not_send(backend: Backend, store: SmsStore) -> None:
    sent = numbers(2)
    record(store, "k1", "B1", sent)
    result = store.save_reports(
        [report("ELSEWHERE", "13900000001"), report("B1", "13900000009", "failed")], conn_id="sms_test"
    )
    assert result == SaveResult(2, 0, 0)
    assert backend.report_row("ELSEWHERE", "13900000001") is not None
    assert backend.report_row("B1", "13900000009") is not None
    assert progress(store, "k1") == (2, 0, 0)
    assert store.batch_progress(VENDOR, ["ELSEWHERE"]) == BatchProgress(0, 0, 0)
    assert store.status_counts(VENDOR, ["ELSEWHERE"])["by_status"] == {
        "delivered": 1,
        "failed": 0,
        "pending": 0,
    }


def test_reports_stored_before_the_send_was_recorded_are_counted(store: SmsStore) -> None:
    sent = numbers(3)
    store.save_reports([report("B1", sent[0]), report("B1", sent[1], "failed"), report("B1", sent[2], "pending")])
    record(store, "k1", "B1", sent)
    assert progress(store, "k1") == (3, 1, 1)


def test_save_reports_consumes_a_generator_page_by_page(backend: Backend, store: SmsStore) -> None:
    batches = 50
    for i in range(batches):
        record(store, f"k{i}", f"B{i:03d}", numbers(1000, 1000 * i))
    committed_midway: list[int] = []

    def reports() -> Iterator[DeliveryReport]:
        for i in range(batches * 1000):
            if i == 20_000:  # by now earlier pages must be committed, and later ones not yet built
                committed_midway.append(backend.count("delivery_reports"))
            status = "failed" if i % 10 == 0 else "delivered"
            yield report(f"B{i // 1000:03d}", f"138{i:08d}", status, raw={"n": i})

    result = store.save_reports(reports(), conn_id="sms_test")
    assert result == SaveResult(50_000, 0, 0)
    assert committed_midway and 15_000 <= committed_midway[0] < 50_000, committed_midway
    assert backend.count("delivery_reports") == 50_000
    assert store.batch_progress(VENDOR, [f"B{i:03d}" for i in range(batches)]) == BatchProgress(50_000, 45_000, 5_000)
    row = backend.report_row("B049", "13800049999")
    assert row is not None and json.loads(row["raw"]) == {"n": 49_999}
    backend.assert_counters_exact()


def test_batch_progress_reads_counters_not_messages(store: SmsStore) -> None:
    batch_ids = [f"B{i:03d}" for i in range(100)]
    for i, batch_id in enumerate(batch_ids):
        record(store, f"k{i}", batch_id, numbers(1000, 1000 * i))
    store.batch_progress(VENDOR, batch_ids[:1])  # connect and warm up
    started = time.perf_counter()
    got = store.batch_progress(VENDOR, batch_ids)
    elapsed = time.perf_counter() - started
    assert got == BatchProgress(100_000, 0, 0) and got.pending == 100_000
    assert elapsed < 0.1, f"batch_progress took {elapsed * 1000:.1f} ms for 100 batches of 1000"


def test_iter_reports_picks_up_new_and_updated_rows_by_seq(backend: Backend, store: SmsStore) -> None:
    mobiles = numbers(12)
    store.save_reports([report("B1", m, "pending", raw={"i": i}) for i, m in enumerate(mobiles[:10])], conn_id="c1")
    store.save_reports([report("B2", m, "delivered", vendor="intl") for m in mobiles[10:]], conn_id="c2")

    pages = list(store.iter_reports(page_size=5))
    assert [len(p) for p in pages] == [5, 5, 2]
    rows = [row for page in pages for row in page]
    assert set(rows[0]) == REPORT_COLUMNS
    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12
    assert json.loads(rows[3]["raw"]) == {"i": 3}
    assert datetime.fromisoformat(rows[0]["reported_at"]) == T0
    last = seqs[-1]

    store.save_reports(
        [report("B1", m, "delivered") for m in mobiles[:3]]  # updates
        + [report("B1", mobiles[5], "pending", raw={"i": 5})]  # a repeat: no change
        + [report("B3", "13900000000", "failed")],  # new
        conn_id="c1",
    )
    fresh = [row for page in store.iter_reports(since_seq=last) for row in page]
    assert sorted((r["batch_id"], r["mobile"], r["status"]) for r in fresh) == sorted(
        [("B1", m, "delivered") for m in mobiles[:3]] + [("B3", "13900000000", "failed")]
    )
    assert all(r["seq"] > last for r in fresh)
    assert [r["seq"] for r in fresh] == sorted(r["seq"] for r in fresh)
    assert [r for page in store.iter_reports(since_seq=last) for r in page] == fresh
    assert list(store.iter_reports(since_seq=max(r["seq"] for r in fresh))) == []

    intl = [r for page in store.iter_reports(vendor="intl") for r in page]
    assert {r["mobile"] for r in intl} == set(mobiles[10:])
    by_conn = [r for page in store.iter_reports(conn_id="c2") for r in page]
    assert {r["mobile"] for r in by_conn} == set(mobiles[10:])


def test_watermarks(store: SmsStore) -> None:
    assert store.get_watermark("reports:sms_x:xcom") is None
    store.set_watermark("reports:sms_x:xcom", 42)
    store.set_watermark("inbound:sms_x:xcom", 7)
    store.set_watermark("reports:sms_x:xcom", 50)
    assert store.get_watermark("reports:sms_x:xcom") == 50
    assert store.get_watermark("inbound:sms_x:xcom") == 7


# -------------------------------------------------------------------------------------------- inbound


def test_inbound_is_deduplicated(backend: Backend, store: SmsStore) -> None:
    long_text = "退订 " + "x" * 20_000

    def message(mobile: str, content: str, at: datetime | None) -> InboundMessage:
        return InboundMessage(vendor=VENDOR, mobile=mobile, content=content, received_at=at, raw={"c": content[:5]})

    batch = [
        message("13800000001", "好的，谢谢", T0),
        message("13800000001", "好的，谢谢", T0),
        message("13800000001", "TD", None),
        message("13800000001", "TD", None),
        message("13800000002", long_text, T0),
        message("13800000002", long_text, T0),
        message("13800000002", long_text + "!", T0),  # different content: a different message
        message("13800000001", "好的，谢谢", T0 + timedelta(seconds=1)),  # different time
    ]
    assert store.save_inbound(batch, conn_id="sms_test") == SaveResult(5, 0, 3)
    assert store.save_inbound(batch, conn_id="sms_test") == SaveResult(0, 0, 8)
    assert backend.count("inbound_messages") == 5

    rows = [row for page in store.iter_inbound(page_size=2) for row in page]
    assert len(rows) == 5
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert rows[0]["content"] == "好的，谢谢" and rows[0]["conn_id"] == "sms_test"
    assert any(r["content"] == long_text for r in rows)
    assert any(r["received_at"] is None for r in rows)

    last = rows[-1]["seq"]
    assert store.save_inbound([message("13800000003", "N", T0)]) == SaveResult(1, 0, 0)
    newer = [row for page in store.iter_inbound(since_seq=last) for row in page]
    assert [(r["mobile"], r["content"]) for r in newer] == [("13800000003", "N")]
    assert list(store.iter_inbound(vendor="intl")) == []


# -------------------------------------------------------------------------------------------- balance


def test_balance_round_trips_exactly(store: SmsStore) -> None:
    assert store.latest_balance("sms_test") is None
    amount = Decimal("123456789012345678.000100")
    store.save_balance(
        Balance(vendor=VENDOR, amount=amount, currency="CNY", raw={"balance": "123456789012345678.000100"}),
        conn_id="sms_test",
        taken_at=T0 + timedelta(hours=1),
    )
    store.save_balance(Balance(vendor=VENDOR, amount=Decimal("1")), conn_id="sms_test", taken_at=T0)  # older
    store.save_balance(Balance(vendor="intl", amount=Decimal("9.5")), conn_id="sms_other")

    latest = store.latest_balance("sms_test")
    assert latest is not None
    assert latest.amount == amount and str(latest.amount) == "123456789012345678.000100"
    assert (latest.vendor, latest.currency, latest.raw) == (
        VENDOR,
        "CNY",
        {"balance": "123456789012345678.000100"},
    )
    other = store.latest_balance("sms_other")
    assert other is not None and other.amount == Decimal("9.5")


# -------------------------------------------------------------------------------------------- opt-outs


def test_opt_outs(store: SmsStore) -> None:
    assert store.add_opt_outs(["13800000001", "13800000002", "13800000002"], reason="TD", source="mo") == 2
    assert store.add_opt_outs(["13800000002", "13800000003"]) == 1
    assert store.opted_out(["13800000001", "13800000003", "13800000004"]) == {"13800000001", "13800000003"}
    assert store.opted_out([]) == set()

    many = numbers(100_000, 10_000_000)
    assert store.add_opt_outs(many[::3]) == len(many[::3])
    started = time.perf_counter()
    found = store.opted_out(many)
    elapsed = time.perf_counter() - started
    assert found == set(many[::3])
    assert elapsed < 10, f"opted_out of 100,000 numbers took {elapsed:.1f}s"
    # one person, two spellings: a domestic opt-out stops an intl send and the other way round
    assert store.opted_out(["8613800000001", "8613800000004"]) == {"8613800000001"}
    store.add_opt_outs(["8613900000009"], reason="STOP", source="manual")
    assert store.opted_out(["13900000009", "13800000001"]) == {"13900000009", "13800000001"}
    # a list longer than the numbers asked about is looked up by key, not read whole
    few = ["13800000001", "13800000004", many[3], many[4], many[3]]
    assert store.opted_out(few) == {"13800000001", many[3]}
    assert store.opted_out(["8613800000001", "13900000009", "8613900000009"]) == {
        "8613800000001",
        "13900000009",
        "8613900000009",
    }
    assert store.opted_out(many[:1200]) == set(many[:1200:3])  # more than one IN list on SQLite


# -------------------------------------------------------------------------------------------- connections


def test_sqlite_through_a_common_sql_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "via_conn.db"
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    with SmsStore("sms_test_sqlite", table_prefix="viaconn_") as store:
        assert store.dialect == "sqlite"
        record(store, "k1", "B1", numbers(2))
        assert store.save_reports([report("B1", numbers(1)[0])]) == SaveResult(1, 0, 0)
        assert store.batch_progress(VENDOR, ["B1"]) == BatchProgress(2, 1, 0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT delivered FROM viaconn_requests").fetchall() == [(1,)]


def test_connections_the_store_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SmsConfigurationError, match="sms_test_missing"):
        SmsStore("sms_test_missing").accepted_requests(["k"])
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_SMTP", json.dumps({"conn_type": "smtp", "host": "localhost"}))
    with pytest.raises(SmsConfigurationError, match=r"'sms_test_smtp'.*not a common\.sql DbApiHook"):
        SmsStore("sms_test_smtp").accepted_requests(["k"])


def test_embedded_store_defaults_to_airflow_home_with_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    with SmsStore() as store:
        assert store.path == str(home / "sms_store.db")
        assert store.opted_out(["1"]) == set()
    assert (home / "sms_store.db").exists()
    with sqlite3.connect(home / "sms_store.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.postgres
def test_postgres_connection_asking_for_dict_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = postgres_uri()
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_PG_DICT", f"{uri}?cursor=dictcursor")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    try:
        with SmsStore("sms_test_pg_dict", table_prefix=prefix) as store:
            record(store, "k1", "B1", numbers(2))
            store.save_reports([report("B1", numbers(1)[0])])
            assert progress(store, "k1") == (2, 1, 0)
    finally:
        drop_tables(uri, prefix)


# -------------------------------------------------------------------------------------------- concurrency


def _write_batch(store: SmsStore, worker: int, per_worker: int) -> None:
    store.page_size = 100
    mobiles = numbers(per_worker, 1_000_000 * (worker + 1))
    half = per_worker // 2
    record(store, f"w{worker}a", f"W{worker}A", mobiles[:half])
    record(store, f"w{worker}b", f"W{worker}B", mobiles[half:])
    for start in range(0, per_worker, 250):
        chunk = mobiles[start : start + 250]
        store.save_reports(
            [report(f"W{worker}A" if start < half else f"W{worker}B", m) for m in chunk]
            + [report(f"UNSENT{worker}", m, "failed") for m in chunk[:10]]
        )


def _check_workers(path: Path, workers: int, per_worker: int) -> None:
    with SmsStore(path=str(path)) as store:
        for worker in range(workers):
            ids = [f"W{worker}A", f"W{worker}B"]
            assert store.batch_progress(VENDOR, ids) == BatchProgress(per_worker, per_worker, 0), worker
        seqs = [row["seq"] for page in store.iter_reports() for row in page]
    assert len(seqs) == len(set(seqs)) == workers * (per_worker + per_worker // 250 * 10)


def test_concurrent_writers_on_the_embedded_store_threads(tmp_path: Path) -> None:
    path, workers, per_worker = tmp_path / "shared.db", 4, 2000
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with SmsStore(path=str(path)) as store:
                _write_batch(store, worker, per_worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    _check_workers(path, workers, per_worker)


def test_concurrent_writers_on_the_embedded_store_processes(tmp_path: Path) -> None:
    path, workers, per_worker = tmp_path / "shared.db", 2, 2000
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import SmsStore, _write_batch
        with SmsStore(path={str(path)!r}) as store:
            _write_batch(store, int(sys.argv[1]), {per_worker})
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(w)], env=env, stderr=subprocess.PIPE, text=True)
        for w in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    _check_workers(path, workers, per_worker)


def test_one_store_can_be_handed_between_threads(tmp_path: Path) -> None:
    with SmsStore(path=str(tmp_path / "handed.db")) as store:
        record(store, "k1", "B1", numbers(2))
        results: list[BatchProgress] = []
        thread = threading.Thread(target=lambda: results.append(store.batch_progress(VENDOR, ["B1"])))
        thread.start()
        thread.join(timeout=30)
        assert results == [BatchProgress(2, 0, 0)]


# -------------------------------------------------------------------------------------------- pure helpers


EARLY, LATE = "2024-05-01T08:00:00.000000+00:00", "2024-05-01T08:00:01.000000+00:00"


@pytest.mark.parametrize(
    ("old", "new", "replaces"),
    [
        (
            ("pending", "", "", LATE),
            ("delivered", "D", "", None),
            True,
        ),  # final beats pending, whatever the time
        (("pending", "", "", None), ("failed", "F", "", EARLY), True),
        (("delivered", "D", "", None), ("pending", "", "", LATE), False),  # pending never beats final
        (("delivered", "D", "", EARLY), ("delivered", "D", "", EARLY), False),  # identical
        (("delivered", "D", "", EARLY), ("failed", "F", "", LATE), True),  # newer final
        (("delivered", "D", "", LATE), ("failed", "F", "", EARLY), False),  # older final
        (("delivered", "D", "", EARLY), ("failed", "F", "", EARLY), True),  # same time: the newer arrival
        (("delivered", "D", "", None), ("failed", "F", "", EARLY), True),  # a time beats no time
        (("delivered", "D", "", EARLY), ("delivered", "D2", "x", None), False),  # no time loses to a time
        (("failed", "F", "", None), ("delivered", "D", "", None), True),  # neither has one: newer arrival
        (("pending", "", "", LATE), ("pending", "Q", "", EARLY), False),
    ],
)
def test_report_replaces(old: Any, new: Any, replaces: bool) -> None:
    assert report_replaces(old, new) is replaces


def test_mask_resolver_matches_like_mask_matches() -> None:
    sent = {
        ("v", "B1"): ["13512349831", "13800000001", "13512340000"],
        ("v", "B2"): ["13511119831", "13522229831"],
    }
    fetched: list[tuple[str, str]] = []

    def fetch(vendor: str, batch_id: str) -> list[str]:
        fetched.append((vendor, batch_id))
        return list(sent.get((vendor, batch_id), []))

    resolver = MaskResolver()
    assert resolver.resolve("v", "B1", "135****9831", fetch) == "13512349831"
    assert resolver.resolve("v", "B1", "1351****831", fetch) == "13512349831"  # another mask shape
    assert resolver.resolve("v", "B1", "138*****001", fetch) == "13800000001"
    assert resolver.resolve("v", "B1", "135****000", fetch) is None  # wrong length
    assert resolver.resolve("v", "B2", "135****9831", fetch) is None  # ambiguous
    assert resolver.resolve("v", "B3", "135****9831", fetch) is None  # nothing sent
    assert fetched == [("v", "B1"), ("v", "B2"), ("v", "B3")], "each batch is read once"
    for masked in ("135****9831", "1351****831", "13*********", "*****", "135****983X"):
        expected = [n for n in sent[("v", "B1")] if mask_matches(masked, n)]
        assert resolver.resolve("v", "B1", masked, fetch) == (expected[0] if len(expected) == 1 else None), masked

    small = MaskResolver(max_numbers=3)
    small.resolve("v", "B1", "135****9831", fetch)
    small.resolve("v", "B2", "135****9831", fetch)  # pushes B1 out
    small.resolve("v", "B1", "135****9831", fetch)
    assert fetched[-3:] == [("v", "B1"), ("v", "B2"), ("v", "B1")]


@pytest.mark.parametrize(
    "value",
    [
        {"a": "中文", "b": [1, 2.5, None, True], "c": {"d": 'q"uote\n'}},
        {"when": datetime(2024, 1, 1, tzinfo=timezone.utc), "amount": Decimal("1.10")},
        {},
    ],
)
def test_json_is_json_dumps_with_default_str(value: dict[str, Any]) -> None:
    assert json_text(value) == json.dumps(value, default=str, ensure_ascii=False)


def test_times_are_fixed_width_utc_text_in_time_order() -> None:
    plus8 = timezone(timedelta(hours=8))
    times = [
        datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 16, 0, 0, 1, tzinfo=plus8),
        datetime(2024, 5, 1, 8, 0, 1, tzinfo=timezone.utc),
    ]
    texts = [utc_text(t) for t in times]
    assert texts[0] == "2024-05-01T08:00:00.000000+00:00"
    assert texts[1] == "2024-05-01T08:00:00.000001+00:00"
    assert len({len(t) for t in texts if t}) == 1
    assert sorted(texts) == texts  # type: ignore[type-var]
    assert utc_text(None) is None
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2024, 5, 1))


def test_task_identity_from_context() -> None:
    class Ti:
        dag_id, run_id, task_id, map_index = "d", "r", "t", None

    assert TaskIdentity.from_context({"ti": Ti()}) == TaskIdentity("d", "r", "t", -1)
    assert TaskIdentity.from_context({}) == TaskIdentity()


def test_importing_the_store_loads_no_database_driver() -> None:
    code = (
        "import sys, airflow_provider_sms.errors, airflow_provider_sms.records\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_sms.store\n"
        "heavy = ('psycopg', 'psycopg2', 'airflow.providers.common.sql.hooks.sql',"
        " 'airflow.providers.postgres.hooks.postgres', 'airflow.providers.sqlite.hooks.sqlite')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('psycopg', 'psycopg2')"
        " or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
