"""Quiet hours end to end: ``SmsSendOperator`` against the simulator over real sockets and a real store.

The clock quiet hours are judged by is ``quiet_hours.utcnow``, set by each test; nothing sleeps. Every
count is taken at the simulator's side, from its ledger (how many times the vendor accepted each
number). A deferral is driven as Airflow drives it: the operator raises ``TaskDeferred`` with a
``DateTimeTrigger``; once the trigger's moment comes, Airflow calls ``resume_execution`` with the
deferral's kwargs and the trigger's event, on a fresh copy of the operator.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_sms import quiet_hours
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.quiet_hours import SmsQuietHoursError, SmsScheduledInQuietHoursError
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import task_context
from tests.integration.simulator_ledger import ledger_counts as ledger

pytestmark = pytest.mark.integration

UTC = timezone.utc
#: 22:00 in Shanghai: inside 21:00-08:00; the window opens at 08:00 Shanghai, 00:00 UTC
SHANGHAI_NIGHT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
SHANGHAI_MORNING = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {
        "task_id": "send",
        "sms_conn_id": "sms_paasw_v2",
        "content": "hello",
        "signature": "S",
        "quiet_hours": "21:00-08:00",
    }
    return SmsSendOperator(**{**defaults, **kwargs})


def requests_by_state(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "sms_store.db") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM sms_requests GROUP BY state").fetchall())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Sets the moment quiet hours are judged by."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(quiet_hours, "utcnow", lambda: moment)

    return set_to


def resume(op_kwargs: dict[str, Any], deferred: TaskDeferred) -> Any:
    """What Airflow does when the trigger fires: a fresh operator (the DAG file parsed again on the worker),
    ``resume_execution`` with the deferral's method, its kwargs and the trigger's event."""
    trigger = deferred.trigger
    assert isinstance(trigger, DateTimeTrigger)
    classpath, trigger_kwargs = trigger.serialize()  # the triggerer builds it again from these
    assert classpath.endswith("DateTimeTrigger") and DateTimeTrigger(**trigger_kwargs).moment == trigger.moment
    json.dumps(deferred.kwargs)  # the kwargs travel through the metadata database
    return send_op(**op_kwargs).resume_execution(
        deferred.method_name, {**(deferred.kwargs or {}), "event": trigger.moment.isoformat()}, task_context()
    )


# ------------------------------------------------------------------------------------ domestic


def test_a_plain_send_inside_quiet_hours_fails_fast_and_nothing_reaches_the_vendor(
    sim: GatewaySimulator, home: Path, clock: Callable[[datetime], None]
) -> None:
    clock(SHANGHAI_NIGHT)
    with pytest.raises(SmsQuietHoursError) as error:
        send_op(mobiles=numbers(1500)).execute(task_context())
    assert isinstance(error.value, AirflowFailException)  # no retries spent inside the window
    assert error.value.opens_at == SHANGHAI_MORNING
    assert "may go out from 2026-12-02T00:00+00:00 (2026-12-02 08:00 Asia/Shanghai)" in str(error.value)
    assert "nothing was sent" in str(error.value)
    assert ledger(sim, "paasw_v2") == {}
    assert requests_by_state(home) == {"planned": 2}  # the plan is stored; no request holds an intent
    # run again once the window has opened: the stored plan goes out, once
    clock(SHANGHAI_MORNING)
    summary = send_op(mobiles=numbers(1500)).execute(task_context())
    assert summary["sent_requests"] == 2 and summary["accepted_numbers"] == 1500
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 1500 and set(counts.values()) == {1}


def test_a_send_that_would_run_into_quiet_hours_does_not_start(
    sim: GatewaySimulator, clock: Callable[[datetime], None]
) -> None:
    # two requests: estimated at 60 s + 2 x 1 s; at 20:58:59 Shanghai they would end after 21:00
    clock(datetime(2026, 12, 1, 12, 58, 59, tzinfo=UTC))
    with pytest.raises(SmsQuietHoursError, match="nor run into the window"):
        send_op(mobiles=numbers(1500)).execute(task_context())
    assert ledger(sim, "paasw_v2") == {}
    clock(datetime(2026, 12, 1, 12, 57, 58, tzinfo=UTC))  # 62 s before 21:00: just in time
    assert send_op(mobiles=numbers(1500)).execute(task_context())["accepted_numbers"] == 1500


def test_the_estimate_follows_the_connections_request_rate(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_PAASW_V2", sim.connection_json("paasw_v2", retry_wait=0.01, max_requests_per_second=0.005)
    )
    clock(datetime(2026, 12, 1, 12, 55, tzinfo=UTC))  # 20:55: 5 minutes left; 2 requests take 60 + 2 x 200 s
    with pytest.raises(SmsQuietHoursError):
        send_op(mobiles=numbers(1500)).execute(task_context())
    assert ledger(sim, "paasw_v2") == {}


def test_a_deferrable_send_waits_in_the_triggerer_and_sends_once_when_the_window_opens(
    sim: GatewaySimulator, store_args: dict[str, Any], clock: Callable[[datetime], None]
) -> None:
    op_kwargs = {"mobiles": numbers(1500), "deferrable": True, **store_args}
    clock(SHANGHAI_NIGHT)
    with pytest.raises(TaskDeferred) as deferred:
        send_op(**op_kwargs).execute(task_context())
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.trigger.moment == SHANGHAI_MORNING  # type: ignore[attr-defined]
    assert ledger(sim, "paasw_v2") == {}
    clock(SHANGHAI_MORNING)
    summary = resume(op_kwargs, deferred.value)
    assert summary["sent_requests"] == 2 and summary["accepted_numbers"] == 1500
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 1500 and set(counts.values()) == {1}
    # a second resume (Airflow retrying the task instance after it succeeded, say) resends nothing
    again = resume(op_kwargs, deferred.value)
    assert again["sent_requests"] == 0 and again["skipped_requests"] == 2
    assert set(ledger(sim, "paasw_v2").values()) == {1}


def test_a_resume_before_the_window_opens_defers_again_and_sends_nothing(
    sim: GatewaySimulator, clock: Callable[[datetime], None]
) -> None:
    """A task resumed early (a clock a little behind, a race in the scheduler) looks again, as it must."""
    op_kwargs = {"mobiles": numbers(3), "deferrable": True}
    clock(SHANGHAI_NIGHT)
    with pytest.raises(TaskDeferred) as first:
        send_op(**op_kwargs).execute(task_context())
    clock(SHANGHAI_MORNING - timedelta(seconds=1))
    with pytest.raises(TaskDeferred) as second:
        resume(op_kwargs, first.value)
    assert second.value.trigger.moment == SHANGHAI_MORNING  # type: ignore[attr-defined]
    assert ledger(sim, "paasw_v2") == {}
    clock(SHANGHAI_MORNING)
    assert resume(op_kwargs, second.value)["accepted_numbers"] == 3
    assert set(ledger(sim, "paasw_v2").values()) == {1}


def test_the_connection_extra_is_the_default_and_quiet_hours_empty_turns_it_off(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_PAASW_V2", sim.connection_json("paasw_v2", retry_wait=0.01, quiet_hours="21:00-08:00")
    )
    clock(SHANGHAI_NIGHT)
    with pytest.raises(SmsQuietHoursError):
        send_op(mobiles=numbers(3), quiet_hours=None).execute(task_context())
    assert ledger(sim, "paasw_v2") == {}
    summary = send_op(mobiles=numbers(3), quiet_hours="", task_id="urgent").execute(task_context())
    assert summary["accepted_numbers"] == 3


def test_a_scheduled_send_inside_quiet_hours_is_refused_before_sending(
    sim: GatewaySimulator, clock: Callable[[datetime], None]
) -> None:
    now = datetime.now(UTC)
    clock(now)
    # the next 22:00 in Shanghai: inside; the next 10:00: outside (the vendor sends then, whenever it is handed over)
    shanghai = ZoneInfo("Asia/Shanghai")
    local = now.astimezone(shanghai)
    night = local.replace(hour=22, minute=0, second=0, microsecond=0)
    morning = local.replace(hour=10, minute=0, second=0, microsecond=0)
    night += timedelta(days=1) if night <= local else timedelta()
    morning += timedelta(days=1) if morning <= local else timedelta()
    with pytest.raises(SmsScheduledInQuietHoursError, match="falls inside quiet hours 21:00-08:00"):
        send_op(mobiles=numbers(3), scheduled_at=night).execute(task_context())
    assert ledger(sim, "paasw_v2") == {}
    clock(night.astimezone(UTC))  # handed over during quiet hours, delivered at 10:00: fine
    summary = send_op(mobiles=numbers(3), scheduled_at=morning, task_id="scheduled").execute(task_context())
    assert summary["accepted_numbers"] == 3


# ------------------------------------------------------------------------------------ intl: a window per zone


CHINA = numbers(1200, "86138")  # Asia/Shanghai: open 00:00-13:00 UTC
NIGERIA = [f"2348031{i:06d}" for i in range(1200)]  # Africa/Lagos: open 07:00-20:00 UTC
#: 11:00 in Shanghai, 04:00 in Lagos
INTL_START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
LAGOS_MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


def test_intl_numbers_of_two_zones_go_out_in_two_windows_each_exactly_once(
    sim: GatewaySimulator, home: Path, clock: Callable[[datetime], None]
) -> None:
    mixed = [n for pair in zip(NIGERIA, CHINA, strict=True) for n in pair]
    op_kwargs = {"sms_conn_id": "sms_intl", "mobiles": mixed, "deferrable": True}
    clock(INTL_START)
    with pytest.raises(TaskDeferred) as first:
        send_op(**op_kwargs).execute(task_context())
    assert first.value.trigger.moment == LAGOS_MORNING  # type: ignore[attr-defined]
    counts = ledger(sim, "intl")
    assert set(counts) == set(CHINA) and set(counts.values()) == {1}  # only Shanghai's window was open
    assert requests_by_state(home) == {"accepted": 2, "planned": 2}  # 1,000 a request, one zone each
    clock(LAGOS_MORNING)
    summary = resume(op_kwargs, first.value)
    assert summary["accepted_numbers"] == 2400 and summary["requests"] == 4
    assert summary["sent_requests"] == 4  # two before the wait (carried over), two after it
    assert summary["skipped_requests"] == 0  # nothing was accepted by an earlier try
    counts = ledger(sim, "intl")
    assert set(counts) == set(CHINA) | set(NIGERIA) and set(counts.values()) == {1}


def test_a_plain_intl_send_sends_the_open_zone_and_says_when_the_rest_may_go(
    sim: GatewaySimulator, clock: Callable[[datetime], None]
) -> None:
    op_kwargs = {"sms_conn_id": "sms_intl", "mobiles": [*CHINA[:5], *NIGERIA[:5]]}
    clock(INTL_START)
    with pytest.raises(SmsQuietHoursError, match=r"5 numbers whose window is open went out") as error:
        send_op(**op_kwargs).execute(task_context())
    assert error.value.opens_at == LAGOS_MORNING
    assert "(2026-12-01 08:00 Africa/Lagos)" in str(error.value)
    assert set(ledger(sim, "intl")) == set(CHINA[:5])
    clock(LAGOS_MORNING)  # the task run again: the rest of the same plan
    summary = send_op(**op_kwargs).execute(task_context())
    assert summary["sent_requests"] == 1 and summary["skipped_requests"] == 1
    counts = ledger(sim, "intl")
    assert set(counts) == {*CHINA[:5], *NIGERIA[:5]} and set(counts.values()) == {1}


def test_a_dry_run_plans_intl_requests_by_zone_and_refuses_a_quiet_schedule(
    sim: GatewaySimulator, clock: Callable[[datetime], None]
) -> None:
    clock(INTL_START)
    mixed = [*CHINA[:500], *NIGERIA[:400]]  # one request without quiet hours; one per zone with them
    summary = send_op(sms_conn_id="sms_intl", mobiles=mixed, dry_run=True).execute(task_context())
    assert summary["dry_run"] is True and summary["requests"] == 2
    plain = send_op(sms_conn_id="sms_intl", mobiles=mixed, dry_run=True, quiet_hours="").execute(task_context())
    assert plain["requests"] == 1
    lagos_night = datetime.now(UTC).astimezone(ZoneInfo("Africa/Lagos")).replace(hour=23, minute=0) + timedelta(days=1)
    with pytest.raises(SmsScheduledInQuietHoursError):
        send_op(sms_conn_id="sms_intl", mobiles=mixed, dry_run=True, scheduled_at=lagos_night).execute(task_context())
    assert ledger(sim, "intl") == {}


def test_quiet_hours_that_begin_while_the_send_goes_out_hold_the_rest(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    """Admitted at 20:50 (three requests, estimated at 63 s), the vendor is slower than that: the clock passes
    21:00 after the first request. Each request looks at the clock before it goes, so the other two wait for
    the morning; run again then, they go out, every number once."""
    from airflow_provider_sms.hooks.base import SmsHook

    clock(datetime(2026, 12, 1, 12, 50, tzinfo=UTC))  # 20:50 Shanghai
    real = SmsHook.submit

    def slow(self: SmsHook, request: Any) -> Any:
        receipt = real(self, request)
        clock(datetime(2026, 12, 1, 13, 0, 1, tzinfo=UTC))  # 21:00:01 by the time it was accepted
        return receipt

    monkeypatch.setattr(SmsHook, "submit", slow)
    with pytest.raises(SmsQuietHoursError) as error:
        send_op(mobiles=numbers(2500)).execute(task_context())
    assert "1000 numbers whose window is open went out" in str(error.value)
    assert error.value.opens_at == SHANGHAI_MORNING
    assert len(ledger(sim, "paasw_v2")) == 1000
    monkeypatch.setattr(SmsHook, "submit", real)
    clock(SHANGHAI_MORNING)
    summary = send_op(mobiles=numbers(2500)).execute(task_context())
    assert summary["accepted_numbers"] == 2500 and summary["sent_requests"] == 2
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 2500 and set(counts.values()) == {1}
