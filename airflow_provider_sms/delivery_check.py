"""One delivery check, what ``SmsDeliverySensor`` pokes and ``SmsDeliveryTrigger`` runs: pull whatever the
vendor hands out into the store, then read the batches' counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
