"""``SmsSendOperator``: send one text or template to up to hundreds of thousands of numbers, exactly once.

The operator holds a hook and makes one call: ``sending.PlannedSend`` stores the plan on the first
try, keeps every request's intent durable before it goes out, and resolves what a crashed try left
unknown (see the README's "What exactly once means here").
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_sms.cost import parse_amount
from airflow_provider_sms.identifiers import check_table_prefix
from airflow_provider_sms.numbers import parse_mobiles
from airflow_provider_sms.quiet_hours import parse_quiet_hours

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_sms.lineage import VendorEndpoint

#: store tables a send writes (its plan, its numbers, each request's state), for lineage
SEND_STORE_TABLES = ("send_plans", "plan_numbers", "requests")


def _seconds(value: timedelta | float | int, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return seconds


class SmsSendOperator(BaseOperator):
    """Send an SMS (text or template) through any SMS connection; pushes a compact summary to XCom.

    :param sms_conn_id: an ``sms_*`` connection; its type picks the vendor.
    :param mobiles: numbers as a list, a comma-separated string, or a rendered list from XCom.
    :param content: the text (vendors that want 【signature】 in the text get it from ``signature``
        or the connection's ``sign`` extra).
    :param template_id: send a vendor template instead of ``content``.
    :param template_params: the template's variables (a mapping, or a list for cloud_mas).
    :param signature, ext_no, scheduled_at, kind, sender_id: vendor send options (see the README).
    :param store_conn_id: a ``common.sql`` connection for the message store; default: embedded SQLite.
    :param skip_opted_out: leave out numbers in the store's opt-out table (``TD``/``STOP`` replies).
    :param max_concurrency: how many requests may be in flight to the vendor at once. ``1`` (the
        default) is safe for every vendor: one request at a time. More overlaps the vendor's latency
        (each thread has its own HTTP session); every request's intent is still stored before it goes
        out and its acceptance as soon as it comes. Raise it only as far as the vendor account's rate
        limit allows. A failure stops new requests, lets those in flight finish and be recorded, then
        fails the task.
    :param on_unknown: what a retry does with a request whose outcome stayed unknown (the worker died
        while it was in flight, or its reply was lost) and for which no evidence arrived within
        ``unknown_grace_period``: ``"fail"`` (the default; the error names the requests) or ``"resend"``
        (a double send if the vendor had accepted it).
    :param unknown_grace_period: how long after such a request went out a retry looks for evidence
        of its acceptance (delivery reports under a batch the store never recorded); a ``timedelta``
        or seconds, default 10 minutes.
    :param on_plan_change: a retry given other numbers, text or options than its first try planned
        fails (``"fail"``, the default) or plans the new input anew (``"new_plan"``).
    :param deferrable: while a retry waits for evidence, the send waits for quiet hours to end, or for the
        canary's reports, give the worker slot back to the triggerer.
    :param max_parts: the most SMS parts (70 characters for one, 67 each beyond, the signature
        included) one message may cost; a longer text is refused before anything is sent. Default: the
        connection's ``max_parts`` extra, else 10. The summary's ``parts`` says what the text costs.
    :param dry_run: plan everything (numbers, opt-outs, requests, parts, ``estimated_cost`` from the
        connection's ``price_per_part``) and return the summary; no request to the vendor, no plan stored.
    :param check_balance: read the balance before anything goes out; fail naming both figures when the send
        costs more (vendors with a balance API).
    :param max_cost: fail before anything goes out when the estimated cost is above it (a ``Decimal``, text
        or number; needs the connection's ``price_per_part``).
    :param quiet_hours: ``"21:00-08:00"``: no number gets a message in that window of its own clock (the
        connection's ``timezone`` for domestic vendors, the number's country for intl, every zone of a
        country with several). A send that would start in it, or run into it, waits for it to end: in the
        triggerer with ``deferrable=True``, else the task fails at once (no retries) saying when it may
        run. Intl numbers go out zone group by zone group, each in its own window. Default: the
        connection's ``quiet_hours`` extra; ``""``: none. Checked here, at DAG parse time.
    :param fallback_conn_ids: connections to carry on through, in order, when one surely did not accept a
        request: it refused the connection or timed out connecting, said 429 after every retry, or answered a
        code that means "not accepted" for a reason of the account (insufficient balance, account stopped;
        each hook names its codes, the connection's ``not_accepted_codes`` extra adds more). Its requests not
        yet accepted move to the next connection in one commit; a request whose outcome is unknown never moves.
        Opt-outs apply on every connection; the summary's ``connections`` and ``batch_ids_by_conn`` say which
        connection carried which numbers. Fallbacks take the same kind of numbers (mainland or international);
        a template send falls back only to connections of the same vendor.
    :param canary: send the first ``canary`` numbers (after opt-outs) first, wait for their delivery reports,
        and send the rest only when at least ``canary_min_delivered`` of them were delivered; otherwise fail
        (no retries) with the counts by vendor code, the rest not sent. A template the carriers block then
        costs the canary, not the whole list. Which numbers are the canary is stored with the plan: a retry
        never judges nor waits again once the rest has started, and never sends a number twice. A canary
        not smaller than the list is a plain send. Default: None (no canary).
    :param canary_min_delivered: the share of the canary's numbers that must be delivered, above 0 and at
        most 1; default 0.9.
    :param canary_timeout: how long after the canary's last request was accepted to wait for its reports (a
        ``timedelta`` or seconds, default 1 hour); numbers still pending then count as not delivered. The
        verdict is taken earlier as soon as more reports cannot change it. With ``deferrable=True`` the
        worker slot is given back between checks.
    :param resend_unknown: deprecated; ``True`` means ``on_unknown="resend"``.
    """

    template_fields = (
        "mobiles",
        "content",
        "template_id",
        "template_params",
        "signature",
        "ext_no",
        "scheduled_at",
        "kind",
        "sender_id",
        "sms_conn_id",
        "fallback_conn_ids",
        "store_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"template_params": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        sms_conn_id: str,
        mobiles: Any,
        content: str | None = None,
        template_id: str | None = None,
        template_params: Any = None,
        signature: str | None = None,
        ext_no: str | None = None,
        scheduled_at: datetime | str | None = None,
        kind: str | None = None,
        sender_id: str | None = None,
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        skip_opted_out: bool = True,
        max_concurrency: int = 1,
        on_unknown: str = "fail",
        unknown_grace_period: timedelta | float = timedelta(minutes=10),
        on_plan_change: str = "fail",
        deferrable: bool = False,
        max_parts: int | None = None,
        quiet_hours: str | None = None,
        resend_unknown: bool | None = None,
        dry_run: bool = False,
        check_balance: bool = False,
        max_cost: Decimal | str | float | None = None,
        fallback_conn_ids: Sequence[str] | None = None,
        canary: int | None = None,
        canary_min_delivered: float = 0.9,
        canary_timeout: timedelta | float = timedelta(hours=1),
        **kwargs: Any,
    ) -> None:
        from airflow_provider_sms.sending import SendPolicy

        super().__init__(**kwargs)
        if (content is None) == (template_id is None):
            raise ValueError("SmsSendOperator needs exactly one of content and template_id")
        if resend_unknown is not None:
            warnings.warn(
                "SmsSendOperator(resend_unknown=...) is deprecated; use on_unknown='resend' or 'fail'",
                DeprecationWarning,
                stacklevel=2,
            )
            on_unknown = "resend" if resend_unknown else on_unknown
        #: checked here, at DAG parse time
        self.policy = SendPolicy(
            max_concurrency=max_concurrency,
            on_unknown=on_unknown,
            unknown_grace_period=_seconds(unknown_grace_period, "unknown_grace_period"),
            on_plan_change=on_plan_change,
            skip_opted_out=skip_opted_out,
            dry_run=dry_run,
            check_balance=check_balance,
            max_cost=None if max_cost is None else parse_amount(max_cost, "max_cost"),
            canary=canary,
            canary_min_delivered=canary_min_delivered,
            canary_timeout=_seconds(canary_timeout, "canary_timeout"),
        )
        self.sms_conn_id = sms_conn_id
        if isinstance(fallback_conn_ids, str):
            raise TypeError("fallback_conn_ids is a list of connection ids, got a string")
        self.fallback_conn_ids = list(fallback_conn_ids or [])
        if len({sms_conn_id, *self.fallback_conn_ids}) != len(self.fallback_conn_ids) + 1:
            raise ValueError(
                f"fallback_conn_ids must name each connection once, and not sms_conn_id; got {self.fallback_conn_ids}"
            )
        self.mobiles = mobiles
        self.content = content
        self.template_id = template_id
        self.template_params = template_params
        self.signature = signature
        self.ext_no = ext_no
        self.scheduled_at = scheduled_at
        self.kind = kind
        self.sender_id = sender_id
        self.store_conn_id = store_conn_id
        self.store_table_prefix = check_table_prefix(store_table_prefix)
        self.deferrable = deferrable
        self.max_parts = max_parts
        parse_quiet_hours(quiet_hours)  # a bad window fails at DAG parse time
        self.quiet_hours = quiet_hours
        #: the send endpoints of the connections that carried numbers (the primary, and fallbacks it moved to)
        self._vendor_endpoints: list[VendorEndpoint] = []

    # The send settings live in ``self.policy`` (checked once, at parse time); these read them as the
    # operator's attributes did before ``SendPolicy`` existed, for DAG code and tests that look at them.
    @property
    def max_concurrency(self) -> int:
        return self.policy.max_concurrency

    @property
    def on_unknown(self) -> str:
        return self.policy.on_unknown

    @property
    def unknown_grace_period(self) -> float:
        return self.policy.unknown_grace_period

    @property
    def on_plan_change(self) -> str:
        return self.policy.on_plan_change

    @property
    def skip_opted_out(self) -> bool:
        return self.policy.skip_opted_out

    def _options(self) -> dict[str, Any]:
        scheduled = self.scheduled_at
        if isinstance(scheduled, str) and scheduled:
            scheduled = datetime.fromisoformat(scheduled)
        options = {
            "signature": self.signature,
            "ext_no": self.ext_no,
            "scheduled_at": scheduled,
            "kind": self.kind,
            "sender_id": self.sender_id,
        }
        return {k: v for k, v in options.items() if v not in (None, "")}

    def _mobiles(self) -> str | Sequence[Any]:
        """A list or tuple as given: normalising makes each number a ``str`` anyway, and parsing the list
        here first would check every number twice (~2 ms per 100,000)."""
        if isinstance(self.mobiles, (list, tuple)):
            return self.mobiles
        return parse_mobiles(self.mobiles)

    def execute(self, context: Context) -> dict[str, Any]:
        return self._send(context, carried=None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The store's opt-out list in (when consulted); the vendors' send endpoints (the primary's, and each
        fallback's that carried numbers) and the store's tables out.

        The numbers themselves are no dataset (a list, or another task's XCom): OpenLineage links that
        task to this one through the DAG already.
        """
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:  # the openlineage extra is not installed
            return None
        from airflow_provider_sms import lineage

        if not self._vendor_endpoints:
            return OperatorLineage()
        prefix = self.store_table_prefix
        inputs = lineage.store_datasets(self.store_conn_id, prefix, ("opt_outs",)) if self.policy.skip_opted_out else []
        outputs = [
            *(endpoint.dataset() for endpoint in self._vendor_endpoints),
            *lineage.store_datasets(self.store_conn_id, prefix, SEND_STORE_TABLES),
        ]
        return OperatorLineage(inputs=inputs, outputs=outputs)

    def execute_complete(self, context: Context, event: Any = None, carried: dict[str, Any] | None = None) -> Any:
        """Back from waiting (for evidence of unknown outcomes, for quiet hours to end, or for the canary's
        reports): the same stored plan again, sending only what it has not had accepted."""
        return self._send(context, carried=carried)

    def _send(self, context: Context, carried: dict[str, Any] | None) -> dict[str, Any]:
        from airflow_provider_sms.failover import FailoverSend
        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.lineage import VendorEndpoint
        from airflow_provider_sms.quiet_hours import gate_for
        from airflow_provider_sms.sending import PlannedSend, SendSpec
        from airflow_provider_sms.store import SmsStore, TaskIdentity

        conn_ids = [self.sms_conn_id, *self.fallback_conn_ids]
        if len(set(conn_ids)) != len(conn_ids):  # as rendered: templates may name one connection twice
            from airflow_provider_sms.errors import SmsConfigurationError

            raise SmsConfigurationError(f"sms_conn_id and fallback_conn_ids name a connection twice: {conn_ids}")
        hooks = [get_sms_hook(conn_id) for conn_id in conn_ids]
        hook = hooks[0]
        try:
            with SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix) as store:
                limit = self.policy.max_concurrency
                gates = [gate_for(h, self.quiet_hours, max_concurrency=limit, logger=self.log) for h in hooks]
                task, namespace = TaskIdentity.from_context(context), "operator"
                sender: PlannedSend | FailoverSend
                if len(hooks) == 1:
                    sender = PlannedSend(
                        hook, store, task, namespace=namespace, policy=self.policy, logger=self.log, gate=gates[0]
                    )
                else:
                    sender = FailoverSend(
                        hooks, store, task, namespace=namespace, policy=self.policy, logger=self.log, gates=gates
                    )
                spec = SendSpec(
                    self._mobiles(),
                    self.content,
                    template_id=self.template_id,
                    params=self.template_params,
                    options=self._options(),
                    max_parts=self.max_parts,
                )
                result = sender.run(spec, wait=not self.deferrable, carried=carried)
            if not self.policy.dry_run:  # a dry run sends nothing: no vendor endpoint in its lineage
                used = {c["conn_id"] for c in result.summary.get("connections", []) if c["accepted_numbers"]}
                self._vendor_endpoints = [
                    VendorEndpoint.of(h, "send") for h in hooks if h is hook or h.sms_conn_id in used
                ]
        finally:
            for each in hooks:
                each.close()
        if result.check_again_at is not None:
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            self.log.info(
                "%s: waiting (for evidence of unknown outcomes, for quiet hours to end, or for the canary's "
                "reports) until %s; "
                "the worker slot is free meanwhile",
                hook.vendor,
                result.check_again_at.isoformat(timespec="seconds"),
            )
            self.defer(
                trigger=DateTimeTrigger(moment=result.check_again_at),
                method_name="execute_complete",
                kwargs={"carried": result.carried},
            )
        return result.summary
