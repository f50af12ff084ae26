"""Exactly-once sends: the stored plan, intents before the wire, concurrency, progress, and unknown outcomes.

``SmsSendOperator`` and ``SmsNotifier`` both send through ``PlannedSend``. What it promises and what
it costs is the README's "What exactly once means here"; in short:

* **A plan made once.** The first try of a task instance stores its plan (every request and its
  numbers) before anything goes out; every retry executes that plan. A request's key is its place in
  the plan, so a number that opts out between tries changes no other request's identity.
* **Intent before the wire.** A request is stored as ``sending`` before its bytes leave. The intent
  rides in the commit that records the previous acceptance (or stores the plan), so it costs no
  commit of its own, for every request in flight.
* **Unknown outcomes are resolved, not guessed.** A request that was in flight when the worker died,
  or whose reply was lost or unreadable, is ``unknown``. A retry resolves it from evidence: a vendor
  that refuses a repeated client reference is simply asked again; otherwise delivery reports for its
  numbers under a batch the store never recorded show the batch the lost reply named. Without
  evidence after a grace period the author's choice applies: fail (the default) or resend.
* **A canary is part of the plan.** With ``canary`` set, its numbers are the plan's first requests (how
  many is stored with the plan); nothing after them goes out until their delivery reports pass the
  threshold, and once anything after them has gone out a retry never judges (nor waits for) them again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Final

from airflow_provider_sms import metrics
from airflow_provider_sms.canary import CANARY_REQUESTS, CanaryJudge
from airflow_provider_sms.cost import estimate, parse_amount, render, total_parts
from airflow_provider_sms.errors import (
    SmsConcurrentSendError,
    SmsConfigurationError,
    SmsCostLimitError,
    SmsInsufficientBalanceError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsOutcomeUnknownError,
    SmsPlanChangedError,
)
from airflow_provider_sms.records import (
    ACCEPTED,
    MOVED,
    PLANNED,
    SENDING,
    SKIPPED,
    UNKNOWN,
    IntentClaim,
    PlanRequest,
    SendReceipt,
    StoredPlan,
)

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.base import SendOptions, SendRequest, SmsHook
    from airflow_provider_sms.quiet_hours import Admission, QuietHoursGate
    from airflow_provider_sms.store import SmsStore, TaskIdentity

log = logging.getLogger(__name__)

#: what to do with a request whose outcome stayed unknown through the grace period
FAIL: Final = "fail"
RESEND: Final = "resend"
UNKNOWN_POLICIES: Final = (FAIL, RESEND)
#: what a retry given other input than its stored plan does
NEW_PLAN: Final = "new_plan"
PLAN_CHANGE_POLICIES: Final = (FAIL, NEW_PLAN)

DEFAULT_UNKNOWN_GRACE_PERIOD: Final = 600.0
#: the key, in a plan's stored inputs, of the plan that handed its requests to it (``failover``)
HANDED_OVER_FROM: Final = "handed_over_from"
DEFAULT_CANARY_MIN_DELIVERED: Final = 0.9
DEFAULT_CANARY_TIMEOUT: Final = 3600.0
#: numbers per opt-out lookup: bounds the lookup's own memory on very large lists
OPT_OUT_LOOKUP_CHUNK: Final = 50_000
_DIGEST_SLICE = 10_000  # numbers hashed per update: no joined copy of a million-number list


@dataclass(frozen=True)
class SendSpec:
    """What the author asked to send: numbers as given, text or template, vendor options."""

    mobiles: str | Sequence[str]
    content: str | None = None
    template_id: str | None = None
    params: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the most SMS parts one message may cost (None: the connection's ``max_parts``, default 10)
    max_parts: int | None = None


@dataclass(frozen=True)
class SendPolicy:
    """How a send goes about what it cannot know for sure: the sender's settings (``SmsSendOperator``'s,
    ``SmsNotifier``'s), checked once where they are given (at DAG parse time for the operator) and handed
    whole to ``PlannedSend``.

    :param max_concurrency: requests in flight at once, each on its own copy of the hook.
    :param on_unknown: ``"fail"`` or ``"resend"`` once the grace period passed without evidence.
    :param unknown_grace_period: seconds after an unknown request went out during which a retry waits
        for evidence (delivery reports) before ``on_unknown`` applies.
    :param on_plan_change: ``"fail"`` when a retry is given other input than its stored plan, or
        ``"new_plan"`` to plan that input anew (requests of the old plan not yet sent are cancelled).
    :param skip_opted_out: leave out numbers in the store's opt-out table.
    :param dry_run: plan everything (numbers, opt-outs, requests, parts, cost) and return the summary, with
        no request to the vendor and no plan stored.
    :param check_balance: read the account's balance before anything goes out, and fail naming both
        figures when the send (what is left of it, on a retry) costs more.
    :param max_cost: fail before anything goes out when the send's estimated cost (parts × the
        connection's ``price_per_part``) is above it.
    :param canary: send this many numbers first (the first ones, after opt-outs), wait for their delivery
        reports, and send the rest only when enough were delivered. None: no canary.
    :param canary_min_delivered: the share of the canary's numbers that must be delivered (0 < share ≤ 1).
    :param canary_timeout: seconds after the canary's last request was accepted to wait for its reports;
        numbers still pending then count as not delivered.
    """

    max_concurrency: int = 1
    on_unknown: str = FAIL
    unknown_grace_period: float = DEFAULT_UNKNOWN_GRACE_PERIOD
    on_plan_change: str = FAIL
    skip_opted_out: bool = True
    dry_run: bool = False
    check_balance: bool = False
    max_cost: Decimal | None = None
    canary: int | None = None
    canary_min_delivered: float = DEFAULT_CANARY_MIN_DELIVERED
    canary_timeout: float = DEFAULT_CANARY_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_cost is not None:
            object.__setattr__(self, "max_cost", parse_amount(self.max_cost, "max_cost"))
        limit = self.max_concurrency
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, got {limit!r}")
        if self.on_unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"on_unknown must be one of {list(UNKNOWN_POLICIES)}, got {self.on_unknown!r}")
        if self.on_plan_change not in PLAN_CHANGE_POLICIES:
            raise ValueError(f"on_plan_change must be one of {list(PLAN_CHANGE_POLICIES)}, got {self.on_plan_change!r}")
        object.__setattr__(self, "unknown_grace_period", max(0.0, float(self.unknown_grace_period)))
        self._check_canary()

    def _check_canary(self) -> None:
        canary, share, timeout = self.canary, self.canary_min_delivered, self.canary_timeout
        if canary is not None and (isinstance(canary, bool) or not isinstance(canary, int) or canary < 1):
            raise ValueError(
                f"canary must be a whole number of at least 1 (numbers sent first) or None, got {canary!r}"
            )
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(
                f"canary_min_delivered must be a share above 0 and at most 1 (0.9: 90% delivered), got {share!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            raise ValueError(f"canary_timeout must be a positive number of seconds, got {timeout!r}")
        object.__setattr__(self, "canary_min_delivered", float(share))
        object.__setattr__(self, "canary_timeout", float(timeout))


def task_key(namespace: str, conn_id: str, task: TaskIdentity) -> str:
    """One key per task instance and connection: every try of it finds the same stored plan.

    Without a task instance (a bare ``execute`` call) every call is its own plan.
    """
    if not (task.dag_id or task.run_id or task.task_id):
        return "adhoc-" + uuid.uuid4().hex
    parts = (namespace, conn_id, task.dag_id, task.run_id, task.task_id, str(task.map_index))
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def request_key(plan_key: str, index: int) -> str:
    """A request's key is its place in its plan: nothing a later try learns can change it."""
    return hashlib.sha256(f"{plan_key}\x00{index}".encode()).hexdigest()


