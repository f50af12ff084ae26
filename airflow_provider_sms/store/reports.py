"""Delivery reports: one row per sent message, the winning report kept, batch counters kept exact.

Keyed on (vendor, batch_id, mobile). ``seq`` is drawn from the ``delivery_reports`` counter on every
insert and update, under that counter's row lock, so seq order is commit order and an incremental copy
that asks for ``seq > last seen`` misses nothing. Each page adjusts the sending request's counters
(``total``, ``delivered``, ``failed``) by the change it made, so progress reads cost O(batches).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Final

from airflow_provider_sms.numbers import mask_matches
from airflow_provider_sms.records import (
    DELIVERED,
    EXPIRED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    DeliveryReport,
    SaveResult,
)
from airflow_provider_sms.store.database import (
    PAGE_SIZE,
    StoreSection,
    chunks,
    encode_json,
    json_text,
    now_text,
    pages_and_last,
    utc_text,
)
from airflow_provider_sms.store.journal import close_pages
from airflow_provider_sms.store.ledger import ACCEPTED_IN_BATCH, SentBatch, sent_batches_later, sent_numbers

_SCAN_MIN_KEYS = 32  # a batch with this many keys in a page is read whole ...
_SCAN_FACTOR = 4  # ... unless it holds more than this many rows per key of the page
_SEEK_CHUNK = 300  # keys per VALUES list in a lookup by key (3 variables each)
# Up to this many keys are looked up as a VALUES list on PostgreSQL too, not as unnest()ed arrays: for the
# few keys of a group of single-record pushes that costs the server about half and the driver less.
_SEEK_VALUES = 8
_MASK_CACHE_NUMBERS = 200_000  # sent numbers kept for resolving masked mobiles within one save_reports
_MASK = re.compile(r"(\d+)\*+(\d+)")

# fmt: off
REPORT_COLUMNS: Final = (
    "vendor", "batch_id", "mobile", "status", "code", "description", "reported_at",
    "reported_mobile", "raw", "conn_id", "fetched_at", "seq",
)
# fmt: on
# A report row is a plain tuple in REPORT_COLUMNS order (a million per sync: no per-row object);
# these name its parts.
_STATUS = REPORT_COLUMNS.index("status")
#: (status, code, description, reported_at): what decides which of two reports wins
_STATE = slice(_STATUS, REPORT_COLUMNS.index("reported_at") + 1)
_STATE_COLUMNS = ", ".join(REPORT_COLUMNS[_STATE])

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
_FINAL_REPORTS_IN_BATCH = """SELECT mobile, status FROM {p}delivery_reports
    WHERE vendor = ? AND batch_id = ? AND status IN (?, ?, ?)"""

# (status, code, description, reported_at text) of a stored or incoming report
_ReportState = tuple[str, str, str, str | None]
_Key = tuple[str, str, str]  # (vendor, batch_id, mobile)
# a delivery_reports row without its seq
_Row = tuple[Any, ...]


@dataclass(frozen=True)
class BatchProgress:
    """Delivery progress summed over some batches, read from the request counters."""

    total: int
    delivered: int
    failed: int

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed


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


def _settle(old: _ReportState | None, rows: Sequence[_Row]) -> tuple[_Row | None, int, int, int]:
    """Apply several reports for one message in order: the row to write (if any) and the counts."""
    inserted = updated = unchanged = 0
    state, winner = old, None
    for row in rows:
        new: _ReportState = row[_STATE]
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


class DeliveryReports(StoreSection):
    """Delivery reports (``delivery_reports``) and the batch progress they move."""

    def save_reports(
        self,
        reports: Iterable[DeliveryReport],
        *,
        conn_id: str = "",
        journal_id: int | Sequence[int] | None = None,
        more: Callable[[int], Sequence[DeliveryReport]] | None = None,
    ) -> SaveResult:
        """Store reports idempotently, a page per transaction, keeping the batch counters exact.

        Keyed on (vendor, batch_id, mobile); see ``report_replaces`` for which report wins. A masked
        mobile is stored under the one sent number of its batch that it matches, if exactly one does
        (the masked form goes to ``reported_mobile``). Reports for messages the store did not send are
        stored too, but touch no counter. ``journal_id``: the journaled page these came from, dropped in
        the commit of the last page.

        ``more``: called once, in the last page's transaction once the report counter's row lock is
        held, with how many more reports that page can take; the reports it returns (at most that many)
        are stored in the same commit, after the others. A writer that had to wait for the lock can so
        take along what arrived while it waited (the push receiver's group commit).
        """
        inserted = updated = unchanged = 0
        statuses: dict[str, int] = {}
        resolver = MaskResolver()
        for page, last in pages_and_last(reports, max(1, self.page_size)):
            if not page:  # nothing to save: only the journal entry to drop
                if journal_id is not None:
                    with self._db.transaction(write=True) as cur:
                        close_pages(self._db, cur, journal_id)
                continue
            ins, upd, unch = self._save_report_page(
                page, conn_id, resolver, journal_id if last else None, statuses, more if last else None
            )
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
        more: Callable[[int], Sequence[DeliveryReport]] | None = None,
    ) -> tuple[int, int, int]:
        """Store one page in one transaction; adds to ``statuses`` the status of each row it wrote.

        ``more``: see :meth:`save_reports`; asked once the lock is held, its reports looked up then."""
        db = self._db
        fetched_at = now_text()
        first, repeats = self._report_rows(page, conn_id, fetched_at, resolver)
        inserted = updated = unchanged = 0
        rows: list[tuple[Any, ...]] = []
        deltas: dict[str, list[int]] = {}
        # In a pipeline (psycopg 3), the lock travels with the lookups, and the writes with the commit: the
        # counter's row, which every writer of reports waits for, is held for about two round trips (three
        # when ``more`` brings reports: their lookups go once the lock is held). The lock draws a seq per
        # message of the page, the most it can write; the counter is set again only if it wrote another number.
        drawn = len(first)
        with db.pipeline(), db.transaction(write=True) as cur:
            next_seq = db.draw_counter_later(cur, "delivery_reports", drawn)
            stored, sent = self._stored_reports(cur, list(first))
            seq = start = next_seq()  # read: the lock is held
            if more is not None:  # what arrived while the lock was awaited: its rows and lookups now
                extra = list(more(max(0, self.page_size - len(page))))
                if extra:
                    self._add_rows(cur, extra, conn_id, fetched_at, resolver, (first, repeats, stored, sent))
            for key, candidate in first.items():
                old = stored.get(key)
                row: _Row | None = candidate
                if key in repeats:  # rare: one message twice in a page
                    row, ins, upd, unch = _settle(old, (candidate, *repeats[key]))
                    inserted, updated, unchanged = inserted + ins, updated + upd, unchanged + unch
                elif old is None:
                    inserted += 1
                elif report_replaces(old, candidate[_STATE]):
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
                    if before != row[_STATUS]:
                        delta = deltas.get(request_key)
                        if delta is None:
                            delta = deltas[request_key] = [0, 0]
                        _count_move(delta, before, row[_STATUS])
            if rows:
                db.insert_many(cur, "delivery_reports", REPORT_COLUMNS, rows, _REPORT_UPSERT)
            if seq != start + drawn:  # reports that changed nothing, or more reports that joined
                db.set_counter(cur, "delivery_reports", seq)
            db.execute_many(
                cur,
                "UPDATE {p}requests SET delivered = delivered + ?, failed = failed + ?, updated_at = ? "
                "WHERE idempotency_key = ?",
                [(d, f, fetched_at, k) for k, (d, f) in deltas.items() if d or f],
            )
            close_pages(db, cur, journal_id)
        for status, count in Counter(map(itemgetter(_STATUS), rows)).items():  # counted in C: a row per report
            statuses[status] = statuses.get(status, 0) + count
        return inserted, updated, unchanged

    def _add_rows(
        self,
        cur: Any,
        reports: list[DeliveryReport],
        conn_id: str,
        fetched_at: str,
        resolver: MaskResolver,
        into: tuple[dict[_Key, _Row], dict[_Key, list[_Row]], dict[_Key, _ReportState], dict[_Key, str]],
    ) -> None:
        """Add more reports to a page whose transaction holds the lock: their rows after the page's
        (``first``, ``repeats``), and the stored reports and sending requests of their new keys (``stored``,
        ``sent``), read in this transaction (a masked mobile's batch too)."""
        db = self._db
        first, repeats, stored, sent = into

        def fetch(vendor: str, batch_id: str) -> list[str]:
            cur.execute(db.sql(ACCEPTED_IN_BATCH), (vendor, batch_id))
            return list(SentBatch(cur.fetchall()).index())

        more_first, more_repeats = self._report_rows(reports, conn_id, fetched_at, resolver, fetch)
        new_keys = []
        for key, row in more_first.items():
            if key in first:
                repeats.setdefault(key, []).append(row)
            else:
                first[key] = row
                new_keys.append(key)
        for key, rows in more_repeats.items():
            repeats.setdefault(key, []).extend(rows)
        if new_keys:
            more_stored, more_sent = self._stored_reports(cur, new_keys)
            stored.update(more_stored)
            sent.update(more_sent)

    def _report_rows(
        self,
        page: list[DeliveryReport],
        conn_id: str,
        fetched_at: str,
        resolver: MaskResolver,
        fetch: Callable[[str, str], list[str]] | None = None,
    ) -> tuple[dict[_Key, _Row], dict[_Key, list[_Row]]]:
        """Rows for a page, keyed by message; built before the write lock, to hold it briefly.

        ``fetch``: how a masked mobile's batch is read (default: in a transaction of its own)."""
        first: dict[_Key, _Row] = {}
        repeats: dict[_Key, list[_Row]] = {}
        fetch = fetch or self._sent_numbers
        for report in page:
            vendor, batch_id, mobile = report.vendor, report.batch_id, report.mobile
            reported = None
            if "*" in mobile:
                real = resolver.resolve(vendor, batch_id, mobile, fetch)
                if real is not None:
                    mobile, reported = real, mobile
            when, raw = report.reported_at, report.raw
            at: str | None = None  # utc_text and json_text inlined for the usual UTC time and dict: runs per report
            if when is not None:
                at = when.isoformat(timespec="microseconds") if when.tzinfo is timezone.utc else utc_text(when)
            raw_text = None if raw is None else encode_json(raw) if type(raw) is dict else json_text(raw)
            # in REPORT_COLUMNS order, without seq
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
        return sent_numbers(self._db, vendor, batch_id)

    def _stored_reports(self, cur: Any, keys: list[_Key]) -> tuple[dict[_Key, _ReportState], dict[_Key, str]]:
        """For the keys of one page: the stored reports, and the requests that sent the messages.

        Keys are grouped by batch. A batch with many keys in the page is read whole (a range scan on
        the primary key is cheaper than a seek per key), unless it turns out much larger than its
        share of the page; the rest are looked up by key, a few hundred per query.
        """
        db = self._db
        by_batch: dict[tuple[str, str], list[str]] = {}
        for vendor, batch_id, mobile in keys:
            by_batch.setdefault((vendor, batch_id), []).append(mobile)
        sent_requests = sent_batches_later(db, cur, list(by_batch))  # in a pipeline, sent with the next query
        reports: dict[_Key, _ReportState] = {}
        seek: list[_Key] = []
        scan = db.sql(
            f"SELECT mobile, {_STATE_COLUMNS} FROM {{p}}delivery_reports WHERE vendor = ? AND batch_id = ? LIMIT ?"
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
        arrays = db.dialect.array_params
        for chunk in chunks(seek, PAGE_SIZE if arrays else _SEEK_CHUNK):
            params: list[Any]
            if arrays and len(chunk) > _SEEK_VALUES:
                source = "unnest({a}::text[], {a}::text[], {a}::text[]) AS k (column1, column2, column3)"
                params = [list(column) for column in zip(*chunk, strict=True)]
            else:
                source = "(VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)) + ") AS k"
                params = [v for key in chunk for v in key]
            state_columns = ", ".join(f"d.{name}" for name in REPORT_COLUMNS[_STATE])
            cur.execute(
                db.sql(
                    f"""SELECT k.column1, k.column2, k.column3, {state_columns}
                    FROM {source} JOIN {{p}}delivery_reports d
                        ON d.vendor = k.column1 AND d.batch_id = k.column2 AND d.mobile = k.column3"""
                ),
                params,
            )
            for vendor, batch_id, mobile, *state in cur.fetchall():
                reports[(vendor, batch_id, mobile)] = tuple(state)
        sent: dict[_Key, str] = {}
        for (vendor, batch_id), batch in sent_requests().items():
            mobiles = by_batch[(vendor, batch_id)]
            decode = len(mobiles) >= _SCAN_MIN_KEYS
            for mobile in mobiles:
                request_key = batch.owner(mobile, decode=decode)
                if request_key is not None:
                    sent[(vendor, batch_id, mobile)] = request_key
        return reports, sent

    def expire_overdue(self, vendor: str, *, sent_before: datetime, conn_id: str = "", reason: str = "") -> int:
        """Give every sent number with no final report, sent before ``sent_before``, the final status ``expired``.

        Waits on those batches end, and the gap is counted (``status_counts``, copies to a warehouse)
        instead of staying pending for ever. A real report that comes later still replaces it.
        """
        db = self._db
        with db.transaction(write=False) as cur:
            cur.execute(
                db.sql(
                    "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' "
                    "AND total > delivered + failed AND COALESCE(submitted_at, created_at) < ? "
                    "ORDER BY created_at, batch_id"
                ),
                (vendor, utc_text(sent_before)),
            )
            overdue = [batch_id for (batch_id,) in cur.fetchall()]
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
        with self._db.transaction(write=False) as cur:
            for t, d, f in self._db.select_in(cur, sql, (vendor,), list(dict.fromkeys(batch_ids))):
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
        db = self._db
        if limit is not None and limit <= 0:
            return []
        if batch_ids is None:
            with db.transaction(write=False) as cur:
                cur.execute(
                    db.sql(
                        "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' "
                        "AND total > delivered + failed ORDER BY created_at, batch_id"
                    ),
                    (vendor,),
                )
                batch_ids = [batch_id for (batch_id,) in cur.fetchall()]
        ordered = list(dict.fromkeys(batch_ids))
        if ordered:
            first = start % len(ordered)
            ordered = ordered[first:] + ordered[:first]
        pairs: list[tuple[str, str]] = []
        with db.transaction(write=False) as cur:
            for batch_id in ordered:
                cur.execute(db.sql(ACCEPTED_IN_BATCH), (vendor, batch_id))
                requests = cur.fetchall()
                if not requests:
                    continue
                numbers = SentBatch(requests).index()
                cur.execute(db.sql(_FINAL_REPORTS_IN_BATCH), (vendor, batch_id, DELIVERED, FAILED, EXPIRED))
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
        with self._db.transaction(write=False) as cur:
            for status, code, count in self._db.select_in(cur, finals, (vendor,), ids):
                by_status[status] = by_status.get(status, 0) + int(count)
                by_code[code] = by_code.get(code, 0) + int(count)
            for (count,) in self._db.select_in(cur, pending, (vendor,), ids):
                by_status["pending"] += int(count)
        return {"by_status": by_status, "by_code": by_code}

    def iter_reports(
        self,
        *,
        vendor: str | None = None,
        since_seq: int = 0,
        page_size: int = PAGE_SIZE,
        conn_id: str | None = None,
        since_id: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of stored reports with ``seq > since_seq``, in seq order, for incremental copies.

        An updated report gets a new, larger ``seq``, so copying from the last seq seen picks up
        updates as well as new reports. ``conn_id`` keeps only reports pulled through that connection.
        Times are the stored ISO text, ``raw`` the stored JSON text. ``since_id``: deprecated ``since_seq``.
        """
        if since_id is not None:
            warnings.warn("iter_reports(since_id=) is deprecated; use since_seq=", DeprecationWarning, stacklevel=2)
            since_seq = since_id
        filters = {"vendor": vendor, "conn_id": conn_id}
        return self._db.rows_after("delivery_reports", REPORT_COLUMNS, filters, since_seq, page_size)
