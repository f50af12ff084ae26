"""Pull reports and inbound messages from a vendor into the store: the one code path operators, sensors,
triggers and the benchmarks share.

Queue vendors hand out each record once, so every page is committed to the store's journal as it
arrives, before anything parses, filters or returns it, and dropped from the journal in the commit
that stores its records: a page that a crash interrupted is stored by the next pull of that account.
A record that cannot be parsed or stored is kept raw in the store's quarantine with the reason, and
the good records of its page are stored; ``replay_quarantined`` tries them again after a fix.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_sms import metrics
from airflow_provider_sms.errors import SmsPartialResponseError, SmsVendorError
from airflow_provider_sms.hooks.base import INBOUND, QUERY, REPORTS, SmsHook
from airflow_provider_sms.records import DELIVERED, EXPIRED, FAILED
from airflow_provider_sms.store import JournalEntry, SaveResult, SmsStore

log = logging.getLogger(__name__)

#: a safety stop for one sync: a queue that is never empty is drained by the next run
DEFAULT_MAX_PULLS = 1000


@dataclass
class PullResult:
    """What one sync did: pulls made, records fetched, rows new to the store, records quarantined."""

    pulls: int = 0
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    expired: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def add(self, stored: StoredPage) -> None:
        self.fetched += stored.fetched
        self.inserted += stored.saved.inserted
        self.updated += stored.saved.updated
        self.quarantined += stored.quarantined


@dataclass
class StoredPage:
    """What became of one page of records: stored, and kept raw in the quarantine."""

    fetched: int
    saved: SaveResult
    quarantined: int


def is_data_error(exc: BaseException) -> bool:
    """A value the store cannot hold (a lone surrogate; NUL on PostgreSQL), as opposed to a store outage."""
    if isinstance(exc, (UnicodeError, ValueError)):
        return True
    sqlstate = str(getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or "")
    return type(exc).__name__ == "DataError" or sqlstate.startswith("22")


def store_page(
    hook: SmsHook,
    store: SmsStore,
    kind: str,
    records: Sequence[Any],
    rejected: Sequence[tuple[object, str]] = (),
    *,
    source: str = "pull",
    journal_id: int | None = None,
    items: Sequence[object] = (),
) -> StoredPage:
    """Store a page's good records and quarantine the rest: one bad record never costs the others.

    ``rejected``: raw items the hook could not parse, with the reason; they are quarantined first. A
    record whose values the store cannot encode is found by storing the records one at a time, and
    quarantined too. ``journal_id``: the journaled page (``items``, as the vendor handed them out) this
    came from; it is dropped in the commit that stores the records, so a crash before that leaves it
    for the next pull, and a second pass over it adds nothing.
    """
    save = store.save_reports if kind == REPORTS else store.save_inbound
    _quarantine(store, hook, kind, source, rejected, journal_id, items)
    unstorable: list[tuple[object, str]] = []
    try:
        saved = save(records, conn_id=hook.sms_conn_id, journal_id=journal_id)
    except Exception as exc:
        if not is_data_error(exc):
            raise
        inserted = updated = unchanged = 0
        statuses: dict[str, int] = {}
        for record in records:
            try:
                one = save([record], conn_id=hook.sms_conn_id)
            except Exception as single:
                if not is_data_error(single):
                    raise
                unstorable.append((_raw_of(record), f"the store cannot hold it: {type(single).__name__}: {single}"))
                continue
            inserted, updated, unchanged = inserted + one.inserted, updated + one.updated, unchanged + one.unchanged
            for status, count in one.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        saved = SaveResult(inserted, updated, unchanged, statuses)
        _quarantine(store, hook, kind, source, unstorable, journal_id, items)
        if journal_id is not None:
            store.close_journal(journal_id)
    bad = [*rejected, *unstorable]
    if bad:
        log.warning(
            "%s: %d of %d %s records quarantined (first: %s); see SmsStore.quarantined(), replay with "
            "replay_quarantined() after a fix",
            hook.vendor,
            len(bad),
            len(records) + len(rejected),
            kind,
            bad[0][1],
        )
    page = StoredPage(len(records) + len(rejected), saved, len(bad))
    count_page(hook, kind, source, page)
    return page


#: report statuses counted as ``sms.numbers.<status>`` when a stored report takes them
_COUNTED_STATUSES = {
    DELIVERED: metrics.NUMBERS_DELIVERED,
    FAILED: metrics.NUMBERS_FAILED,
    EXPIRED: metrics.NUMBERS_EXPIRED,
}


def count_page(hook: SmsHook, kind: str, source: str, page: StoredPage) -> None:
    """The page's metrics: records by source, quarantined ones, and reports by the status they newly took."""
    conn_id = hook.sms_conn_id
    records = metrics.RECORDS_PUSHED if source == "push" else metrics.RECORDS_PULLED
    metrics.incr(records, page.fetched, metrics.tags(hook.vendor, conn_id, kind=kind))
    metrics.incr(
        metrics.RECORDS_QUARANTINED, page.quarantined, metrics.tags(hook.vendor, conn_id, kind=kind, source=source)
    )
    for status, count in page.saved.statuses.items():
        name = _COUNTED_STATUSES.get(status)
        if name is not None:
            metrics.incr(name, count, metrics.tags(hook.vendor, conn_id, source=source))


