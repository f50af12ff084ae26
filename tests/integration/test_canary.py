"""Canary sends (issue 15, part 3), end to end against the simulator.

Over real sockets and a real store (SQLite, and PostgreSQL where ``store_args`` says so). Every count is
taken at the simulator's side: how many times it accepted each number (``/_sim/ledger``) and which of the
messages it accepted it delivered. The simulator fails one template at 50% (``content_failure_rates``),
as carriers block a template, while the others deliver.

2,500 numbers and ``canary=100`` make four requests on paasw_v2 (1,000 numbers a request at most): the
canary's one (the first 100 numbers), then 1,000, 1,000 and 400.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_sms.canary import CanaryJudge
from airflow_provider_sms.errors import SmsCanaryFailedError, SmsPlanChangedError
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import FakeTaskInstance, task_context
from tests.integration.simulator_ledger import ledger_counts

pytestmark = pytest.mark.integration

BLOCKED = "SMS_BLOCKED"  # the template the carriers block: the simulator fails it at 50%
FINE = "SMS_FINE"
PARAMS = {"code": "1234"}


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {
        "task_id": "send",
        "sms_conn_id": "sms_paasw_v2",
        "template_id": FINE,
        "template_params": PARAMS,
        "canary": 100,
        "canary_min_delivered": 0.9,
        "canary_timeout": 30,
    }
    return SmsSendOperator(**{**defaults, **kwargs})


def configure(sim: GatewaySimulator, **config: Any) -> None:
    reply = requests.post(f"{sim.http_url}/_sim/config", json=config, timeout=10)
    reply.raise_for_status()


def block_template(sim: GatewaySimulator) -> None:
    configure(sim, content_failure_rates={BLOCKED: 0.5})


def accepted(sim: GatewaySimulator) -> dict[str, int]:
    """Per number, how many times the vendor (paasw_v2, every canary test's) accepted it."""
    return ledger_counts(sim, "paasw_v2")


def delivered_at_the_simulator(sim: GatewaySimulator) -> tuple[int, int]:
    """(delivered, failed) of every message the simulated vendor accepted, as it decided them."""
    with sim.gateway.lock:
        messages = list(sim.gateway.messages["paasw_v2"].values())
    delivered = sum(1 for m in messages if m.delivered)
    return delivered, len(messages) - delivered


def store_of(store_args: dict[str, Any]) -> SmsStore:
    return SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_"))


def resume(op_kwargs: dict[str, Any], deferred: TaskDeferred) -> Any:
    """What Airflow does when the trigger fires: a fresh operator, ``resume_execution`` with the deferral's
    method, its kwargs and the trigger's event, once the trigger's moment has come."""
    trigger = deferred.trigger
    assert isinstance(trigger, DateTimeTrigger)
    json.dumps(deferred.kwargs)  # the kwargs travel through the metadata database
    time.sleep(max(0.0, (trigger.moment - datetime.now(timezone.utc)).total_seconds()))
    return send_op(**op_kwargs).resume_execution(
        deferred.method_name, {**(deferred.kwargs or {}), "event": trigger.moment.isoformat()}, task_context()
    )


# ------------------------------------------------------------------------------------------- verdicts


def test_a_canary_that_delivers_lets_the_rest_go_and_every_number_is_sent_once(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    block_template(sim)  # another template is blocked: this one delivers
    with store_of(store_args) as store:
        store.add_opt_outs(["13800000000"])  # the canary is the first 100 numbers after opt-outs
    summary = send_op(mobiles=numbers(2501), **store_args).execute(task_context())
    assert summary["canary"] == {
        "numbers": 100,
        "delivered": 100,
        "failed": 0,
        "pending": 0,
        "share": 1.0,
        "passed": True,
        "by_code": {"DELIVRD": 100},
    }
    assert summary["requests"] == 4 and summary["sent_requests"] == 4 and summary["accepted_numbers"] == 2500
    counts = accepted(sim)
    assert len(counts) == 2500 and set(counts.values()) == {1}
    assert "13800000000" not in counts
    with store_of(store_args) as store:
        first = store.status_counts("paasw_v2", summary["batch_ids"][:1])["by_status"]
    assert first["delivered"] + first["failed"] + first["pending"] == 100  # the canary's request: 100 numbers


def test_a_canary_of_a_blocked_template_fails_naming_the_codes_and_nothing_else_goes_out(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    block_template(sim)
    with pytest.raises(SmsCanaryFailedError) as error:
        send_op(mobiles=numbers(2500), template_id=BLOCKED, **store_args).execute(task_context())
    assert isinstance(error.value, AirflowFailException)  # no retries: a retry would judge the same canary
    delivered, failed = delivered_at_the_simulator(sim)
    assert delivered + failed == 100 and 30 < failed < 70  # the simulator failed about half
    canary = error.value.canary
    assert (canary["numbers"], canary["delivered"], canary["failed"], canary["pending"]) == (100, delivered, failed, 0)
    assert canary["passed"] is False and canary["by_code"] == {"DELIVRD": delivered, "DB:0141": failed}
    message = str(error.value)
    assert f"the canary failed: {delivered} of 100 numbers delivered" in message
    assert f"{failed} failed, 0 pending" in message and "below canary_min_delivered=90%" in message
    assert f"DB:0141: {failed}" in message and f"DELIVRD: {delivered}" in message
    assert "The rest of the send (2400 numbers in 3 requests) was not sent" in message
    counts = accepted(sim)
    assert set(counts) == set(numbers(100)) and set(counts.values()) == {1}  # the canary's numbers, once each
    # run again with the same settings (a cleared task): the same canary, the same verdict, nothing resent
    with pytest.raises(SmsCanaryFailedError):
        send_op(mobiles=numbers(2500), template_id=BLOCKED, **store_args).execute(task_context())
    assert accepted(sim) == counts


def test_the_threshold_is_not_part_of_the_plan_a_lower_one_sends_the_rest_of_a_failed_canary(
    sim: GatewaySimulator,
) -> None:
    block_template(sim)
    with pytest.raises(SmsCanaryFailedError) as error:
        send_op(mobiles=numbers(2500), template_id=BLOCKED).execute(task_context())
    share = error.value.canary["share"]
    summary = send_op(mobiles=numbers(2500), template_id=BLOCKED, canary_min_delivered=share).execute(task_context())
    assert summary["canary"]["passed"] is True and summary["skipped_requests"] == 1 and summary["sent_requests"] == 3
    counts = accepted(sim)
    assert len(counts) == 2500 and set(counts.values()) == {1}


def test_numbers_pending_at_the_timeout_count_as_not_delivered(sim: GatewaySimulator) -> None:
    configure(sim, report_delay=60)  # no report comes within the canary's timeout
    started = time.monotonic()
    with pytest.raises(SmsCanaryFailedError, match=r"0 of 100 numbers delivered \(0.0%\), 0 failed, 100 pending at"):
        send_op(mobiles=numbers(2500), canary_timeout=1.0).execute(task_context())
    assert 1.0 <= time.monotonic() - started < 10
    assert set(accepted(sim)) == set(numbers(100))


def test_a_canary_not_smaller_than_the_list_is_a_plain_send(sim: GatewaySimulator) -> None:
    configure(sim, report_delay=60)  # a canary would wait (and fail at its timeout): a plain send does not
    summary = send_op(mobiles=numbers(1500), canary=1500, canary_timeout=1.0).execute(task_context())
    assert "canary" not in summary and summary["sent_requests"] == 2
    counts = accepted(sim)
    assert len(counts) == 1500 and set(counts.values()) == {1}


# ------------------------------------------------------------------------------------------- deferral


def test_a_deferrable_canary_waits_in_the_triggerer_then_sends_the_rest_once(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    configure(sim, report_delay=1.0)
    op_kwargs = {"mobiles": numbers(2500), "deferrable": True, "canary_timeout": 30, **store_args}
    with pytest.raises(TaskDeferred) as deferred:
        send_op(**op_kwargs).execute(task_context())
    assert deferred.value.method_name == "execute_complete"
    assert set(accepted(sim)) == set(numbers(100))  # only the canary went out before the wait
    waiting, waits = deferred.value, 1
    while True:
        try:
            summary = resume(op_kwargs, waiting)
            break
        except TaskDeferred as again:
            waiting, waits = again, waits + 1
            assert waits < 40
            assert set(accepted(sim)) == set(numbers(100))
    assert waits >= 2  # the reports came a second after the canary: it was checked again, not judged at once
    assert summary["canary"]["passed"] is True and summary["canary"]["delivered"] == 100
    assert summary["sent_requests"] == 4 and summary["accepted_numbers"] == 2500
    counts = accepted(sim)
    assert len(counts) == 2500 and set(counts.values()) == {1}


# ------------------------------------------------------------------------------------------- retries


def test_a_retry_after_the_canary_passed_sends_only_the_rest_and_does_not_judge_again(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    real_submit = SmsHook.submit
    calls = {"n": 0}

    def die_on_third(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("worker killed")  # as a kill stops the task: the rest is partly sent
        return real_submit(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmsHook, "submit", die_on_third)
        with pytest.raises(KeyboardInterrupt):
            send_op(mobiles=numbers(2500), **store_args).execute(task_context())
    assert len(accepted(sim)) == 1100  # the canary and the first request of the rest

    def judged_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a retry judged (and would wait for) a canary that had passed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CanaryJudge, "await_verdict", judged_again)
        # the dead try left request #3 "sending" (it never reached the vendor): resent after a short grace
        retry = send_op(mobiles=numbers(2500), on_unknown="resend", unknown_grace_period=0.3, **store_args)
        summary = retry.execute(task_context())
    assert summary["canary"]["passed"] is True and summary["canary"]["numbers"] == 100
    assert summary["skipped_requests"] == 2 and summary["resent_requests"] == 1 and summary["sent_requests"] == 2
    counts = accepted(sim)
    assert len(counts) == 2500 and set(counts.values()) == {1}


def test_changing_the_canary_between_tries_is_a_plan_change(sim: GatewaySimulator) -> None:
    block_template(sim)
    with pytest.raises(SmsCanaryFailedError):
        send_op(mobiles=numbers(2500), template_id=BLOCKED).execute(task_context())
    with pytest.raises(SmsPlanChangedError, match=r"the canary \(100 numbers planned, 200 numbers now\)"):
        send_op(mobiles=numbers(2500), template_id=BLOCKED, canary=200).execute(task_context())
    with pytest.raises(SmsPlanChangedError, match=r"the canary \(100 numbers planned, none now\)"):
        send_op(mobiles=numbers(2500), template_id=BLOCKED, canary=None).execute(task_context())
    assert set(accepted(sim)) == set(numbers(100))  # the changed tries sent nothing
    # and a plan made without a canary is changed by adding one
    other = FakeTaskInstance(task_id="other")
    send_op(mobiles=numbers(10, "139"), canary=None).execute(task_context(other))
    with pytest.raises(SmsPlanChangedError, match=r"the canary \(none planned, 5 numbers now\)"):
        send_op(mobiles=numbers(10, "139"), canary=5).execute(task_context(other))


def test_with_several_requests_in_flight_no_intent_is_stored_beyond_the_canary(sim: GatewaySimulator) -> None:
    """``max_concurrency=4`` would store the first four requests' intents with the plan: only the canary's
    may be, or a retry would take the rest for started (and the canary for passed)."""
    block_template(sim)
    op_kwargs: dict[str, Any] = {"mobiles": numbers(2500), "template_id": BLOCKED, "max_concurrency": 4}
    with pytest.raises(SmsCanaryFailedError):
        send_op(**op_kwargs).execute(task_context())
    with SmsStore() as store, store.database.transaction(write=False) as cur:
        cur.execute(store.database.sql("SELECT request_index, state FROM {p}requests ORDER BY request_index"))
        assert cur.fetchall() == [(0, "accepted"), (1, "planned"), (2, "planned"), (3, "planned")]
    with pytest.raises(SmsCanaryFailedError):  # judged again, not taken for passed
        send_op(**op_kwargs).execute(task_context())
    assert set(accepted(sim)) == set(numbers(100))


def test_a_dry_run_counts_the_canarys_requests_as_the_plan_would_and_sends_nothing(sim: GatewaySimulator) -> None:
    summary = send_op(mobiles=numbers(2500), dry_run=True).execute(task_context())
    assert summary["requests"] == 4 and summary["canary"] == {"numbers": 100, "requests": 1}
    plain = send_op(mobiles=numbers(2500), dry_run=True, canary=None).execute(task_context())
    assert plain["requests"] == 3 and "canary" not in plain
    assert accepted(sim) == {}


def test_a_canary_on_a_query_vendor_asks_for_its_reports_and_sends_the_rest_once(sim: GatewaySimulator) -> None:
    """intl hands out no report queue: each check asks about the canary's pending numbers."""
    configure(sim, report_delay=0.5)
    mobiles = [f"86138{i:08d}" for i in range(300)]
    summary = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_intl",
        content="hello",
        signature="S",
        mobiles=mobiles,
        canary=50,
        canary_timeout=30,
    ).execute(task_context())
    assert summary["canary"]["numbers"] == 50 and summary["canary"]["delivered"] == 50
    assert summary["canary"]["passed"] is True and summary["accepted_numbers"] == 300
    reply = requests.get(f"{sim.http_url}/_sim/ledger", params={"vendor": "intl", "numbers": "1"}, timeout=10)
    counts = reply.json()["intl"]["accepted"]["counts"]
    assert len(counts) == 300 and set(counts.values()) == {1}
