"""The message store: what was sent, and what the vendors reported back, kept in SQL tables.

Vendors hand out each delivery report (DLR) and each inbound message (MO) once only, and a retried
send must know what already went out. So the store keeps them, in an Airflow ``common.sql``
connection (SQLite or PostgreSQL) or, without one, in an embedded SQLite file that several task
processes may share.

Conventions, the same on both databases so that copies to a warehouse look alike:

* Times are ISO-8601 UTC text with microseconds (``2024-05-01T08:00:00.000000+00:00``). The width is
  fixed, so text order is time order and the "older report" rule can compare the text.
* Money is text, so a ``Decimal`` comes back exactly. ``raw`` is JSON text.
* ``seq`` (delivery reports, inbound messages) is drawn from the ``<prefix>counters`` table on every
  insert *and* update. Every writer locks its counter row before it reads anything and holds it until
  commit. So seq order is commit order, and a copy that asks for ``seq > last seen`` misses nothing,
  updates included.
* Per-batch progress is kept as counters on the request row (``total``, ``delivered``, ``failed``).
  Each page of reports adjusts them by the change it made, so progress reads cost O(batches), not
  O(messages).
* Beyond the tables of the design, ``counters`` holds the seq counters and ``watermarks`` the
  positions of incremental copies (``get_watermark`` / ``set_watermark``).

One ``SmsStore`` holds one database connection. Calls on it are serialised by a lock, so handing the
store from thread to thread (``asyncio.to_thread``) is safe. For parallel writers, give each its own store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import json.encoder
import logging
import os
import re
import sqlite3
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from operator import itemgetter
from types import TracebackType
from typing import Any, Final, TypeVar

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.identifiers import check_table_prefix
from airflow_provider_sms.numbers import china_mobile_forms, mask_matches
from airflow_provider_sms.records import (
    ACCEPTED,
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    PLANNED,
    SENDING,
    SKIPPED,
    UNKNOWN,
    Balance,
    DeliveryReport,
    InboundMessage,
    PlanRequest,
    SendReceipt,
    StoredPlan,
)

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


def drop_statements(table_prefix: str) -> list[str]:
    """SQL that drops a store's views and tables (both dialects), e.g. to clean up after a test."""
    return [f"DROP VIEW IF EXISTS {table_prefix}{v}" for v in VIEWS] + [
        f"DROP TABLE IF EXISTS {table_prefix}{t}" for t in TABLES
    ]


PAGE_SIZE: Final = 5000
#: the quarantine position of a whole pulled reply that would not decode (records have their index)
WHOLE_REPLY: Final = -1
_IN_CHUNK = 500  # values per IN (...) list: under the 999 bound variables of SQLite builds before 3.32
_BUSY_TIMEOUT_S = 60.0
_SCAN_MIN_KEYS = 32  # a batch with this many keys in a page is read whole ...
_SCAN_FACTOR = 4  # ... unless it holds more than this many rows per key of the page
_SEEK_CHUNK = 300  # keys per VALUES list in a lookup by key (3 variables each)
_MASK_CACHE_NUMBERS = 200_000  # sent numbers kept for resolving masked mobiles within one save_reports
_MASK = re.compile(r"(\d+)\*+(\d+)")

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class TaskIdentity:
    """Which task instance sent: kept with every request for audit and to tie retries together."""

    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskIdentity:
        """The identity of the running task instance, from an Airflow task context."""
        ti = context.get("ti") or context.get("task_instance")
        if ti is None:
            return cls()
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=str(getattr(ti, "dag_id", "") or ""),
            run_id=str(getattr(ti, "run_id", "") or ""),
            task_id=str(getattr(ti, "task_id", "") or ""),
            map_index=int(map_index) if map_index is not None else -1,
        )


@dataclass(frozen=True)
class RequestRecord:
    """What the store knows of one send request, found by its idempotency key.

    ``state`` is ``"accepted"`` (the vendor gave ``batch_id``) or ``"unknown"`` (the request may
    have gone out; ``batch_id`` is None and resending risks a double send).
    """

    idempotency_key: str
    vendor: str
    conn_id: str
    state: str
    batch_id: str | None
    total: int
    delivered: int
    failed: int
    reason: str | None
    task: TaskIdentity
    created_at: datetime
    updated_at: datetime

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed


@dataclass(frozen=True)
class SaveResult:
    """Per input record: newly stored, changed a stored row, or left it as it was."""

    inserted: int
    updated: int
    unchanged: int
    #: reports only: how many stored reports took each status (inserted or changed), for the metrics;
    #: not part of equality, which compares what became of the input records
    statuses: Mapping[str, int] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True)
class JournalEntry:
    """A page journaled but not yet stored: a pull's reply as it came (``body``), or a push's ``records``."""

    id: int
    source: str
    records: list[Any] | None
    body: bytes | None


@dataclass(frozen=True)
class BatchProgress:
    """Delivery progress summed over some batches, read from the request counters."""

    total: int
    delivered: int
    failed: int

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed


# --------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested on their own)

# (status, code, description, reported_at text) of a stored or incoming report
_ReportState = tuple[str, str, str, str | None]
_Key = tuple[str, str, str]  # (vendor, batch_id, mobile)
# a delivery_reports row without its seq
_Row = tuple[Any, ...]


def report_replaces(old: _ReportState, new: _ReportState) -> bool:
    """Whether ``new`` should overwrite the stored ``old`` report for the same message.

    A final report (delivered/failed) replaces a pending one, a pending one never replaces a final
    one, and between two of the same kind the later ``reported_at`` wins, a missing time counting as
    earlier than any (on a tie the newer arrival wins); an identical report changes nothing.

    This orders reports totally (kind, then time), so applying a page's reports one by one gives
    the same row as applying only the page's winner, which lets the upsert's ``WHERE`` clause state
    the same rule in SQL.
    """
    if new == old:
        return False
    if (old[0] == EXPIRED) != (new[0] == EXPIRED) and PENDING not in (old[0], new[0]):
        return old[0] == EXPIRED  # a vendor's own final report beats "expired", whenever it comes
    old_final = old[0] in FINAL_STATUSES
    new_final = new[0] in FINAL_STATUSES
    if old_final != new_final:
        return new_final
    return old[3] is None or (new[3] is not None and new[3] >= old[3])


class _BatchNumbers:
    """The sent numbers of one batch, indexed by (length, head, tail) for each mask shape seen."""

    __slots__ = ("by_shape", "numbers")

    def __init__(self, numbers: list[str]) -> None:
        self.numbers = numbers
        self.by_shape: dict[tuple[int, int], dict[tuple[int, str, str], list[str]]] = {}

    def candidates(self, masked: str) -> list[str]:
        match = _MASK.fullmatch(masked)
        if match is None:  # a shape the index does not cover: ask mask_matches about every number
            return [n for n in self.numbers if mask_matches(masked, n)]
        head, tail = match.groups()
        shape = (len(head), len(tail))
        index = self.by_shape.get(shape)
        if index is None:
            index = {}
            for number in self.numbers:
                if len(number) >= shape[0] + shape[1]:
                    key = (len(number), number[: shape[0]], number[len(number) - shape[1] :])
                    index.setdefault(key, []).append(number)
            self.by_shape[shape] = index
        return [n for n in index.get((len(masked), head, tail), ()) if mask_matches(masked, n)]


class MaskResolver:
    """Maps a masked mobile (``135****9831``) to the one sent number of its batch that it can be.

    ``fetch(vendor, batch_id)`` gives the batch's sent numbers; batches are cached (up to a bound
    on the numbers held), and each lookup costs O(1) after a batch has been indexed, so a page of
    masked reports costs O(reports + batch sizes), not O(reports x batch size).
    """

    def __init__(self, max_numbers: int = _MASK_CACHE_NUMBERS) -> None:
        self._cache: OrderedDict[tuple[str, str], _BatchNumbers] = OrderedDict()
        self._held = 0
        self._max_numbers = max_numbers

    def resolve(self, vendor: str, batch_id: str, masked: str, fetch: Callable[[str, str], list[str]]) -> str | None:
        """The real number, or None when no sent number or more than one matches."""
        key = (vendor, batch_id)
        batch = self._cache.get(key)
        if batch is None:
            batch = _BatchNumbers(fetch(vendor, batch_id))
            self._cache[key] = batch
            self._held += len(batch.numbers)
            while self._held > self._max_numbers and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._held -= len(dropped.numbers)
        else:
            self._cache.move_to_end(key)
        found = batch.candidates(masked)
        return found[0] if len(found) == 1 else None


class _SentBatch:
    """Which accepted request of one batch sent a number, from the requests' JSON lists of numbers.

    A number asked about once is found by a substring search of the JSON text (no decoding: a page
    of reports can touch a thousand batches); a batch asked about often is decoded once into a dict.
    """

    __slots__ = ("_owners", "_requests")

    def __init__(self, requests: Sequence[tuple[str, str | None]]) -> None:
        self._requests = requests  # (idempotency_key, numbers as JSON), oldest first
        self._owners: dict[str, str] | None = None

    def index(self) -> dict[str, str]:
        """Number -> the key of the first request that sent it (a new dict the caller may change)."""
        owners: dict[str, str] = {}
        for key, numbers in self._requests:
            for mobile in json.loads(numbers) if numbers else ():
                owners.setdefault(mobile, key)
        return owners

    def owner(self, mobile: str, *, decode: bool) -> str | None:
        if decode and self._owners is None:
            self._owners = self.index()
        if self._owners is not None:
            return self._owners.get(mobile)
        needle = json.dumps(mobile, ensure_ascii=False)  # quotes included: matches whole numbers only
        for key, numbers in self._requests:
            if numbers and needle in numbers:
                return key
        return None


def _mobiles_json(mobiles: Sequence[str]) -> str:
    """A JSON list of numbers; digits need no escaping, so the usual list is joined (10x json.dumps)."""
    if "".join(mobiles).encode().isdigit():  # bytes.isdigit: ASCII digits only, and fast
        return '["' + '","'.join(mobiles) + '"]'
    return json.dumps(list(mobiles), ensure_ascii=False, separators=(",", ":"))


def _settle(old: _ReportState | None, rows: Sequence[_Row]) -> tuple[_Row | None, int, int, int]:
    """Apply several reports for one message in order: the row to write (if any) and the counts."""
    inserted = updated = unchanged = 0
    state, winner = old, None
    for row in rows:
        new: _ReportState = row[3:7]
        if state is None:
            inserted += 1
        elif report_replaces(state, new):
            updated += 1
        else:
            unchanged += 1
            continue
        state, winner = new, row
    return winner, inserted, updated, unchanged