def _quarantine(
    store: SmsStore,
    hook: SmsHook,
    kind: str,
    source: str,
    bad: Sequence[tuple[object, str]],
    journal_id: int | None,
    items: Sequence[object],
) -> None:
    """Quarantine, keyed by the records' places in their journaled page so that a second pass adds nothing."""
    if not bad:
        return
    place = {id(item): position for position, item in enumerate(items)}
    # a record not found in its page still gets a place of its own, past the page's end
    positions = [place.get(id(item), len(items) + n) for n, (item, _) in enumerate(bad)]
    store.quarantine(
        bad,
        conn_id=hook.sms_conn_id,
        vendor=hook.vendor,
        kind=kind,
        source=source,
        journal_id=journal_id,
        positions=positions,
    )


def _raw_of(record: Any) -> object:
    raw = getattr(record, "raw", None)
    return raw if isinstance(raw, Mapping) else repr(record)


def _parsed(hook: SmsHook, fetch: Callable[[], Sequence[Any]]) -> tuple[Sequence[Any], Sequence[tuple[object, str]]]:
    """One pull: its good records and its malformed raw items (kept, never dropped)."""
    try:
        return fetch(), ()
    except SmsPartialResponseError as exc:
        return exc.records, exc.rejected


def pull_reports(
    hook: SmsHook,
    store: SmsStore,
    *,
    batch_ids: Sequence[str] | None = None,
    max_pulls: int = DEFAULT_MAX_PULLS,
) -> PullResult:
    """Drain the vendor's report queue into the store (or, for query vendors, ask about pending pairs).

    ``batch_ids`` only narrows which pairs a query vendor is asked about; queue pulls always store
    everything they get, whichever batch it belongs to.
    """
    result = PullResult()
    hook.pace_with(store)  # pull intervals and request rates are the account's, kept by all who share the store
    if hook.report_mode == QUERY:
        result.expired = expire_overdue(hook, store)  # the vendor would refuse to answer for them
        limit = hook.report_query_limit * max_pulls
        # A random first batch: with more pending pairs than one sync may ask about, numbers that never
        # get a report must not keep every later batch from being asked about.
        pairs = store.pending_pairs(
            hook.vendor,
            list(batch_ids) if batch_ids is not None else None,
            limit=limit,
            start=random.randrange(1 << 30),
        )
        for reports, rejected in hook.query_reports(pairs):
            result.pulls += 1
            result.add(store_page(hook, store, REPORTS, reports, rejected))
        return result
    result = _drain(hook, store, REPORTS, max_pulls)
    result.expired = expire_overdue(hook, store)
    return result


def expire_overdue(hook: SmsHook, store: SmsStore) -> int:
    """Numbers with no final report ``hook.report_deadline`` after their send become ``expired`` (counted)."""
    from datetime import datetime, timezone

    deadline = hook.report_deadline
    expired = store.expire_overdue(
        hook.vendor,
        sent_before=datetime.now(timezone.utc) - deadline,
        conn_id=hook.sms_conn_id,
        reason=f"no final report within {deadline.total_seconds() / 3600:g} h",
    )
    if expired:
        metrics.incr(metrics.NUMBERS_EXPIRED, expired, metrics.tags(hook.vendor, hook.sms_conn_id, source="deadline"))
        log.warning(
            "%s: %d sent numbers had no final report within %s; they are now 'expired'",
            hook.vendor,
            expired,
            deadline,
        )
    return expired


def pull_inbound(hook: SmsHook, store: SmsStore, *, max_pulls: int = DEFAULT_MAX_PULLS) -> PullResult:
    """Drain the vendor's inbound queue into the store, committing each page before the next pull."""
    hook.pace_with(store)
    return _drain(hook, store, INBOUND, max_pulls)


