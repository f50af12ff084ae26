"""Canary sends: the first numbers of a send go out alone, and the rest only when enough of theirs were delivered.

The canary is part of the stored plan (its requests come first; how many is ``CANARY_REQUESTS`` in the
plan's inputs), so ``sending.PlannedSend`` executes it like any request. This module judges it: which of a
plan's requests are still to be judged, and the verdict from their delivery reports.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, NoReturn

from airflow_provider_sms.errors import SmsCanaryFailedError, SmsConfigurationError
from airflow_provider_sms.records import ACCEPTED, MOVED, SENDING, UNKNOWN, PlanRequest, StoredPlan

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.store import SmsStore

#: the key, in a plan's stored inputs, of how many of its first requests are the canary
CANARY_REQUESTS: Final = "canary_requests"
#: report pulls per canary check: a check stores what is new, it does not drain a backlog of other sends
CANARY_MAX_PULLS: Final = 20


@dataclass
class CanaryVerdict:
    """The canary's delivery counts after one check, and whether it passed (None: not decided yet).

    ``pending`` numbers count as not delivered once the timeout has passed.
    """

    numbers: int
    delivered: int
    failed: int
    min_delivered: float
    passed: bool | None = None
    timed_out: bool = False
    #: final reports by vendor code, once decided
    by_code: dict[str, int] = field(default_factory=dict)
    #: undecided, deferrable: when to check again
    check_again_at: datetime | None = None

    @property
    def pending(self) -> int:
        return self.numbers - self.delivered - self.failed

    @property
    def share(self) -> float:
        return self.delivered / self.numbers if self.numbers else 1.0

    def decide(self, *, timed_out: bool) -> None:
        """Decided as soon as more reports cannot change the outcome; at the timeout, pending is not delivered."""
        if self.share >= self.min_delivered:
            self.passed = True
        elif not self.numbers or (self.delivered + self.pending) / self.numbers < self.min_delivered:
            self.passed = False
        elif timed_out:
            self.passed, self.timed_out = False, True

    def describe(self) -> str:
        late = " at the timeout" if self.timed_out else ""
        return (
            f"{self.delivered} of {self.numbers} numbers delivered ({self.share:.1%}), "
            f"{self.failed} failed, {self.pending} pending{late}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "numbers": self.numbers,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": self.pending,
            "share": round(self.share, 4),
            "passed": self.passed,
            "by_code": dict(self.by_code),
        }


class CanaryJudge:
    """Judges the canary of one connection's send from its delivery reports.

    :param min_delivered: the share of the canary's numbers that must be delivered.
    :param timeout: seconds after the canary's last request was accepted to wait for its reports.
    """

    def __init__(self, hook: SmsHook, store: SmsStore, *, min_delivered: float, timeout: float, logger: Any) -> None:
        self.hook = hook
        self.store = store
        self.min_delivered = min_delivered
        self.timeout = timeout
        self.log = logger
        #: the last check's counts, for the send's summary
        self.verdict: CanaryVerdict | None = None

    def require_reports(self) -> None:
        """A canary is judged by its delivery reports: a vendor without them cannot have one."""
        from airflow_provider_sms.hooks.base import REPORTS

        if not self.hook.supports(REPORTS):
            raise SmsConfigurationError(
                f"{self.hook.vendor} has no delivery reports, so a canary cannot be judged: leave canary unset; "
                "nothing was sent in this try"
            )

    def to_judge(self, plan: StoredPlan, batch_by_index: Mapping[int, str]) -> list[PlanRequest]:
        """The canary's requests while its verdict is still to come; none without a canary, once a request
        after it has gone out (it passed in an earlier try: never judged, nor waited for, again), or once the
        rest moved to the next connection (``failover``: the canary's numbers that moved are judged there)."""
        canary_requests = int(plan.inputs.get(CANARY_REQUESTS, 0))
        self.verdict = None
        if not canary_requests:
            return []
        canary = [r for r in plan.requests if r.index < canary_requests]
        rest = [r for r in plan.requests if r.index >= canary_requests]
        if any(r.state == MOVED for r in rest):
            self.log.info(
                "%s: the rest of the send moved to the next connection (failover), which judges the canary's "
                "numbers it was handed",
                self.hook.vendor,
            )
            return []
        if any(r.state in (SENDING, UNKNOWN, ACCEPTED) for r in rest):
            self.verdict = self.judge(canary, batch_by_index, None, pull=False)
            self.verdict.passed = True
            self.log.info(
                "%s: the canary passed in an earlier try and the rest has started; not judged again", self.hook.vendor
            )
            return []
        return canary

    def await_verdict(
        self, canary: Sequence[PlanRequest], batch_by_index: Mapping[int, str], *, wait: bool
    ) -> CanaryVerdict:
        """Check the canary's reports every few seconds until its verdict cannot change or the timeout (from
        its last request's acceptance) passes. ``wait=False``: one check, and when undecided the verdict says
        when to check again (the worker slot is given back meanwhile)."""
        keys = [r.key for r in canary if r.index in batch_by_index]
        last = self.store.last_submitted(keys) if keys else None
        deadline = (last or datetime.now(timezone.utc)) + timedelta(seconds=self.timeout)
        interval = min(30.0, max(0.2, self.timeout / 60))
        while True:
            verdict = self.verdict = self.judge(canary, batch_by_index, deadline, pull=True)
            if verdict.passed is not None:
                return verdict
            now = datetime.now(timezone.utc)
            next_check = min(deadline, now + timedelta(seconds=interval))
            self.log.info(
                "%s: canary: %s; waiting for its reports until %s at the latest",
                self.hook.vendor,
                verdict.describe(),
                deadline.isoformat(timespec="seconds"),
            )
            if not wait:
                verdict.check_again_at = next_check
                return verdict
            time.sleep(max(0.0, (next_check - now).total_seconds()))

    def judge(
        self,
        canary: Sequence[PlanRequest],
        batch_by_index: Mapping[int, str],
        deadline: datetime | None,
        *,
        pull: bool,
    ) -> CanaryVerdict:
        """One check: store the reports the vendor hands out (as a delivery sensor does), count the canary's
        batches, and decide where the outcome can no longer change."""
        from airflow_provider_sms.pulling import pull_reports

        hook = self.hook
        batches = [batch_by_index[r.index] for r in canary if r.index in batch_by_index]
        if pull and batches:
            try:
                pull_reports(hook, self.store, batch_ids=batches, max_pulls=CANARY_MAX_PULLS)
            except Exception as exc:  # reports may still reach the store (pushed): count what is there
                self.log.warning("%s: pulling the canary's delivery reports failed: %s", hook.vendor, exc)
        progress = self.store.batch_progress(hook.vendor, batches) if batches else None
        verdict = CanaryVerdict(
            numbers=progress.total if progress else 0,
            delivered=progress.delivered if progress else 0,
            failed=progress.failed if progress else 0,
            min_delivered=self.min_delivered,
        )
        timed_out = deadline is not None and datetime.now(timezone.utc) >= deadline
        verdict.decide(timed_out=timed_out)
        if (verdict.passed is not None or not pull) and batches:
            verdict.by_code = self.store.status_counts(hook.vendor, batches)["by_code"]
        return verdict

    def fail(self, verdict: CanaryVerdict, rest: Sequence[PlanRequest], summary: dict[str, Any]) -> NoReturn:
        """The canary failed: log the summary with what was not sent, and raise ``SmsCanaryFailedError``."""
        hook = self.hook
        by_count = sorted(verdict.by_code.items(), key=lambda item: -item[1])
        codes = ", ".join(f"{code or '(none)'}: {n}" for code, n in by_count)
        not_sent = sum(len(r.mobiles) for r in rest)
        summary.update(not_sent_requests=len(rest), not_sent_numbers=not_sent, not_sent_reason="the canary failed")
        self.log.error("%s: send summary %s", hook.vendor, summary)
        requests = f"{len(rest)} request" if len(rest) == 1 else f"{len(rest)} requests"
        raise SmsCanaryFailedError(
            f"{hook.vendor}: the canary failed: {verdict.describe()}, below canary_min_delivered="
            f"{verdict.min_delivered:.0%}; reports by vendor code: {codes or 'none'}. The rest of the send "
            f"({not_sent} numbers in {requests}) was not sent",
            verdict.to_dict(),
        )


__all__ = ["CANARY_REQUESTS", "CanaryJudge", "CanaryVerdict"]
