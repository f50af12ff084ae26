"""``SmsDeliverySensor``: wait until every number of some batches has a final delivery report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        """Every batch id to wait for, on whichever connection (``resolve_batches`` says which)."""
        return [batch for ids in self.resolve_batches(context).values() for batch in ids]

    def resolve_batches(self, context: Context) -> dict[str, list[str]]:
        """The batch ids to wait for, by connection: ``batch_ids`` are on ``sms_conn_id``; a send task's
        summaries name their batches by connection (``batch_ids_by_conn``) when the send failed over."""
        if self.batch_ids is not None:
            from airflow_provider_sms.numbers import parse_mobiles

            given = parse_mobiles(self.batch_ids)
            ids = [i.strip() for i in (given.split(",") if isinstance(given, str) else given) if i.strip()]
            return {self.sms_conn_id: ids}
        summaries = context["ti"].xcom_pull(task_ids=self.send_task_id)
        if isinstance(summaries, dict):
            summaries = [summaries]
        batches: dict[str, list[str]] = {self.sms_conn_id: []}
        for summary in summaries or []:
            if not summary:  # mapped send tasks give one summary per map index
                continue
            by_conn = summary.get("batch_ids_by_conn") or {self.sms_conn_id: summary.get("batch_ids", [])}
            for conn_id, ids in by_conn.items():
                batches.setdefault(conn_id, []).extend(ids)
        return batches

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from airflow_provider_sms.delivery_check import check_deliveries

        batches = self.resolve_batches(context)
        check = check_deliveries(
            batches,
            store_conn_id=self.store_conn_id,
            store_table_prefix=self.store_table_prefix,
            max_pulls=self.max_pulls_per_check,
        )
        count = sum(len(ids) for ids in batches.values())
        on = f" on {len(batches)} connections" if len(batches) > 1 else ""
        self.log.info(
            "%d batches%s: %d/%d numbers final (%d delivered, %d failed); %d reports pulled this check",
            count,
            on,
            check.total - check.pending,
            check.total,
            check.delivered,
            check.failed,
            check.pulled,
        )
        if check.pending > 0 or (check.total == 0 and count):
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.outcome(batches, vendors=check.vendors))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_sms.triggers.delivery import SmsDeliveryTrigger

        batches = self.resolve_batches(context)
        self.defer(
            trigger=SmsDeliveryTrigger(
                sms_conn_id=self.sms_conn_id,
                batch_ids=batches.pop(self.sms_conn_id, []),
                other_batches=batches or None,
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
        batches = {self.sms_conn_id: list(event["batch_ids"]), **(event.get("other_batches") or {})}
        vendors = dict(event.get("vendors") or {})
        if event.get("vendor"):
            vendors.setdefault(self.sms_conn_id, event["vendor"])
        return self.outcome(batches, vendors=vendors)

    @staticmethod
    def _vendor(conn_id: str) -> str:
        from airflow_provider_sms.hooks import hook_class_for_conn_type
        from airflow_provider_sms.hooks.base import read_connection

        conn, _ = read_connection(conn_id)
        return hook_class_for_conn_type(conn.conn_type or "").vendor

    def outcome(
        self, batches: Mapping[str, list[str]] | list[str], vendors: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Counts by status and vendor code; fails the task when the author's delivery bar is not met.

        ``batches``: batch ids by connection (a list: on ``sms_conn_id``). ``vendors``: as the check learnt
        them; a connection missing there (an event of an older trigger) is named by its type, and no hook is
        built just for its name.
        """
        from airflow_provider_sms.errors import SmsError
        from airflow_provider_sms.store import SmsStore

        if not isinstance(batches, Mapping):
            batches = {self.sms_conn_id: list(batches)}
        vendors = dict(vendors or {})
        counts: dict[str, dict[str, int]] = {"by_status": {}, "by_code": {}}
        with SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix) as store:
            for conn_id, ids in batches.items():
                vendor = vendors.get(conn_id) or self._vendor(conn_id)
                vendors[conn_id] = vendor
                for kind, found in store.status_counts(vendor, ids).items():
                    for name, count in found.items():
                        counts[kind][name] = counts[kind].get(name, 0) + count
        by_status = counts["by_status"]
        total = sum(by_status.values())
        delivered = by_status.get("delivered", 0)
        result = {
            "conn_id": self.sms_conn_id,
            "vendor": vendors.get(self.sms_conn_id) or next(iter(vendors.values()), ""),
            "batches": sum(len(ids) for ids in batches.values()),
            "total": total,
            "by_status": by_status,
            "by_code": counts["by_code"],
            **({"vendors": vendors} if len(batches) > 1 else {}),
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
