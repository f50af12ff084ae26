"""The store's tables, and every change to them since the first release, in one place.

``ensure_schema`` runs on each new connection: it creates the tables of a new store, or upgrades an
older one a version at a time (each step one transaction under the schema lock, so processes that
open the same store together upgrade it once). DDL is written for both dialects: ``{p}`` is the table
prefix, ``{serial_pk}`` and ``{blob}`` the dialect's auto-numbered key and byte type. Times and money
are text (see the package docstring).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.store.database import Database, now_text

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 4
#: Table names without the prefix, e.g. for dropping a test's tables.
# fmt: off
TABLES: Final = (
    "requests", "delivery_reports", "inbound_messages", "balances",
    "opt_outs", "watermarks", "counters", "schema_version", "notifications", "send_plans", "plan_numbers",
    "quarantine", "journal", "slots",
)
# fmt: on
#: Views over the tables: ``sent_messages`` lists each accepted request's numbers, one row each.
VIEWS: Final = ("sent_messages",)
#: the seq counters (``counters`` table): drawn on every insert and update of these tables
COUNTERS: Final = ("delivery_reports", "inbound_messages")
#: PostgreSQL types of the non-text columns, for binding a page of rows as arrays
COLUMN_TYPES: Final = {
    "seq": "bigint",
    "map_index": "integer",
    "total": "bigint",
    "request_index": "integer",
    "journal_id": "bigint",
    "position": "integer",
}


def drop_statements(table_prefix: str) -> list[str]:
    """SQL that drops a store's views and tables (both dialects), e.g. to clean up after a test."""
    return [f"DROP VIEW IF EXISTS {table_prefix}{v}" for v in VIEWS] + [
        f"DROP TABLE IF EXISTS {table_prefix}{t}" for t in TABLES
    ]


def numbers_of(alias: str) -> str:
    """SQL for a request row's numbers (JSON list): a planned request's stay in ``plan_numbers``, written once."""
    return (
        f"COALESCE({alias}.mobiles, (SELECT n.mobiles FROM {{p}}plan_numbers n "
        f"WHERE n.plan_key = {alias}.plan_key AND n.request_index = {alias}.request_index))"
    )


