"""The journal and the quarantine: what a vendor handed out, kept before anything parses it.

Vendors hand out each report and inbound message once. A pulled reply is committed here as the bytes
that came, before it is parsed; a push, as its decoded records, only when it takes more than one
clean commit (a record that will not parse or store; the push receiver stores clean pushes at once,
and answers only after that commit). The commit that stores a page's records deletes its journal
row. What a crash interrupted stays open for the next run. Records (or whole replies) that cannot be
parsed or stored go to the quarantine, raw, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from airflow_provider_sms.store.database import Database, StoreSection, as_bytes, now_text

#: the quarantine position of a whole pulled reply that would not decode (records have their index)
WHOLE_REPLY: Final = -1
# fmt: off
_QUARANTINE_COLUMNS = (
    "conn_id", "vendor", "kind", "source", "raw", "reason", "created_at", "journal_id", "position",
)
# fmt: on


@dataclass(frozen=True)
class JournalEntry:
    """A page journaled but not yet stored: a pull's reply as it came (``body``), or a push's ``records``."""

    id: int
    source: str
    records: list[Any] | None
    body: bytes | None


def close_pages(db: Database, cur: Any, journal_id: int | Sequence[int] | None) -> None:
    """Delete journaled pages inside the caller's transaction (the one that stored their records)."""
    if journal_id is None:
        return
    ids = [journal_id] if isinstance(journal_id, int) else list(journal_id)
    if len(ids) == 1:
        cur.execute(db.sql("DELETE FROM {p}journal WHERE id = ?"), (ids[0],))
    elif ids:
        db.execute_many(cur, "DELETE FROM {p}journal WHERE id = ?", [(i,) for i in ids])


class ReplyJournal(StoreSection):
    """Journaled pages (``journal``) and quarantined records (``quarantine``)."""

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
        now = now_text()
        insert = (
            "INSERT INTO {p}journal (conn_id, vendor, kind, source, records, fetched_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        rows = [(conn_id, vendor, kind, source, records, now, body) for records, body in pages]
        with self._db.transaction(write=True) as cur:
            return self._db.insert_returning_ids(cur, insert, rows)

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
        with self._db.transaction(write=False) as cur:
            cur.execute(
                self._db.sql(f"SELECT id, source, records, body FROM {{p}}journal WHERE {where} ORDER BY id"),
                tuple(params),
            )
            return [
                JournalEntry(int(entry), source, None if body is not None else json.loads(records), as_bytes(body))
                for entry, source, records, body in cur.fetchall()
            ]

    def close_journal(self, journal_id: int | Sequence[int]) -> None:
        """Drop a processed page (done inside the saving commit when the page has records to save)."""
        with self._db.transaction(write=True) as cur:
            close_pages(self._db, cur, journal_id)

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
        now = now_text()
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
        with self._db.transaction(write=True) as cur:
            self._db.insert_many(cur, "quarantine", _QUARANTINE_COLUMNS, rows, "ON CONFLICT DO NOTHING")
        return len(rows)

    def quarantine_reply(self, entry: JournalEntry, reason: str, *, conn_id: str, vendor: str, kind: str) -> None:
        """Keep a journaled reply that will not decode, whole, and drop it from the journal, in one commit.

        Its ``raw`` is the body as a JSON string (bytes that are not UTF-8 kept as ``\\udcXX`` escapes);
        its position is ``WHOLE_REPLY``.
        """
        text = (entry.body or b"").decode("utf-8", "surrogateescape")
        row = (conn_id, vendor, kind, entry.source, json.dumps(text), reason[:1000], now_text(), entry.id, WHOLE_REPLY)
        with self._db.transaction(write=True) as cur:
            self._db.insert_many(cur, "quarantine", _QUARANTINE_COLUMNS, [row], "ON CONFLICT DO NOTHING")
            close_pages(self._db, cur, entry.id)

    def quarantined(
        self, *, conn_id: str | None = None, kind: str | None = None, replayed: bool = False, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Quarantined records, oldest first (``replayed=True``: those already replayed), ``raw`` decoded.

        ``whole_reply``: the row is a pulled reply that would not decode, its ``raw`` the body as text.
        """
        columns = ("id", *_QUARANTINE_COLUMNS[:7], "replayed_at", "journal_id", "position")
        wanted = [(name, value) for name, value in (("conn_id", conn_id), ("kind", kind)) if value is not None]
        where = " AND ".join(
            [f"{name} = ?" for name, _ in wanted] + [f"replayed_at IS {'NOT ' if replayed else ''}NULL"]
        )
        with self._db.transaction(write=False) as cur:
            cur.execute(
                self._db.sql(f"SELECT {', '.join(columns)} FROM {{p}}quarantine WHERE {where} ORDER BY id LIMIT ?"),
                (*(value for _, value in wanted), int(limit)),
            )
            rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            row["raw"] = json.loads(row["raw"])
            row["whole_reply"] = row.pop("position") == WHOLE_REPLY
        return rows

    def settle_quarantined(self, replayed: Sequence[int], still_bad: Mapping[int, str]) -> None:
        """After a replay: mark what was stored now, and note the current reason for what still fails."""
        now = now_text()
        with self._db.transaction(write=True) as cur:
            self._db.execute_many(
                cur, "UPDATE {p}quarantine SET replayed_at = ? WHERE id = ?", [(now, i) for i in replayed]
            )
            self._db.execute_many(
                cur, "UPDATE {p}quarantine SET reason = ? WHERE id = ?", [(r[:1000], i) for i, r in still_bad.items()]
            )
