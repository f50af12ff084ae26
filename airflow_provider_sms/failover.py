"""Safe failover across connections: ``SmsSendOperator(fallback_conn_ids=[...])``.

A request moves to the next connection only when the one before surely did not accept it: no connection
was made (refused, connect timeout, TLS), the vendor said 429 after every retry, or it answered a code
that means "not accepted" for a reason of the account (``SmsHook.surely_not_accepted``). An unknown outcome
never moves: it stays with its connection and is resolved as any unknown outcome is, so no number goes out
through two accounts. The libraries that fail over on any exception, timeouts included, send twice.

Each connection executes its own stored plan with ``PlannedSend``. A move is one commit
(``SendLedger.hand_over``): the connection's planned requests become ``moved`` and the next connection's
plan gains requests for their numbers, so a crash at any point leaves every number in exactly one open
request. Every try walks the chain in order, so a retry finishes whatever each connection was handed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_sms import metrics
from airflow_provider_sms.canary import CANARY_REQUESTS
from airflow_provider_sms.errors import SmsConfigurationError, SmsOutcomeUnknownError
from airflow_provider_sms.records import MOVED, PLANNED, PlanRequest, StoredPlan
from airflow_provider_sms.sending import (
    HANDED_OVER_FROM,
    PlannedSend,
    SendPolicy,
    SendResult,
    SendSpec,
    request_key,
    task_key,
)

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.quiet_hours import QuietHoursGate
    from airflow_provider_sms.store import SmsStore, TaskIdentity

#: summary counters summed over the connections of a failover send
_SUMMED = (
    "requests",
    "sent_requests",
    "skipped_requests",
    "accepted_numbers",
    "unknown_requests",
    "resolved_requests",
    "resent_requests",
)


class FailoverSend:
    """Sends a task instance's numbers through ``hooks`` in order: the first connection plans the send, and
    requests it surely did not accept move to the next (see the module docstring).

    :param gates: each connection's quiet hours gate (None: none), in the order of ``hooks``.
    """

    def __init__(
        self,
        hooks: Sequence[SmsHook],
        store: SmsStore,
        task: TaskIdentity,
        *,
        namespace: str = "send",
        policy: SendPolicy | None = None,
        logger: Any = None,
        gates: Sequence[QuietHoursGate | None] | None = None,
    ) -> None:
        if len(hooks) < 2:
            raise ValueError("FailoverSend needs a connection and at least one fallback")
        self.store = store
        self.task = task
        self.namespace = namespace
        self.senders = [
            PlannedSend(hook, store, task, namespace=namespace, policy=policy, logger=logger, gate=gate)
            for hook, gate in zip(hooks, gates or [None] * len(hooks), strict=True)
        ]
        self.log = self.senders[0].log

    def run(self, spec: SendSpec, *, wait: bool = True, carried: Mapping[str, Any] | None = None) -> SendResult:
        """Every connection's part of the send, in order; ``carried``: each connection's counters after a
        deferral, by connection id (``SendResult.carried`` of the last call)."""
        self._check(spec)
        carried = dict(carried or {})
        parts: list[dict[str, Any]] = []
        unknown_left: list[tuple[str, int]] = []
        source: str | None = None
        for position, sender in enumerate(self.senders):
            conn_id = sender.conn_id
            try:
                if source is None:  # the first connection: it plans the send
                    result: SendResult | None = sender.run(spec, wait=wait, carried=carried.get(conn_id))
                else:
                    result = sender.follow(spec, source, wait=wait, carried=carried.get(conn_id))
            except Exception as exc:
                following = self.senders[position + 1] if position + 1 < len(self.senders) else None
                if following is None or not sender.hook.surely_not_accepted(exc):
                    raise
                plan = self._plan_of(sender)
                moved = self._hand_over(sender, plan, following, exc) if plan is not None else 0
                if plan is None or not moved:
                    raise
                parts.append(self._stopped_part(sender, moved, following.conn_id, exc))
                if sender.unknown_left:
                    unknown_left.append((conn_id, sender.unknown_left))
                source = plan.plan_key
                continue
            if result is None:  # nothing was handed to this connection, nor to any after it
                break
            parts.append(result.summary)
            if result.check_again_at is not None:
                carried[conn_id] = result.carried
                return SendResult(self._summary(parts), check_again_at=result.check_again_at, carried=carried)
            carried.pop(conn_id, None)
            plan = self._plan_of(sender)
            if plan is None or not any(r.state == MOVED for r in plan.requests):
                break  # this connection kept every request: no later plan belongs to this send
            source = plan.plan_key
        summary = self._summary(parts)
        if unknown_left:
            described = ", ".join(f"{count} on {conn_id!r}" for conn_id, count in unknown_left)
            self.log.error("send summary %s", summary)
            raise SmsOutcomeUnknownError(
                self.senders[0].hook.vendor,
                f"requests whose reply was lost ({described})",
                [],
                "they stay with their connection and are never moved; the rest went on through the fallbacks. "
                "A retry resolves them from delivery reports",
            )
        return SendResult(summary)

    def _check(self, spec: SendSpec) -> None:
        """Before anything goes out: every connection can take this send as it is."""
        first = self.senders[0].hook
        for sender in self.senders[1:]:
            hook = sender.hook
            if hook.international != first.international:
                raise SmsConfigurationError(
                    f"fallback connection {sender.conn_id!r} ({hook.vendor}) takes "
                    f"{'international' if hook.international else 'mainland'} numbers, {first.sms_conn_id!r} "
                    f"({first.vendor}) does not: a fallback must take the same numbers; nothing was sent"
                )
            if spec.template_id and hook.vendor != first.vendor:
                raise SmsConfigurationError(
                    f"template {spec.template_id!r} is {first.vendor}'s; fallback connection {sender.conn_id!r} is "
                    f"{hook.vendor}: a template send can fall back only to connections of the same vendor (the "
                    "template approved on each account); nothing was sent"
                )
        for sender in self.senders:
            sender.prepare(spec)  # the text and options as each vendor takes them

    def _plan_of(self, sender: PlannedSend) -> StoredPlan | None:
        """The connection's stored plan as it is now (after a stop: which requests are still planned)."""
        return self.store.find_plan(task_key(self.namespace, sender.conn_id, self.task))

    def _hand_over(self, sender: PlannedSend, plan: StoredPlan, following: PlannedSend, error: Exception) -> int:
        """Move the plan's planned requests to the next connection, in one commit; returns the numbers moved."""
        from airflow_provider_sms.numbers import normalize_mobiles

        moved = [r for r in plan.requests if r.state == PLANNED]
        if not moved:
            return 0
        hook = following.hook
        valid, invalid = normalize_mobiles([m for r in moved for m in r.mobiles], international=hook.international)
        if invalid:  # same kind of numbers, checked in _check: a vendor rule that differs (an error, not a skip)
            raise SmsConfigurationError(
                f"{len(invalid)} numbers cannot move to fallback connection {following.conn_id!r} ({hook.vendor}): "
                f"{', '.join(map(repr, invalid[:5]))}"
            ) from error
        target_key = task_key(self.namespace, following.conn_id, self.task)
        existing = self.store.find_plan(target_key)
        grows = existing is not None and existing.inputs.get(HANDED_OVER_FROM) == plan.plan_key
        if existing is not None and grows:
            generation, plan_key, earlier = existing.generation, existing.plan_key, existing.requests
        else:
            generation = existing.generation + 1 if existing is not None else 1
            plan_key, earlier = f"{target_key}-{generation}", ()
        # the canary's numbers that move (its verdict was still to come) stay a canary there; a plan that
        # grows keeps the canary it has
        moved_canary = sum(len(r.mobiles) for r in moved if r.index < int(plan.inputs.get(CANARY_REQUESTS, 0)))
        chunks, canary_requests = following.cut(valid, None if grows else moved_canary or None)
        start = len(earlier)
        added = tuple(
            PlanRequest(key=request_key(plan_key, start + i), index=start + i, state=PLANNED, mobiles=chunk)
            for i, chunk in enumerate(chunks)
        )
        target = StoredPlan(
            task_key=target_key,
            plan_key=plan_key,
            generation=generation,
            inputs={
                HANDED_OVER_FROM: plan.plan_key,
                "from_conn_id": sender.conn_id,
                **({CANARY_REQUESTS: canary_requests} if canary_requests else {}),
            },
            numbers=(existing.numbers if existing is not None and grows else 0) + len(valid),
            opted_out=existing.opted_out if existing is not None and grows else 0,
            requests=(*earlier, *added),
        )
        self.store.hand_over(
            plan,
            moved,
            target,
            added,
            vendor=hook.vendor,
            conn_id=following.conn_id,
            task=self.task,
            reason=f"moved to connection {following.conn_id!r}: {error}",
            replaces=existing.plan_key if existing is not None and not grows else None,
        )
        metrics.incr(
            metrics.NUMBERS_MOVED, len(valid), metrics.tags(sender.hook.vendor, sender.conn_id, to=following.conn_id)
        )
        self.log.warning(
            "%s: connection %r surely did not accept the send (%s); %d numbers in %d requests move to "
            "connection %r (%s)",
            sender.hook.vendor,
            sender.conn_id,
            error,
            len(valid),
            len(moved),
            following.conn_id,
            hook.vendor,
        )
        return len(valid)

    @staticmethod
    def _stopped_part(sender: PlannedSend, moved: int, to: str, error: Exception) -> dict[str, Any]:
        """The summary of a connection whose send stopped and moved on."""
        part = dict(sender.stopped_summary or {"conn_id": sender.conn_id, "vendor": sender.hook.vendor})
        for key in ("not_sent_requests", "not_sent_numbers", "not_sent_reason"):
            part.pop(key, None)
        part.update(moved_numbers=moved, moved_to=to, moved_reason=str(error))
        return part

    def _summary(self, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The first connection's summary, with counters summed over every connection that took part,
        each connection's own part (``connections``) and its batches (``batch_ids_by_conn``).
        ``batch_ids`` stays the first connection's, as a sensor on that connection expects."""
        summary = dict(parts[0])
        summary["batch_ids"] = list(parts[0].get("batch_ids", []))
        for key in _SUMMED:
            summary[key] = sum(int(part.get(key, 0) or 0) for part in parts)
        summary["batch_ids_by_conn"] = {str(part["conn_id"]): list(part.get("batch_ids", [])) for part in parts}
        summary["connections"] = [
            {
                "conn_id": part["conn_id"],
                "vendor": part["vendor"],
                "accepted_numbers": int(part.get("accepted_numbers", 0) or 0),
                "moved_numbers": int(part.get("moved_numbers", 0) or 0),
                "batch_ids": list(part.get("batch_ids", [])),
                **({"moved_reason": part["moved_reason"]} if part.get("moved_reason") else {}),
            }
            for part in parts
        ]
        for key in ("moved_numbers", "moved_to", "moved_reason"):
            summary.pop(key, None)
        judged = [part["canary"] for part in parts if part.get("canary")]
        if judged:  # judged where the canary's numbers went
            summary["canary"] = judged[-1]
        return summary


__all__ = ["FailoverSend"]
