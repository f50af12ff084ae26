"""Tables created on first use, versioned, and older stores upgraded in place."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.store import (
    SCHEMA_VERSION,
    TABLES,
)
from airflow_provider_sms.store.schema import CREATE_STATEMENTS
from tests.integration.store.support import VENDOR, Backend, numbers, progress, report

pytestmark = pytest.mark.integration


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