#: what a plan stores with its inputs that it learnt while planning: not compared with a retry's inputs
_PLANNED_FACTS: Final = (CANARY_REQUESTS,)


def plan_inputs(
    valid: Sequence[str], spec: SendSpec, options: SendOptions, *, canary: int | None = None
) -> dict[str, Any]:
    """Digests of everything a plan is made from, so a retry can say exactly what differs.

    ``canary`` is part of it only when set, so plans without one compare as they always did.
    """

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    numbers = hashlib.sha256()
    for start in range(0, len(valid), _DIGEST_SLICE):
        numbers.update(",".join(valid[start : start + _DIGEST_SLICE]).encode("ascii", "replace"))
        numbers.update(b",")
    inputs: dict[str, Any] = {
        "numbers": len(valid),
        "numbers_digest": numbers.hexdigest()[:32],
        "content_chars": len(spec.content or ""),
        "content_digest": digest(spec.content or ""),
        "template_id": spec.template_id or "",
        "params_digest": digest(json.dumps(spec.params, sort_keys=True, ensure_ascii=False, default=str)),
        "options_digest": digest(repr(options)),
    }
    if canary is not None:
        inputs["canary"] = canary
    return inputs


def planned_from(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored plan's inputs without what planning added (which requests are the canary): what a retry's
    inputs are compared with."""
    return {k: v for k, v in stored.items() if k not in _PLANNED_FACTS}


def plan_changes(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """In words, what differs between the inputs of a stored plan and this try's."""
    changes = []
    if stored.get("numbers_digest") != now["numbers_digest"]:
        changes.append(f"the number list ({stored.get('numbers')} numbers planned, {now['numbers']} now)")
    if stored.get("template_id", "") != now["template_id"]:
        changes.append(
            f"the template ({stored.get('template_id') or 'none'} planned, {now['template_id'] or 'none'} now)"
        )
    if stored.get("content_digest") != now["content_digest"]:
        changes.append(f"the text ({stored.get('content_chars')} characters planned, {now['content_chars']} now)")
    if stored.get("params_digest") != now["params_digest"]:
        changes.append("the template parameters")
    if stored.get("options_digest") != now["options_digest"]:
        changes.append("the send options (signature, ext_no, scheduled_at, kind or sender_id)")
    if stored.get("canary") != now.get("canary"):
        changes.append(f"the canary ({_canary_words(stored)} planned, {_canary_words(now)} now)")
    return changes


def _canary_words(inputs: Mapping[str, Any]) -> str:
    canary = inputs.get("canary")
    return f"{canary} numbers" if canary else "none"


@dataclass
class SendTally:
    """What one try did, for the task log and the XCom summary."""

    requests: int = 0
    numbers: int = 0
    sent: int = 0
    skipped: int = 0
    accepted_numbers: int = 0
    opted_out: int = 0
    unknown: int = 0
    resolved: int = 0
    resent: int = 0

    @classmethod
    def carried_over(cls, carried: Mapping[str, int]) -> SendTally:
        """A tally that goes on from the counters of an earlier part of the same try."""
        return cls(
            sent=int(carried.get("sent", 0)),
            unknown=int(carried.get("unknown", 0)),
            resolved=int(carried.get("resolved", 0)),
            resent=int(carried.get("resent", 0)),
        )

    def carry(self) -> dict[str, int]:
        """The counters a deferred send hands to its next part."""
        return {"sent": self.sent, "unknown": self.unknown, "resolved": self.resolved, "resent": self.resent}


@dataclass
class WireCounts:
    """Numbers by what became of their requests in one part of a try, for the ``sms.numbers.*`` counters.

    Unlike ``SendTally`` nothing is carried over a deferral, so each part counts only what it did.
    """

    sent: int = 0
    accepted: int = 0
    unknown: int = 0
    refused: int = 0

    def emit(self, vendor: str, conn_id: str) -> None:
        """One counter call per kind that moved (never per request or number)."""
        tag_set = metrics.tags(vendor, conn_id)
        metrics.incr(metrics.NUMBERS_SENT, self.sent, tag_set)
        metrics.incr(metrics.NUMBERS_ACCEPTED, self.accepted, tag_set)
        metrics.incr(metrics.NUMBERS_UNKNOWN, self.unknown, tag_set)
        metrics.incr(metrics.NUMBERS_REFUSED, self.refused, tag_set)


@dataclass
class SendResult:
    """The outcome of ``PlannedSend.run``: a summary, or a time to look again for evidence."""

    summary: dict[str, Any]
    #: unknown outcomes still wait for evidence: call ``run`` again at this time (deferrable sends),
    #: handing it ``carried``, the counters of this part
    check_again_at: datetime | None = None
    carried: dict[str, Any] = field(default_factory=dict)


class PlannedSend:
    """Executes a task instance's stored send plan exactly once, across tries, crashes and retries.

    :param hook: the vendor hook; ``store``: the message store holding plans and requests.
    :param task: the task instance; every try of it executes one plan.
    :param namespace: keeps plans of different senders (operator, notifier) apart.
    :param policy: concurrency, unknown outcomes, plan changes and opt-outs (``SendPolicy``; default: its defaults).
    :param gate: quiet hours (``quiet_hours.QuietHoursGate``): which requests may go out now; the others wait.
    """

    def __init__(
        self,
        hook: SmsHook,
        store: SmsStore,
        task: TaskIdentity,
        *,
        namespace: str = "send",
        policy: SendPolicy | None = None,
        logger: Any = None,
        gate: QuietHoursGate | None = None,
    ) -> None:
        hook.pace_with(store)  # the account's request rate, kept with every other task on this store
        self.hook = hook
        self.store = store
        self.task = task
        self.namespace = namespace
        self.policy = policy or SendPolicy()
        self.log = logger or log
        self.gate = gate
        self._holding: QuietHoursGate | None = None  # the gate, unless the vendor sends at scheduled_at
        self._evidence_seq = 0  # delivery reports up to this seq were already looked at for evidence
        self._parts: int | None = None  # SMS parts per number of a text send (templates: the vendor knows)
        #: after ``run`` raised at a failure mid-send: the summary of what it did, and how many requests of
        #: it were left unknown (``failover`` reads both)
        self.stopped_summary: dict[str, Any] | None = None
        self.unknown_left = 0
        self.canary = CanaryJudge(
            hook,
            store,
            min_delivered=self.policy.canary_min_delivered,
            timeout=self.policy.canary_timeout,
            logger=self.log,
        )

    @property
    def conn_id(self) -> str:
        return self.hook.sms_conn_id

    # ------------------------------------------------------------------ the whole send

    def run(self, spec: SendSpec, *, wait: bool = True, carried: Mapping[str, int] | None = None) -> SendResult:
        """Plan (first try) or load the plan (retries), send what is not yet accepted, resolve unknowns.

        ``wait=False``: when unknown outcomes still wait for evidence, return ``check_again_at`` instead of
        sleeping (a deferrable operator hands its worker slot back meanwhile). ``carried``: the counters
        of earlier parts of the same try (after a deferral).
        """
        from airflow_provider_sms.numbers import normalize_mobiles

        hook = self.hook
        options = self.prepare(spec)
        valid, invalid = normalize_mobiles(spec.mobiles, international=hook.international)
        if invalid:
            raise SmsInvalidNumbersError(hook.vendor, invalid, len(valid) + len(invalid))
        if not valid:
            raise SmsInvalidRequestError(f"{hook.vendor}: no mobile numbers to send to")
        if self.policy.dry_run:
            hook.check_schedule(options)
            return SendResult(self._dry_run(valid, spec, options))
        inputs = plan_inputs(valid, spec, options, canary=self.policy.canary)
        # a scheduled send is delivered at its time, whenever it is handed over: its time is checked instead
        self._holding = self.gate if options.scheduled_at is None else None
        tally = SendTally.carried_over(carried or {})
        key = task_key(self.namespace, self.conn_id, self.task)
        plan = self.store.find_plan(key)
        if self.policy.canary is not None:
            self.canary.require_reports()
        if plan is not None and planned_from(plan.inputs) != inputs:
            changes = plan_changes(plan.inputs, inputs)
            if self.policy.on_plan_change == FAIL:
                raise SmsPlanChangedError(
                    f"{hook.vendor}: this try differs from the send plan its first try stored: {'; '.join(changes)}. "
                    "Nothing was sent in this try; requests of the plan already accepted stay sent. "
                    "Pass on_plan_change='new_plan' to send the new input as a new plan."
                )
            self.log.warning(
                "%s: this try differs from its stored plan (%s); starting plan %d as asked (on_plan_change=%r)",
                hook.vendor,
                "; ".join(changes),
                plan.generation + 1,
                self.policy.on_plan_change,
            )
        intents: frozenset[str] = frozenset()
        if plan is None or planned_from(plan.inputs) != inputs:
            hook.check_schedule(options)
            if self.gate is not None and options.scheduled_at is not None:
                self.gate.check_schedule(valid, options.scheduled_at)
            plan, intents, requests = self._new_plan(key, plan, valid, inputs, spec, options)
        else:
            plan = self._resume(plan)
            requests = self._requests(plan, spec, options)
            if carried is None:  # not after a deferral: that part of the try was guarded already
                left = sum(len(r.mobiles) for r in plan.requests if r.state == PLANNED)
                self._guard(plan.numbers - plan.opted_out, left)
        del valid
        wire = WireCounts()
        try:
            return self._execute(plan, requests, intents, tally, wire, wait=wait)
        finally:
            wire.emit(hook.vendor, self.conn_id)

    def prepare(self, spec: SendSpec) -> SendOptions:
        """Check the text, template and options as this connection's vendor takes them; nothing is sent."""
        from airflow_provider_sms.numbers import message_parts

        hook = self.hook
        hook.price_per_part  # noqa: B018  (a malformed extra fails here, not in the summary after sending)
        # the schedule is checked for a new plan only: a stored plan's retry may come after its time
        options = hook.prepare_send(
            spec.content, template_id=spec.template_id, check_schedule=False, max_parts=spec.max_parts, **spec.options
        )
        self._parts = (
            None if spec.template_id else message_parts(hook.signed_content(spec.content or "", options.signature))
        )
        return options

    def follow(
        self, spec: SendSpec, source_plan_key: str, *, wait: bool = True, carried: Mapping[str, int] | None = None
    ) -> SendResult | None:
        """Execute the plan an earlier connection handed its unaccepted requests to (``failover``), exactly
        as a retry executes a stored plan; None when none was handed to this connection.

        A plan handed over by an earlier plan of the source (one a new plan replaced) is not followed:
        its requests not yet sent are cancelled.
        """
        options = self.prepare(spec)
        plan = self.store.find_plan(task_key(self.namespace, self.conn_id, self.task))
        if plan is None:
            return None
        if plan.inputs.get(HANDED_OVER_FROM) != source_plan_key:
            cancelled = self.store.cancel_planned(plan.plan_key)
            self.log.warning(
                "%s: the plan handed to %s belongs to an earlier plan of the connection before it; "
                "%d requests of it not yet sent are cancelled",
                self.hook.vendor,
                self.conn_id,
                cancelled,
            )
            return None
        self._holding = self.gate if options.scheduled_at is None else None
        tally = SendTally.carried_over(carried or {})
        plan = self._resume(plan)
        requests = self._requests(plan, spec, options)
        if carried is None:
            left = sum(len(r.mobiles) for r in plan.requests if r.state == PLANNED)
            self._guard(plan.numbers - plan.opted_out, left)
        wire = WireCounts()
        try:
            return self._execute(plan, requests, frozenset(), tally, wire, wait=wait)
        finally:
            wire.emit(self.hook.vendor, self.conn_id)

    def _new_plan(
        self,
        key: str,
        previous: StoredPlan | None,
        valid: list[str],
        inputs: Mapping[str, Any],
        spec: SendSpec,
        options: SendOptions,
    ) -> tuple[StoredPlan, frozenset[str], dict[int, SendRequest]]:
        """Cut the numbers into requests, check them, and store them with the first requests' intents
        in one commit: a request that cannot be sent fails here, before any plan exists."""
        hook = self.hook
        opted_out = 0
        if self.policy.skip_opted_out:
            opted = self.opted_out_numbers(valid)
            if opted:
                self.log.info("%s: leaving out %d opted-out numbers", hook.vendor, len(opted))
                valid = [m for m in valid if m not in opted]
                opted_out = len(opted)
        generation = 1 if previous is None else previous.generation + 1
        plan_key = f"{key}-{generation}"
        chunks, canary_requests = self.cut(valid, self.policy.canary)
        canary = sum(len(c) for c in chunks[:canary_requests])
        stored = tuple(
            PlanRequest(key=request_key(plan_key, index), index=index, state=PLANNED, mobiles=numbers)
            for index, numbers in enumerate(chunks)
        )
        facts = {CANARY_REQUESTS: canary_requests} if canary_requests else {}
        plan = StoredPlan(
            task_key=key,
            plan_key=plan_key,
            generation=generation,
            inputs={**inputs, **facts},
            numbers=int(inputs["numbers"]),
            opted_out=opted_out,
            requests=stored,
        )
        requests = self._requests(plan, spec, options)
        self._guard(len(valid), len(valid))  # before the plan (and its first intents) is stored
        # never the intent of a request quiet hours hold, nor of one after the canary
        first = self._admit(stored[:canary_requests] if canary_requests else stored).now
        intents = frozenset(r.key for r in first[: self.policy.max_concurrency])
        saved = self.store.save_plan(
            plan,
            vendor=hook.vendor,
            conn_id=self.conn_id,
            task=self.task,
            intents=intents,
            replaces=previous.plan_key if previous is not None else None,
        )
        self.log.info(
            "%s: planned %d numbers in %d requests (plan %d of this task instance)%s",
            hook.vendor,
            saved.numbers - opted_out,
            len(stored),
            generation,
            f"; the canary is the first {canary} numbers, in {_count(canary_requests, 'request')}" if canary else "",
        )
        return saved, intents, requests

    def cut(self, valid: Sequence[str], canary: int | None) -> tuple[list[tuple[str, ...]], int]:
        """The numbers (opted-out ones left out) cut into requests as the vendor's caps and quiet hours cut
        them, the first ``canary`` numbers first and on their own; returns the requests and how many are the
        canary's (``failover`` cuts what it hands over here too)."""
        chunk = self.gate.chunk if self.gate is not None else self.hook.chunk
        if canary is not None and canary >= len(valid):
            self.log.info(
                "%s: the canary (%d numbers) is not smaller than the send (%d numbers): sending it all at once",
                self.hook.vendor,
                canary,
                len(valid),
            )
            canary = None
        head = chunk(valid[:canary]) if canary else []
        return [*head, *chunk(valid[canary:])], len(head)

    def _requests(self, plan: StoredPlan, spec: SendSpec, options: SendOptions) -> dict[int, SendRequest]:
        """The hook's requests for a stored plan's rows, each carrying its client reference."""
        hook = self.hook
        return {
            r.index: hook.stored_request(
                r.index,
                r.mobiles,
                spec.content,
                options,
                template_id=spec.template_id,
                params=spec.params,
                client_ref=hook.client_ref_for(r.key),
                may_repeat=r.state in (SENDING, UNKNOWN),  # it may have gone out in an earlier try
            )
            for r in plan.requests
            if r.mobiles
        }

    def _resume(self, plan: StoredPlan) -> StoredPlan:
        """A retry: leave newly opted-out numbers out of requests not yet sent; nothing else changes."""
        changes: dict[str, tuple[str, ...]] = {}
        newly_opted = 0
        planned = [r for r in plan.requests if r.state == PLANNED]
        if self.policy.skip_opted_out and planned:
            opted = self.opted_out_numbers([m for r in planned for m in r.mobiles])
            for r in planned:
                kept = tuple(m for m in r.mobiles if m not in opted)
                if len(kept) != len(r.mobiles):
                    changes[r.key] = kept
                    newly_opted += len(r.mobiles) - len(kept)
            if newly_opted:
                self.log.info(
                    "%s: %d numbers opted out since the plan was made; left out of requests not yet sent",
                    self.hook.vendor,
                    newly_opted,
                )
        if not changes:
            return plan
        rows = tuple(
            dataclasses.replace(r, mobiles=changes[r.key], state=PLANNED if changes[r.key] else SKIPPED)
            if r.key in changes
            else r
            for r in plan.requests
        )
        self.store.update_plan(plan, [r for r in rows if r.key in changes], opted_out=newly_opted)
        return dataclasses.replace(plan, requests=rows, opted_out=plan.opted_out + newly_opted)

    # ------------------------------------------------------------------ executing a plan

    def _execute(
        self,
        plan: StoredPlan,
        requests: Mapping[int, SendRequest],
        intents: frozenset[str],
        tally: SendTally,
        wire: WireCounts,
        *,
        wait: bool,
    ) -> SendResult:
        """Send what the plan has not had accepted; resolve what an earlier try left unknown."""
        hook = self.hook
        batch_by_index = self._count_accepted(plan, tally)
        unknown = [r for r in plan.requests if r.state in (SENDING, UNKNOWN)]
        if unknown and not tally.unknown:
            tally.unknown = len(unknown)
            self.log.warning(
                "%s: %d requests went out in an earlier try with no recorded answer (%s); resolving them",
                hook.vendor,
                len(unknown),
                ", ".join(requests[r.index].description for r in unknown if r.index in requests),
            )
        queue: list[PlanRequest] = []
        if unknown and hook.idempotent_client_ref:
            queue.extend(unknown)  # the vendor refuses a repeat of its client reference: asking again is safe
            unknown = []
        elif unknown:
            self._evidence_seq = plan.report_seq
            unknown = self._resolve(unknown, batch_by_index, tally, wire)
        canary = self.canary.to_judge(plan, batch_by_index)
        in_canary = {r.index for r in canary}
        # while the canary waits for its verdict nothing after it goes out
        queue.extend(
            r
            for r in plan.requests
            if r.state == PLANNED and r.index in requests and (not canary or r.index in in_canary)
        )
        sender = _Sender(self, plan, requests, batch_by_index, tally, wire)
        try:
            admission = self._send_admitted(sender, queue, intents)
        except Exception as exc:
            self._stopped(exc, plan, batch_by_index, tally, sender, unknown)
            raise
        while unknown:
            deadline = self._deadline(unknown)
            now = datetime.now(timezone.utc)
            if now >= deadline:
                break
            next_check = min(deadline, now + timedelta(seconds=self._check_interval()))
            if not wait:
                summary = self._summary(plan, batch_by_index, tally)
                return SendResult(summary, check_again_at=next_check, carried=tally.carry())
            time.sleep(max(0.0, (next_check - datetime.now(timezone.utc)).total_seconds()))
            unknown = self._resolve(unknown, batch_by_index, tally, wire)
        if unknown and self.policy.on_unknown == RESEND:
            self.log.warning(
                "%s: no evidence for %d unknown requests after %.0fs; resending them as asked (on_unknown='resend')",
                hook.vendor,
                len(unknown),
                self.policy.unknown_grace_period,
            )
            # judged afresh: the grace period has passed since the first part of this try
            admission = admission.joined(self._send_admitted(sender, unknown, frozenset(), resend=True))
            unknown = []
        summary = self._summary(plan, batch_by_index, tally)
        if unknown:
            described = [requests[r.index].description if r.index in requests else f"#{r.index + 1}" for r in unknown]
            summary["unresolved_requests"] = described
            self.log.error("%s: send summary %s", hook.vendor, summary)
            raise SmsOutcomeUnknownError(
                hook.vendor,
                f"{len(unknown)} request(s) of an earlier try ({', '.join(described)})",
                [m for r in unknown for m in r.mobiles],
                f"no evidence of acceptance within {self.policy.unknown_grace_period:.0f}s: "
                f"{self._no_evidence_reason()}; "
                "set on_unknown='resend' to resend them (a double send if the vendor had accepted them)",
            )
        if admission.held:
            return self._held(admission, summary, tally, wait=wait)
        if not canary:
            return SendResult(summary)
        return self._after_canary(plan, canary, requests, sender, wait=wait)

    def _count_accepted(self, plan: StoredPlan, tally: SendTally) -> dict[int, str]:
        """The tally's plan figures and what was accepted before; returns the batch of each accepted request."""
        tally.requests = len(plan.requests)
        tally.numbers = plan.numbers - plan.opted_out
        tally.opted_out = plan.opted_out
        batch_by_index = {r.index: r.batch_id for r in plan.requests if r.state == ACCEPTED and r.batch_id}
        done = [r for r in plan.requests if r.state == ACCEPTED]
        tally.accepted_numbers = sum(len(r.mobiles) for r in done)
        # accepted before this try began: not what an earlier part of it (before a deferral) sent or resolved
        tally.skipped = max(0, len(done) - tally.sent - tally.resolved)
        if tally.skipped:
            self.log.info(
                "%s: %d requests were already accepted in an earlier try and were not resent",
                self.hook.vendor,
                tally.skipped,
            )
        return batch_by_index

    def _after_canary(
        self,
        plan: StoredPlan,
        canary: Sequence[PlanRequest],
        requests: Mapping[int, SendRequest],
        sender: _Sender,
        *,
        wait: bool,
    ) -> SendResult:
        """The canary is accepted: wait for its verdict, then send the rest, or fail with nothing more sent."""
        hook, tally, batch_by_index = self.hook, sender.tally, sender.batch_by_index
        verdict = self.canary.await_verdict(canary, batch_by_index, wait=wait)
        summary = self._summary(plan, batch_by_index, tally)
        if verdict.passed is None:  # a deferrable send: the triggerer waits for the next check
            return SendResult(summary, check_again_at=verdict.check_again_at, carried=tally.carry())
        in_canary = {r.index for r in canary}
        rest = [r for r in plan.requests if r.state == PLANNED and r.index in requests and r.index not in in_canary]
        if not verdict.passed:
            self.canary.fail(verdict, rest, summary)
        self.log.info(
            "%s: the canary passed (%s); sending the rest: %d numbers in %s",
            hook.vendor,
            verdict.describe(),
            sum(len(r.mobiles) for r in rest),
            _count(len(rest), "request"),
        )
        try:
            admission = self._send_admitted(sender, rest, frozenset())
        except Exception as exc:
            self._stopped(exc, plan, batch_by_index, tally, sender, [])
            raise
        summary = self._summary(plan, batch_by_index, tally)
        if admission.held:
            return self._held(admission, summary, tally, wait=wait)
        return SendResult(summary)

    def _admit(self, rows: Sequence[PlanRequest], *, fresh: bool = False) -> Admission:
        """Quiet hours: the requests that may go out now and those held, and until when."""
        from airflow_provider_sms.quiet_hours import Admission

        if self._holding is None or not rows:
            return Admission(list(rows), [], None)
        return self._holding.admit(rows, fresh=fresh)

    def _send_admitted(
        self, sender: _Sender, rows: Sequence[PlanRequest], intents: frozenset[str], *, resend: bool = False
    ) -> Admission:
        """Send the rows quiet hours let go now; the admission says what waits. ``resend``: unknown rows resent
        as the author asked, judged afresh (the grace period has passed since the first part of this try)."""
        if resend:
            sender.resending = frozenset(r.key for r in rows)
        admission = self._admit(rows, fresh=resend)
        if admission.now:
            sender.send(admission.now, intents_stored=intents)
        if not sender.held:
            return admission
        return self._held_late(admission, sender)

    def _held_late(self, admission: Admission, sender: _Sender) -> Admission:
        """The requests quiet hours stopped after this part began join those held from its start."""
        from airflow_provider_sms.quiet_hours import Admission

        assert self._holding is not None
        late, sender.held = sender.held, []
        self.log.warning(
            "%s: quiet hours %s began while the send went out (slower than estimated); %d requests held",
            self.hook.vendor,
            self._holding.window,
            len(late),
        )
        again = self._holding.admit(late, fresh=True)
        late_keys = {r.key for r in late}
        sent = [r for r in admission.now if r.key not in late_keys]
        went = Admission(sent, admission.held, admission.opens_at, admission.window, admission.held_zones)
        # a request the gate would let go again right away waits for the next part all the same
        opens_at = again.opens_at or self._holding.at
        zones = again.held_zones or [self._holding.request_zones(r.mobiles) for r in again.now[:1]]
        return went.joined(Admission([], late, opens_at, again.window, zones))

    def _held(self, admission: Admission, summary: dict[str, Any], tally: SendTally, *, wait: bool) -> SendResult:
        """Requests quiet hours hold: a deferrable send comes back when the first may go; any other fails now."""
        if wait:
            raise admission.error(self.hook.vendor)
        return SendResult(summary, check_again_at=admission.opens_at, carried=tally.carry())

    def _resolve(
        self, unknown: list[PlanRequest], batch_by_index: dict[int, str], tally: SendTally, wire: WireCounts
    ) -> list[PlanRequest]:
        """Look for evidence of the unknown requests: pull delivery reports into the store, then match them."""
        from airflow_provider_sms.hooks.base import QUEUE, REPORTS
        from airflow_provider_sms.pulling import pull_reports

        hook = self.hook
        pull = hook.supports(REPORTS) and hook.report_mode == QUEUE
        remaining = list(unknown)
        while remaining:
            # a page at a time, looking after each: a vendor that allows one pull per 5 s (cloud_mas) need
            # not be drained of every report before the evidence is found
            fetched = 0
            if pull:
                try:
                    fetched = pull_reports(hook, self.store, max_pulls=1).fetched
                except Exception as exc:  # evidence may still be in the store (pushed reports): look there
                    self.log.warning("%s: pulling delivery reports for evidence failed: %s", hook.vendor, exc)
            remaining = self._match_evidence(remaining, batch_by_index, tally, wire)
            if not fetched:
                break
        return remaining

    def _match_evidence(
        self, unknown: list[PlanRequest], batch_by_index: dict[int, str], tally: SendTally, wire: WireCounts
    ) -> list[PlanRequest]:
        """Record as accepted the unknown requests that stored reports prove; the rest stay unknown."""
        hook = self.hook
        unknown = self._accepted_elsewhere(unknown, batch_by_index, tally, wire)
        far_past = datetime.fromtimestamp(0, timezone.utc)
        found, self._evidence_seq = self.store.acceptance_evidence(
            hook.vendor, self._evidence_seq, {r.key: (r.sending_at or far_past, r.mobiles) for r in unknown}
        )
        remaining = []
        for r in unknown:
            batch_id = found.get(r.key)
            if batch_id is None:
                remaining.append(r)
                continue
            receipt = SendReceipt(hook.vendor, batch_id, r.mobiles, r.sending_at or datetime.now(timezone.utc))
            self.store.record_accepted(r.key, receipt, conn_id=self.conn_id, task=self.task)
            batch_by_index[r.index] = batch_id
            tally.resolved += 1
            tally.accepted_numbers += len(r.mobiles)
            wire.accepted += len(r.mobiles)
            self.log.info(
                "%s: request #%d (%d numbers) resolved from delivery reports: the vendor accepted it as batch %s",
                hook.vendor,
                r.index + 1,
                len(r.mobiles),
                batch_id,
            )
        return remaining

    def _accepted_elsewhere(
        self, unknown: list[PlanRequest], batch_by_index: dict[int, str], tally: SendTally, wire: WireCounts
    ) -> list[PlanRequest]:
        """Unknown requests that another try, still running beside this one, has since had accepted: the
        store says so, no report needed."""
        if not unknown:
            return unknown
        records = self.store.accepted_requests([r.key for r in unknown])
        remaining = []
        for r in unknown:
            record = records.get(r.key)
            if record is None or record.state != ACCEPTED or not record.batch_id:
                remaining.append(r)
                continue
            batch_by_index[r.index] = record.batch_id
            tally.resolved += 1
            tally.accepted_numbers += len(r.mobiles)
            wire.accepted += len(r.mobiles)
            self.log.info(
                "%s: request #%d was recorded as accepted (batch %s) by another try of this task instance",
                self.hook.vendor,
                r.index + 1,
                record.batch_id,
            )
        return remaining

    def _deadline(self, unknown: Sequence[PlanRequest]) -> datetime:
        now = datetime.now(timezone.utc)
        latest = max((r.sending_at or now - timedelta(seconds=self.policy.unknown_grace_period)) for r in unknown)
        return latest + timedelta(seconds=self.policy.unknown_grace_period)

    def _check_interval(self) -> float:
        return min(30.0, max(0.2, self.policy.unknown_grace_period / 20))

    def _no_evidence_reason(self) -> str:
        from airflow_provider_sms.hooks.base import QUERY, REPORTS

        hook = self.hook
        if not hook.supports(REPORTS):
            return f"{hook.vendor} has no delivery reports to show it"
        if hook.report_mode == QUERY:
            return (
                f"{hook.vendor} reports can be asked for only by the batch id the lost reply carried; pushed "
                "reports (the push receiver) are the only evidence, and none arrived"
            )
        return "no delivery report for its numbers under a batch unknown to the store arrived"

    def _summary(self, plan: StoredPlan, batch_by_index: Mapping[int, str], tally: SendTally) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "vendor": self.hook.vendor,
            "batch_ids": [batch_by_index[i] for i in sorted(batch_by_index)],
            "requests": tally.requests,
            "sent_requests": tally.sent,
            "skipped_requests": tally.skipped,
            "numbers": tally.numbers,
            "accepted_numbers": tally.accepted_numbers,
            "opted_out": tally.opted_out,
            "unknown_requests": tally.unknown,
            "resolved_requests": tally.resolved,
            "resent_requests": tally.resent,
            "plan": plan.generation,
            "parts": self._parts,
            **self._cost_fields(tally.numbers),
            **moved_numbers(plan),
            **({"canary": self.canary.verdict.to_dict()} if self.canary.verdict is not None else {}),
        }

    # ------------------------------------------------------------------ dry run, cost and balance

    def _dry_run(self, valid: list[str], spec: SendSpec, options: SendOptions) -> dict[str, Any]:
        """Everything a send would plan (opt-outs, requests, each checked as the vendor takes it, parts,
        cost), with no request to the vendor and nothing stored: a later real run plans afresh."""
        hook = self.hook
        opted: set[str] = self.opted_out_numbers(valid) if self.policy.skip_opted_out else set()
        kept = [m for m in valid if m not in opted] if opted else valid
        if self.gate is not None and options.scheduled_at is not None:
            self.gate.check_schedule(kept, options.scheduled_at)
        chunks, canary_requests = self.cut(kept, self.policy.canary)  # as the plan would be
        for index, chunk in enumerate(chunks):  # the checks a planned request gets (lengths, caps)
            hook.stored_request(index, chunk, spec.content, options, template_id=spec.template_id, params=spec.params)
        self._guard(len(kept), 0)
        if self.policy.check_balance:
            self.log.info("%s: dry run: the balance is not read (no request goes to the vendor)", hook.vendor)
        summary = {
            "conn_id": self.conn_id,
            "vendor": hook.vendor,
            "dry_run": True,
            "requests": len(chunks),
            "numbers": len(kept),
            "opted_out": len(opted),
            "parts": self._parts,
            **self._cost_fields(len(kept)),
        }
        if canary_requests:
            summary["canary"] = {"numbers": sum(len(c) for c in chunks[:canary_requests]), "requests": canary_requests}
        self.log.info("%s: dry run, nothing sent: %s", hook.vendor, summary)
        return summary

    def _cost_fields(self, numbers: int) -> dict[str, Any]:
        """``total_parts``, ``estimated_cost`` (exact, as text; None without ``price_per_part``) and ``currency``.

        A template's text is the vendor's: its parts are unknown, and so are its total and cost.
        """
        hook = self.hook
        parts = None if self._parts is None else total_parts(numbers, self._parts)
        price = hook.price_per_part
        cost = None if parts is None or price is None else render(estimate(parts, price))
        return {"total_parts": parts, "estimated_cost": cost, "currency": hook.currency or None}

    def _guard(self, numbers: int, left: int) -> None:
        """Refuse before anything goes out: the whole send's cost above ``max_cost``; with ``check_balance``,
        the ``left`` numbers still to send costing more than the balance."""
        hook, policy = self.hook, self.policy
        # a template's text is the vendor's: one part per number, the least it can cost
        per_number = self._parts or 1
        price = hook.price_per_part
        unit = f" {hook.currency}" if hook.currency else ""
        if policy.max_cost is not None:
            if price is None:
                raise SmsConfigurationError(
                    f"{hook.vendor}: max_cost needs the cost of a part: set the extra 'price_per_part' of "
                    f"connection {self.conn_id!r}; nothing was sent in this try"
                )
            cost = estimate(total_parts(numbers, per_number), price)
            if cost > policy.max_cost:
                raise SmsCostLimitError(
                    f"{hook.vendor}: the send would cost {render(cost)}{unit} ({numbers} numbers × "
                    f"{_count(per_number, 'part')} × {render(price)}), above max_cost={render(policy.max_cost)}{unit}; "
                    "nothing was sent"
                )
        if not policy.check_balance or policy.dry_run or left <= 0:
            return
        from airflow_provider_sms.hooks.base import BALANCE

        if not hook.supports(BALANCE):
            raise SmsConfigurationError(
                f"{hook.vendor} has no balance API, so check_balance=True cannot be honoured; leave it off "
                "(max_cost with the connection's price_per_part still limits the cost); nothing was sent in this try"
            )
        balance = hook.get_balance()
        parts = total_parts(left, per_number)
        if hook.balance_is_money or price is not None:
            currency = balance.currency.upper() or hook.currency
            if price is None:
                raise SmsConfigurationError(
                    f"{hook.vendor}: the balance is money ({render(balance.amount)} {currency}); check_balance "
                    "needs the connection's extra 'price_per_part' to compare a send with it; "
                    "nothing was sent in this try"
                )
            if balance.currency and hook.currency and balance.currency.upper() != hook.currency:
                raise SmsConfigurationError(
                    f"{hook.vendor}: the balance is in {balance.currency}, the connection's price_per_part in "
                    f"{hook.currency}; nothing was sent in this try"
                )
            need = estimate(parts, price)
            if need > balance.amount:
                raise SmsInsufficientBalanceError(
                    f"{hook.vendor}: the send needs {render(need)} {currency} ({left} numbers × "
                    f"{_count(per_number, 'part')} × {render(price)}), the balance is {render(balance.amount)} "
                    f"{currency}; nothing was sent in this try"
                )
            self.log.info("%s: balance %s %s covers the send's %s", hook.vendor, balance.amount, currency, need)
        elif parts > balance.amount:
            raise SmsInsufficientBalanceError(
                f"{hook.vendor}: the send needs {parts} SMS parts ({left} numbers × {_count(per_number, 'part')}), "
                f"the balance is {render(balance.amount)}; nothing was sent in this try"
            )
        else:
            self.log.info("%s: balance %s covers the send's %d SMS parts", hook.vendor, balance.amount, parts)

    def _stopped(
        self,
        error: Exception,
        plan: StoredPlan,
        batch_by_index: Mapping[int, str],
        tally: SendTally,
        sender: _Sender,
        unknown: Sequence[PlanRequest],
    ) -> None:
        """A send that stopped at a failure: log what was accepted and what was not sent, and why. An
        insufficient balance becomes ``SmsInsufficientBalanceError``; any other failure is raised as it is."""
        hook = self.hook
        left_unknown = {r.index for r in unknown} | sender.unknown_indexes
        not_sent = [
            r for r in plan.requests if r.mobiles and r.index not in batch_by_index and r.index not in left_unknown
        ]
        summary = self._summary(plan, batch_by_index, tally)
        summary.update(
            not_sent_requests=len(not_sent),
            not_sent_numbers=sum(len(r.mobiles) for r in not_sent),
            not_sent_reason=str(error),
        )
        self.stopped_summary = summary
        self.unknown_left = len(left_unknown)
        self.log.error("%s: the send stopped; summary %s", hook.vendor, summary)
        if hook.is_insufficient_balance(error):
            raise SmsInsufficientBalanceError(
                f"{hook.vendor}: the account's balance ran out mid-send ({error}). "
                f"{tally.accepted_numbers} numbers were accepted and are recorded; {summary['not_sent_numbers']} "
                f"numbers in {_count(len(not_sent), 'request')} were not sent. Top up the account and retry the task: "
                "the retry sends exactly the numbers not sent, none twice",
                summary,
            ) from error

    # ------------------------------------------------------------------ opt-outs

    def opted_out_numbers(self, valid: Sequence[str]) -> set[str]:
        """Which of the (normalised) numbers are in the store's opt-out table, looked up a slice at a time."""
        opted: set[str] = set()
        for start in range(0, len(valid), OPT_OUT_LOOKUP_CHUNK):
            opted |= self.store.opted_out(valid[start : start + OPT_OUT_LOOKUP_CHUNK])
        return opted