def _drain(hook: SmsHook, store: SmsStore, kind: str, max_pulls: int) -> PullResult:
    """Pull a queue page by page: each reply journaled (committed) as the bytes that came, then read and stored.

    Replies journaled but never stored (the pulling process died between, a pull failed after a reply
    came, or the push receiver died) are stored first; those a failed pull left are stored before its
    error is raised.
    """
    result = PullResult()
    leftover = store.open_journal(hook.sms_conn_id, kind)
    if leftover:
        log.warning(
            "%s: storing %d %s pages an earlier pull journaled but did not get to store",
            hook.vendor,
            len(leftover),
            kind,
        )
    _store_entries(hook, store, kind, leftover, result)
    kept: list[int] = []

    def keep(body: bytes) -> None:
        kept.append(store.journal_reply(body, conn_id=hook.sms_conn_id, vendor=hook.vendor, kind=kind))

    while result.pulls < max_pulls:
        kept.clear()
        try:
            items = hook.pull_records(kind, keep=keep)
        except Exception:
            if kept:  # replies came, and then something failed: none of them is lost
                _store_entries(hook, store, kind, store.open_journal(hook.sms_conn_id, kind), result)
            raise
        result.pulls += 1
        if len(kept) > 1:  # earlier replies of this pull were retried (not JSON) or refused (a stale token)
            earlier = [e for e in store.open_journal(hook.sms_conn_id, kind) if e.id != kept[-1]]
            _store_entries(hook, store, kind, earlier, result)
        if not kept:
            raise RuntimeError(f"{hook.vendor}: a {kind} pull returned without a reply to journal")
        result.add(process_journaled(hook, store, kind, items, kept[-1]))
        if not items:
            break
        log.info("%s: pulled %d %s records (%d so far)", hook.vendor, len(items), kind, result.fetched)
    return result


def _store_entries(
    hook: SmsHook, store: SmsStore, kind: str, entries: Sequence[JournalEntry], result: PullResult
) -> None:
    for entry in entries:
        result.add(process_entry(hook, store, kind, entry))


def process_entry(hook: SmsHook, store: SmsStore, kind: str, entry: JournalEntry) -> StoredPage:
    """Store a journaled page: a push's records, or a pulled reply read again from its bytes.

    A reply that is the vendor's error (a stale token, say) carries no records and is dropped; one that
    will not decode is quarantined whole, so that what the vendor handed out is kept, not lost.
    """
    if entry.body is None:
        return process_journaled(hook, store, kind, entry.records or [], entry.id, source=entry.source)
    try:
        items = hook.records_in_reply(kind, entry.body)
    except SmsVendorError:
        store.close_journal(entry.id)
        return StoredPage(0, SaveResult(0, 0, 0), 0)
    except Exception as exc:  # not JSON, a broken envelope, nesting deeper than the parser goes
        reason = f"the reply could not be read: {_problem(exc)}"
        store.quarantine_reply(entry, reason, conn_id=hook.sms_conn_id, vendor=hook.vendor, kind=kind)
        log.error(
            "%s: a %s reply (%d bytes) could not be read and is quarantined whole: %s; see "
            "SmsStore.quarantined(), replay with replay_quarantined() after a fix",
            hook.vendor,
            kind,
            len(entry.body),
            reason,
        )
        return StoredPage(0, SaveResult(0, 0, 0), 1)
    return process_journaled(hook, store, kind, items, entry.id, source=entry.source)


def _problem(exc: BaseException) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else f"{type(exc).__name__}: {exc}"[:300]


def process_journaled(
    hook: SmsHook, store: SmsStore, kind: str, items: Sequence[Any], journal_id: int, *, source: str = "pull"
) -> StoredPage:
    """Parse a journaled page and store it; the journal entry goes in the commit that stores its records."""
    records, rejected = _parsed(hook, functools.partial(hook.parse_pulled, kind, items, pushed=source == "push"))
    return store_page(hook, store, kind, records, rejected, source=source, journal_id=journal_id, items=items)


def replay_quarantined(hook: SmsHook, store: SmsStore, *, kind: str | None = None) -> dict[str, int]:
    """Parse and store again what the quarantine holds for this connection (after a fix of the parser or the data).

    What now parses and stores is marked replayed; what still fails keeps its row, with the current reason.
    A whole reply that now decodes is replayed as its page: good records stored, bad ones quarantined
    one by one.
    """
    replayed: list[int] = []
    still_bad: dict[int, str] = {}
    for row in store.quarantined(conn_id=hook.sms_conn_id, kind=kind):
        try:
            if row["whole_reply"]:
                items = hook.records_in_reply(row["kind"], str(row["raw"]).encode("utf-8", "surrogateescape"))
                parse = functools.partial(hook.parse_pulled, row["kind"], items, pushed=row["source"] == "push")
                records, rejected = _parsed(hook, parse)
                page = {"source": row["source"], "journal_id": row["journal_id"], "items": items}
                store_page(hook, store, row["kind"], records, rejected, **page)
            elif row["kind"] == REPORTS:
                store.save_reports([hook.report_from_record(row["raw"])], conn_id=hook.sms_conn_id)
            else:
                store.save_inbound([hook.inbound_from_record(row["raw"])], conn_id=hook.sms_conn_id)
        except Exception as exc:
            still_bad[row["id"]] = f"{type(exc).__name__}: {exc}"
            continue
        replayed.append(row["id"])
    store.settle_quarantined(replayed, still_bad)
    log.info("%s: replayed %d quarantined records; %d still fail", hook.vendor, len(replayed), len(still_bad))
    return {"replayed": len(replayed), "still_failing": len(still_bad)}
