"""``SmsDeliverySensor``: wait until every number of some batches has a final delivery report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_sms.identifiers import check_table_prefix

if TYPE_CHECKING:
    from airflow.sdk import Context


class SmsDeliverySensor(BaseSensorOperator):
    """Wait for final delivery reports of the batches sent by ``send_task_id`` (or given ``batch_ids``).

    Each check stores everything the vendor hands out, for every batch, before counting, so reports
    of other batches pulled meanwhile are never lost. Modes: ``poke``, ``reschedule``, and
    ``deferrable=True`` (an async trigger in the triggerer; no worker slot held).

    :param min_delivered_share: fail when fewer than this share (0..1) of the numbers were delivered.
    :param fail_on_failure: fail when any number's delivery failed.
    :param max_pulls_per_check: how many vendor pulls one check may make while the queue keeps giving.
    """

    template_fields: Sequence[str] = ("sms_conn_id", "batch_ids", "send_task_id", "store_conn_id")
    ui_color = "#fdf3e1"

    def __init__(
        self,
        *,
        sms_conn_id: str,
        batch_ids: Sequence[str] | str | None = None,
        send_task_id: str | None = None,
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        min_delivered_share: float | None = None,
        fail_on_failure: bool = False,
        max_pulls_per_check: int = 20,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        super().__init__(**kwargs)
        if batch_ids is None and send_task_id is None:
            raise ValueError("SmsDeliverySensor needs batch_ids or send_task_id")
        self.sms_conn_id = sms_conn_id
        self.batch_ids = batch_ids
        self.send_task_id = send_task_id
        self.store_conn_id = store_conn_id
        self.store_table_prefix = check_table_prefix(store_table_prefix)
        self.min_delivered_share = min_delivered_share
        self.fail_on_failure = fail_on_failure
        self.max_pulls_per_check = max_pulls_per_check
        self.deferrable = deferrable

    def resolve_batch_ids(self, context: Context) -> list[str]:
        if self.batch_ids is not None:
            from airflow_provider_sms.numbers import parse_mobiles

            given = parse_mobiles(self.batch_ids)
            return [i.strip() for i in (given.split(",") if isinstance(given, str) else given) if i.strip()]
        summaries = context["ti"].xcom_pull(task_ids=self.send_task_id)
        if isinstance(summaries, dict):
            summaries = [summaries]
        batch_ids: list[str] = []
        for summary in summaries or []:
            if summary:  # mapped send tasks give one summary per map index
                batch_ids.extend(summary.get("batch_ids", []))
        return batch_ids

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from airflow_provider_sms.delivery_check import check_delivery

        batch_ids = self.resolve_batch_ids(context)
        check = check_delivery(
            self.sms_conn_id,
            batch_ids,
            store_conn_id=self.store_conn_id,
            store_table_prefix=self.store_table_prefix,
            max_pulls=self.max_pulls_per_check,
        )
        self.log.info(
            "%d batches: %d/%d numbers final (%d delivered, %d failed); %d reports pulled this check",
            len(batch_ids),
            check.total - check.pending,
            check.total,
            check.delivered,
            check.failed,
            check.pulled,
        )
        if check.pending > 0 or (check.total == 0 and batch_ids):
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.outcome(batch_ids, vendor=check.vendor))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_sms.triggers.delivery import SmsDeliveryTrigger

        self.defer(
            trigger=SmsDeliveryTrigger(
                sms_conn_id=self.sms_conn_id,
                batch_ids=self.resolve_batch_ids(context),
                store_conn_id=self.store_conn_id,
                store_table_prefix=self.store_table_prefix,
                poll_interval=float(
                    self.poke_interval
                    if not isinstance(self.poke_interval, timedelta)
                    else self.poke_interval.total_seconds()
                ),
                max_pulls_per_check=self.max_pulls_per_check,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_sms.errors import SmsError

        if not event or event.get("status") != "done":
            raise SmsError(f"delivery trigger ended without a result: {event!r}")
        return self.outcome(list(event["batch_ids"]), vendor=event.get("vendor"))

    def _vendor(self) -> str:
        from airflow_provider_sms.hooks import hook_class_for_conn_type
        from airflow_provider_sms.hooks.base import read_connection

        conn, _ = read_connection(self.sms_conn_id)
        return hook_class_for_conn_type(conn.conn_type or "").vendor

    def outcome(self, batch_ids: list[str], vendor: str | None = None) -> dict[str, Any]:
        """Counts by status and vendor code; fails the task when the author's delivery bar is not met.

        ``vendor``: as the check learnt it; without it (an event of an older trigger) the connection's type
        names it, and no hook is built just for its name.
        """
        from airflow_provider_sms.errors import SmsError
        from airflow_provider_sms.store import SmsStore

        vendor = vendor or self._vendor()
        with SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix) as store:
            counts = store.status_counts(vendor, batch_ids)
        by_status = counts["by_status"]
        total = sum(by_status.values())
        delivered = by_status.get("delivered", 0)
        result = {
            "conn_id": self.sms_conn_id,
            "vendor": vendor,
            "batches": len(batch_ids),
            "total": total,
            "by_status": by_status,
            "by_code": counts["by_code"],
        }
        self.log.info("delivery outcome: %s", result)
        if self.fail_on_failure and by_status.get("failed", 0):
            raise SmsError(f"{by_status['failed']} of {total} messages failed delivery (codes: {counts['by_code']})")
        if self.min_delivered_share is not None and total and delivered / total < self.min_delivered_share:
            raise SmsError(
                f"only {delivered} of {total} messages delivered ({delivered / total:.1%}), "
                f"below the minimum share {self.min_delivered_share:.1%} (codes: {counts['by_code']})"
            )
        return result
