"""Inbound messages (MO): each reply stored once, in seq order for incremental copies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from airflow_provider_sms.records import InboundMessage, SaveResult
from airflow_provider_sms.store.database import (
    PAGE_SIZE,
    StoreSection,
    json_text,
    now_text,
    pages_and_last,
    utc_text,
)
from airflow_provider_sms.store.journal import close_pages

# fmt: off
INBOUND_COLUMNS: Final = (
    "dedupe_key", "vendor", "mobile", "content", "received_at", "ext_no", "raw", "conn_id",
    "fetched_at", "seq",
)
# fmt: on


def inbound_key(vendor: str, mobile: str, received_at: str | None, content: str) -> str:
    """One fixed-width value for the (vendor, mobile, received_at, content) uniqueness.

    A hash, because content can be long and because a NULL ``received_at`` would otherwise never
    collide in a unique index.
    """
    text = json.dumps([vendor, mobile, received_at, content], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class InboundMessages(StoreSection):
    """Inbound messages (``inbound_messages``)."""

    def save_inbound(
        self,
        messages: Iterable[InboundMessage],
        *,
        conn_id: str = "",
        journal_id: int | Sequence[int] | None = None,
        more: Callable[[int], Sequence[InboundMessage]] | None = None,
    ) -> SaveResult:
        """Store replies once each: the same (vendor, mobile, received_at, content) adds no row.

        ``journal_id``: the journaled page these came from, dropped in the commit of the last page.
        ``more``: called once, in the last page's transaction once the counter's row lock is held, with
        how many more messages that page can take; the messages it returns (at most that many) are stored
        in the same commit (see ``save_reports``).
        """
        db = self._db
        inserted = unchanged = 0
        for page, last in pages_and_last(messages, max(1, self.page_size)):
            if not page:  # nothing to save: only the journal entry to drop
                if journal_id is not None:
                    with db.transaction(write=True) as cur:
                        close_pages(db, cur, journal_id)
                continue
            fetched_at = now_text()
            unique: dict[str, tuple[Any, ...]] = {}
            _inbound_rows(page, conn_id, fetched_at, unique)
            received = len(page)
            # In a pipeline (psycopg 3), the counter and the commit ride with the statements before them. The
            # lock draws a seq per message of the page; the counter is set again only for messages that joined.
            drawn = len(unique)
            with db.pipeline(), db.transaction(write=True) as cur:
                base = db.draw_counter_later(cur, "inbound_messages", drawn)()
                if last and more is not None:  # the lock is held: take along what arrived while it was awaited
                    extra = list(more(max(0, self.page_size - len(page))))
                    _inbound_rows(extra, conn_id, fetched_at, unique)
                    received += len(extra)
                rows = [(*row, base + i) for i, row in enumerate(unique.values(), start=1)]
                top = base + len(rows)
                added = db.insert_many(
                    cur, "inbound_messages", INBOUND_COLUMNS, rows, "ON CONFLICT (dedupe_key) DO NOTHING", counted=True
                )
                if added is None:  # no RETURNING (SQLite): the rows of this commit's seq range
                    cur.execute(
                        db.sql("SELECT COUNT(*) FROM {p}inbound_messages WHERE seq > ? AND seq <= ?"),
                        (base, top),
                    )
                    added = int(cur.fetchone()[0])
                if top != base + drawn:
                    db.set_counter(cur, "inbound_messages", top)
                if last:
                    close_pages(db, cur, journal_id)
            inserted += added
            unchanged += received - added
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
        return self._db.rows_after("inbound_messages", INBOUND_COLUMNS, filters, since_seq, page_size)

    def max_inbound_seq(self, conn_id: str | None = None) -> int:
        """The highest ``seq`` among stored inbound messages (0 if none): where "only new messages" begins.

        Every later insert gets a larger seq (seq order is commit order), so ``seq > max_inbound_seq()``
        is exactly what arrives from now on.
        """
        sql = "SELECT MAX(seq) FROM {p}inbound_messages" + ("" if conn_id is None else " WHERE conn_id = ?")
        with self._db.transaction(write=False) as cur:
            cur.execute(self._db.sql(sql), () if conn_id is None else (conn_id,))
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def _inbound_rows(
    messages: Iterable[InboundMessage], conn_id: str, fetched_at: str, unique: dict[str, tuple[Any, ...]]
) -> None:
    """Add to ``unique`` the row of each message whose key it does not hold yet (without its seq)."""
    for message in messages:
        received = utc_text(message.received_at)
        key = inbound_key(message.vendor, message.mobile, received, message.content)
        if key not in unique:
            unique[key] = (
                key,
                message.vendor,
                message.mobile,
                message.content,
                received,
                message.ext_no,
                json_text(message.raw),
                conn_id,
                fetched_at,
            )
