"""``SmsDeliveryTrigger``: the deferrable form of ``SmsDeliverySensor``'s check, run in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent


class SmsDeliveryTrigger(BaseTrigger):
    """Check delivery every ``poll_interval`` seconds until no number of the batches is pending.

    The check (vendor pull + store write) is blocking I/O, so it runs in a worker thread of its own: neither
    the triggerer's event loop nor the other triggers' checks wait for it. Progress is logged when it
    changes, and otherwise once per ``log_heartbeat`` seconds, so a batch that waits for hours does not
    fill the log.
    """

    #: seconds between progress lines while nothing changes
    log_heartbeat: ClassVar[float] = 300.0
    #: the clock the heartbeat is measured with; tests replace it
    clock: ClassVar[staticmethod[[], float]] = staticmethod(time.monotonic)

    def __init__(
        self,
        sms_conn_id: str,
        batch_ids: list[str],
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        poll_interval: float = 30.0,
        max_pulls_per_check: int = 20,
        other_batches: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        self.sms_conn_id = sms_conn_id
        self.batch_ids = list(batch_ids)
        #: batches on other connections (a send that failed over), by connection id
        self.other_batches = {conn_id: list(ids) for conn_id, ids in (other_batches or {}).items()}
        self.store_conn_id = store_conn_id
        self.store_table_prefix = store_table_prefix
        self.poll_interval = poll_interval
        self.max_pulls_per_check = max_pulls_per_check

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sms_conn_id": self.sms_conn_id,
                "batch_ids": self.batch_ids,
                "store_conn_id": self.store_conn_id,
                "store_table_prefix": self.store_table_prefix,
                "poll_interval": self.poll_interval,
                "max_pulls_per_check": self.max_pulls_per_check,
                **({"other_batches": self.other_batches} if self.other_batches else {}),
            },
        )

    @property
    def _batch_count(self) -> int:
        return len(self.batch_ids) + sum(len(ids) for ids in self.other_batches.values())

    def _check(self) -> dict[str, Any]:
        """One check's counts, and the vendor, which the event hands to the sensor (it need not look it up)."""
        from airflow_provider_sms.delivery_check import check_deliveries

        check = check_deliveries(
            {self.sms_conn_id: self.batch_ids, **self.other_batches},
            store_conn_id=self.store_conn_id,
            store_table_prefix=self.store_table_prefix,
            max_pulls=self.max_pulls_per_check,
        )
        return {**check.to_dict(), "vendor": check.vendor, "vendors": check.vendors}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        logged: tuple[int, ...] | None = None
        logged_at = 0.0
        while True:
            # not thread_sensitive: the check's blocking I/O runs in a thread of its own, so one slow vendor
            # does not hold up the sync calls of every other trigger in this triggerer
            progress = await sync_to_async(self._check, thread_sensitive=False)()
            now = self.clock()
            # "pulled" counts this check's pulls (other batches' reports too): not a change of these batches
            state = tuple(progress[key] for key in ("total", "delivered", "failed", "pending"))
            if state != logged or now - logged_at >= self.log_heartbeat:
                self.log.info("delivery progress of %d batches: %s", self._batch_count, progress)
                logged, logged_at = state, now
            if progress["pending"] <= 0 and (progress["total"] > 0 or not self._batch_count):
                extra = {"other_batches": self.other_batches} if self.other_batches else {}
                yield TriggerEvent({"status": "done", "batch_ids": self.batch_ids, **extra, **progress})
                return
            await asyncio.sleep(self.poll_interval)