def _count_move(delta: list[int], before: str | None, after: str) -> None:
    """Move one message's count from its old final status (if any) to its new one (if final).

    ``expired`` is counted with ``failed`` in the request counters (final, not delivered); reports
    keep it apart, so status counts show the gap.
    """
    if before == DELIVERED:
        delta[0] -= 1
    elif before in (FAILED, EXPIRED):
        delta[1] -= 1
    if after == DELIVERED:
        delta[0] += 1
    elif after in (FAILED, EXPIRED):
        delta[1] += 1


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pages(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Consume an iterable a page at a time, so a million records never sit in memory at once."""
    iterator = iter(items)
    while page := list(itertools.islice(iterator, size)):
        yield page


def _pages_and_last(items: Iterable[_T], size: int) -> Iterator[tuple[list[_T], bool]]:
    """Pages of ``items`` and whether each is the last; no items: one empty page (that is the last)."""
    pages = _pages(items, size)
    page = next(pages, [])
    while True:
        following = next(pages, None)
        yield page, following is None
        if following is None:
            return
        page = following


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the SMS store: use a UTC-aware time")
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _bytes(value: Any) -> bytes | None:
    """A BLOB/BYTEA as bytes: drivers hand out bytes or memoryview."""
    return None if value is None else bytes(value)


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, default=str, ensure_ascii=False)``, without building an encoder per call.

    A million reports each carry a ``raw`` dict, and json.dumps with keyword arguments builds a new
    JSONEncoder every time; CPython's C encoder, built once, does the same work in about half the time.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - not CPython
        return json.JSONEncoder(default=str, ensure_ascii=False).encode
    # markers=None: no cycle check (a cycle ends in RecursionError), so no state is kept between calls
    try:
        encode = c_make_encoder(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
        if "".join(encode({"a": [1.5, None]}, 0)) != '{"a": [1.5, null]}':  # pragma: no cover
            raise TypeError("unexpected C encoder output")
    except TypeError:  # pragma: no cover - another CPython's private signature
        return json.JSONEncoder(default=str, ensure_ascii=False).encode
    return lambda value: "".join(encode(value, 0))


_encode_json = _json_encoder()


def _json(raw: Mapping[str, Any] | None) -> str | None:
    if raw is None:
        return None
    return _encode_json(raw if isinstance(raw, dict) else dict(raw))


def _inbound_key(vendor: str, mobile: str, received_at: str | None, content: str) -> str:
    """One fixed-width value for the (vendor, mobile, received_at, content) uniqueness.

    A hash, because content can be long and because a NULL ``received_at`` would otherwise never
    collide in a unique index.
    """
    text = json.dumps([vendor, mobile, received_at, content], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Dialects: everything that differs between SQLite and PostgreSQL is here.


def _numbers_of(alias: str) -> str:
    """SQL for a request row's numbers (JSON list): a planned request's stay in ``plan_numbers``, written once."""
    return (
        f"COALESCE({alias}.mobiles, (SELECT n.mobiles FROM {{p}}plan_numbers n "
        f"WHERE n.plan_key = {alias}.plan_key AND n.request_index = {alias}.request_index))"
    )


@dataclass(frozen=True)
class _Dialect:
    name: str
    param: str  # DB-API placeholder; SQL below is written with "?"
    serial_pk: str  # auto-numbered integer primary key
    blob: str  # bytes as they came
    begin_write: str | None  # opens a write transaction holding the write lock (None: the driver opens one)
    begin_read: str | None
    lock_row: str  # appended to the SELECT of a counter row to lock it until commit
    schema_lock: str | None  # serialises CREATE TABLE IF NOT EXISTS between processes
    array_params: bool  # bind a page's columns as arrays and unnest() them, instead of a row per statement
    sent_view: str  # CREATE VIEW sent_messages: a request's JSON list of numbers as rows
    mobiles_of_v1_request: str  # schema 1 -> 2: a request's sent_messages rows as a JSON list


_SQLITE = _Dialect(
    name="sqlite",
    param="?",
    serial_pk="INTEGER PRIMARY KEY",
    blob="BLOB",
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN",
    lock_row="",  # BEGIN IMMEDIATE already holds the database's single write lock
    schema_lock=None,
    array_params=False,
    sent_view="""CREATE VIEW IF NOT EXISTS {p}sent_messages AS
        SELECT r.vendor, r.batch_id, j.value AS mobile, r.idempotency_key, r.conn_id, r.submitted_at,
            r.dag_id, r.run_id, r.task_id, r.map_index
        FROM {p}requests r, json_each(NUMBERS_OF_R) j WHERE r.state = 'accepted'""".replace(
        "NUMBERS_OF_R", _numbers_of("r")
    ),
    mobiles_of_v1_request="""SELECT json_group_array(s.mobile) FROM {p}sent_messages s
        WHERE s.idempotency_key = {p}requests.idempotency_key""",
)
_POSTGRES = _Dialect(
    name="postgresql",
    param="%s",
    serial_pk="BIGSERIAL PRIMARY KEY",
    blob="BYTEA",
    begin_write=None,
    begin_read=None,
    lock_row=" FOR UPDATE",
    schema_lock="SELECT pg_advisory_xact_lock(?)",
    array_params=True,
    sent_view="""CREATE OR REPLACE VIEW {p}sent_messages AS
        SELECT r.vendor, r.batch_id, j.mobile, r.idempotency_key, r.conn_id, r.submitted_at,
            r.dag_id, r.run_id, r.task_id, r.map_index
        FROM {p}requests r CROSS JOIN LATERAL jsonb_array_elements_text((NUMBERS_OF_R)::jsonb) AS j (mobile)
        WHERE r.state = 'accepted'""".replace("NUMBERS_OF_R", _numbers_of("r")),
    mobiles_of_v1_request="""SELECT COALESCE(json_agg(s.mobile ORDER BY s.mobile)::text, '[]')
        FROM {p}sent_messages s WHERE s.idempotency_key = {p}requests.idempotency_key""",
)
# unnest() casts; other columns are text
_PG_ARRAY_TYPES = {
    "seq": "bigint",
    "map_index": "integer",
    "total": "bigint",
    "request_index": "integer",
    "journal_id": "bigint",
    "position": "integer",
}

# Added after schema version 1 shipped: a version-1 database gets it on first use (CREATE IF NOT EXISTS).
_NOTIFICATIONS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {p}notifications (
        quiet_key TEXT PRIMARY KEY,
        sent_at TEXT NOT NULL,
        suppressed BIGINT NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL)""",
)
# Added in schema version 3: the plan each task instance's first try stored, and its requests' rows.
_SEND_PLANS_SCHEMA = (
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
    # Records a vendor handed out (pulled or pushed) that could not be parsed or stored: kept raw, with why.
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
_JOURNAL_SCHEMA_3 = (_JOURNAL_TABLE % "", _JOURNAL_INDEX)
_JOURNAL_SCHEMA = (_JOURNAL_TABLE % ",\n        body {blob}", _JOURNAL_INDEX)
_JOURNAL_BODY_COLUMN = "ALTER TABLE {p}journal ADD COLUMN body {blob}"  # schema 3 -> 4
# Requests by batch, for reports to find theirs. Partial (schema 4): a planned request has no batch
# yet, so neither its plan row nor its intent writes an index entry that acceptance then moves
# (a third fewer WAL pages per recorded request). ``batch_id = ?`` implies the index's condition.
_REQUESTS_BATCH_INDEX = (
    "CREATE INDEX IF NOT EXISTS {p}requests_batch ON {p}requests (vendor, batch_id) WHERE batch_id IS NOT NULL"
)
# Added in schema version 4: when each paced call (a vendor's per-account pull interval or request
# rate) may next go out, shared by every process and machine that uses the store.
_SLOTS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {p}slots (
        slot_key TEXT PRIMARY KEY,
        next_at DOUBLE PRECISION NOT NULL,
        updated_at TEXT NOT NULL)""",
)
# DDL; {p} is the table prefix, {serial_pk} the dialect's auto-numbered key. Times and money are text.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {p}schema_version (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {p}counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {p}requests (
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
        sending_at TEXT)""",
    _REQUESTS_BATCH_INDEX,
    *_SEND_PLANS_SCHEMA,
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
    *_NOTIFICATIONS_SCHEMA,
    *_JOURNAL_SCHEMA,
    *_SLOTS_SCHEMA,
)
_COUNTER_NAMES = ("delivery_reports", "inbound_messages")

_REQUEST_COLUMNS = (
    "idempotency_key, vendor, conn_id, state, batch_id, total, delivered, failed, reason, "
    "dag_id, run_id, task_id, map_index, created_at, updated_at"
)
_UPSERT_REQUEST = """INSERT INTO {p}requests (idempotency_key, vendor, conn_id, batch_id, state, total,
        delivered, failed, reason, dag_id, run_id, task_id, map_index, created_at, updated_at,
        mobiles, submitted_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (idempotency_key) DO UPDATE SET
        vendor = excluded.vendor, conn_id = excluded.conn_id, batch_id = excluded.batch_id,
        state = excluded.state, total = excluded.total, delivered = excluded.delivered,
        failed = excluded.failed, reason = COALESCE(excluded.reason, {p}requests.reason),
        dag_id = excluded.dag_id, run_id = excluded.run_id, task_id = excluded.task_id,
        map_index = excluded.map_index, updated_at = excluded.updated_at, mobiles = excluded.mobiles,
        submitted_at = excluded.submitted_at
    WHERE {p}requests.state <> 'accepted'"""
# The accepted request (the first key) and, in the same statement, the next request's intent (the last).
_ACCEPT_PLANNED = """UPDATE {p}requests SET
        state = CASE WHEN idempotency_key = ? THEN 'accepted' ELSE 'sending' END,
        batch_id = CASE WHEN idempotency_key = ? THEN ? ELSE batch_id END,
        total = CASE WHEN idempotency_key = ? THEN COALESCE(?, total) ELSE total END,
        delivered = CASE WHEN idempotency_key = ? THEN ? ELSE delivered END,
        failed = CASE WHEN idempotency_key = ? THEN ? ELSE failed END,
        submitted_at = CASE WHEN idempotency_key = ? THEN ? ELSE submitted_at END,
        sending_at = CASE WHEN idempotency_key = ? THEN sending_at ELSE ? END,
        updated_at = ?
    WHERE (idempotency_key = ? AND state <> 'accepted')
       OR (idempotency_key = ? AND state IN ('planned', 'sending', 'unknown'))"""
_ACCEPTED_IN_BATCH = f"""SELECT r.idempotency_key, {_numbers_of("r")} FROM {{p}}requests r
    WHERE r.vendor = ? AND r.batch_id = ? AND r.state = 'accepted' ORDER BY r.created_at, r.idempotency_key"""
_FINAL_REPORTS_IN_BATCH = """SELECT mobile, status FROM {p}delivery_reports
    WHERE vendor = ? AND batch_id = ? AND status IN (?, ?, ?)"""
