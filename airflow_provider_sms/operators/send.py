"""``SmsSendOperator``: send one text or template to up to hundreds of thousands of numbers, exactly once.

Every request the vendor accepts is recorded in the store under an idempotency key derived from
the task instance and the request's content, before the next request goes out. A retried task
instance skips what was already accepted, and does not resend a request whose outcome is unknown
unless the author says so.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_sms.hooks.base import SendRequest, SmsHook
    from airflow_provider_sms.records import SendReceipt
    from airflow_provider_sms.store import SmsStore, TaskIdentity


def parse_mobiles(value: Any) -> str | list[str]:
    """Numbers as a list or comma string; a rendered list (``"['138…', …]"`` or JSON) is parsed back."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = ast.literal_eval(text)
            return [str(m) for m in parsed]
        return text
    if isinstance(value, Iterable):
        return list(map(str, value))
    raise TypeError(f"mobiles must be a list of numbers or a comma-separated string, got {type(value).__name__}")


def idempotency_key(conn_id: str, task: TaskIdentity, request: SendRequest) -> str:
    """Same task instance + same request content -> same key, on every try of the task."""
    digest = hashlib.sha256()
    for part in (
        conn_id,
        task.dag_id,
        task.run_id,
        task.task_id,
        str(task.map_index),
        str(request.index),
        ",".join(request.mobiles),
        request.content or "",
        request.template_id or "",
        json.dumps(request.params, sort_keys=True, ensure_ascii=False, default=str),
        repr(request.options),
    ):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


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
    :param resend_unknown: resend requests whose outcome was unknown in an earlier try (risks a double send).
    :param skip_opted_out: leave out numbers in the store's opt-out table (``TD``/``STOP`` replies).
    :param max_concurrency: how many requests may be in flight to the vendor at once. ``1`` (the
        default) is safe for every vendor: one request at a time, each recorded before the next goes
        out. More overlaps the vendor's latency (each thread has its own HTTP session) and still
        records every accepted request the moment it is accepted; raise it only as far as the vendor
        account's rate limit allows. A failure stops new requests, lets those in flight finish and
        be recorded, then fails the task.
    """

    template_fields = (
        "mobiles",
        "content",
        "template_id",
        "template_params",
        "signature",
        "ext_no",
        "scheduled_at",
        "sms_conn_id",
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
        resend_unknown: bool = False,
        skip_opted_out: bool = True,
        max_concurrency: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (content is None) == (template_id is None):
            raise ValueError("SmsSendOperator needs exactly one of content and template_id")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}")
        self.sms_conn_id = sms_conn_id
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
        self.store_table_prefix = store_table_prefix
        self.resend_unknown = resend_unknown
        self.skip_opted_out = skip_opted_out
        self.max_concurrency = max_concurrency

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

    def plan(
        self, hook: SmsHook, mobiles: str | list[str] | None = None, *, normalized: bool = False
    ) -> list[SendRequest]:
        """Everything that can fail before sending fails here: numbers, options, lengths.

        ``normalized=True``: ``mobiles`` is the valid list ``normalize_mobiles`` gave for this hook.
        """
        return hook.plan_send(
            parse_mobiles(self.mobiles) if mobiles is None else mobiles,
            self.content,
            template_id=self.template_id,
            params=self.template_params,
            normalized=normalized,
            **self._options(),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_sms.errors import SmsInvalidNumbersError
        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.numbers import normalize_mobiles
        from airflow_provider_sms.store import SmsStore, TaskIdentity

        hook = get_sms_hook(self.sms_conn_id)
        task = TaskIdentity.from_context(context)
        try:
            with SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix) as store:
                # Normalised once: a second pass over a million numbers costs as much as the rest of planning.
                valid, invalid = normalize_mobiles(parse_mobiles(self.mobiles), international=hook.international)
                if invalid:
                    self.plan(hook)  # raises SmsInvalidNumbersError naming them, after the usual option checks
                    raise SmsInvalidNumbersError(hook.vendor, invalid, len(valid) + len(invalid))
                opted_out = 0
                if self.skip_opted_out and valid:
                    opted = self.opted_out_numbers(store, valid)
                    if opted:
                        self.log.info("%s: leaving out %d opted-out numbers", hook.vendor, len(opted))
                        valid = [m for m in valid if m not in opted]
                        opted_out = len(opted)
                if opted_out and not valid:
                    self.log.warning("%s: all %d numbers have opted out; nothing to send", hook.vendor, opted_out)
                    return {
                        "conn_id": self.sms_conn_id,
                        "vendor": hook.vendor,
                        "batch_ids": [],
                        "requests": 0,
                        "numbers": 0,
                        "accepted_numbers": 0,
                        "opted_out": opted_out,
                    }
                planned = self.plan(hook, valid, normalized=True)
                del valid  # the planned requests hold the numbers now
                summary = self.send_planned(hook, store, planned, task)
        finally:
            hook.close()
        summary["opted_out"] = opted_out
        return summary

    #: numbers per opt-out lookup: bounds the lookup's own memory on very large lists
    OPT_OUT_LOOKUP_CHUNK: ClassVar[int] = 50_000

    def opted_out_numbers(self, store: SmsStore, valid: Sequence[str]) -> set[str]:
        """Which of the (normalised) numbers are in the store's opt-out table, looked up a slice at a time."""
        opted: set[str] = set()
        for start in range(0, len(valid), self.OPT_OUT_LOOKUP_CHUNK):
            opted |= store.opted_out(valid[start : start + self.OPT_OUT_LOOKUP_CHUNK])
        return opted

    def without_opt_outs(self, hook: SmsHook, store: SmsStore, mobiles: str | list[str]) -> tuple[list[str], int]:
        """Leave out numbers in the store's opt-out table (unless ``skip_opted_out=False``)."""
        from airflow_provider_sms.numbers import normalize_mobiles, split_mobiles

        if not self.skip_opted_out:
            return split_mobiles(mobiles), 0
        valid, invalid = normalize_mobiles(mobiles, international=hook.international)
        opted = self.opted_out_numbers(store, valid) if valid else set()
        if opted:
            self.log.info("%s: leaving out %d opted-out numbers", hook.vendor, len(opted))
        # invalid numbers stay in, so that planning names them and fails before anything is sent
        return [m for m in valid if m not in opted] + invalid, len(opted)

    def send_planned(
        self, hook: SmsHook, store: SmsStore, planned: Sequence[SendRequest], task: TaskIdentity
    ) -> dict[str, Any]:
        """Submit what an earlier try has not, recording each accepted request as soon as it is accepted.

        With ``max_concurrency == 1`` each request is recorded before the next one goes out.
        """
        import dataclasses

        from airflow_provider_sms.errors import SmsOutcomeUnknownError

        keys = [idempotency_key(self.sms_conn_id, task, request) for request in planned]
        earlier = store.accepted_requests(keys)
        total_numbers = sum(len(r.mobiles) for r in planned)
        batch_by_index: dict[int, str] = {}
        unknown: list[SendRequest] = []
        to_send: list[tuple[SendRequest, str]] = []
        skipped = accepted_numbers = 0
        for planned_request, key in zip(planned, keys, strict=True):
            request = planned_request
            record = earlier.get(key)
            if record is not None and record.state == "accepted" and record.batch_id:
                batch_by_index[request.index] = record.batch_id
                accepted_numbers += len(request.mobiles)
                skipped += 1
                continue
            if record is not None and record.state == "unknown" and not self.resend_unknown:
                self.log.warning(
                    "%s: outcome of %s (%d numbers) is unknown since an earlier try; not resending it "
                    "(set resend_unknown=True to resend)",
                    hook.vendor,
                    request.description,
                    len(request.mobiles),
                )
                unknown.append(request)
                continue
            if hook.vendor == "account_md5":
                # the vendor keys sends on taskId: a resend with the same key is refused, not delivered twice
                request = dataclasses.replace(request, client_ref=key[:32])
            to_send.append((request, key))
        if skipped:
            self.log.info(
                "%s: %d requests were already accepted in an earlier try and were not resent", hook.vendor, skipped
            )
        progress = _Progress(self, hook.vendor, len(planned), total_numbers, accepted_numbers)

        def submit_one(sender: SmsHook, request: SendRequest, key: str) -> SendReceipt:
            """One request to the vendor; an unknown outcome is recorded at once, so no retry resends it blindly."""
            try:
                return sender.submit(request)
            except SmsOutcomeUnknownError as exc:
                store.record_unknown(
                    key,
                    vendor=sender.vendor,
                    conn_id=self.sms_conn_id,
                    mobiles=request.mobiles,
                    task=task,
                    reason=exc.cause,
                )
                raise

        def record_one(request: SendRequest, key: str, receipt: SendReceipt) -> str:
            store.record_accepted(key, receipt, conn_id=self.sms_conn_id, task=task)
            progress.accepted(request, receipt.batch_id)
            return receipt.batch_id

        if self.max_concurrency == 1 or len(to_send) <= 1:
            for request, key in to_send:  # each accepted request is recorded before the next goes out
                batch_by_index[request.index] = record_one(request, key, submit_one(hook, request, key))
        else:
            batch_by_index.update(self._send_concurrently(hook, to_send, submit_one, record_one))
        summary = {
            "conn_id": self.sms_conn_id,
            "vendor": hook.vendor,
            "batch_ids": [batch_by_index[r.index] for r in planned if r.index in batch_by_index],
            "requests": len(planned),
            "sent_requests": len(to_send),
            "skipped_requests": skipped,
            "numbers": total_numbers,
            "accepted_numbers": progress.accepted_numbers,
            "unknown_requests": [r.description for r in unknown],
        }
        if unknown:
            raise SmsOutcomeUnknownError(
                hook.vendor,
                f"{len(unknown)} request(s) from an earlier try ({', '.join(r.description for r in unknown)})",
                [m for r in unknown for m in r.mobiles],
                "an earlier try got no clear answer; check delivery reports, or set resend_unknown=True",
            )
        return summary

    def _send_concurrently(
        self,
        hook: SmsHook,
        to_send: Sequence[tuple[SendRequest, str]],
        submit_one: Callable[[SmsHook, SendRequest, str], SendReceipt],
        record_one: Callable[[SendRequest, str, SendReceipt], str],
    ) -> dict[int, str]:
        """Keep up to ``max_concurrency`` requests in flight, each thread on its own copy of the hook.

        A request is recorded by its thread the moment the vendor accepts it, after giving up its place
        in flight, so the next request need not wait for the store. The first failure stops new requests;
        those already sent finish and are recorded (accepted or unknown) before the failure is raised, so
        the store misses no request the vendor accepted.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        hook.config  # noqa: B018  (the connection is looked up here, once, not by each thread)
        limit = self.max_concurrency
        in_flight_slots = threading.BoundedSemaphore(limit)
        stopped = threading.Event()
        hooks = _PerThreadHooks(hook)

        def in_thread(request: SendRequest, key: str) -> str | None:
            with in_flight_slots:
                if stopped.is_set():
                    return None  # queued behind a failure: never sent
                receipt = submit_one(hooks.get(), request, key)
            return record_one(request, key, receipt)

        batch_by_index: dict[int, str] = {}
        failure: BaseException | None = None
        pending = iter(to_send)
        outstanding: dict[Future[str | None], SendRequest] = {}
        # twice the limit: while some threads record, as many others can have a request in flight
        workers = min(2 * limit, len(to_send))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sms-send-{self.task_id}")
        try:
            while True:
                while failure is None and len(outstanding) < workers:
                    item = next(pending, None)
                    if item is None:
                        break
                    outstanding[pool.submit(in_thread, *item)] = item[0]
                if not outstanding:
                    break
                done, _ = wait(outstanding, return_when=FIRST_COMPLETED)
                for future in done:
                    request = outstanding.pop(future)
                    error = future.exception()
                    if error is None:
                        batch_id = future.result()
                        if batch_id is not None:
                            batch_by_index[request.index] = batch_id
                    elif failure is None:
                        failure = error
                        stopped.set()
                        self.log.warning(
                            "%s: %s failed; sending no more requests, waiting for those already sent",
                            hook.vendor,
                            request.description,
                        )
                    else:
                        self.log.error("%s: %s also failed: %s", hook.vendor, request.description, error)
        except BaseException:
            stopped.set()  # this thread was interrupted (the task being stopped): nothing new goes out
            raise
        finally:
            # what was sent finishes and is recorded; a request still queued for a place is not sent
            pool.shutdown(wait=True, cancel_futures=True)
            hooks.close()
        if failure is not None:
            raise failure
        return batch_by_index


class _PerThreadHooks:
    """A copy of the hook for each sending thread: a ``requests.Session`` is not shared between threads."""

    def __init__(self, hook: SmsHook) -> None:
        self._hook = hook
        self._local = threading.local()
        self._copies: list[SmsHook] = []
        self._lock = threading.Lock()

    def get(self) -> SmsHook:
        copy: SmsHook | None = getattr(self._local, "hook", None)
        if copy is None:
            copy = self._local.hook = self._hook.for_thread()
            with self._lock:
                self._copies.append(copy)
        return copy

    def close(self) -> None:
        with self._lock:
            copies, self._copies = self._copies, []
        for copy in copies:
            copy.close()


class _Progress:
    """Counts accepted requests and reports progress; safe to call from the sending threads.

    A progress line goes to the task log for the first and the last request and at most every
    ``INTERVAL`` seconds in between (the others at debug level): a send of a thousand requests should
    not cost a thousand log lines, and the store keeps every batch id anyway.
    """

    INTERVAL: ClassVar[float] = 5.0

    def __init__(self, op: SmsSendOperator, vendor: str, requests: int, numbers: int, accepted_numbers: int) -> None:
        self._op = op
        self._vendor = vendor
        self._requests = requests
        self._numbers = numbers
        self.accepted_numbers = accepted_numbers
        self._next_info = 0.0
        self._lock = threading.Lock()

    def accepted(self, request: SendRequest, batch_id: str) -> None:
        import logging
        import time

        with self._lock:
            self.accepted_numbers += len(request.mobiles)
            done = self.accepted_numbers
            now = time.monotonic()
            loud = now >= self._next_info or done >= self._numbers
            if loud:
                self._next_info = now + self.INTERVAL
        self._op.log.log(
            logging.INFO if loud else logging.DEBUG,
            "%s: request %d/%d accepted as batch %s; %d/%d numbers accepted",
            self._vendor,
            request.index + 1,
            self._requests,
            batch_id,
            done,
            self._numbers,
        )
