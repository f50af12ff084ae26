"""Exactly-once sends across tries: the stored plan, intents before the wire, unknown outcomes resolved.

Against the simulator over real sockets and a real store (SQLite, and PostgreSQL where marked); every
count is taken at the simulator's side, from its ledger. The crash runner (``tests/crash``) kills real
processes at each point; these tests pin down each rule on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_sms.errors import SmsOutcomeUnknownError, SmsPlanChangedError
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import FakeTaskInstance, task_context
from tests.integration.simulator_ledger import ledger_counts as ledger

pytestmark = pytest.mark.integration


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {"task_id": "send", "sms_conn_id": "sms_paasw_v2", "content": "hello", "signature": "S"}
    return SmsSendOperator(**{**defaults, **kwargs})


def states(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "sms_store.db") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM sms_requests GROUP BY state").fetchall())


def lose_reply_of_first_send(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, vendor: str, path: str) -> None:
    """The vendor accepts the first send but answers too late: the client gives up, the outcome is unknown."""
    monkeypatch.setenv(f"AIRFLOW_CONN_SMS_{vendor.upper()}", sim.connection_json(vendor, retry_wait=0.01, timeout=0.3))
    sim.gateway.add_fault(Fault(kind="delay", remaining=1, vendor=vendor, path=path, seconds=0.8))


# ------------------------------------------------------------------------------------------- the plan


def test_a_retry_given_other_numbers_fails_and_says_what_differs(sim: GatewaySimulator) -> None:
    send_op(mobiles=numbers(1500)).execute(task_context())
    with pytest.raises(SmsPlanChangedError, match=r"number list \(1500 numbers planned, 1501 now\)"):
        send_op(mobiles=numbers(1501)).execute(task_context())
    with pytest.raises(SmsPlanChangedError, match=r"the text \(5 characters planned, 6 now\)"):
        send_op(mobiles=numbers(1500), content="hello!").execute(task_context())
    assert sum(ledger(sim, "paasw_v2").values()) == 1500  # nothing went out for the changed tries


def test_new_plan_sends_the_new_input_and_keeps_what_was_accepted(sim: GatewaySimulator, home: Path) -> None:
    send_op(mobiles=numbers(1000)).execute(task_context())
    summary = send_op(mobiles=numbers(1000, "139"), on_plan_change="new_plan").execute(task_context())
    assert summary["plan"] == 2 and summary["sent_requests"] == 1
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 2000 and set(counts.values()) == {1}
    assert states(home) == {"accepted": 2}


def test_an_opt_out_between_tries_changes_no_other_request(sim: GatewaySimulator, home: Path) -> None:
    """2,500 numbers, the first request accepted, then the worker dies; a number of request 3 opts out."""
    real_submit = SmsHook.submit
    calls = {"n": 0}

    def die_on_second(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("worker killed")  # not an Exception: the task stops, as a kill stops it
        return real_submit(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmsHook, "submit", die_on_second)
        with pytest.raises(KeyboardInterrupt):
            send_op(mobiles=numbers(2500)).execute(task_context())
    with SmsStore() as store:
        store.add_opt_outs(["13800002400"])
    # the dead try left request #2 "sending": a retry must not resend it blindly, so allow it to resend
    # after a short grace (nothing was sent) and check that only the opted-out number is missing
    summary = send_op(mobiles=numbers(2500), on_unknown="resend", unknown_grace_period=0.3).execute(task_context())
    assert summary["skipped_requests"] == 1 and summary["resent_requests"] == 1 and summary["sent_requests"] == 2
    assert summary["opted_out"] == 1 and summary["accepted_numbers"] == 2499
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 2499 and set(counts.values()) == {1}
    assert "13800002400" not in counts


def test_numbers_opted_out_before_the_first_try_are_left_out_of_the_plan(sim: GatewaySimulator) -> None:
    with SmsStore() as store:
        store.add_opt_outs(["13800000001"])
    first = send_op(mobiles=numbers(3)).execute(task_context())
    assert first["opted_out"] == 1 and first["accepted_numbers"] == 2
    again = send_op(mobiles=numbers(3)).execute(task_context())
    assert again == first | {"skipped_requests": 1, "sent_requests": 0}


# ------------------------------------------------------------------------------------------- intents


@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_request_is_stored_as_sending_before_it_goes_out(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    """Looked at from a second connection at the moment each request leaves: its row says ``sending``."""
    real_submit = SmsHook.submit
    seen: list[str | None] = []
    lock = threading.Lock()

    def watch(self: SmsHook, request: Any) -> Any:
        with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as s:
            plan = s.find_plan(_only_plan_key(s))
        assert plan is not None
        with lock:
            seen.append(next(r.state for r in plan.requests if r.index == request.index))
        return real_submit(self, request)

    monkeypatch.setattr(SmsHook, "submit", watch)
    summary = send_op(mobiles=numbers(6000), max_concurrency=concurrency, **store_args).execute(task_context())
    assert summary["accepted_numbers"] == 6000
    assert seen == ["sending"] * 6


def _only_plan_key(store: SmsStore) -> str:
    from airflow_provider_sms.sending import task_key
    from airflow_provider_sms.store import TaskIdentity

    return task_key("operator", "sms_paasw_v2", TaskIdentity("dag", "run-1", "send", -1))


# ------------------------------------------------------------------------------------------- unknown outcomes


def test_a_lost_reply_is_resolved_from_delivery_reports(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    lose_reply_of_first_send(sim, monkeypatch, "paasw_v2", "/message/send")
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1"):
        send_op(mobiles=numbers(1500)).execute(task_context())
    summary = send_op(mobiles=numbers(1500)).execute(task_context())
    assert summary["unknown_requests"] == 1 and summary["resolved_requests"] == 1 and summary["resent_requests"] == 0
    assert len(summary["batch_ids"]) == 2
    counts = ledger(sim, "paasw_v2")
    assert len(counts) == 1500 and set(counts.values()) == {1}


@pytest.mark.parametrize(("vendor", "path"), [("paasw_v1", "/sms/send"), ("cloud_mas", "/sms/submit")])
def test_lost_replies_of_other_queue_vendors_are_resolved_too(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, vendor: str, path: str
) -> None:
    lose_reply_of_first_send(sim, monkeypatch, vendor, path)
    op = {"sms_conn_id": f"sms_{vendor}", "mobiles": numbers(300), "signature": None}  # the accounts' own
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(**op).execute(task_context())
    summary = send_op(**op).execute(task_context())
    assert summary["resolved_requests"] == 1 and summary["accepted_numbers"] == 300
    assert set(ledger(sim, vendor).values()) == {1}


def test_without_evidence_the_author_chooses_fail_or_resend(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.gateway.config.report_delay = 3600  # no report will come in time: no evidence either way
    lose_reply_of_first_send(sim, monkeypatch, "paasw_v2", "/message/send")
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(mobiles=numbers(1500)).execute(task_context())
    with pytest.raises(SmsOutcomeUnknownError, match="no evidence of acceptance within 0s") as info:
        send_op(mobiles=numbers(1500), unknown_grace_period=0).execute(task_context())
    assert len(info.value.mobiles) == 1000
    summary = send_op(mobiles=numbers(1500), on_unknown="resend", unknown_grace_period=0).execute(task_context())
    assert summary["resent_requests"] == 1
    counts = ledger(sim, "paasw_v2")
    assert sorted(set(counts.values())) == [1, 2]  # the author chose to resend what the vendor had accepted


def test_a_deferrable_send_frees_its_worker_slot_while_it_waits_for_evidence(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.gateway.config.report_delay = 3600
    lose_reply_of_first_send(sim, monkeypatch, "paasw_v2", "/message/send")
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(mobiles=numbers(1500)).execute(task_context())
    op = send_op(mobiles=numbers(1500), deferrable=True, unknown_grace_period=60)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    assert deferred.value.method_name == "execute_complete"
    moment = deferred.value.trigger.moment  # type: ignore[attr-defined]
    assert isinstance(moment, datetime)
    carried = deferred.value.kwargs["carried"]
    assert carried["sent"] == 1 and carried["unknown"] == 1  # request #2 went out before the wait
    sim.gateway.config.report_delay = 0
    with sim.gateway.lock:  # the vendor's reports fall due now
        for entries in sim.gateway._due.values():
            entries[:] = [(0.0, n, m) for _, n, m in entries]
    summary = op.execute_complete(task_context(), event=None, carried=carried)
    assert summary["resolved_requests"] == 1 and summary["sent_requests"] == 1
    assert set(ledger(sim, "paasw_v2").values()) == {1}


def test_account_md5_resends_under_the_same_task_id_and_is_never_stuck(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vendor accepted request #1, its reply was lost; the retry asks again and is told "taskId used"."""
    lose_reply_of_first_send(sim, monkeypatch, "account_md5", "/api/v1/send")
    op = {"sms_conn_id": "sms_account_md5", "mobiles": numbers(7000)}
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(**op).execute(task_context())
    summary = send_op(**op).execute(task_context())
    assert summary["unknown_requests"] == 1 and summary["resolved_requests"] == 1
    assert summary["accepted_numbers"] == 7000 and summary["sent_requests"] == 2
    counts = ledger(sim, "account_md5")
    assert len(counts) == 7000 and set(counts.values()) == {1}