_BEFORE_RECORDING = f"""SELECT 'state', state, batch_id FROM {{p}}requests WHERE idempotency_key = ?
    UNION ALL SELECT 'request', r.idempotency_key, {_numbers_of("r")} FROM {{p}}requests r
        WHERE r.vendor = ? AND r.batch_id = ? AND r.state = 'accepted'
    UNION ALL SELECT 'report', mobile, status FROM {{p}}delivery_reports
        WHERE vendor = ? AND batch_id = ? AND status IN (?, ?, ?)"""
# fmt: off
_REPORT_COLUMNS = (
    "vendor", "batch_id", "mobile", "status", "code", "description", "reported_at",
    "reported_mobile", "raw", "conn_id", "fetched_at", "seq",
)
# fmt: on
# The same rule as report_replaces(), so that no writer can turn a final report back to pending (or a
# vendor's final report into "expired"): pending < expired < delivered/failed, then the later report.
_REPORT_UPSERT = """ON CONFLICT (vendor, batch_id, mobile) DO UPDATE SET
        status = excluded.status, code = excluded.code, description = excluded.description,
        reported_at = excluded.reported_at, reported_mobile = excluded.reported_mobile,
        raw = excluded.raw, conn_id = excluded.conn_id, fetched_at = excluded.fetched_at,
        seq = excluded.seq
    WHERE RANK_OF_STORED < RANK_OF_NEW
       OR (RANK_OF_STORED = RANK_OF_NEW
           AND ({p}delivery_reports.reported_at IS NULL
                OR excluded.reported_at >= {p}delivery_reports.reported_at))""".replace(
    "RANK_OF_STORED", "(CASE {p}delivery_reports.status WHEN 'pending' THEN 0 WHEN 'expired' THEN 1 ELSE 2 END)"
).replace("RANK_OF_NEW", "(CASE excluded.status WHEN 'pending' THEN 0 WHEN 'expired' THEN 1 ELSE 2 END)")
# fmt: off
_INBOUND_COLUMNS = (
    "dedupe_key", "vendor", "mobile", "content", "received_at", "ext_no", "raw", "conn_id",
    "fetched_at", "seq",
)
# fmt: on


# --------------------------------------------------------------------------------------------------