def moved_numbers(plan: StoredPlan) -> dict[str, int]:
    """``{"moved_numbers": n}`` when requests of the plan moved to the next connection (``failover``), else {}."""
    moved = sum(len(r.mobiles) for r in plan.requests if r.state == MOVED)
    return {"moved_numbers": moved} if moved else {}


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(eq=False)
class _Sender:
    """Sends a queue of a plan's requests, up to ``max_concurrency`` at once, recording each answer.

    Each worker keeps one request in flight. When the vendor accepts it, the worker takes the next
    request from the queue and stores that one's intent in the same commit that records the
    acceptance, then sends it: one commit per request, and every request's intent durable before its
    bytes leave. The first failure stops the queue; requests in flight finish and are recorded.
    """

    owner: PlannedSend
    plan: StoredPlan
    requests: Mapping[int, SendRequest]
    batch_by_index: dict[int, str]
    tally: SendTally
    wire: WireCounts
    _queue: deque[PlanRequest] = field(default_factory=deque, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False)
    _failure: BaseException | None = field(default=None, init=False)
    #: requests of this try whose outcome became unknown
    unknown_indexes: set[int] = field(default_factory=set, init=False)
    #: keys of unknown requests resent as the author asked, after the grace period (``on_unknown="resend"``)
    resending: frozenset[str] = field(default=frozenset(), init=False)
    #: requests quiet hours stopped after the send began (a vendor slower than the estimate), not sent
    held: list[PlanRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._progress = _Progress(self.owner.log, self.owner.hook.vendor, len(self.plan.requests), self.tally)

    def send(self, rows: Sequence[PlanRequest], *, intents_stored: frozenset[str]) -> None:
        """Send ``rows`` in order; raises the first failure once everything in flight is recorded."""
        owner = self.owner
        self._queue = deque(rows)
        self._stopped.clear()
        self._failure = None
        first = [self._queue.popleft() for _ in range(min(owner.policy.max_concurrency, len(self._queue)))]
        missing = [IntentClaim.of(r) for r in first if r.key not in intents_stored]
        if missing:
            owner.store.mark_sending(missing)  # one commit for the first requests of a try
        if len(first) == 1:
            self._worker(owner.hook, first[0])
        elif first:
            self._run_threads(first)
        if self._failure is not None:
            raise self._failure

    def _run_threads(self, first: Sequence[PlanRequest]) -> None:
        owner = self.owner
        owner.hook.config  # noqa: B018  (the connection is looked up here, once, not by each thread)
        copies = [owner.hook.for_thread() for _ in first]
        threads = [
            threading.Thread(target=self._worker, args=(copy, row), name=f"sms-send-{i}", daemon=True)
            for i, (copy, row) in enumerate(zip(copies, first, strict=True))
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:
            self._stopped.set()  # this thread was interrupted (the task being stopped): nothing new goes out
            for thread in threads:
                thread.join()
            raise
        finally:
            for copy in copies:
                copy.close()

    def _next(self) -> PlanRequest | None:
        with self._lock:
            if self._stopped.is_set() or not self._queue:
                return None
            row = self._queue.popleft()
            gate = self.owner._holding
            if gate is not None and not gate.open_now(row.mobiles):  # quiet hours began meanwhile
                self.held = [row, *self._queue]
                self._queue.clear()
                return None
            return row

    def _fail(self, request: SendRequest | None, error: BaseException) -> None:
        with self._lock:
            first = self._failure is None
            if first:
                self._failure = error
        self._stopped.set()
        vendor = self.owner.hook.vendor
        what = request.description if request is not None else "a sending thread"
        if first:
            self.owner.log.warning(
                "%s: %s failed; sending no more requests, waiting for those already sent", vendor, what
            )
        else:
            self.owner.log.error("%s: %s also failed: %s", vendor, what, error)

    def _worker(self, hook: SmsHook, row: PlanRequest | None) -> None:
        """One place in flight: send, record (with the next request's intent), repeat; any failure stops all."""
        request: SendRequest | None = None
        try:
            while row is not None:
                request = self.requests[row.index]
                row = self._send_one(hook, row, request)
        except BaseException as exc:  # a store failure too: it must fail the send, never vanish with a thread
            self._fail(request, exc)

    def _send_one(self, hook: SmsHook, row: PlanRequest, request: SendRequest) -> PlanRequest | None:
        """Send one request and record the answer; returns the next request, whose intent is stored now."""
        owner, store = self.owner, self.owner.store
        # A row an earlier try left "sending" or "unknown" may have reached the vendor then: whatever happens
        # now, it stays so. Only a row this try moved from "planned" may go back to "planned", or one resent as
        # the author asked (on_unknown="resend"): a refused resend may go again, here or on a fallback.
        ours = row.state == PLANNED or row.key in self.resending
        if self._stopped.is_set():
            if ours:
                store.release_intent(row.key, "not sent: the send stopped at an earlier failure")
            return None
        try:
            receipt = hook.submit(request)
        except SmsOutcomeUnknownError as exc:
            self._count_failed(row, unknown=True)
            with self._lock:
                self.unknown_indexes.add(row.index)
            store.record_unknown(
                row.key,
                vendor=hook.vendor,
                conn_id=owner.conn_id,
                mobiles=row.mobiles,
                task=owner.task,
                reason=exc.cause,
            )
            raise
        except Exception as exc:
            # submit turns every failure after the request may have reached the vendor into an unknown
            # outcome, so this one surely did not go out (or the vendor refused it): it may go again
            self._count_failed(row, unknown=False)
            if ours:
                store.release_intent(row.key, f"{type(exc).__name__}: {exc}")
            raise
        following = self._next()
        claimed = store.record_accepted(
            row.key,
            receipt,
            conn_id=owner.conn_id,
            task=owner.task,
            next_intent=IntentClaim.of(following) if following is not None else None,
        )
        self._accepted(row, request, receipt)
        if not claimed:
            assert following is not None
            raise SmsConcurrentSendError(
                f"{owner.hook.vendor}: request #{following.index + 1} was taken by another try of the same task "
                "instance (one Airflow took for dead, and its retry) before this one could send it: this try "
                "sends nothing more and leaves the plan to that one"
            )
        return following

    def _count_failed(self, row: PlanRequest, *, unknown: bool) -> None:
        with self._lock:
            self.wire.sent += len(row.mobiles)
            if unknown:
                self.wire.unknown += len(row.mobiles)
            else:
                self.wire.refused += len(row.mobiles)

    def _accepted(self, row: PlanRequest, request: SendRequest, receipt: SendReceipt) -> None:
        with self._lock:
            self.batch_by_index[row.index] = receipt.batch_id
            self.tally.accepted_numbers += len(row.mobiles)
            self.wire.sent += len(row.mobiles)
            self.wire.accepted += len(row.mobiles)
            if receipt.already_accepted:
                self.tally.resolved += 1
            elif row.state in (SENDING, UNKNOWN):  # a resend of what an earlier try left unknown
                self.tally.resent += 1
                self.tally.sent += 1
            else:
                self.tally.sent += 1
        self._progress.accepted(request, receipt.batch_id)


class _Progress:
    """Progress lines for the task log: the first and last request and at most every ``INTERVAL`` seconds.

    A send of a thousand requests should not cost a thousand log lines; the store keeps every batch id.
    """

    INTERVAL: ClassVar[float] = 5.0

    def __init__(self, logger: Any, vendor: str, requests: int, tally: SendTally) -> None:
        self._log = logger
        self._vendor = vendor
        self._requests = requests
        self._tally = tally
        self._next_info = 0.0
        self._lock = threading.Lock()

    def accepted(self, request: SendRequest, batch_id: str) -> None:
        with self._lock:
            done = self._tally.accepted_numbers
            now = time.monotonic()
            loud = now >= self._next_info or done >= self._tally.numbers
            if loud:
                self._next_info = now + self.INTERVAL
        self._log.log(
            logging.INFO if loud else logging.DEBUG,
            "%s: request %d/%d accepted as batch %s; %d/%d numbers accepted",
            self._vendor,
            request.index + 1,
            self._requests,
            batch_id,
            done,
            self._tally.numbers,
        )


__all__ = [
    "FAIL",
    "NEW_PLAN",
    "RESEND",
    "PlannedSend",
    "SendPolicy",
    "SendResult",
    "SendSpec",
    "SendTally",
    "plan_changes",
    "plan_inputs",
    "request_key",
    "task_key",
]