def test_an_unreadable_reply_after_a_send_is_an_unknown_outcome(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply nested 5,000 levels deep: the request is recorded as unknown, and the retry resolves it."""
    from airflow_provider_sms.hooks import paasw_v2

    real = paasw_v2.PaaswV2Hook._submit
    calls = {"n": 0}

    def deep_reply(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        receipt = real(self, request)  # the vendor accepted it
        if calls["n"] == 1:
            json.loads("[" * 5000 + "]" * 5000)  # what parsing such a reply does: RecursionError
        return receipt

    monkeypatch.setattr(paasw_v2.PaaswV2Hook, "_submit", deep_reply)
    with pytest.raises(SmsOutcomeUnknownError, match="could not be read"):
        send_op(mobiles=numbers(1500)).execute(task_context())
    summary = send_op(mobiles=numbers(1500)).execute(task_context())
    assert summary["resolved_requests"] == 1
    assert set(ledger(sim, "paasw_v2").values()) == {1}


def test_intl_is_resolved_by_pushed_reports_and_says_plainly_when_there_are_none(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_sms.records import DELIVERED, DeliveryReport

    lose_reply_of_first_send(sim, monkeypatch, "intl", "/api/v1/international/sms/send")
    op = {"sms_conn_id": "sms_intl", "mobiles": numbers(1500, "86138"), "unknown_grace_period": 0}
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(**op).execute(task_context())
    with pytest.raises(SmsOutcomeUnknownError, match=r"pushed reports .* are the only evidence"):
        send_op(**op).execute(task_context())
    # the vendor pushes its reports (what the push receiver stores): msgId and mobile
    accepted = list(sim.gateway.messages["intl"])
    pushed = [
        DeliveryReport("intl", batch_id, mobile, DELIVERED, "0", "delivered", None) for batch_id, mobile in accepted
    ]
    with SmsStore() as store:
        store.save_reports(pushed[:1], conn_id="sms_intl")
    summary = send_op(**op).execute(task_context())  # request #2 went out in the try before
    assert summary["resolved_requests"] == 1 and summary["skipped_requests"] == 1
    assert set(ledger(sim, "intl").values()) == {1} and len(ledger(sim, "intl")) == 1500


def test_mapped_instances_have_their_own_plans(sim: GatewaySimulator) -> None:
    first = send_op(mobiles=numbers(5)).execute(task_context(FakeTaskInstance(map_index=0)))
    second = send_op(mobiles=numbers(5, "139")).execute(task_context(FakeTaskInstance(map_index=1)))
    assert first["sent_requests"] == second["sent_requests"] == 1
    assert len(ledger(sim, "paasw_v2")) == 10


def test_the_ledger_counts_reports_handed_out(sim: GatewaySimulator) -> None:
    send_op(mobiles=numbers(20)).execute(task_context())
    sim.gateway.take_reports("paasw_v2")
    sim.gateway.take_reports("paasw_v2")
    reply = requests.get(f"{sim.http_url}/_sim/ledger", timeout=10).json()["paasw_v2"]
    assert reply["reports"] == {"handed_out": 20, "distinct": 20, "handed_out_more_than_once": 0}
    assert reply["accepted"]["numbers"] == 20 and reply["accepted"]["acceptances"] == 20


def test_a_batch_that_also_messaged_other_numbers_is_no_evidence(home: Path) -> None:
    """Someone else's send that reached one of the request's numbers must not pass for the lost reply."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_sms.records import DELIVERED, DeliveryReport

    went_out = datetime.now(timezone.utc) - timedelta(seconds=1)
    unknown = {"k": (went_out, ["13800000001", "13800000002"])}
    with SmsStore() as store:
        store.save_reports(
            [
                DeliveryReport("paasw_v2", "OTHER", "13800000001", DELIVERED, "DELIVRD", "", None),
                DeliveryReport("paasw_v2", "OTHER", "13900000009", DELIVERED, "DELIVRD", "", None),
            ]
        )
        assert store.acceptance_evidence("paasw_v2", 0, unknown)[0] == {}
        store.save_reports([DeliveryReport("paasw_v2", "OURS", "13800000002", DELIVERED, "DELIVRD", "", None)])
        assert store.acceptance_evidence("paasw_v2", 0, unknown)[0] == {"k": "OURS"}


def test_a_try_taken_for_dead_and_its_retry_never_send_one_request_twice(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """A try Airflow took for dead keeps running while its retry starts (a network partition): both execute
    one stored plan at once. The old try's reply to request #3 is late; meanwhile the retry claims and sends
    #4. When the old try records #3 and claims #4 as its next request, the claim fails: it stops, sending
    nothing twice, and the retry, seeing #3 recorded by the other, counts it as resolved and finishes."""
    from airflow_provider_sms.errors import SmsConcurrentSendError
    from airflow_provider_sms.hooks import paasw_v2

    real = paasw_v2.PaaswV2Hook._submit
    old_try_waits, retry_sent = threading.Event(), threading.Event()

    def submit(self: SmsHook, request: Any) -> Any:
        receipt = real(self, request)  # the vendor accepted it
        if threading.current_thread().name == "old-try" and request.index == 2:
            old_try_waits.set()
            assert retry_sent.wait(30), "the retry never sent request #4"
        elif threading.current_thread().name == "retry" and request.index == 3:
            retry_sent.set()
        return receipt

    monkeypatch.setattr(paasw_v2.PaaswV2Hook, "_submit", submit)
    outcome: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            outcome[name] = send_op(mobiles=numbers(8000), unknown_grace_period=20, **store_args).execute(
                task_context()
            )
        except Exception as exc:  # what each try ended with is the test's to judge
            outcome[name] = exc

    old_try = threading.Thread(target=run, args=("old-try",), name="old-try")
    old_try.start()
    assert old_try_waits.wait(30)
    retry = threading.Thread(target=run, args=("retry",), name="retry")
    retry.start()
    old_try.join(60)
    retry.join(60)
    assert isinstance(outcome["old-try"], SmsConcurrentSendError), outcome["old-try"]
    assert "request #4 was taken by another try" in str(outcome["old-try"])
    summary = outcome["retry"]
    assert isinstance(summary, dict), summary
    assert (summary["accepted_numbers"], summary["resolved_requests"]) == (8000, 1)
    assert ledger(sim, "paasw_v2") == dict.fromkeys(numbers(8000), 1)


def test_a_plan_stored_by_a_try_running_beside_this_one_is_left_to_it(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    """Two first tries at once both plan; the store keeps one plan, and the try that did not store it sends
    nothing."""
    from airflow_provider_sms.errors import SmsConcurrentSendError
    from airflow_provider_sms.records import StoredPlan
    from airflow_provider_sms.store import TaskIdentity

    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        plan = StoredPlan(task_key="t", plan_key="t-1", generation=1, inputs={}, numbers=0, opted_out=0, requests=())
        store.save_plan(plan, vendor="paasw_v2", conn_id="c", task=TaskIdentity())
        with pytest.raises(SmsConcurrentSendError, match="stored by another try"):
            store.save_plan(plan, vendor="paasw_v2", conn_id="c", task=TaskIdentity())
