"""Database plumbing for the message store: one connection, its dialect, transactions and batch writes.

The store runs on an embedded SQLite file or on an Airflow ``common.sql`` connection (SQLite or
PostgreSQL). Everything that differs between the two lives in a :class:`Dialect`, as in common.sql;
the data modules write SQL once, with ``?`` for a value, ``{a}`` for an array value (PostgreSQL),
``{p}`` for the table prefix. This module knows no table but the counters' and no data kind.

Also here: the store's value conventions (times as fixed-width UTC text, JSON as text).
"""

from __future__ import annotations

import itertools
import json
import json.encoder
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, TypeVar

from airflow_provider_sms.errors import SmsConfigurationError

log = logging.getLogger(__name__)

#: rows per transaction of the store's page-wise writes, and per page of its reads
PAGE_SIZE: Final = 5000
_IN_CHUNK = 500  # values per IN (...) list: under the 999 bound variables of SQLite builds before 3.32
_VALUES_ROWS = 4  # PostgreSQL: up to this many rows are inserted as a VALUES list, more as unnest()ed arrays
_BUSY_TIMEOUT_S = 60.0
#: write commits after which the embedded file's log is copied in the background (see ``_committed``)
_CHECKPOINT_EVERY_COMMITS = 32

_T = TypeVar("_T")


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL for the store."""

    name: str
    param: str  # DB-API placeholder; SQL is written with "?"
    serial_pk: str  # auto-numbered integer primary key
    blob: str  # bytes as they came
    begin_write: str | None  # opens a write transaction holding the write lock (None: the driver opens one)
    begin_read: str | None
    lock_row: str  # appended to a SELECT of one row to lock it until commit
    schema_lock: str | None  # serialises schema changes between processes
    array_params: bool  # bind a page's columns as arrays and unnest() them, instead of a row per statement
    returning: bool  # INSERT ... RETURNING (SQLite has it from 3.35 only, so the store does not rely on it)
    single_writer: bool  # one write transaction at a time for the whole database: a statement alone is serialised


SQLITE: Final = Dialect(
    name="sqlite",
    param="?",
    serial_pk="INTEGER PRIMARY KEY",
    blob="BLOB",
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN",
    lock_row="",  # BEGIN IMMEDIATE already holds the database's single write lock
    schema_lock=None,
    array_params=False,
    returning=False,
    single_writer=True,  # a write statement takes the write lock before it reads anything
)
POSTGRES: Final = Dialect(
    name="postgresql",
    param="%s",
    serial_pk="BIGSERIAL PRIMARY KEY",
    blob="BYTEA",
    begin_write=None,
    begin_read=None,
    lock_row=" FOR UPDATE",
    schema_lock="SELECT pg_advisory_xact_lock(?)",
    array_params=True,
    returning=True,
    single_writer=False,
)


class Database:
    """One connection to the store's database, opened on first use and serialised by a lock.

    :param setup: run once on every new connection (the schema module creates or upgrades tables).
    :param array_types: PostgreSQL type of a column bound as an array in :meth:`insert_many` (default text).
    """

    def __init__(
        self,
        store_conn_id: str | None,
        *,
        table_prefix: str,
        path: str | None,
        setup: Callable[[Database], None],
        array_types: Mapping[str, str],
    ) -> None:
        self.store_conn_id = store_conn_id
        self.table_prefix = table_prefix
        if store_conn_id is None:
            home = os.environ.get("AIRFLOW_HOME") or os.path.join("~", "airflow")
            path = path or os.path.join(os.path.expanduser(home), "sms_store.db")
        self.path = path
        self._setup = setup
        self._array_types = dict(array_types)
        self._conn: Any = None
        self._dialect = SQLITE
        self._psycopg2 = False
        self._array_param = "%s"  # placeholder for an array parameter: binary ("%b") with psycopg 3
        self._pipelines = False  # psycopg 3's pipeline mode: statements sent without waiting for each answer
        self._lock = threading.RLock()
        self._checkpointer: threading.Thread | None = None
        self._commits_since_checkpoint = 0

    @property
    def dialect(self) -> Dialect:
        """The dialect of the database (connects if not yet connected)."""
        with self._lock:
            self.connection()
            return self._dialect

    @property
    def driver(self) -> str:
        """The DB-API module of the open connection (``sqlite3``, ``psycopg`` or ``psycopg2``)."""
        return type(self.connection()).__module__.split(".")[0]

    def describe(self) -> str:
        """Where the tables are, for messages."""
        return f"connection {self.store_conn_id!r}" if self.store_conn_id else f"file {self.path}"

    def connection(self) -> Any:
        """The open DB-API connection, opened (and set up) on first use."""
        with self._lock:
            if self._conn is None:
                conn = self._open_embedded() if self.store_conn_id is None else self._open_hook(self.store_conn_id)
                self._conn = conn
                try:
                    self._setup(self)
                except BaseException:
                    self._conn = None
                    conn.close()
                    raise
            return self._conn

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.join()
                self._checkpointer = None
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    @property
    def _log_file(self) -> bool:
        """Whether this is the embedded SQLite file, whose write-ahead log a checkpoint copies."""
        return self.store_conn_id is None and self.path not in (None, ":memory:")

    def _committed(self) -> None:
        """Count a write commit to the embedded file; every ``_CHECKPOINT_EVERY_COMMITS``, copy its log in the
        background.

        A writer that commits on and on (a send records every request) keeps appending to the log while a
        checkpoint copies it, so the log never starts over: a 100,000-number send left 2.7 MB of it, and
        its copy and sync (~4 ms) came at the close. Copied as it grows, the close has a few pages left.
        """
        if not self._log_file:
            return
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= _CHECKPOINT_EVERY_COMMITS:
            self.checkpoint_in_background()

    def checkpoint_in_background(self) -> None:
        """Copy the embedded file's write-ahead log into the database, in a thread of its own.

        Called after a large commit (a send's plan: ~1.5 MB for 100,000 numbers), while this process goes
        on to wait for the network. Otherwise SQLite copies the log when the last connection closes, and
        that copy and its two syncs (~6 ms) come at the end of every send. A passive checkpoint waits for
        no reader or writer; SQLite releases the GIL while it works. ``close`` waits for it.
        """
        with self._lock:
            self._commits_since_checkpoint = 0
            busy = self._checkpointer is not None and self._checkpointer.is_alive()
            if not self._log_file or busy:
                return
            path = str(self.path)

            def checkpoint() -> None:
                try:
                    conn = sqlite3.connect(path, timeout=0, isolation_level=None, uri=path.startswith("file:"))
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    finally:
                        conn.close()  # not the last connection: it leaves the log to the store's own
                except sqlite3.Error as err:  # a later checkpoint (at the latest the close) copies it instead
                    log.debug("SMS store: background checkpoint of %s failed: %s", path, err)

            thread = threading.Thread(target=checkpoint, name="sms-store-checkpoint", daemon=True)
            try:
                thread.start()
            except RuntimeError as err:  # no thread to be had: the next checkpoint (at the latest the close) copies it
                log.debug("SMS store: background checkpoint of %s not started: %s", path, err)
                return
            self._checkpointer = thread

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
        self._dialect = SQLITE
        self._psycopg2 = False
        self._pipelines = False

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
        self._dialect = POSTGRES
        driver = type(conn).__module__.split(".")[0]
        self._psycopg2 = driver == "psycopg2"
        self._array_param = "%b" if driver == "psycopg" else "%s"
        self._pipelines = driver == "psycopg" and _pipeline_supported()
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

    def sql(self, sql: str) -> str:
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
    def transaction(self, *, write: bool) -> Iterator[Any]:
        """A cursor in one transaction, committed on success and rolled back on any error."""
        with self._lock:
            conn = self.connection()
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
            if write:
                self._committed()

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements sent without waiting for each one's answer, where the driver can (psycopg 3's pipeline
        mode); elsewhere they run one by one, as always.

        A statement's answer is awaited only when its result is read, and a commit inside the block sends
        whatever is queued with it: a transaction that locks a row, reads, writes and commits takes two
        round trips instead of one per statement, so the row is held that much less. Wrap the
        :meth:`transaction` in it, so that its commit goes with the last statements.
        """
        with self._lock:
            conn = self.connection()
            if not self._pipelines:
                yield
                return
            with conn.pipeline():
                yield

    def lock_schema(self, cur: Any) -> None:
        """Serialise schema changes of this table prefix between processes, until commit."""
        if self._dialect.schema_lock:
            cur.execute(self.sql(self._dialect.schema_lock), (zlib.crc32(self.table_prefix.encode()),))

    def insert_many(
        self,
        cur: Any,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        suffix: str = "",
        *,
        counted: bool = False,
    ) -> int | None:
        """INSERT many rows in the current transaction, with the driver's fastest batch call.

        ``counted``: return how many rows went in (an ``ON CONFLICT DO NOTHING`` suffix skips some), read
        from the statement's ``RETURNING`` where the dialect has it; None otherwise (count them yourself).
        """
        if not rows:
            return 0 if counted else None
        returning = counted and self._dialect.returning
        head = f"INSERT INTO {self.table_prefix}{table} ({', '.join(columns)}) VALUES "
        tail = (" " + self.sql(suffix) if suffix else "") + (" RETURNING 1" if returning else "")
        if self._psycopg2:
            from psycopg2.extras import execute_values

            found = execute_values(cur, head + "%s" + tail, rows, page_size=1000, fetch=returning)
            return len(found) if returning else None
        if self._dialect.array_params and len(rows) <= _VALUES_ROWS:
            # A few rows (a group of single-record pushes): their values as they are, typed as the arrays would
            # be; an array per column cost the driver more than the rest of the statement, and the server more.
            row = "(" + self.sql(", ".join(f"?::{self._array_types.get(c, 'text')}" for c in columns)) + ")"
            values = [value for each in rows for value in each]
            cur.execute(head + ", ".join([row] * len(rows)) + tail, values)
            return len(cur.fetchall()) if returning else None
        if self._dialect.array_params:
            # psycopg 3 and other PostgreSQL drivers: one statement per page, each column one array
            # parameter, costs far less per row than executemany's statement per row.
            arrays = ", ".join(f"{{a}}::{self._array_types.get(c, 'text')}[]" for c in columns)
            select = f"SELECT * FROM unnest({arrays})"
            cur.execute(head[: -len("VALUES ")] + self.sql(select) + tail, [list(c) for c in zip(*rows, strict=True)])
            return len(cur.fetchall()) if returning else None
        cur.executemany(head + "(" + ", ".join([self._dialect.param] * len(columns)) + ")" + tail, rows)
        return None

    def execute_many(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row of parameters, batched where the driver can."""
        if not rows:
            return
        if self._psycopg2:
            from psycopg2.extras import execute_batch

            execute_batch(cur, self.sql(sql), rows, page_size=500)
        else:
            cur.executemany(self.sql(sql), rows)

    def select_in(
        self, cur: Any, sql: str, head_params: Sequence[Any], values: Sequence[Any]
    ) -> Iterator[tuple[Any, ...]]:
        """Run ``sql`` (with one ``IN ({in})``) per chunk of ``values``, yielding all rows."""
        for chunk in chunks(values, _IN_CHUNK):
            cur.execute(self.sql(sql.replace("{in}", ", ".join("?" * len(chunk)))), (*head_params, *chunk))
            yield from cur.fetchall()

    def select_in_later(
        self, cur: Any, sql: str, head_params: Sequence[Any], values: Sequence[Any]
    ) -> Callable[[], list[tuple[Any, ...]]]:
        """:meth:`select_in`, its statements sent now and their rows read when the returned function is
        called: in a :meth:`pipeline`, the statements sent in between travel with them."""
        if not self._pipelines:
            rows = list(self.select_in(cur, sql, head_params, values))
            return lambda: rows
        statements = [
            (self.sql(sql.replace("{in}", ", ".join("?" * len(chunk)))), (*head_params, *chunk))
            for chunk in chunks(values, _IN_CHUNK)
        ]
        return self._later(cur, statements)

    def _later(self, cur: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> Callable[[], list[tuple[Any, ...]]]:
        """Send each statement on a cursor of its own (which keeps its rows while ``cur`` runs others)."""
        cursors = []
        for sql, params in statements:
            own = cur.connection.cursor()
            own.execute(sql, params)
            cursors.append(own)

        def read() -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            for own in cursors:
                try:
                    rows.extend(own.fetchall())
                finally:
                    own.close()
            return rows

        return read

    def write_alone(self, sql: str, params: Sequence[Any]) -> int:
        """One write statement that is its own transaction; the rows it changed.

        Only where the dialect is ``single_writer`` (SQLite): there the statement holds the database's
        write lock from its first read to its commit, as ``BEGIN IMMEDIATE`` would, and costs no BEGIN
        or COMMIT of its own.
        """
        with self._lock:
            conn = self.connection()
            if not self._dialect.single_writer:
                raise NotImplementedError(f"{self._dialect.name}: a statement alone is not serialised with writers")
            cur = conn.cursor()
            try:
                cur.execute(sql, params)
                changed = max(cur.rowcount, 0)
            finally:
                cur.close()
            self._committed()
            return changed

    def execute_counted(self, cur: Any, sql: str, params: Sequence[Any]) -> Callable[[], int]:
        """Run one statement; the rows it changed, read when the returned function is called. In a
        :meth:`pipeline` the count arrives with the commit, so call it after the transaction."""
        if not self._pipelines:
            cur.execute(sql, params)
            count = max(cur.rowcount, 0)
            return lambda: count
        own = cur.connection.cursor()  # not closed with ``cur``: its count is read after the commit
        own.execute(sql, params)

        def read() -> int:
            try:
                return max(own.rowcount, 0)
            finally:
                own.close()

        return read

    def insert_returning_ids(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """INSERT one row per parameter set (``sql`` without RETURNING); the new rows' ids, in order."""
        returning = self._dialect.returning
        statement = self.sql(sql + (" RETURNING id" if returning else ""))
        ids = []
        for row in rows:
            cur.execute(statement, row)
            ids.append(int(cur.fetchone()[0]) if returning else int(cur.lastrowid))
        return ids

    def read_counter(self, cur: Any, name: str) -> int:
        """A counter's value (writers hold its row with :meth:`read_counter_later` or :meth:`draw_counter_later`)."""
        cur.execute(self.sql("SELECT value FROM {p}counters WHERE name = ?"), (name,))
        return int(cur.fetchone()[0])

    def read_counter_later(self, cur: Any, name: str, *, lock: bool = False) -> Callable[[], int]:
        """:meth:`read_counter`, its statement sent now and its value read when the returned function is
        called: in a :meth:`pipeline`, the statements sent in between travel with it. Each statement of a
        READ COMMITTED transaction sees what committed before it began, so one sent after a ``lock`` sees
        every commit of the writers the lock waited for."""
        sql = self.sql("SELECT value FROM {p}counters WHERE name = ?" + (self._dialect.lock_row if lock else ""))
        if not self._pipelines:
            cur.execute(sql, (name,))
            value = int(cur.fetchone()[0])
            return lambda: value
        rows = self._later(cur, [(sql, (name,))])
        return lambda: int(rows()[0][0])

    def draw_counter_later(self, cur: Any, name: str, count: int) -> Callable[[], int]:
        """Advance a counter by ``count``, holding its row to commit; the value it had before, read when the
        returned function is called (in a :meth:`pipeline`, with the statements sent in between).

        On PostgreSQL one ``UPDATE ... RETURNING`` both locks the row and draws the values, where
        :meth:`read_counter_later` and :meth:`set_counter` took a statement each: a writer that knows how
        many values it will use (a single pushed report: one) sends a statement less per transaction. One
        that ends up using another number sets the counter to its last value before it commits, as before.
        An UPDATE that waited for the row lock reads the row as the writer it waited for committed it, and
        the statements sent after it see that writer's commit, as after a ``FOR UPDATE``.
        """
        if not self._dialect.returning:  # SQLite: BEGIN IMMEDIATE already holds the write lock
            cur.execute(self.sql("UPDATE {p}counters SET value = value + ? WHERE name = ?"), (count, name))
            value = self.read_counter(cur, name) - count
            return lambda: value
        sql = self.sql("UPDATE {p}counters SET value = value + ? WHERE name = ? RETURNING value - ?")
        if not self._pipelines:
            cur.execute(sql, (count, name, count))
            value = int(cur.fetchone()[0])
            return lambda: value
        rows = self._later(cur, [(sql, (count, name, count))])
        return lambda: int(rows()[0][0])

    def set_counter(self, cur: Any, name: str, value: int) -> None:
        cur.execute(self.sql("UPDATE {p}counters SET value = ? WHERE name = ?"), (value, name))

    def rows_after(
        self, table: str, columns: Sequence[str], filters: Mapping[str, str | None], since: int, page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``table``'s rows with ``seq > since``, in seq order, each row a dict by column name."""
        page_size = max(1, int(page_size))
        wanted = [(name, value) for name, value in filters.items() if value is not None]
        where = "".join(f" AND {name} = ?" for name, _ in wanted)
        sql = f"SELECT {', '.join(columns)} FROM {{p}}{table} WHERE seq > ?{where} ORDER BY seq LIMIT ?"
        last = int(since)
        while True:
            with self.transaction(write=False) as cur:
                cur.execute(self.sql(sql), (last, *(value for _, value in wanted), page_size))
                rows = cur.fetchall()
            if not rows:
                return
            page = [dict(zip(columns, row, strict=True)) for row in rows]
            last = int(page[-1]["seq"])
            yield page
            if len(rows) < page_size:
                return


def _pipeline_supported() -> bool:
    try:
        import psycopg

        return bool(psycopg.Pipeline.is_supported())
    except Exception:  # an older psycopg or libpq: statements go one by one
        return False


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


# ------------------------------------------------------------------------------------ value conventions


def utc_text(value: datetime | None) -> str | None:
    """A time as the store keeps it: fixed-width ISO-8601 UTC text, so text order is time order."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the SMS store: use a UTC-aware time")
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


def now_text() -> str:
    """The current time as the store keeps times."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def as_bytes(value: Any) -> bytes | None:
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


#: a dict as JSON text (non-ASCII kept, unknown types as str)
encode_json: Final = _json_encoder()


def json_text(raw: Mapping[str, Any] | None) -> str | None:
    """A record's ``raw`` mapping as the JSON text the store keeps."""
    if raw is None:
        return None
    return encode_json(raw if isinstance(raw, dict) else dict(raw))


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pages(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Consume an iterable a page at a time, so a million records never sit in memory at once."""
    iterator = iter(items)
    while page := list(itertools.islice(iterator, size)):
        yield page


def pages_and_last(items: Iterable[_T], size: int) -> Iterator[tuple[list[_T], bool]]:
    """Pages of ``items`` and whether each is the last; no items: one empty page (that is the last)."""
    stream = pages(items, size)
    page = next(stream, [])
    while True:
        following = next(stream, None)
        yield page, following is None
        if following is None:
            return
        page = following


class StoreSection:
    """One kind of stored data's part of ``SmsStore``'s API, working on the store's one :class:`Database`."""

    #: records per transaction in the page-wise writes
    page_size: int = PAGE_SIZE
    _db: Database
