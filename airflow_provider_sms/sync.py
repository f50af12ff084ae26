"""Pull reports and inbound messages from a vendor into the store: the one code path operators, sensors,
triggers and the benchmarks share.

Queue vendors hand out each record once, so every page is committed to the store as soon as it
arrives, before anything filters or returns it: a crash between two pulls loses nothing the vendor
will not hand out again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.store import SmsStore

log = logging.getLogger(__name__)

#: a safety stop for one sync: a queue that is never empty is drained by the next run
DEFAULT_MAX_PULLS = 1000


@dataclass
class PullResult:
    """What one sync did: pulls made, records fetched, rows new to the store."""

    pulls: int = 0
    fetched: int = 0
    inserted: int = 0
    updated: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"pulls": self.pulls, "fetched": self.fetched, "inserted": self.inserted, "updated": self.updated}


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
    conn_id = hook.sms_conn_id
    if hook.report_mode == "query":
        limit = hook.report_query_limit * max_pulls
        # A random first batch: with more pending pairs than one sync may ask about, numbers that never
        # get a report must not keep every later batch from being asked about.
        pairs = store.pending_pairs(
            hook.vendor,
            list(batch_ids) if batch_ids is not None else None,
            limit=limit,
            start=random.randrange(1 << 30),
        )
        for start in range(0, len(pairs), hook.report_query_limit):
            reports = hook.fetch_reports(pairs[start : start + hook.report_query_limit])
            saved = store.save_reports(reports, conn_id=conn_id)
            result.pulls += 1
            result.fetched += len(reports)
            result.inserted += saved.inserted
            result.updated += saved.updated
        return result
    while result.pulls < max_pulls:
        reports = hook.fetch_reports()
        result.pulls += 1
        if not reports:
            break
        saved = store.save_reports(reports, conn_id=conn_id)
        result.fetched += len(reports)
        result.inserted += saved.inserted
        result.updated += saved.updated
        log.info("%s: pulled %d delivery reports (%d so far)", hook.vendor, len(reports), result.fetched)
    return result


def pull_inbound(hook: SmsHook, store: SmsStore, *, max_pulls: int = DEFAULT_MAX_PULLS) -> PullResult:
    """Drain the vendor's inbound queue into the store, committing each page before the next pull."""
    result = PullResult()
    while result.pulls < max_pulls:
        messages = hook.fetch_inbound()
        result.pulls += 1
        if not messages:
            break
        saved = store.save_inbound(messages, conn_id=hook.sms_conn_id)
        result.fetched += len(messages)
        result.inserted += saved.inserted
        result.updated += saved.updated
        log.info("%s: pulled %d inbound messages (%d so far)", hook.vendor, len(messages), result.fetched)
    return result


@dataclass
class DeliveryCheck:
    """Progress of a set of batches after one check; ``pending`` reaches 0 when every number has a final report."""

    total: int
    delivered: int
    failed: int
    pulled: int

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed

    def to_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": self.pending,
            "pulled": self.pulled,
        }


def check_delivery(
    sms_conn_id: str,
    batch_ids: Sequence[str],
    *,
    store_conn_id: str | None = None,
    store_table_prefix: str = "sms_",
    max_pulls: int = 20,
) -> DeliveryCheck:
    """One sensor check: store whatever the vendor hands out (for every batch), then read the batches' counters.

    The cost follows what is new (one empty pull when nothing is) plus one row per batch, not the
    number of messages still pending.
    """
    from airflow_provider_sms.hooks import get_sms_hook

    hook = get_sms_hook(sms_conn_id)
    try:
        with SmsStore(store_conn_id, table_prefix=store_table_prefix) as store:
            pulled = pull_reports(hook, store, batch_ids=batch_ids, max_pulls=max_pulls)
            progress = store.batch_progress(hook.vendor, list(batch_ids))
    finally:
        hook.close()
    return DeliveryCheck(progress.total, progress.delivered, progress.failed, pulled.fetched)
