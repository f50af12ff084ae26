"""``SmsNotifier``: an Airflow notifier (``on_failure_callback`` and friends) that sends an SMS.

A DAG whose 50 tasks fail must page the on-call phone once, not 50 times, and those 50 callbacks run
in 50 different worker processes. So before sending, the notifier claims a quiet period for its key
in the message store (an atomic upsert: exactly one caller per period wins, whichever process or
machine it runs in), and the losers only log.

A failure to send is logged and swallowed (``raise_on_error=False``, the default): Airflow already
isolates callbacks, but a traceback from a paging SMS would bury the task's own error in the log. A
send that failed for sure gives its claim back, so the next failing task tries again; a send whose
outcome is unknown keeps it (the SMS may well have gone out).
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Generator, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_provider_sms.identifiers import check_table_prefix

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.store import SmsStore

DEFAULT_QUIET_PERIOD = timedelta(minutes=10)
DEFAULT_MAX_CHARS = 300
_ELLIPSIS = "…"


def _seconds(value: timedelta | float | int | None) -> float:
    if value is None:
        return 0.0
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"quiet_period must not be negative, got {value!r}")
    return seconds


class SmsNotifier(BaseNotifier):
    """Send an SMS from a DAG or task callback, at most once per quiet period and key.

    :param sms_conn_id: any ``sms_*`` connection.
    :param mobiles: the numbers, as a list or a comma-separated string (templated).
    :param text: the message, a Jinja template rendered with the callback's context, e.g.
        ``"{{ dag.dag_id }}.{{ ti.task_id }} failed: {{ exception }}"``.
    :param quiet_period: after one SMS, further notifications with the same key are dropped for this
        long (a ``timedelta`` or seconds; 0 or None: never dropped).
    :param quiet_key: what "the same" means (templated). Default: the DAG id plus a digest of this
        notifier's connection, numbers and text, so every task of a DAG shares one period while a
        failure notifier and a success notifier of the same DAG do not silence each other. Use e.g.
        ``"{{ dag.dag_id }}/{{ run_id }}"`` for one SMS per DAG run.
    :param signature: the 【signature】 (else the connection's ``sign`` extra).
    :param kind: the vendor's message kind where it has one (``notification``), else leave None.
    :param store_conn_id: the message store that holds the quiet periods (share it between workers:
        the embedded default is one file per machine).
    :param max_chars: a longer rendered text is cut to this many characters, ending in "…", so a
        long exception cannot make the vendor refuse the message or bill ten parts.
    :param skip_opted_out: leave out numbers in the store's opt-out table (off by default: an on-call
        phone that once answered ``T`` should still be paged).
    :param raise_on_error: re-raise a failure to send after logging it.
    :param fallback_conn_ids: connections to page through, in order, when one surely did not accept the
        message (unreachable, out of balance, a code its hook or ``not_accepted_codes`` extra names), as
        ``SmsSendOperator``'s: an unknown outcome never moves on. Fallbacks take the same kind of numbers.
    """

    template_fields: Sequence[str] = ("text", "mobiles", "sms_conn_id", "fallback_conn_ids", "quiet_key", "signature")

    def __init__(
        self,
        *,
        sms_conn_id: str,
        mobiles: str | Sequence[str],
        text: str,
        quiet_period: timedelta | float | None = DEFAULT_QUIET_PERIOD,
        quiet_key: str | None = None,
        signature: str | None = None,
        kind: str | None = None,
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        max_chars: int | None = DEFAULT_MAX_CHARS,
        skip_opted_out: bool = False,
        raise_on_error: bool = False,
        fallback_conn_ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not sms_conn_id:
            raise ValueError("SmsNotifier needs an sms_conn_id")
        if not text:
            raise ValueError("SmsNotifier needs a text")
        if not isinstance(mobiles, (str, Iterable)):  # here, at DAG parse time, not in a failure callback
            raise TypeError(
                "SmsNotifier mobiles must be a list of numbers or a comma-separated string, "
                f"got {type(mobiles).__name__}"
            )
        if max_chars is not None and max_chars < 2:
            raise ValueError(f"SmsNotifier max_chars must be at least 2, got {max_chars!r}")
        if isinstance(fallback_conn_ids, str):
            raise TypeError("SmsNotifier fallback_conn_ids is a list of connection ids, got a string")
        self.sms_conn_id = sms_conn_id
        self.fallback_conn_ids = list(fallback_conn_ids or [])
        if len({sms_conn_id, *self.fallback_conn_ids}) != len(self.fallback_conn_ids) + 1:
            raise ValueError(
                f"SmsNotifier fallback_conn_ids must name each connection once, and not sms_conn_id; "
                f"got {self.fallback_conn_ids}"
            )
        self.mobiles = mobiles
        self.text = text
        self.quiet_period = _seconds(quiet_period)
        self.quiet_key = quiet_key
        self.signature = signature
        self.kind = kind
        self.store_conn_id = store_conn_id
        self.store_table_prefix = check_table_prefix(store_table_prefix)
        self.max_chars = max_chars
        self.skip_opted_out = skip_opted_out
        self.raise_on_error = raise_on_error
        # of the templates, not of what they render to: the same notifier on 50 tasks -> one key
        settings = [sms_conn_id, mobiles if isinstance(mobiles, str) else list(mobiles), text]
        if self.fallback_conn_ids:  # (a notifier without fallbacks keeps the key it always had)
            settings.append(self.fallback_conn_ids)
        self._settings_digest = hashlib.sha256(
            json.dumps(settings, ensure_ascii=False, default=str).encode("utf-8")
        ).hexdigest()[:12]

    # ------------------------------------------------------------------ calling conventions

    def __call__(self, *args: Any) -> None:
        """Render into a copy: ``BaseNotifier`` renders templates in place, so a second callback on the
        same instance (another task in the same process) would otherwise reuse the first one's text."""
        BaseNotifier.__call__(copy.copy(self), *args)

    def __await__(self) -> Generator[Any, None, None]:
        return BaseNotifier.__await__(copy.copy(self))

    def notify(self, context: Context) -> None:
        try:
            self.send(context)
        except Exception as exc:
            self.log.error("SMS notification through %s failed: %s: %s", self.sms_conn_id, type(exc).__name__, exc)
            if self.raise_on_error:
                raise

    async def async_notify(self, context: Context) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self.notify, thread_sensitive=False)(context)

    # ------------------------------------------------------------------ the work

    def message(self) -> str:
        """The rendered text, cut to ``max_chars``."""
        text = str(self.text).strip()
        if self.max_chars is not None and len(text) > self.max_chars:
            text = text[: self.max_chars - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
        return text

    def key(self, context: Context) -> str:
        """The quiet-period key for this call (see ``quiet_key``)."""
        if self.quiet_key:
            return str(self.quiet_key)
        return f"{_dag_id(context) or '-'}:{self._settings_digest}"

    def send(self, context: Context) -> dict[str, Any]:
        """Claim the quiet period, send, record; returns what happened (``sent`` or ``suppressed``).

        Errors propagate from here (``notify`` logs them); a claim whose send surely failed is given back.
        """
        from airflow_provider_sms.errors import SmsOutcomeUnknownError
        from airflow_provider_sms.failover import FailoverSend
        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.numbers import parse_mobiles
        from airflow_provider_sms.sending import PlannedSend, SendPolicy, SendSpec
        from airflow_provider_sms.store import SmsStore, TaskIdentity

        text = self.message()
        mobiles = parse_mobiles(self.mobiles)
        key = self.key(context)
        with SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix) as store:
            claimed_at = self._claim(store, key)
            if claimed_at is False:
                return _outcome("suppressed", key)
            hooks = [get_sms_hook(conn_id) for conn_id in (self.sms_conn_id, *self.fallback_conn_ids)]
            try:
                if claimed_at is None:  # the store cannot be reached: page anyway, unrecorded
                    batch_ids, numbers, carried_by = self._send_unrecorded(hooks, mobiles, text)
                    opted_out = 0  # unrecorded: the opt-out table is in the store that cannot be reached
                else:
                    # each notification is its own plan: stored, with its intent, before it goes out
                    claim = claimed_at.isoformat() if isinstance(claimed_at, datetime) else uuid.uuid4().hex
                    task, namespace = TaskIdentity.from_context(context), f"notifier\x00{key}\x00{claim}"
                    policy = SendPolicy(skip_opted_out=self.skip_opted_out, unknown_grace_period=0)
                    sender: PlannedSend | FailoverSend
                    if len(hooks) == 1:
                        sender = PlannedSend(hooks[0], store, task, namespace=namespace, policy=policy, logger=self.log)
                    else:
                        sender = FailoverSend(hooks, store, task, namespace=namespace, policy=policy, logger=self.log)
                    summary = sender.run(SendSpec(mobiles, text, options=self._options())).summary
                    if not summary["requests"]:
                        self.log.warning("SMS notification %r: every number has opted out; nothing sent", key)
                        return _outcome("opted_out", key, opted_out=summary["opted_out"])
                    by_conn = summary.get("batch_ids_by_conn") or {self.sms_conn_id: summary["batch_ids"]}
                    batch_ids = [batch for ids in by_conn.values() for batch in ids]
                    carried_by = [conn_id for conn_id, ids in by_conn.items() if ids]
                    numbers, opted_out = summary["accepted_numbers"], summary["opted_out"]
            except SmsOutcomeUnknownError:
                raise  # it may have gone out: keep the quiet period
            except BaseException:
                if isinstance(claimed_at, datetime):
                    self._release(store, key, claimed_at)
                raise
            finally:
                for hook in hooks:
                    hook.close()
        self.log.info(
            "SMS notification %r sent through %s to %d number(s) (batches %s)",
            key,
            ", ".join(carried_by),
            numbers,
            ", ".join(batch_ids),
        )
        return _outcome("sent", key, batch_ids=batch_ids, numbers=numbers, opted_out=opted_out)

    def _send_unrecorded(self, hooks: Sequence[SmsHook], mobiles: Any, text: str) -> tuple[list[str], int, list[str]]:
        """Without a store: through each connection in turn while the one before surely did not accept it.
        Returns the batch ids, the numbers accepted and the connection that carried them."""
        *earlier, last = hooks
        for position, hook in enumerate(earlier):
            try:
                receipts = hook.send(mobiles, text, **self._options())
            except Exception as exc:
                if not hook.surely_not_accepted(exc):
                    raise
                self.log.warning(
                    "SMS notification through %s surely not accepted (%s); trying %s",
                    hook.sms_conn_id,
                    exc,
                    hooks[position + 1].sms_conn_id,
                )
                continue
            return [r.batch_id for r in receipts], sum(len(r.mobiles) for r in receipts), [hook.sms_conn_id]
        receipts = last.send(mobiles, text, **self._options())
        return [r.batch_id for r in receipts], sum(len(r.mobiles) for r in receipts), [last.sms_conn_id]

    def _claim(self, store: SmsStore, key: str) -> datetime | bool | None:
        """The claim's time, True when sending without a quiet period, False when another caller holds it,
        None when the store cannot be reached."""
        if self.quiet_period <= 0:
            try:
                store.dialect  # noqa: B018  (connects: the send is recorded there)
            except Exception as exc:
                self.log.warning("SMS notification %r: store unreachable (%s); sending unrecorded", key, exc)
                return None
            return True
        now = datetime.now(timezone.utc)
        try:
            claimed = store.claim_quiet_period(key, self.quiet_period, now=now)
        except Exception as exc:
            # fail open: a page that might repeat beats a page that never comes
            self.log.warning(
                "SMS notification %r: quiet period could not be checked (%s: %s); sending anyway",
                key,
                type(exc).__name__,
                exc,
            )
            return None
        if not claimed:
            self.log.info(
                "SMS notification %r suppressed: one was sent less than %s ago",
                key,
                timedelta(seconds=self.quiet_period),
            )
            return False
        return now

    def _release(self, store: SmsStore, key: str, claimed_at: datetime) -> None:
        try:
            store.release_quiet_period(key, claimed_at)
        except Exception as exc:
            self.log.warning("SMS notification %r: quiet period not released (%s)", key, exc)

    def _options(self) -> dict[str, Any]:
        options = {"signature": self.signature, "kind": self.kind}
        return {k: v for k, v in options.items() if v}


def _outcome(
    status: str, quiet_key: str, *, batch_ids: Sequence[str] = (), numbers: int = 0, opted_out: int = 0
) -> dict[str, Any]:
    """What one notification did, in one shape whatever happened: sent, suppressed, or everyone opted out."""
    return {
        "status": status,
        "quiet_key": quiet_key,
        "batch_ids": list(batch_ids),
        "numbers": numbers,
        "opted_out": opted_out,
    }


def _dag_id(context: Any) -> str | None:
    """The DAG id from a task callback's context, or a DAG callback's."""
    try:
        dag = context.get("dag")
        if dag is not None and getattr(dag, "dag_id", None):
            return str(dag.dag_id)
        for name in ("ti", "task_instance", "dag_run"):
            holder = context.get(name)
            if holder is not None and getattr(holder, "dag_id", None):
                return str(holder.dag_id)
    except Exception:
        return None
    return None


#: The name the Airflow providers use for their notifiers' function form.
send_sms_notification = SmsNotifier

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_QUIET_PERIOD", "SmsNotifier", "send_sms_notification"]