class SmsStore:
    """Sends, delivery reports, inbound messages, balances and opt-outs in SQL tables.

    :param store_conn_id: an Airflow connection whose hook is a ``common.sql`` ``DbApiHook`` for
        SQLite or PostgreSQL. None: an embedded SQLite file at ``path``, by default
        ``$AIRFLOW_HOME/sms_store.db``.
    :param table_prefix: prepended to every table name, so several stores can share a database.
    :param path: the embedded SQLite file (only without ``store_conn_id``).

    Nothing connects until the first call; the tables are created then if they are missing.
    """

    #: records per transaction in save_reports / save_inbound
    page_size: int = PAGE_SIZE

    def __init__(
        self, store_conn_id: str | None = None, *, table_prefix: str = "sms_", path: str | None = None
    ) -> None:
        check_table_prefix(table_prefix)
        if store_conn_id is not None and path is not None:
            raise SmsConfigurationError(
                f"SMS store: give either store_conn_id ({store_conn_id!r}) or path ({path!r}), not both"
            )
        self.store_conn_id = store_conn_id
        self.table_prefix = table_prefix
        if store_conn_id is None:
            home = os.environ.get("AIRFLOW_HOME") or os.path.join("~", "airflow")
            path = path or os.path.join(os.path.expanduser(home), "sms_store.db")
        self.path = path
        self._conn: Any = None
        self._dialect = _SQLITE
        self._psycopg2 = False
        self._array_param = "%s"  # placeholder for an array parameter: binary ("%b") with psycopg 3
        self._lock = threading.RLock()

    # ---------------------------------------------------------------------------- connection

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"`` (connects if not yet connected)."""
        with self._lock:
            self._connection()
            return self._dialect.name

    def close(self) -> None:
        """Close the database connection; the next call opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> SmsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._open_embedded() if self.store_conn_id is None else self._open_hook(self.store_conn_id)
            self._conn = conn
            try:
                self._ensure_schema()
            except BaseException:
                self._conn = None
                conn.close()
                raise
        return self._conn

    def _open_embedded(self) -> sqlite3.Connection:
        assert self.path is not None
        if self.path != ":memory:" and not self.path.startswith("file:"):
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            uri=self.path.startswith("file:"),
        )
        self._setup_sqlite(conn, embedded=True)
        return conn

    def _setup_sqlite(self, conn: sqlite3.Connection, *, embedded: bool) -> None:
        # Explicit BEGIN IMMEDIATE for writes: a deferred transaction that reads and then writes
        # can fail at once with "database is locked" instead of waiting out the busy timeout.
        conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        if embedded:
            # WAL lets task processes read while one writes; NORMAL sync is safe with WAL
            # (a power cut can lose the last commits, never corrupt the file).
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32768")
        self._dialect = _SQLITE
        self._psycopg2 = False

    def _open_hook(self, conn_id: str) -> Any:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
        from airflow.sdk import BaseHook

        try:
            hook = BaseHook.get_hook(conn_id)
        except Exception as err:
            raise SmsConfigurationError(f"SMS store connection {conn_id!r} cannot be used: {err}") from err
        if not isinstance(hook, DbApiHook):
            raise SmsConfigurationError(
                f"SMS store connection {conn_id!r} has type {getattr(hook, 'conn_type', '?')!r}, whose hook "
                "is not a common.sql DbApiHook; use a SQLite or PostgreSQL connection"
            )
        conn_type = str(getattr(hook, "conn_type", "") or "")
        try:
            dialect_name = str(hook.dialect_name or "")
        except Exception:
            dialect_name = ""
        kind = f"{conn_type} {dialect_name}".lower()
        if "sqlite" not in kind and "postgres" not in kind:
            raise SmsConfigurationError(
                f"SMS store connection {conn_id!r} has type {conn_type!r}; "
                "the SMS store supports SQLite and PostgreSQL connections only"
            )
        conn = hook.get_conn()
        if isinstance(conn, sqlite3.Connection):
            self._setup_sqlite(conn, embedded=False)
            return conn
        if "postgres" not in kind:
            conn.close()
            raise SmsConfigurationError(
                f"SMS store connection {conn_id!r} ({conn_type!r}) did not give a SQLite connection"
            )
        self._dialect = _POSTGRES
        driver = type(conn).__module__.split(".")[0]
        self._psycopg2 = driver == "psycopg2"
        self._array_param = "%b" if driver == "psycopg" else "%s"
        # Plain tuple rows, whatever cursor the connection's extras ask for.
        if self._psycopg2:
            import psycopg2.extensions

            conn.cursor_factory = psycopg2.extensions.cursor
        elif driver == "psycopg":
            from psycopg.rows import tuple_row

            conn.row_factory = tuple_row
        if getattr(conn, "autocommit", False):
            conn.autocommit = False
        return conn

    def _ensure_schema(self) -> None:
        version = self._schema_version()
        while version is not None and 0 < version < SCHEMA_VERSION:
            self._upgrade(version)
            version = self._schema_version()
        if version is None:
            with self._transaction(write=True) as cur:
                self._lock_schema(cur)
                for ddl in (*_SCHEMA, self._dialect.sent_view):
                    cur.execute(self._sql(ddl))
                cur.execute(
                    self._sql(
                        "INSERT INTO {p}schema_version (id, version, created_at) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING"
                    ),
                    (SCHEMA_VERSION, _now()),
                )
                for name in _COUNTER_NAMES:
                    cur.execute(
                        self._sql("INSERT INTO {p}counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING"),
                        (name,),
                    )
            version = self._schema_version()
        if version != SCHEMA_VERSION:
            raise SmsConfigurationError(
                f"SMS store tables {self.table_prefix}* ({self._where()}) have schema version {version}; "
                f"this provider reads version {SCHEMA_VERSION}: upgrade airflow-provider-sms"
            )

    def _lock_schema(self, cur: Any) -> None:
        if self._dialect.schema_lock:
            cur.execute(self._sql(self._dialect.schema_lock), (zlib.crc32(self.table_prefix.encode()),))

    def _upgrade(self, version: int) -> None:
        """Run the upgrade from ``version`` to the next in one transaction, under the schema lock."""
        steps = {1: self._upgrade_from_1, 2: self._upgrade_from_2, 3: self._upgrade_from_3}
        with self._transaction(write=True) as cur:
            self._lock_schema(cur)
            cur.execute(self._sql("SELECT version FROM {p}schema_version WHERE id = 1"))
            if int(cur.fetchone()[0]) != version:
                return  # another process upgraded while this one waited for the lock
            log.info(
                "SMS store: upgrading %s* (%s) from schema version %d to %d",
                self.table_prefix,
                self._where(),
                version,
                version + 1,
            )
            steps[version](cur)
            cur.execute(self._sql("UPDATE {p}schema_version SET version = ? WHERE id = 1"), (version + 1,))

    def _upgrade_from_1(self, cur: Any) -> None:
        """Schema 1 kept a ``sent_messages`` row per number; 2 keeps each request's numbers with it.

        One row per request is what lets a send of 100,000 numbers cost next to nothing beyond the
        vendor's time; ``sent_messages`` lives on as a view, so queries written against it still work.
        """
        cur.execute(self._sql("ALTER TABLE {p}requests ADD COLUMN mobiles TEXT"))
        cur.execute(self._sql("ALTER TABLE {p}requests ADD COLUMN submitted_at TEXT"))
        cur.execute(
            self._sql(
                f"""UPDATE {{p}}requests SET mobiles = ({self._dialect.mobiles_of_v1_request}),
                    submitted_at = (SELECT MIN(s.submitted_at) FROM {{p}}sent_messages s
                        WHERE s.idempotency_key = {{p}}requests.idempotency_key)
                WHERE state = 'accepted'"""
            )
        )
        cur.execute(self._sql("DROP TABLE {p}sent_messages"))  # a view again from schema 3 on

    def _upgrade_from_2(self, cur: Any) -> None:
        """Schema 3 adds send plans: each request row knows its plan, its place in it and when it went out."""
        for column in ("plan_key TEXT", "request_index INTEGER", "sending_at TEXT"):
            cur.execute(self._sql(f"ALTER TABLE {{p}}requests ADD COLUMN {column}"))
        for ddl in (*_NOTIFICATIONS_SCHEMA, *_SEND_PLANS_SCHEMA, *_JOURNAL_SCHEMA_3):
            cur.execute(self._sql(ddl))
        cur.execute(self._sql("DROP VIEW IF EXISTS {p}sent_messages"))  # its numbers may now be a plan's
        cur.execute(self._sql(self._dialect.sent_view))

    def _upgrade_from_3(self, cur: Any) -> None:
        """Schema 4 journals pulled replies as bytes (pages journaled as records before stay readable),
        indexes requests by batch once they have one, and keeps the slots of paced calls."""
        cur.execute(self._sql(_JOURNAL_BODY_COLUMN))
        cur.execute(self._sql("DROP INDEX IF EXISTS {p}requests_batch"))
        cur.execute(self._sql(_REQUESTS_BATCH_INDEX))
        for ddl in _SLOTS_SCHEMA:
            cur.execute(self._sql(ddl))

    def _schema_version(self) -> int | None:
        try:
            with self._transaction(write=False) as cur:
                cur.execute(self._sql("SELECT version FROM {p}schema_version WHERE id = 1"))
                row = cur.fetchone()
        except Exception:  # no table yet: the driver's own error class, whichever driver it is
            return None
        return int(row[0]) if row else None

    def _where(self) -> str:
        return f"connection {self.store_conn_id!r}" if self.store_conn_id else f"file {self.path}"

    def _sql(self, sql: str) -> str:
        """Fill in the table prefix, and the placeholders: ``?`` a value, ``{a}`` an array (PostgreSQL)."""
        text = (
            sql.replace("{p}", self.table_prefix)
            .replace("{serial_pk}", self._dialect.serial_pk)
            .replace("{blob}", self._dialect.blob)
        )
        if self._dialect.param != "?":
            text = text.replace("?", self._dialect.param)
        return text.replace("{a}", self._array_param)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Any]:
        """A cursor in one transaction, committed on success and rolled back on any error."""
        with self._lock:
            conn = self._connection()
            cur = conn.cursor()
            try:
                begin = self._dialect.begin_write if write else self._dialect.begin_read
                if begin:
                    cur.execute(begin)
                yield cur
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    log.warning("SMS store: rollback failed", exc_info=True)
                raise
            finally:
                cur.close()

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], suffix: str = ""
    ) -> None:
        """INSERT many rows in the current transaction, with the driver's fastest batch call."""
        if not rows:
            return
        head = f"INSERT INTO {self.table_prefix}{table} ({', '.join(columns)}) VALUES "
        tail = " " + self._sql(suffix) if suffix else ""
        if self._psycopg2:
            from psycopg2.extras import execute_values

            execute_values(cur, head + "%s" + tail, rows, page_size=1000)
        elif self._dialect.array_params:
            # psycopg 3 and other PostgreSQL drivers: one statement per page, each column one array
            # parameter, costs far less per row than executemany's statement per row.
            arrays = ", ".join(f"{{a}}::{_PG_ARRAY_TYPES.get(c, 'text')}[]" for c in columns)
            select = f"SELECT * FROM unnest({arrays})"
            cur.execute(head[: -len("VALUES ")] + self._sql(select) + tail, [list(c) for c in zip(*rows, strict=True)])
        else:
            cur.executemany(head + "(" + ", ".join([self._dialect.param] * len(columns)) + ")" + tail, rows)

    def _execute_many(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._psycopg2:
            from psycopg2.extras import execute_batch

            execute_batch(cur, self._sql(sql), rows, page_size=500)
        else:
            cur.executemany(self._sql(sql), rows)

    def _lock_counter(self, cur: Any, name: str) -> int:
        """Take the counter row (held to commit: writers of one kind go one at a time) and read it."""
        cur.execute(self._sql("SELECT value FROM {p}counters WHERE name = ?" + self._dialect.lock_row), (name,))
        return int(cur.fetchone()[0])

    def _set_counter(self, cur: Any, name: str, value: int) -> None:
        cur.execute(self._sql("UPDATE {p}counters SET value = ? WHERE name = ?"), (value, name))

    def _select_in(
        self, cur: Any, sql: str, head_params: Sequence[Any], values: Sequence[Any]
    ) -> Iterator[tuple[Any, ...]]:
        """Run ``sql`` (with one ``IN ({in})``) per chunk of ``values``, yielding all rows."""
        for chunk in _chunks(values, _IN_CHUNK):
            cur.execute(self._sql(sql.replace("{in}", ", ".join("?" * len(chunk)))), (*head_params, *chunk))
            yield from cur.fetchall()

    # ---------------------------------------------------------------------------- sends

    def accepted_requests(self, keys: Sequence[str]) -> dict[str, RequestRecord]:
        """The keys already recorded (accepted or unknown), so a retry does not send them again."""
        wanted = list(dict.fromkeys(keys))
        sql = f"SELECT {_REQUEST_COLUMNS} FROM {{p}}requests WHERE idempotency_key IN ({{in}})"
        with self._transaction(write=False) as cur:
            rows = list(self._select_in(cur, sql, (), wanted))
        return {row[0]: _request_record(row) for row in rows}

    def record_accepted(
        self,
        key: str,
        receipt: SendReceipt,
        *,
        conn_id: str,
        task: TaskIdentity,
        next_intent: str | None = None,
    ) -> None:
        """Record, in one transaction, that the vendor accepted ``key`` as ``receipt.batch_id``.

        One row per request, its numbers a JSON list in it: recording costs the same for one number
        or a thousand. Recording a key that is already accepted changes nothing; an ``unknown`` one is
        upgraded. Reports that arrived before this call are counted into the new request's counters.

        ``next_intent``: a planned request that goes out next, marked ``sending`` in the same commit,
        so the intent of every request is durable before it leaves at no extra commit.
        """
        now = _now()
        batch = (receipt.vendor, receipt.batch_id)
        with self._transaction(write=True) as cur:
            if self._dialect.lock_row:
                # The report counter row serialises this with save_reports, so no report slips between
                # the request going in and its counters being set (SQLite's BEGIN IMMEDIATE already does).
                self._lock_counter(cur, "delivery_reports")
            # One round trip: this key's state; the batch's accepted requests, whose numbers are counted
            # there, not here (a vendor that reuses batch ids); the reports that came before this call.
            cur.execute(self._sql(_BEFORE_RECORDING), (key, *batch, *batch, DELIVERED, FAILED, EXPIRED))
            found: dict[str, list[tuple[Any, Any]]] = {"state": [], "request": [], "report": []}
            for kind, first, second in cur.fetchall():
                found[kind].append((first, second))
            if found["state"] and found["state"][0][0] == ACCEPTED:
                if next_intent is not None:
                    self._mark_sending(cur, [next_intent], now, (PLANNED, SENDING, UNKNOWN))
                recorded_batch = found["state"][0][1]
                if recorded_batch != receipt.batch_id:
                    log.warning(
                        "SMS store: request %s is already recorded as %s batch %s; batch %s not recorded",
                        key,
                        receipt.vendor,
                        recorded_batch,
                        receipt.batch_id,
                    )
                return
            earlier, finals = found["request"], found["report"]
            if found["state"] and not (earlier or finals):
                # The usual planned request, the first of its batch with no report before it: its row counts
                # its (distinct) numbers already, so no number of it needs looking at.
                self._accept_planned(cur, key, receipt, (None, 0, 0), now, next_intent)
                return
            counted = set(receipt.mobiles)  # a set, not the ordered list the row may need: half the cost
            if earlier:
                counted.difference_update(_SentBatch(earlier).index())
            delivered = sum(1 for mobile, status in finals if status == DELIVERED and mobile in counted)
            failed = sum(1 for mobile, status in finals if status in (FAILED, EXPIRED) and mobile in counted)
            if found["state"]:
                self._accept_planned(cur, key, receipt, (len(counted), delivered, failed), now, next_intent)
                return
            if next_intent is not None:
                self._mark_sending(cur, [next_intent], now, (PLANNED, SENDING, UNKNOWN))
            cur.execute(
                self._sql(_UPSERT_REQUEST),
                (
                    key,
                    receipt.vendor,
                    conn_id,
                    receipt.batch_id,
                    ACCEPTED,
                    len(counted),
                    delivered,
                    failed,
                    None,
                    task.dag_id,
                    task.run_id,
                    task.task_id,
                    task.map_index,
                    now,
                    now,
                    _mobiles_json(list(dict.fromkeys(receipt.mobiles))),
                    _ts(receipt.submitted_at),
                ),
            )

    def _accept_planned(
        self,
        cur: Any,
        key: str,
        receipt: SendReceipt,
        counts: tuple[int | None, int, int],
        now: str,
        next_intent: str | None,
    ) -> None:
        """A request with a row (planned, or left unknown): its row holds its numbers already, so only its
        outcome is written, and the next request's intent rides in the same statement (one round trip,
        one commit). ``counts``: total (None: the row's own), delivered, failed."""
        outcome = (receipt.batch_id, *counts, _ts(receipt.submitted_at))
        cur.execute(
            self._sql(_ACCEPT_PLANNED),
            (key, *(v for value in outcome for v in (key, value)), key, now, now, key, next_intent or key),
        )

    def record_unknown(
        self,
        key: str,
        *,
        vendor: str,
        conn_id: str,
        mobiles: Sequence[str],
        task: TaskIdentity,
        reason: str,
    ) -> None:
        """Record that ``key`` may have gone out with no answer, so nothing resends it blindly.

        Never downgrades an accepted request; a later ``record_accepted`` upgrades this one.
        """
        now = _now()
        unique = list(dict.fromkeys(mobiles))
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(_UPSERT_REQUEST),
                (
                    key,
                    vendor,
                    conn_id,
                    None,
                    UNKNOWN,
                    len(unique),
                    0,
                    0,
                    reason,
                    task.dag_id,
                    task.run_id,
                    task.task_id,
                    task.map_index,
                    now,
                    now,
                    _mobiles_json(unique),
                    None,
                ),
            )

    # ---------------------------------------------------------------------------- send plans

    def find_plan(self, task_key: str) -> StoredPlan | None:
        """The plan a task instance's first try stored, with every request's row, or None."""
        plan_columns = "plan_key, generation, inputs, numbers, opted_out, report_seq"
        with self._transaction(write=False) as cur:
            cur.execute(self._sql(f"SELECT {plan_columns} FROM {{p}}send_plans WHERE task_key = ?"), (task_key,))
            found = cur.fetchone()
            if found is None:
                return None
            plan = dict(zip(plan_columns.split(", "), found, strict=True))
            cur.execute(
                self._sql(
                    """SELECT r.idempotency_key, r.request_index, r.state, n.mobiles, r.batch_id, r.sending_at,
                        r.reason FROM {p}requests r JOIN {p}plan_numbers n
                            ON n.plan_key = r.plan_key AND n.request_index = r.request_index
                    WHERE r.plan_key = ? ORDER BY r.request_index"""
                ),
                (plan["plan_key"],),
            )
            rows = cur.fetchall()
        requests = tuple(
            PlanRequest(
                key=key,
                index=int(index),
                state=state,
                mobiles=tuple(json.loads(mobiles)) if mobiles else (),
                batch_id=batch_id,
                sending_at=datetime.fromisoformat(sending_at) if sending_at else None,
                reason=reason,
            )
            for key, index, state, mobiles, batch_id, sending_at, reason in rows
        )
        return StoredPlan(
            task_key=task_key,
            plan_key=str(plan["plan_key"]),
            generation=int(plan["generation"]),
            inputs=json.loads(plan["inputs"]),
            numbers=int(plan["numbers"]),
            opted_out=int(plan["opted_out"]),
            report_seq=int(plan["report_seq"]),
            requests=requests,
        )

    def save_plan(
        self,
        plan: StoredPlan,
        *,
        vendor: str,
        conn_id: str,
        task: TaskIdentity,
        intents: Collection[str] = (),
        replaces: str | None = None,
    ) -> StoredPlan:
        """Store a new plan and its requests in one commit, before anything of it goes out.

        ``intents``: the keys that go out first, stored as ``sending`` in the same commit. ``replaces``:
        the plan key of an earlier plan of the same task instance whose unsent requests are cancelled.
        Returns the plan with the report sequence it starts after (evidence for unknown outcomes).
        """
        now = _now()
        rows = [
            (
                request.key,
                vendor,
                conn_id,
                SENDING if request.key in intents else PLANNED,
                len(request.mobiles),
                task.dag_id,
                task.run_id,
                task.task_id,
                task.map_index,
                now,
                now,
                plan.plan_key,
                request.index,
                now if request.key in intents else None,
            )
            for request in plan.requests
        ]
        numbers = [(plan.plan_key, request.index, _mobiles_json(request.mobiles)) for request in plan.requests]
        columns = (
            "idempotency_key, vendor, conn_id, state, total, dag_id, run_id, task_id, map_index, created_at, "
            "updated_at, plan_key, request_index, sending_at"
        )
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("SELECT value FROM {p}counters WHERE name = 'delivery_reports'"))
            report_seq = int(cur.fetchone()[0])
            cur.execute(
                self._sql(
                    """INSERT INTO {p}send_plans (task_key, plan_key, generation, vendor, conn_id, dag_id, run_id,
                        task_id, map_index, inputs, numbers, requests, opted_out, report_seq, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (task_key) DO UPDATE SET plan_key = excluded.plan_key,
                        generation = excluded.generation, inputs = excluded.inputs, numbers = excluded.numbers,
                        requests = excluded.requests, opted_out = excluded.opted_out,
                        report_seq = excluded.report_seq, updated_at = excluded.updated_at"""
                ),
                (
                    plan.task_key,
                    plan.plan_key,
                    plan.generation,
                    vendor,
                    conn_id,
                    task.dag_id,
                    task.run_id,
                    task.task_id,
                    task.map_index,
                    json.dumps(plan.inputs, sort_keys=True),
                    plan.numbers,
                    len(plan.requests),
                    plan.opted_out,
                    report_seq,
                    now,
                    now,
                ),
            )
            if replaces is not None:
                cur.execute(
                    self._sql("UPDATE {p}requests SET state = ?, updated_at = ? WHERE plan_key = ? AND state = ?"),
                    (CANCELLED, now, replaces, PLANNED),
                )
            self._insert_many(
                cur, "plan_numbers", ("plan_key", "request_index", "mobiles"), numbers, "ON CONFLICT DO NOTHING"
            )
            self._insert_many(cur, "requests", columns.split(", "), rows, "ON CONFLICT (idempotency_key) DO NOTHING")
        return dataclasses.replace(plan, report_seq=report_seq)

    def update_plan(self, plan: StoredPlan, changed: Sequence[PlanRequest], *, opted_out: int = 0) -> None:
        """In one commit at the start of a retry: new number lists for requests not yet sent (opt-outs left
        out; a request left with no number is skipped)."""
        now = _now()
        with self._transaction(write=True) as cur:
            for request in changed:
                cur.execute(
                    self._sql(
                        "UPDATE {p}requests SET total = ?, state = ?, updated_at = ? "
                        "WHERE idempotency_key = ? AND state = ?"
                    ),
                    (len(request.mobiles), PLANNED if request.mobiles else SKIPPED, now, request.key, PLANNED),
                )
                cur.execute(
                    self._sql("UPDATE {p}plan_numbers SET mobiles = ? WHERE plan_key = ? AND request_index = ?"),
                    (_mobiles_json(request.mobiles), plan.plan_key, request.index),
                )
            if opted_out:
                cur.execute(
                    self._sql("UPDATE {p}send_plans SET opted_out = opted_out + ?, updated_at = ? WHERE task_key = ?"),
                    (opted_out, now, plan.task_key),
                )

    def mark_sending(self, keys: Sequence[str]) -> None:
        """Store the intent of requests about to go out (a resend of an unknown one included)."""
        with self._transaction(write=True) as cur:
            self._mark_sending(cur, keys, _now(), (PLANNED, SENDING, UNKNOWN))

    def _mark_sending(self, cur: Any, keys: Sequence[str], now: str, states: Sequence[str]) -> None:
        if not keys:
            return
        marks = ", ".join("?" * len(states))
        sql = self._sql(
            f"UPDATE {{p}}requests SET state = ?, sending_at = ?, updated_at = ? "
            f"WHERE idempotency_key = ? AND state IN ({marks})"
        )
        if len(keys) == 1:  # the usual case: the next request's intent, inside an acceptance's commit
            cur.execute(sql, (SENDING, now, now, keys[0], *states))
        else:
            self._execute_many(cur, sql, [(SENDING, now, now, key, *states) for key in keys])

    def release_intent(self, key: str, reason: str) -> None:
        """The request surely did not go out (or the vendor refused it): it may be sent again later."""
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "UPDATE {p}requests SET state = ?, sending_at = NULL, reason = ?, updated_at = ? "
                    "WHERE idempotency_key = ? AND state = ?"
                ),
                (PLANNED, reason[:500], _now(), key, SENDING),
            )

    def acceptance_evidence(
        self, vendor: str, since_seq: int, unknown: Mapping[str, tuple[datetime, Sequence[str]]]
    ) -> tuple[dict[str, str], int]:
        """Batch ids that delivery reports prove the vendor accepted unknown requests under.

        ``unknown`` maps a request key to (when it went out, its numbers). A batch is evidence for a
        request when no accepted request in the store has it (the batch the lost reply would have named),
        and every report of it read here is for one of the request's numbers and arrived after the
        request went out: a batch of someone else's that also messaged one of the numbers has others too.
        Only reports written after ``since_seq`` are read; returns the evidence and the last seq read,
        where the next look may start.
        """
        owners: dict[str, str] = {}
        for key, (_, mobiles) in unknown.items():
            for mobile in mobiles:
                owners[mobile] = key
        since_text = {key: _ts(when) or "" for key, (when, _) in unknown.items()}
        votes: dict[str, dict[str, int]] = {}
        rows_of_batch: dict[str, int] = {}
        last_seq = since_seq
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(
                    "SELECT batch_id, mobile, fetched_at, seq FROM {p}delivery_reports WHERE vendor = ? AND seq > ?"
                ),
                (vendor, since_seq),
            )
            while rows := cur.fetchmany(PAGE_SIZE):
                for batch_id, mobile, fetched_at, seq in rows:
                    last_seq = max(last_seq, int(seq))
                    rows_of_batch[batch_id] = rows_of_batch.get(batch_id, 0) + 1
                    owner = owners.get(mobile)
                    if owner is not None and fetched_at >= since_text[owner]:
                        counts = votes.setdefault(owner, {})
                        counts[batch_id] = counts.get(batch_id, 0) + 1
            candidates = sorted({batch for counts in votes.values() for batch in counts})
            known = {
                row[0]
                for row in self._select_in(
                    cur,
                    "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' AND batch_id IN ({in})",
                    (vendor,),
                    candidates,
                )
            }
        found: dict[str, str] = {}
        for key, counts in votes.items():
            best = max(
                (
                    (count, batch)
                    for batch, count in counts.items()
                    if batch not in known and count == rows_of_batch[batch]
                ),
                default=None,
            )
            if best is not None:
                found[key] = best[1]
        return found, last_seq

    # ---------------------------------------------------------------------------- quarantine

    def quarantine(
        self,
        rejected: Sequence[tuple[Any, str]],
        *,
        conn_id: str,
        vendor: str,
        kind: str,
        source: str,
        journal_id: int | None = None,
        positions: Sequence[int] | None = None,
    ) -> int:
        """Keep records that could not be parsed or stored, raw (JSON, ASCII-escaped) with the reason.

        ``journal_id`` and ``positions`` (each record's place in its journaled page) make a second pass
        over the same page add nothing.
        """
        if not rejected:
            return 0
        now = _now()
        places = positions if positions is not None else [None] * len(rejected)
        rows = [
            (
                conn_id,
                vendor,
                kind,
                source,
                json.dumps(item, default=str, sort_keys=True),
                reason[:1000],
                now,
                journal_id,
                place,
            )
            for (item, reason), place in zip(rejected, places, strict=True)
        ]
        columns = ("conn_id", "vendor", "kind", "source", "raw", "reason", "created_at", "journal_id", "position")
        with self._transaction(write=True) as cur:
            self._insert_many(cur, "quarantine", columns, rows, "ON CONFLICT DO NOTHING")
        return len(rows)

    # ---------------------------------------------------------------------------- paced calls

    def reserve_slot(self, key: str, interval: float) -> float:
        """Book the next call of ``key`` at least ``interval`` s after the one booked before it, for every
        process sharing this store; returns how long the caller must wait before making it.

        Clocks of the machines sharing a PostgreSQL store are assumed in step (NTP); the interval's own
        margin covers the rest.
        """
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {p}slots (slot_key, next_at, updated_at) VALUES (?, 0, ?) "
                    "ON CONFLICT (slot_key) DO NOTHING"
                ),
                (key, _now()),
            )
            cur.execute(self._sql("SELECT next_at FROM {p}slots WHERE slot_key = ?" + self._dialect.lock_row), (key,))
            now = time.time()
            start = max(now, float(cur.fetchone()[0]))
            cur.execute(
                self._sql("UPDATE {p}slots SET next_at = ?, updated_at = ? WHERE slot_key = ?"),
                (start + interval, _now(), key),
            )
        return start - now

    def slot_finished(self, key: str, interval: float) -> None:
        """A booked call came back: the next may go ``interval`` s from now at the earliest (the vendor
        timed its arrival, which a slow handshake delays)."""
        earliest = time.time() + interval
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "UPDATE {p}slots SET next_at = CASE WHEN next_at > ? THEN next_at ELSE ? END, updated_at = ? "
                    "WHERE slot_key = ?"
                ),
                (earliest, earliest, _now(), key),
            )

    def quarantine_reply(self, entry: JournalEntry, reason: str, *, conn_id: str, vendor: str, kind: str) -> None:
        """Keep a journaled reply that will not decode, whole, and drop it from the journal, in one commit.

        Its ``raw`` is the body as a JSON string (bytes that are not UTF-8 kept as ``\\udcXX`` escapes);
        its position is ``WHOLE_REPLY``.
        """
        text = (entry.body or b"").decode("utf-8", "surrogateescape")
        row = (conn_id, vendor, kind, entry.source, json.dumps(text), reason[:1000], _now(), entry.id, WHOLE_REPLY)
        columns = ("conn_id", "vendor", "kind", "source", "raw", "reason", "created_at", "journal_id", "position")
        with self._transaction(write=True) as cur:
            self._insert_many(cur, "quarantine", columns, [row], "ON CONFLICT DO NOTHING")
            self._close_journal(cur, entry.id)

    # ---------------------------------------------------------------------------- journal

    def journal(self, records: Sequence[Any], *, conn_id: str, vendor: str, kind: str, source: str) -> int:
        """Commit a page of records (a push, decoded) before anything parses them; returns its id."""
        [entry] = self._journal(conn_id, vendor, kind, source, [(json.dumps(list(records), default=str), None)])
        return entry

    def journal_pages(self, pages: Sequence[Sequence[Any]], *, conn_id: str, vendor: str, kind: str) -> list[int]:
        """Commit several pushed pages in one transaction (pushes that arrived together); their ids."""
        rows = [(json.dumps(list(records), default=str), None) for records in pages]
        return self._journal(conn_id, vendor, kind, "push", rows)

    def journal_reply(self, body: bytes, *, conn_id: str, vendor: str, kind: str) -> int:
        """Commit a pulled reply as the bytes that came, before anything decodes it; returns its id."""
        [entry] = self._journal(conn_id, vendor, kind, "pull", [("", body)])
        return entry

    def _journal(
        self, conn_id: str, vendor: str, kind: str, source: str, pages: Sequence[tuple[str, bytes | None]]
    ) -> list[int]:
        """Insert journal rows ``(records, body)`` in one commit; their ids, in order."""
        now, ids = _now(), []
        with self._transaction(write=True) as cur:  # the dialect is known once connected
            sqlite = self._dialect.name == "sqlite"  # no RETURNING before SQLite 3.35
            insert = self._sql(
                "INSERT INTO {p}journal (conn_id, vendor, kind, source, records, fetched_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)" + ("" if sqlite else " RETURNING id")
            )
            for records, body in pages:
                cur.execute(insert, (conn_id, vendor, kind, source, records, now, body))
                ids.append(int(cur.lastrowid) if sqlite else int(cur.fetchone()[0]))
        return ids

    def open_journal(self, conn_id: str, kind: str, *, older_than: float | None = None) -> list[JournalEntry]:
        """Pages journaled but never stored (a crash came between, or their pull failed), oldest first.

        ``older_than`` (seconds): only pages journaled at least that long ago, which no live request is
        still storing (the push receiver sweeps these, not the pages of pushes in flight beside it).
        """
        where, params = "conn_id = ? AND kind = ?", [conn_id, kind]
        if older_than is not None:
            where += " AND fetched_at < ?"
            params.append(
                (datetime.now(timezone.utc) - timedelta(seconds=older_than)).isoformat(timespec="microseconds")
            )
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(f"SELECT id, source, records, body FROM {{p}}journal WHERE {where} ORDER BY id"),
                tuple(params),
            )
            return [
                JournalEntry(int(entry), source, None if body is not None else json.loads(records), _bytes(body))
                for entry, source, records, body in cur.fetchall()
            ]

    def close_journal(self, journal_id: int | Sequence[int]) -> None:
        """Drop a processed page (done inside the saving commit when the page has records to save)."""
        with self._transaction(write=True) as cur:
            self._close_journal(cur, journal_id)

    def _close_journal(self, cur: Any, journal_id: int | Sequence[int] | None) -> None:
        if journal_id is None:
            return
        ids = [journal_id] if isinstance(journal_id, int) else list(journal_id)
        if len(ids) == 1:
            cur.execute(self._sql("DELETE FROM {p}journal WHERE id = ?"), (ids[0],))
        elif ids:
            self._execute_many(cur, self._sql("DELETE FROM {p}journal WHERE id = ?"), [(i,) for i in ids])

    def quarantined(
        self, *, conn_id: str | None = None, kind: str | None = None, replayed: bool = False, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Quarantined records, oldest first (``replayed=True``: those already replayed), ``raw`` decoded.

        ``whole_reply``: the row is a pulled reply that would not decode, its ``raw`` the body as text.
        """
        columns = (
            "id",
            "conn_id",
            "vendor",
            "kind",
            "source",
            "raw",
            "reason",
            "created_at",
            "replayed_at",
            "journal_id",
            "position",
        )
        wanted = [(name, value) for name, value in (("conn_id", conn_id), ("kind", kind)) if value is not None]
        where = " AND ".join(
            [f"{name} = ?" for name, _ in wanted] + [f"replayed_at IS {'NOT ' if replayed else ''}NULL"]
        )
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(f"SELECT {', '.join(columns)} FROM {{p}}quarantine WHERE {where} ORDER BY id LIMIT ?"),
                (*(value for _, value in wanted), int(limit)),
            )
            rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            row["raw"] = json.loads(row["raw"])
            row["whole_reply"] = row.pop("position") == WHOLE_REPLY
        return rows

    def settle_quarantined(self, replayed: Sequence[int], still_bad: Mapping[int, str]) -> None:
        """After a replay: mark what was stored now, and note the current reason for what still fails."""
        now = _now()
        with self._transaction(write=True) as cur:
            self._execute_many(
                cur, "UPDATE {p}quarantine SET replayed_at = ? WHERE id = ?", [(now, i) for i in replayed]
            )
            self._execute_many(
                cur, "UPDATE {p}quarantine SET reason = ? WHERE id = ?", [(r[:1000], i) for i, r in still_bad.items()]
            )

    # ---------------------------------------------------------------------------- delivery reports

    def save_reports(
        self, reports: Iterable[DeliveryReport], *, conn_id: str = "", journal_id: int | Sequence[int] | None = None
    ) -> SaveResult:
        """Store reports idempotently, a page per transaction, keeping the batch counters exact.

        Keyed on (vendor, batch_id, mobile); see ``report_replaces`` for which report wins. A masked
        mobile is stored under the one sent number of its batch that it matches, if exactly one does
        (the masked form goes to ``reported_mobile``). Reports for messages the store did not send are
        stored too, but touch no counter. ``journal_id``: the journaled page these came from, dropped in
        the commit of the last page.
        """
        inserted = updated = unchanged = 0
        statuses: dict[str, int] = {}
        resolver = MaskResolver()
        for page, last in _pages_and_last(reports, max(1, self.page_size)):
            if not page:  # nothing to save: only the journal entry to drop
                if journal_id is not None:
                    self.close_journal(journal_id)
                continue
            ins, upd, unch = self._save_report_page(page, conn_id, resolver, journal_id if last else None, statuses)
            inserted += ins
            updated += upd
            unchanged += unch
        return SaveResult(inserted, updated, unchanged, statuses)

    def _save_report_page(
        self,
        page: list[DeliveryReport],
        conn_id: str,
        resolver: MaskResolver,
        journal_id: int | Sequence[int] | None,
        statuses: dict[str, int],
    ) -> tuple[int, int, int]:
        """Store one page in one transaction; adds to ``statuses`` the status of each row it wrote."""
        fetched_at = _now()
        first, repeats = self._report_rows(page, conn_id, fetched_at, resolver)
        inserted = updated = unchanged = 0
        rows: list[tuple[Any, ...]] = []
        deltas: dict[str, list[int]] = {}
        with self._transaction(write=True) as cur:
            seq = self._lock_counter(cur, "delivery_reports")
            stored, sent = self._stored_reports(cur, list(first))
            for key, candidate in first.items():
                old = stored.get(key)
                row: _Row | None = candidate
                if key in repeats:  # rare: one message twice in a page
                    row, ins, upd, unch = _settle(old, (candidate, *repeats[key]))
                    inserted, updated, unchanged = inserted + ins, updated + upd, unchanged + unch
                elif old is None:
                    inserted += 1
                elif report_replaces(old, candidate[3:7]):
                    updated += 1
                else:
                    unchanged += 1
                    row = None
                if row is None:
                    continue
                seq += 1
                rows.append((*row, seq))
                request_key = sent.get(key)
                if request_key is not None:
                    before = None if old is None else old[0]
                    if before != row[3]:
                        delta = deltas.get(request_key)
                        if delta is None:
                            delta = deltas[request_key] = [0, 0]
                        _count_move(delta, before, row[3])
            if rows:
                self._insert_many(cur, "delivery_reports", _REPORT_COLUMNS, rows, _REPORT_UPSERT)
                self._set_counter(cur, "delivery_reports", seq)
            self._execute_many(
                cur,
                "UPDATE {p}requests SET delivered = delivered + ?, failed = failed + ?, updated_at = ? "
                "WHERE idempotency_key = ?",
                [(d, f, fetched_at, k) for k, (d, f) in deltas.items() if d or f],
            )
            self._close_journal(cur, journal_id)
        for status, count in Counter(map(itemgetter(3), rows)).items():  # counted in C: a row per report
            statuses[status] = statuses.get(status, 0) + count
        return inserted, updated, unchanged

    def _report_rows(
        self, page: list[DeliveryReport], conn_id: str, fetched_at: str, resolver: MaskResolver
    ) -> tuple[dict[_Key, _Row], dict[_Key, list[_Row]]]:
        """Rows for a page, keyed by message; built before the write lock, to hold it briefly."""
        first: dict[_Key, _Row] = {}
        repeats: dict[_Key, list[_Row]] = {}
        for report in page:
            vendor, batch_id, mobile = report.vendor, report.batch_id, report.mobile
            reported = None
            if "*" in mobile:
                real = resolver.resolve(vendor, batch_id, mobile, self._sent_numbers)
                if real is not None:
                    mobile, reported = real, mobile
            when, raw = report.reported_at, report.raw
            at: str | None = None  # _ts and _json inlined for the usual UTC time and dict: runs per report
            if when is not None:
                at = when.isoformat(timespec="microseconds") if when.tzinfo is timezone.utc else _ts(when)
            raw_text = None if raw is None else _encode_json(raw) if type(raw) is dict else _json(raw)
            row: _Row = (
                vendor,
                batch_id,
                mobile,
                report.status,
                report.code,
                report.description,
                at,
                reported,
                raw_text,
                conn_id,
                fetched_at,
            )
            key = (vendor, batch_id, mobile)
            if key in first:
                repeats.setdefault(key, []).append(row)
            else:
                first[key] = row
        return first, repeats

    def _sent_numbers(self, vendor: str, batch_id: str) -> list[str]:
        with self._transaction(write=False) as cur:
            cur.execute(self._sql(_ACCEPTED_IN_BATCH), (vendor, batch_id))
            return list(_SentBatch(cur.fetchall()).index())

    def _stored_reports(self, cur: Any, keys: list[_Key]) -> tuple[dict[_Key, _ReportState], dict[_Key, str]]:
        """For the keys of one page: the stored reports, and the requests that sent the messages.

        Keys are grouped by batch. A batch with many keys in the page is read whole (a range scan on
        the primary key is cheaper than a seek per key), unless it turns out much larger than its
        share of the page; the rest are looked up by key, a few hundred per query.
        """
        by_batch: dict[tuple[str, str], list[str]] = {}
        for vendor, batch_id, mobile in keys:
            by_batch.setdefault((vendor, batch_id), []).append(mobile)
        reports: dict[_Key, _ReportState] = {}
        seek: list[_Key] = []
        scan = self._sql(
            "SELECT mobile, status, code, description, reported_at FROM {p}delivery_reports "
            "WHERE vendor = ? AND batch_id = ? LIMIT ?"
        )
        for (vendor, batch_id), mobiles in by_batch.items():
            if len(mobiles) < _SCAN_MIN_KEYS:
                seek.extend((vendor, batch_id, m) for m in mobiles)
                continue
            limit = _SCAN_FACTOR * len(mobiles)
            cur.execute(scan, (vendor, batch_id, limit + 1))
            found = cur.fetchall()
            if len(found) > limit:
                seek.extend((vendor, batch_id, m) for m in mobiles)
                continue
            wanted = set(mobiles)
            for mobile, *state in found:
                if mobile in wanted:
                    reports[(vendor, batch_id, mobile)] = tuple(state)
        arrays = self._dialect.array_params
        for chunk in _chunks(seek, PAGE_SIZE if arrays else _SEEK_CHUNK):
            params: list[Any]
            if arrays:
                source = "unnest({a}::text[], {a}::text[], {a}::text[]) AS k (column1, column2, column3)"
                params = [list(column) for column in zip(*chunk, strict=True)]
            else:
                source = "(VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)) + ") AS k"
                params = [v for key in chunk for v in key]
            cur.execute(
                self._sql(
                    f"""SELECT k.column1, k.column2, k.column3, d.status, d.code, d.description, d.reported_at
                    FROM {source} JOIN {{p}}delivery_reports d
                        ON d.vendor = k.column1 AND d.batch_id = k.column2 AND d.mobile = k.column3"""
                ),
                params,
            )
            for vendor, batch_id, mobile, *state in cur.fetchall():
                reports[(vendor, batch_id, mobile)] = tuple(state)
        sent: dict[_Key, str] = {}
        for (vendor, batch_id), batch in self._sent_batches(cur, list(by_batch)).items():
            mobiles = by_batch[(vendor, batch_id)]
            decode = len(mobiles) >= _SCAN_MIN_KEYS
            for mobile in mobiles:
                request_key = batch.owner(mobile, decode=decode)
                if request_key is not None:
                    sent[(vendor, batch_id, mobile)] = request_key
        return reports, sent

    def _sent_batches(self, cur: Any, batches: Sequence[tuple[str, str]]) -> dict[tuple[str, str], _SentBatch]:
        """The accepted requests of each (vendor, batch_id) that has any."""
        by_vendor: dict[str, list[str]] = {}
        for vendor, batch_id in batches:
            by_vendor.setdefault(vendor, []).append(batch_id)
        found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        sql = f"""SELECT r.batch_id, r.idempotency_key, {_numbers_of("r")} FROM {{p}}requests r
            WHERE r.vendor = ? AND r.state = 'accepted' AND r.batch_id IN ({{in}})
            ORDER BY r.created_at, r.idempotency_key"""
        for vendor, batch_ids in by_vendor.items():
            for batch_id, request_key, mobiles in self._select_in(cur, sql, (vendor,), batch_ids):
                found.setdefault((vendor, batch_id), []).append((request_key, mobiles))
        return {batch: _SentBatch(requests) for batch, requests in found.items()}

    def expire_overdue(self, vendor: str, *, sent_before: datetime, conn_id: str = "", reason: str = "") -> int:
        """Give every sent number with no final report, sent before ``sent_before``, the final status ``expired``.

        Waits on those batches end, and the gap is counted (``status_counts``, copies to a warehouse)
        instead of staying pending for ever. A real report that comes later still replaces it.
        """
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(
                    "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' "
                    "AND total > delivered + failed AND COALESCE(submitted_at, created_at) < ? "
                    "ORDER BY created_at, batch_id"
                ),
                (vendor, _ts(sent_before)),
            )
            overdue = [row[0] for row in cur.fetchall()]
        if not overdue:
            return 0
        now = datetime.now(timezone.utc)
        pairs = self.pending_pairs(vendor, overdue)
        expired = (
            DeliveryReport(vendor, batch_id, mobile, EXPIRED, EXPIRED.upper(), reason or "no final report", now)
            for batch_id, mobile in pairs
        )
        saved = self.save_reports(expired, conn_id=conn_id)
        return saved.inserted + saved.updated

    def batch_progress(self, vendor: str, batch_ids: Sequence[str]) -> BatchProgress:
        """Progress of the batches from their request counters: O(batches), however many messages."""
        sql = """SELECT COALESCE(SUM(total), 0), COALESCE(SUM(delivered), 0), COALESCE(SUM(failed), 0)
            FROM {p}requests WHERE vendor = ? AND state = 'accepted' AND batch_id IN ({in})"""
        total = delivered = failed = 0
        with self._transaction(write=False) as cur:
            for t, d, f in self._select_in(cur, sql, (vendor,), list(dict.fromkeys(batch_ids))):
                total += int(t)
                delivered += int(d)
                failed += int(f)
        return BatchProgress(total, delivered, failed)

    def pending_pairs(
        self, vendor: str, batch_ids: Sequence[str] | None, limit: int | None = None, *, start: int = 0
    ) -> list[tuple[str, str]]:
        """(batch_id, mobile) of sent messages with no final report yet, in batch order.

        ``batch_ids=None``: every batch of the vendor whose counters say it still has pending
        messages, oldest request first. ``start``: begin at that batch (modulo their number) and wrap
        around, so that calls with a ``limit`` and different starts reach every batch, not only the first.
        """
        if limit is not None and limit <= 0:
            return []
        if batch_ids is None:
            with self._transaction(write=False) as cur:
                cur.execute(
                    self._sql(
                        "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' "
                        "AND total > delivered + failed ORDER BY created_at, batch_id"
                    ),
                    (vendor,),
                )
                batch_ids = [r[0] for r in cur.fetchall()]
        ordered = list(dict.fromkeys(batch_ids))
        if ordered:
            first = start % len(ordered)
            ordered = ordered[first:] + ordered[:first]
        pairs: list[tuple[str, str]] = []
        with self._transaction(write=False) as cur:
            for batch_id in ordered:
                cur.execute(self._sql(_ACCEPTED_IN_BATCH), (vendor, batch_id))
                requests = cur.fetchall()
                if not requests:
                    continue
                numbers = _SentBatch(requests).index()
                cur.execute(self._sql(_FINAL_REPORTS_IN_BATCH), (vendor, batch_id, DELIVERED, FAILED, EXPIRED))
                for mobile, _ in cur.fetchall():
                    numbers.pop(mobile, None)
                pairs.extend((str(batch_id), mobile) for mobile in sorted(numbers))
                if limit is not None and len(pairs) >= limit:
                    return pairs[:limit]
        return pairs

    def status_counts(self, vendor: str, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Final reports by status and by vendor code, and sent messages still pending.

        ``by_code`` counts final reports only, so its values add up to delivered + failed.
        """
        ids = list(dict.fromkeys(batch_ids))
        by_status = {DELIVERED: 0, FAILED: 0, "pending": 0}
        by_code: dict[str, int] = {}
        finals = """SELECT status, code, COUNT(*) FROM {p}delivery_reports
            WHERE vendor = ? AND status <> 'pending' AND batch_id IN ({in}) GROUP BY status, code"""
        pending = """SELECT COALESCE(SUM(total - delivered - failed), 0) FROM {p}requests
            WHERE vendor = ? AND state = 'accepted' AND batch_id IN ({in})"""
        with self._transaction(write=False) as cur:
            for status, code, count in self._select_in(cur, finals, (vendor,), ids):
                by_status[status] = by_status.get(status, 0) + int(count)
                by_code[code] = by_code.get(code, 0) + int(count)
            for (count,) in self._select_in(cur, pending, (vendor,), ids):
                by_status["pending"] += int(count)
        return {"by_status": by_status, "by_code": by_code}

    def iter_reports(
        self,
        *,
        vendor: str | None = None,
        since_id: int = 0,
        page_size: int = PAGE_SIZE,
        since_seq: int | None = None,
        conn_id: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of stored reports with ``seq > since_id``, in seq order, for incremental copies.

        An updated report gets a new, larger ``seq``, so copying from the last seq seen picks up
        updates as well as new reports. ``since_seq`` is the same as ``since_id`` (the name
        ``iter_inbound`` uses); ``conn_id`` keeps only reports pulled through that connection.
        Times are the stored ISO text, ``raw`` the stored JSON text.
        """
        since = since_id if since_seq is None else since_seq
        filters = {"vendor": vendor, "conn_id": conn_id}
        return self._iter_rows("delivery_reports", _REPORT_COLUMNS, filters, since, page_size)

    def _iter_rows(
        self,
        table: str,
        columns: Sequence[str],
        filters: Mapping[str, str | None],
        since: int,
        page_size: int,
    ) -> Iterator[list[dict[str, Any]]]:
        page_size = max(1, int(page_size))
        wanted = [(name, value) for name, value in filters.items() if value is not None]
        where = "".join(f" AND {name} = ?" for name, _ in wanted)
        sql = f"SELECT {', '.join(columns)} FROM {{p}}{table} WHERE seq > ?{where} ORDER BY seq LIMIT ?"
        last = int(since)
        while True:
            with self._transaction(write=False) as cur:
                cur.execute(self._sql(sql), (last, *(value for _, value in wanted), page_size))
                rows = cur.fetchall()
            if not rows:
                return
            page = [dict(zip(columns, row, strict=True)) for row in rows]
            last = int(page[-1]["seq"])
            yield page
            if len(rows) < page_size:
                return

    # ---------------------------------------------------------------------------- inbound

    def save_inbound(
        self, messages: Iterable[InboundMessage], *, conn_id: str = "", journal_id: int | Sequence[int] | None = None
    ) -> SaveResult:
        """Store replies once each: the same (vendor, mobile, received_at, content) adds no row.

        ``journal_id``: the journaled page these came from, dropped in the commit of the last page.
        """
        inserted = unchanged = 0
        for page, last in _pages_and_last(messages, max(1, self.page_size)):
            if not page:  # nothing to save: only the journal entry to drop
                if journal_id is not None:
                    self.close_journal(journal_id)
                continue
            fetched_at = _now()
            unique: dict[str, tuple[Any, ...]] = {}
            for message in page:
                received = _ts(message.received_at)
                key = _inbound_key(message.vendor, message.mobile, received, message.content)
                if key not in unique:
                    unique[key] = (
                        key,
                        message.vendor,
                        message.mobile,
                        message.content,
                        received,
                        message.ext_no,
                        _json(message.raw),
                        conn_id,
                        fetched_at,
                    )
            with self._transaction(write=True) as cur:
                base = self._lock_counter(cur, "inbound_messages")
                rows = [(*row, base + i) for i, row in enumerate(unique.values(), start=1)]
                self._insert_many(
                    cur, "inbound_messages", _INBOUND_COLUMNS, rows, "ON CONFLICT (dedupe_key) DO NOTHING"
                )
                top = base + len(rows)
                cur.execute(
                    self._sql("SELECT COUNT(*) FROM {p}inbound_messages WHERE seq > ? AND seq <= ?"),
                    (base, top),
                )
                added = int(cur.fetchone()[0])
                self._set_counter(cur, "inbound_messages", top)
                if last:
                    self._close_journal(cur, journal_id)
            inserted += added
            unchanged += len(page) - added
        return SaveResult(inserted, 0, unchanged)

    def iter_inbound(
        self,
        *,
        vendor: str | None = None,
        since_seq: int = 0,
        page_size: int = PAGE_SIZE,
        conn_id: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of stored inbound messages with ``seq > since_seq``, in seq order."""
        filters = {"vendor": vendor, "conn_id": conn_id}
        return self._iter_rows("inbound_messages", _INBOUND_COLUMNS, filters, since_seq, page_size)

    # ---------------------------------------------------------------------------- copy watermarks

    def get_watermark(self, name: str) -> int:
        """The last ``seq`` an incremental copy named ``name`` has taken (0 before its first run)."""
        with self._transaction(write=False) as cur:
            cur.execute(self._sql("SELECT seq FROM {p}watermarks WHERE name = ?"), (name,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def set_watermark(self, name: str, seq: int) -> None:
        """Remember how far the copy ``name`` got, once its rows are safely in the target."""
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {p}watermarks (name, seq, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
                ),
                (name, int(seq), _now()),
            )

    # ---------------------------------------------------------------------------- balance

    def save_balance(self, balance: Balance, *, conn_id: str, taken_at: datetime | None = None) -> None:
        """Keep a balance reading (amount as text, so the Decimal comes back exactly)."""
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {p}balances (conn_id, vendor, amount, currency, raw, taken_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    conn_id,
                    balance.vendor,
                    str(balance.amount),
                    balance.currency,
                    _json(balance.raw),
                    _ts(taken_at) or _now(),
                ),
            )

    def latest_balance(self, conn_id: str) -> Balance | None:
        """The most recent reading for the connection, or None if there is none."""
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(
                    "SELECT vendor, amount, currency, raw FROM {p}balances WHERE conn_id = ? "
                    "ORDER BY taken_at DESC, id DESC LIMIT 1"
                ),
                (conn_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        vendor, amount, currency, raw = row
        return Balance(vendor=vendor, amount=Decimal(amount), currency=currency, raw=json.loads(raw) if raw else None)

    # ---------------------------------------------------------------------------- opt-outs

    def add_opt_outs(self, mobiles: Iterable[str], *, reason: str = "", source: str = "") -> int:
        """Add numbers that must not be messaged; returns how many were not already listed."""
        added = 0
        for page in _pages(mobiles, max(1, self.page_size)):
            now = _now()
            with self._transaction(write=True) as cur:
                wanted = list(dict.fromkeys(page))
                present = {
                    r[0]
                    for r in self._select_in(cur, "SELECT mobile FROM {p}opt_outs WHERE mobile IN ({in})", (), wanted)
                }
                rows = [(m, reason, source, now) for m in wanted if m not in present]
                self._insert_many(
                    cur,
                    "opt_outs",
                    ("mobile", "reason", "source", "created_at"),
                    rows,
                    "ON CONFLICT (mobile) DO NOTHING",
                )
                added += len(rows)
        return added

    def opted_out(self, mobiles: Sequence[str]) -> set[str]:
        """Which of the numbers are opted out; a mainland mobile in either form (``138…`` or ``86138…``).

        An opt-out list no longer than the numbers asked about (the usual case: a few hundred
        against a send of thousands) is read whole, in one query; a longer one is looked up by
        key: one array query on PostgreSQL, IN lists of a few hundred on SQLite.
        """
        if not mobiles:
            return set()
        with self._transaction(write=False) as cur:
            cur.execute(self._sql("SELECT mobile FROM {p}opt_outs LIMIT ?"), (len(mobiles) + 1,))
            listed = [r[0] for r in cur.fetchall()]
            if not listed:  # an empty opt-out table: no set of the numbers asked about is needed
                return set()
            wanted = set(mobiles)
            if len(listed) > len(mobiles):
                keys = list({form for mobile in wanted for form in china_mobile_forms(mobile)})
                if self._dialect.array_params:
                    cur.execute(self._sql("SELECT mobile FROM {p}opt_outs WHERE mobile = ANY(?)"), (keys,))
                    listed = [r[0] for r in cur.fetchall()]
                else:
                    sql = "SELECT mobile FROM {p}opt_outs WHERE mobile IN ({in})"
                    listed = [r[0] for r in self._select_in(cur, sql, (), keys)]
        return {form for mobile in listed for form in china_mobile_forms(mobile) if form in wanted}

    # ---------------------------------------------------------------------------- positions and quiet periods

    def find_watermark(self, name: str) -> int | None:
        """Like ``get_watermark``, but None when ``name`` was never set, so a first run can be told apart."""
        with self._transaction(write=False) as cur:
            cur.execute(self._sql("SELECT seq FROM {p}watermarks WHERE name = ?"), (name,))
            row = cur.fetchone()
        return int(row[0]) if row else None

    def max_inbound_seq(self, conn_id: str | None = None) -> int:
        """The highest ``seq`` among stored inbound messages (0 if none): where "only new messages" begins.

        Every later insert gets a larger seq (seq order is commit order), so ``seq > max_inbound_seq()``
        is exactly what arrives from now on.
        """
        sql = "SELECT MAX(seq) FROM {p}inbound_messages" + ("" if conn_id is None else " WHERE conn_id = ?")
        with self._transaction(write=False) as cur:
            cur.execute(self._sql(sql), () if conn_id is None else (conn_id,))
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    _notifications_ready = False

    def _ensure_notifications(self) -> None:
        """Create the notifications table in a version-1 store made before the table existed."""
        if self._notifications_ready:
            return
        with self._transaction(write=True) as cur:
            if self._dialect.schema_lock:
                cur.execute(self._sql(self._dialect.schema_lock), (zlib.crc32(self.table_prefix.encode()),))
            for ddl in _NOTIFICATIONS_SCHEMA:
                cur.execute(self._sql(ddl))
        self._notifications_ready = True

    def claim_quiet_period(self, key: str, seconds: float, *, now: datetime | None = None) -> bool:
        """True for exactly one caller per ``seconds`` and ``key``, across every process sharing the store.

        One upsert whose ``WHERE`` lets it through only when the last claim is at least ``seconds``
        old; whether it changed a row tells the winner. SQLite runs it under the database write
        lock, PostgreSQL under the row lock of ``ON CONFLICT DO UPDATE``, so two callers can never
        both win. A loser is counted in the row's ``suppressed`` column.
        """
        at = now or datetime.now(timezone.utc)
        claimed_at = _ts(at)
        cutoff = _ts(datetime.fromtimestamp(at.timestamp() - max(0.0, float(seconds)), tz=timezone.utc))
        self._ensure_notifications()
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {p}notifications (quiet_key, sent_at, suppressed, updated_at) VALUES (?, ?, 0, ?) "
                    "ON CONFLICT (quiet_key) DO UPDATE SET sent_at = excluded.sent_at, suppressed = 0, "
                    "updated_at = excluded.updated_at WHERE {p}notifications.sent_at <= ?"
                ),
                (key, claimed_at, claimed_at, cutoff),
            )
            claimed = cur.rowcount == 1
            if not claimed:
                cur.execute(
                    self._sql(
                        "UPDATE {p}notifications SET suppressed = suppressed + 1, updated_at = ? WHERE quiet_key = ?"
                    ),
                    (claimed_at, key),
                )
        return claimed

    def release_quiet_period(self, key: str, claimed_at: datetime) -> bool:
        """Give back the claim made at ``claimed_at`` (nothing was sent), so the next caller may notify.

        Only that claim is removed: a later one, made after the period ran out, is left alone.
        """
        self._ensure_notifications()
        with self._transaction(write=True) as cur:
            cur.execute(
                self._sql("DELETE FROM {p}notifications WHERE quiet_key = ? AND sent_at = ?"), (key, _ts(claimed_at))
            )
            return bool(cur.rowcount == 1)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for other processes as long as a busy timeout would.

    The switch needs the database to itself, and SQLite answers "database is locked" at once
    instead of calling the busy handler while another connection is creating the tables.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
    if str(mode).lower() != "wal":
        log.debug("SMS store: SQLite journal mode is %s, not WAL", mode)


def _request_record(row: Sequence[Any]) -> RequestRecord:
    (key, vendor, conn_id, state, batch_id, total, delivered, failed, reason) = row[:9]
    dag_id, run_id, task_id, map_index, created_at, updated_at = row[9:]
    return RequestRecord(
        idempotency_key=key,
        vendor=vendor,
        conn_id=conn_id,
        state=state,
        batch_id=batch_id,
        total=int(total),
        delivered=int(delivered),
        failed=int(failed),
        reason=reason,
        task=TaskIdentity(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=int(map_index)),
        created_at=datetime.fromisoformat(created_at),
        updated_at=datetime.fromisoformat(updated_at),
    )


__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "PLANNED",
    "SCHEMA_VERSION",
    "SENDING",
    "SKIPPED",
    "TABLES",
    "UNKNOWN",
    "VIEWS",
    "WHOLE_REPLY",
    "BatchProgress",
    "JournalEntry",
    "MaskResolver",
    "PlanRequest",
    "RequestRecord",
    "SaveResult",
    "SmsStore",
    "StoredPlan",
    "TaskIdentity",
    "drop_statements",
    "report_replaces",
]
