"""Operators that pull delivery reports, inbound messages and balances into the store and, optionally,
into a warehouse table on any ``common.sql`` connection, or into XCom for small results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_sms.features import BALANCE, INBOUND, REPORTS
from airflow_provider_sms.identifiers import check_table, check_table_prefix, is_template

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.lineage import VendorEndpoint
    from airflow_provider_sms.pulling import PullResult
    from airflow_provider_sms.store import SmsStore

#: columns copied to warehouse tables, in order; the first ones form the table's unique key
REPORT_COLUMNS = ("vendor", "batch_id", "mobile", "status", "code", "description", "reported_at", "conn_id")
REPORT_KEY = ("vendor", "batch_id", "mobile")
#: keyed by the store's own key for a message (a digest of vendor, mobile, received_at and content): a key
#: column is NOT NULL, and a message may come without a time
INBOUND_COLUMNS = ("dedupe_key", "vendor", "mobile", "received_at", "content", "ext_no", "conn_id")
INBOUND_KEY = ("dedupe_key",)
BALANCE_COLUMNS = ("conn_id", "vendor", "taken_at", "amount", "currency")
BALANCE_KEY = ("conn_id", "taken_at")


#: the default label of a mapped sync task (``.expand(sms_conn_id=[...])``): which connection it synced
MAP_INDEX_TEMPLATE = "{{ task.sms_conn_id }}"


class _StoreOperator(BaseOperator):
    """Shared parameters: the SMS connection, the store, and an optional warehouse target.

    Mapped over connections, each task instance is labelled with its connection id unless
    ``map_index_template`` says otherwise (``None``: no label).
    """

    template_fields: Sequence[str] = ("sms_conn_id", "store_conn_id", "target_conn_id", "target_table")
    ui_color = "#eef3fb"
    watermark_name: ClassVar[str] = ""
    #: the store tables a run writes, and the warehouse table's columns, for lineage
    store_tables: ClassVar[tuple[str, ...]] = ()
    target_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        sms_conn_id: str,
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        target_conn_id: str | None = None,
        target_table: str | None = None,
        xcom_max_rows: int = 100,
        max_pulls: int = 1000,
        map_index_template: str | None = MAP_INDEX_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        # a default in this signature is what ``.partial()`` reads for mapped tasks (it calls no __init__)
        super().__init__(map_index_template=map_index_template, **kwargs)
        if (target_conn_id is None) != (target_table is None):
            raise ValueError("target_conn_id and target_table go together")
        self.sms_conn_id = sms_conn_id
        self.store_conn_id = store_conn_id
        self.store_table_prefix = check_table_prefix(store_table_prefix)
        if target_table is not None and not is_template(target_table):
            check_table(target_table)  # at DAG parse time; a templated name is checked once rendered
        self.target_conn_id = target_conn_id
        self.target_table = target_table
        self.xcom_max_rows = xcom_max_rows
        self.max_pulls = max_pulls
        self._vendor_endpoint: VendorEndpoint | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The vendor's endpoint in; the store's tables and the warehouse table (if any) out.

        Called by the OpenLineage provider's listener, when it is installed, on the operator that ran.
        """
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:  # the openlineage extra is not installed
            return None
        from airflow_provider_sms import lineage

        if self._vendor_endpoint is None:  # skipped before the connection was read
            return OperatorLineage()
        outputs = lineage.store_datasets(self.store_conn_id, self.store_table_prefix, self.store_tables)
        if self.target_conn_id and self.target_table:
            outputs += lineage.sql_datasets(self.target_conn_id, [self.target_table], self.target_columns)
        return OperatorLineage(inputs=[self._vendor_endpoint.dataset()], outputs=outputs)

    def _hook_for(self, feature: str) -> SmsHook:
        """The connection's hook (the caller closes it); the task is skipped, not failed, when the vendor has
        no such API."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.hooks.base import FEATURE_LABELS
        from airflow_provider_sms.lineage import VendorEndpoint

        hook = get_sms_hook(self.sms_conn_id)
        if not hook.supports(feature):
            # Airflow logs the exception's message only as a field of its "Skipping task." line; say it plainly
            reason = f"{self.sms_conn_id}: skipped, the {hook.vendor} gateway has no {FEATURE_LABELS[feature]} API"
            self.log.info("%s", reason)
            hook.close()
            raise AirflowSkipException(reason)
        self._vendor_endpoint = VendorEndpoint.of(hook, feature)
        return hook

    def _store(self) -> SmsStore:
        from airflow_provider_sms.store import SmsStore

        return SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix)

    def _copy_new_rows(
        self, store: SmsStore, pages: Any, columns: Sequence[str], key: Sequence[str], watermark: str
    ) -> tuple[int, list[dict[str, Any]]]:
        """Upsert store rows newer than the watermark into the target table; return (count, first rows for XCom)."""
        from airflow_provider_sms.warehouse import upsert_rows

        copied = 0
        sample: list[dict[str, Any]] = []
        last_seq = None
        for page in pages:
            if self.target_conn_id and self.target_table:
                upsert_rows(
                    self.target_conn_id,
                    self.target_table,
                    columns,
                    key,
                    [tuple(row.get(c) for c in columns) for row in page],
                )
            copied += len(page)
            last_seq = page[-1]["seq"]
            if len(sample) < self.xcom_max_rows:
                sample.extend({c: row.get(c) for c in columns} for row in page[: self.xcom_max_rows - len(sample)])
        if last_seq is not None:
            store.set_watermark(watermark, last_seq)
        return copied, sample

    def _watermark(self, kind: str) -> str:
        target = f"{self.target_conn_id}.{self.target_table}" if self.target_table else "xcom"
        return f"{kind}:{self.sms_conn_id}:{target}"


class _PullSyncOperator(_StoreOperator):
    """Pull one kind of record into the store (from a queue, or by query), then copy rows newer than the watermark
    to the target."""

    feature: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    key: ClassVar[tuple[str, ...]]
    xcom_key: ClassVar[str]

    def pull(self, hook: SmsHook, store: SmsStore) -> PullResult:
        raise NotImplementedError

    def stored_pages(self, store: SmsStore, vendor: str, since_seq: int) -> Iterator[list[dict[str, Any]]]:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        with closing(self._hook_for(self.feature)) as hook, self._store() as store:
            pulled = self.pull(hook, store)
            self.log.info(
                "%s: %d %s fetched in %d pulls; %d new and %d updated in the store",
                self.sms_conn_id,
                pulled.fetched,
                self.xcom_key,
                pulled.pulls,
                pulled.inserted,
                pulled.updated,
            )
            watermark = self._watermark(self.feature)
            pages = self.stored_pages(store, hook.vendor, store.get_watermark(watermark))
            copied, sample = self._copy_new_rows(store, pages, self.columns, self.key, watermark)
        result: dict[str, Any] = {
            "conn_id": self.sms_conn_id,
            "vendor": hook.vendor,
            **pulled.to_dict(),
            "copied": copied,
        }
        if not self.target_table:
            result[self.xcom_key] = sample
        return result


class SmsReportsSyncOperator(_PullSyncOperator):
    """Pull delivery reports into the store, then copy new and changed reports to ``target_table``.

    Returns counts, plus up to ``xcom_max_rows`` of the new reports when no target table is given.
    """

    feature = REPORTS
    store_tables = ("delivery_reports", "requests")
    target_columns = REPORT_COLUMNS
    columns = REPORT_COLUMNS
    key = REPORT_KEY
    xcom_key = "reports"

    def pull(self, hook: SmsHook, store: SmsStore) -> PullResult:
        from airflow_provider_sms.pulling import pull_reports

        return pull_reports(hook, store, max_pulls=self.max_pulls)

    def stored_pages(self, store: SmsStore, vendor: str, since_seq: int) -> Iterator[list[dict[str, Any]]]:
        return store.iter_reports(vendor=vendor, since_seq=since_seq, conn_id=self.sms_conn_id)


class SmsInboundSyncOperator(_PullSyncOperator):
    """Pull inbound (MO) messages into the store, then copy new ones to ``target_table``."""

    feature = INBOUND
    store_tables = ("inbound_messages",)
    target_columns = INBOUND_COLUMNS
    columns = INBOUND_COLUMNS
    key = INBOUND_KEY
    xcom_key = "messages"

    def pull(self, hook: SmsHook, store: SmsStore) -> PullResult:
        from airflow_provider_sms.pulling import pull_inbound

        return pull_inbound(hook, store, max_pulls=self.max_pulls)

    def stored_pages(self, store: SmsStore, vendor: str, since_seq: int) -> Iterator[list[dict[str, Any]]]:
        return store.iter_inbound(vendor=vendor, since_seq=since_seq, conn_id=self.sms_conn_id)


class SmsBalanceOperator(_StoreOperator):
    """Record the account balance; fail the task below ``min_balance`` so that alerting DAGs can page someone."""

    template_fields: Sequence[str] = (*_StoreOperator.template_fields, "min_balance")
    store_tables = ("balances",)
    target_columns = BALANCE_COLUMNS

    def __init__(self, *, min_balance: Decimal | float | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_balance = min_balance

    def execute(self, context: Context) -> dict[str, Any]:
        from datetime import datetime, timezone

        from airflow_provider_sms import metrics
        from airflow_provider_sms.errors import SmsError
        from airflow_provider_sms.store.database import utc_text
        from airflow_provider_sms.warehouse import upsert_rows

        with closing(self._hook_for(BALANCE)) as hook:
            balance = hook.get_balance()
        taken_at = datetime.now(timezone.utc)
        with self._store() as store:
            store.save_balance(balance, conn_id=self.sms_conn_id, taken_at=taken_at)
        row = {
            "conn_id": self.sms_conn_id,
            "vendor": balance.vendor,
            "taken_at": utc_text(taken_at),  # the store's fixed-width time text
            "amount": str(balance.amount),
            "currency": balance.currency,
        }
        if self.target_conn_id and self.target_table:
            upsert_rows(
                self.target_conn_id,
                self.target_table,
                BALANCE_COLUMNS,
                BALANCE_KEY,
                [tuple(row[c] for c in BALANCE_COLUMNS)],
            )
        self.log.info("%s: balance %s %s", self.sms_conn_id, balance.amount, balance.currency)
        more = {"currency": balance.currency} if balance.currency else {}
        metrics.gauge(metrics.BALANCE, float(balance.amount), metrics.tags(balance.vendor, self.sms_conn_id, **more))
        if self.min_balance not in (None, "") and balance.amount < Decimal(str(self.min_balance)):
            raise SmsError(
                f"{self.sms_conn_id} ({balance.vendor}): balance {balance.amount} {balance.currency} "
                f"is below the minimum {self.min_balance}"
            )
        return row