# ------------------------------------------------------------------------------------------ tables

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS {p}schema_version (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL)"""
_COUNTERS_TABLE = """CREATE TABLE IF NOT EXISTS {p}counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL)"""
# One row per send request; its numbers in ``mobiles`` (schema 2) or, for a planned request, in
# ``plan_numbers`` (schema 3).
_REQUESTS_TABLE = """CREATE TABLE IF NOT EXISTS {p}requests (
        idempotency_key TEXT PRIMARY KEY,
        vendor TEXT NOT NULL,
        conn_id TEXT NOT NULL,
        batch_id TEXT,
        state TEXT NOT NULL,
        total BIGINT NOT NULL DEFAULT 0,
        delivered BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        reason TEXT,
        dag_id TEXT NOT NULL DEFAULT '',
        run_id TEXT NOT NULL DEFAULT '',
        task_id TEXT NOT NULL DEFAULT '',
        map_index INTEGER NOT NULL DEFAULT -1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        mobiles TEXT,
        submitted_at TEXT,
        plan_key TEXT,
        request_index INTEGER,
        sending_at TEXT)"""
# Requests by batch, for reports to find theirs. Partial (schema 4): a planned request has no batch
# yet, so neither its plan row nor its intent writes an index entry that acceptance then moves
# (a third fewer WAL pages per recorded request). ``batch_id = ?`` implies the index's condition.
_REQUESTS_BATCH_INDEX = (
    "CREATE INDEX IF NOT EXISTS {p}requests_batch ON {p}requests (vendor, batch_id) WHERE batch_id IS NOT NULL"
)
_REPORTS = (
    """CREATE TABLE IF NOT EXISTS {p}delivery_reports (
        vendor TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        mobile TEXT NOT NULL,
        status TEXT NOT NULL,
        code TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        reported_at TEXT,
        reported_mobile TEXT,
        raw TEXT,
        conn_id TEXT NOT NULL DEFAULT '',
        fetched_at TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (vendor, batch_id, mobile))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}delivery_reports_seq ON {p}delivery_reports (seq)",
)
_INBOUND = (
    """CREATE TABLE IF NOT EXISTS {p}inbound_messages (
        dedupe_key TEXT PRIMARY KEY,
        vendor TEXT NOT NULL,
        mobile TEXT NOT NULL,
        content TEXT NOT NULL,
        received_at TEXT,
        ext_no TEXT NOT NULL DEFAULT '',
        raw TEXT,
        conn_id TEXT NOT NULL DEFAULT '',
        fetched_at TEXT NOT NULL,
        seq BIGINT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}inbound_messages_seq ON {p}inbound_messages (seq)",
)
_POSITIONS = (
    """CREATE TABLE IF NOT EXISTS {p}balances (
        id {serial_pk},
        conn_id TEXT NOT NULL,
        vendor TEXT NOT NULL,
        amount TEXT NOT NULL,
        currency TEXT NOT NULL DEFAULT '',
        raw TEXT,
        taken_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS {p}balances_conn ON {p}balances (conn_id, taken_at)",
    """CREATE TABLE IF NOT EXISTS {p}watermarks (
        name TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {p}opt_outs (
        mobile TEXT PRIMARY KEY,
        reason TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL)""",
)
# Added after schema version 1 shipped (a version-1 store gets it in the upgrade to 3): notifier quiet periods.
_NOTIFICATIONS = (
    """CREATE TABLE IF NOT EXISTS {p}notifications (
        quiet_key TEXT PRIMARY KEY,
        sent_at TEXT NOT NULL,
        suppressed BIGINT NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL)""",
)
# Added in schema version 3: the plan each task instance's first try stored, its requests' numbers,
# and the quarantine.
_SEND_PLANS = (
    """CREATE TABLE IF NOT EXISTS {p}send_plans (
        task_key TEXT PRIMARY KEY,
        plan_key TEXT NOT NULL,
        generation INTEGER NOT NULL,
        vendor TEXT NOT NULL,
        conn_id TEXT NOT NULL,
        dag_id TEXT NOT NULL DEFAULT '',
        run_id TEXT NOT NULL DEFAULT '',
        task_id TEXT NOT NULL DEFAULT '',
        map_index INTEGER NOT NULL DEFAULT -1,
        inputs TEXT NOT NULL,
        numbers BIGINT NOT NULL,
        requests INTEGER NOT NULL,
        opted_out BIGINT NOT NULL DEFAULT 0,
        report_seq BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS {p}requests_plan ON {p}requests (plan_key, request_index)",
    # A planned request's numbers, written once with the plan. Its ``requests`` row stays small until
    # the vendor accepts it, so storing an intent rewrites no list of numbers.
    """CREATE TABLE IF NOT EXISTS {p}plan_numbers (
        plan_key TEXT NOT NULL,
        request_index INTEGER NOT NULL,
        mobiles TEXT NOT NULL,
        PRIMARY KEY (plan_key, request_index))""",
)
# Records a vendor handed out (pulled or pushed) that could not be parsed or stored: kept raw, with why.
_QUARANTINE = (
    """CREATE TABLE IF NOT EXISTS {p}quarantine (
        id {serial_pk},
        conn_id TEXT NOT NULL DEFAULT '',
        vendor TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        raw TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        replayed_at TEXT,
        journal_id BIGINT,
        position INTEGER)""",
    # a journaled page processed twice (a crash between its quarantine and its save) quarantines once
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}quarantine_position ON {p}quarantine (journal_id, position)",
)
# Every page a vendor handed out (pulled, or pushed to the receiver), committed before it is parsed;
# deleted in the commit that stores its records. What is left is what a crash interrupted. A pull is
# journaled as the reply's bytes (``body``, schema 4), so a reply that will not decode is kept
# (quarantined whole) rather than lost; a push as its decoded ``records``.
_JOURNAL_TABLE = """CREATE TABLE IF NOT EXISTS {p}journal (
        id {serial_pk},
        conn_id TEXT NOT NULL,
        vendor TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        records TEXT NOT NULL,
        fetched_at TEXT NOT NULL%s)"""
_JOURNAL_INDEX = "CREATE INDEX IF NOT EXISTS {p}journal_open ON {p}journal (conn_id, kind, id)"
_JOURNAL = (_JOURNAL_TABLE % ",\n        body {blob}", _JOURNAL_INDEX)
# Added in schema version 4: when each paced call (a vendor's per-account pull interval or request
# rate) may next go out, shared by every process and machine that uses the store.
_SLOTS = (
    """CREATE TABLE IF NOT EXISTS {p}slots (
        slot_key TEXT PRIMARY KEY,
        next_at DOUBLE PRECISION NOT NULL,
        updated_at TEXT NOT NULL)""",
)
#: every statement that creates today's tables (not the view: that depends on the dialect)
CREATE_STATEMENTS: Final = (
    _VERSION_TABLE,
    _COUNTERS_TABLE,
    _REQUESTS_TABLE,
    _REQUESTS_BATCH_INDEX,
    *_SEND_PLANS,
    *_QUARANTINE,
    *_REPORTS,
    *_INBOUND,
    *_POSITIONS,
    *_NOTIFICATIONS,
    *_JOURNAL,
    *_SLOTS,
)

# ``sent_messages``: a request's JSON list of numbers as rows, one per number (a table in schema 1).
_SENT_VIEW = {
    "sqlite": """CREATE VIEW IF NOT EXISTS {p}sent_messages AS
        SELECT r.vendor, r.batch_id, j.value AS mobile, r.idempotency_key, r.conn_id, r.submitted_at,
            r.dag_id, r.run_id, r.task_id, r.map_index
        FROM {p}requests r, json_each(NUMBERS_OF_R) j WHERE r.state = 'accepted'""",
    "postgresql": """CREATE OR REPLACE VIEW {p}sent_messages AS
        SELECT r.vendor, r.batch_id, j.mobile, r.idempotency_key, r.conn_id, r.submitted_at,
            r.dag_id, r.run_id, r.task_id, r.map_index
        FROM {p}requests r CROSS JOIN LATERAL jsonb_array_elements_text((NUMBERS_OF_R)::jsonb) AS j (mobile)
        WHERE r.state = 'accepted'""",
}


def _sent_view(db: Database) -> str:
    return _SENT_VIEW[db.dialect.name].replace("NUMBERS_OF_R", numbers_of("r"))


# ------------------------------------------------------------------------------------------ versions


def ensure_schema(db: Database) -> None:
    """Create the tables of a new store, or upgrade an older one to ``SCHEMA_VERSION``."""
    version = _version(db)
    while version is not None and 0 < version < SCHEMA_VERSION:
        _upgrade(db, version)
        version = _version(db)
    if version is None:
        with db.transaction(write=True) as cur:
            db.lock_schema(cur)
            if not _made_meanwhile(db, cur):
                _create(db, cur)
        version = _version(db)
    if version != SCHEMA_VERSION:
        raise SmsConfigurationError(
            f"SMS store tables {db.table_prefix}* ({db.describe()}) have schema version {version}; "
            f"this provider reads version {SCHEMA_VERSION}: upgrade airflow-provider-sms"
        )


def _made_meanwhile(db: Database, cur: Any) -> bool:
    """Whether another connection made the tables while this one waited for the schema lock (PostgreSQL).

    It may be writing to them already, and CREATE INDEX IF NOT EXISTS still locks an index's table
    before it finds the index there: run again, the creation would deadlock with those writers.
    """
    if not db.dialect.schema_lock:  # SQLite: BEGIN IMMEDIATE already excludes every other writer
        return False
    cur.execute(db.sql("SELECT to_regclass(?)"), (f"{db.table_prefix}schema_version",))
    return cur.fetchone()[0] is not None


def _create(db: Database, cur: Any) -> None:
    for ddl in (*CREATE_STATEMENTS, _sent_view(db)):
        cur.execute(db.sql(ddl))
    cur.execute(
        db.sql("INSERT INTO {p}schema_version (id, version, created_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING"),
        (SCHEMA_VERSION, now_text()),
    )
    for name in COUNTERS:
        cur.execute(
            db.sql("INSERT INTO {p}counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING"),
            (name,),
        )


def _version(db: Database) -> int | None:
    try:
        with db.transaction(write=False) as cur:
            cur.execute(db.sql("SELECT version FROM {p}schema_version WHERE id = 1"))
            row = cur.fetchone()
    except Exception:  # no table yet: the driver's own error class, whichever driver it is
        return None
    return int(row[0]) if row else None


def _upgrade(db: Database, version: int) -> None:
    """Run the upgrade from ``version`` to the next in one transaction, under the schema lock."""
    with db.transaction(write=True) as cur:
        db.lock_schema(cur)
        cur.execute(db.sql("SELECT version FROM {p}schema_version WHERE id = 1"))
        if int(cur.fetchone()[0]) != version:
            return  # another process upgraded while this one waited for the lock
        log.info(
            "SMS store: upgrading %s* (%s) from schema version %d to %d",
            db.table_prefix,
            db.describe(),
            version,
            version + 1,
        )
        _UPGRADES[version](db, cur)
        cur.execute(db.sql("UPDATE {p}schema_version SET version = ? WHERE id = 1"), (version + 1,))


# a schema-1 request's sent_messages rows as a JSON list
_MOBILES_OF_V1_REQUEST = {
    "sqlite": """SELECT json_group_array(s.mobile) FROM {p}sent_messages s
        WHERE s.idempotency_key = {p}requests.idempotency_key""",
    "postgresql": """SELECT COALESCE(json_agg(s.mobile ORDER BY s.mobile)::text, '[]')
        FROM {p}sent_messages s WHERE s.idempotency_key = {p}requests.idempotency_key""",
}


def _from_1(db: Database, cur: Any) -> None:
    """Schema 1 kept a ``sent_messages`` row per number; 2 keeps each request's numbers with it.

    One row per request is what lets a send of 100,000 numbers cost next to nothing beyond the
    vendor's time; ``sent_messages`` lives on as a view, so queries written against it still work.
    """
    cur.execute(db.sql("ALTER TABLE {p}requests ADD COLUMN mobiles TEXT"))
    cur.execute(db.sql("ALTER TABLE {p}requests ADD COLUMN submitted_at TEXT"))
    cur.execute(
        db.sql(
            f"""UPDATE {{p}}requests SET mobiles = ({_MOBILES_OF_V1_REQUEST[db.dialect.name]}),
                submitted_at = (SELECT MIN(s.submitted_at) FROM {{p}}sent_messages s
                    WHERE s.idempotency_key = {{p}}requests.idempotency_key)
            WHERE state = 'accepted'"""
        )
    )
    cur.execute(db.sql("DROP TABLE {p}sent_messages"))  # a view again from schema 3 on


def _from_2(db: Database, cur: Any) -> None:
    """Schema 3 adds send plans: each request row knows its plan, its place in it and when it went out."""
    for column in ("plan_key TEXT", "request_index INTEGER", "sending_at TEXT"):
        cur.execute(db.sql(f"ALTER TABLE {{p}}requests ADD COLUMN {column}"))
    journal_3 = (_JOURNAL_TABLE % "", _JOURNAL_INDEX)
    for ddl in (*_NOTIFICATIONS, *_SEND_PLANS, *_QUARANTINE, *journal_3):
        cur.execute(db.sql(ddl))
    cur.execute(db.sql("DROP VIEW IF EXISTS {p}sent_messages"))  # its numbers may now be a plan's
    cur.execute(db.sql(_sent_view(db)))


def _from_3(db: Database, cur: Any) -> None:
    """Schema 4 journals pulled replies as bytes (pages journaled as records before stay readable),
    indexes requests by batch once they have one, and keeps the slots of paced calls."""
    cur.execute(db.sql("ALTER TABLE {p}journal ADD COLUMN body {blob}"))
    cur.execute(db.sql("DROP INDEX IF EXISTS {p}requests_batch"))
    cur.execute(db.sql(_REQUESTS_BATCH_INDEX))
    for ddl in _SLOTS:
        cur.execute(db.sql(ddl))


_UPGRADES: Final[dict[int, Callable[[Database, Any], None]]] = {1: _from_1, 2: _from_2, 3: _from_3}
