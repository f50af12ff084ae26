"""One delivery check, what ``SmsDeliverySensor`` pokes and ``SmsDeliveryTrigger`` runs: pull whatever the
vendor hands out into the store, then read the batches' counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_provider_sms.pulling import pull_reports
from airflow_provider_sms.store import SmsStore


@dataclass
class DeliveryCheck:
    """Progress of a set of batches after one check; ``pending`` reaches 0 when every number has a final report."""

    total: int
    delivered: int
    failed: int
    pulled: int
    #: the connection's vendor, learnt by the check, so that the sensor need not build a hook to name it
    vendor: str = ""
    #: every connection's vendor, for batches on several connections (``check_deliveries``)
    vendors: dict[str, str] = field(default_factory=dict)

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
    return DeliveryCheck(progress.total, progress.delivered, progress.failed, pulled.fetched, hook.vendor)


def check_deliveries(
    batches: Mapping[str, Sequence[str]],
    *,
    store_conn_id: str | None = None,
    store_table_prefix: str = "sms_",
    max_pulls: int = 20,
) -> DeliveryCheck:
    """``check_delivery`` of batches on several connections (a send that failed over), summed; ``vendor``
    is the first connection's, ``vendors`` every connection's that was checked."""
    with_batches = {conn_id: ids for conn_id, ids in batches.items() if ids}
    if with_batches:  # a connection that sent nothing is not asked (it may be the one that was down)
        batches = with_batches
    checks = {
        conn_id: check_delivery(
            conn_id, ids, store_conn_id=store_conn_id, store_table_prefix=store_table_prefix, max_pulls=max_pulls
        )
        for conn_id, ids in batches.items()
    }
    return DeliveryCheck(
        total=sum(c.total for c in checks.values()),
        delivered=sum(c.delivered for c in checks.values()),
        failed=sum(c.failed for c in checks.values()),
        pulled=sum(c.pulled for c in checks.values()),
        vendor=next(iter(checks.values())).vendor if checks else "",
        vendors={conn_id: c.vendor for conn_id, c in checks.items()},
    )
