"""The message store: what was sent, and what the vendors reported back, kept in SQL tables.

Vendors hand out each delivery report (DLR) and each inbound message (MO) once only, and a retried
send must know what already went out. So the store keeps them, in an Airflow ``common.sql``
connection (SQLite or PostgreSQL) or, without one, in an embedded SQLite file that several task
processes may share.

Where things are:

* ``database``: the connection, the SQLite/PostgreSQL dialects, transactions, batch writes, counters.
* ``schema``: every table, and every upgrade from an older version.
* ``ledger`` (send plans, intents, outcomes), ``reports`` (delivery reports), ``inbound`` (replies),
  ``journal`` (pages kept before parsing, and the quarantine), ``positions`` (watermarks, balances,
  opt-outs, quiet periods, paced-call slots): one module per kind of data.
* ``SmsStore`` (``sms_store``): the one object callers hold, with every method of those modules.

Conventions, the same on both databases so that copies to a warehouse look alike:

* Times are ISO-8601 UTC text with microseconds (``2024-05-01T08:00:00.000000+00:00``). The width is
  fixed, so text order is time order and the "older report" rule can compare the text.
* Money is text, so a ``Decimal`` comes back exactly. ``raw`` is JSON text.
* ``seq`` (delivery reports, inbound messages) is drawn from the ``<prefix>counters`` table on every
  insert *and* update. Every writer locks its counter row before it reads anything and holds it until
  commit. So seq order is commit order, and a copy that asks for ``seq > last seen`` misses nothing,
  updates included.
* Per-batch progress is kept as counters on the request row (``total``, ``delivered``, ``failed``).

One ``SmsStore`` holds one database connection. Calls on it are serialised by a lock, so handing the
store from thread to thread (``asyncio.to_thread``) is safe. For parallel writers, give each its own store.
"""

from __future__ import annotations

from airflow_provider_sms.records import (
    ACCEPTED,
    CANCELLED,
    MOVED,
    PLANNED,
    SENDING,
    SKIPPED,
    UNKNOWN,
    PlanRequest,
    SaveResult,
    StoredPlan,
)
from airflow_provider_sms.store.database import PAGE_SIZE
from airflow_provider_sms.store.journal import WHOLE_REPLY, JournalEntry
from airflow_provider_sms.store.ledger import RequestRecord, TaskIdentity
from airflow_provider_sms.store.reports import BatchProgress, MaskResolver, report_replaces
from airflow_provider_sms.store.schema import SCHEMA_VERSION, TABLES, VIEWS, drop_statements
from airflow_provider_sms.store.sms_store import SmsStore

__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "MOVED",
    "PAGE_SIZE",
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
