"""``SmsSendOperator(max_concurrency=N)``: requests overlap, yet every accepted request is recorded, even on failure.

Against the simulator over real sockets and the embedded SQLite store, like ``test_operators.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.errors import SmsOutcomeUnknownError
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import task_context

pytestmark = pytest.mark.integration


def context() -> dict[str, Any]:
    return task_context()


def numbers(count: int) -> list[str]:
    return [f"138{i:08d}" for i in range(count)]


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {"task_id": "send", "sms_conn_id": "sms_paasw_v2", "content": "hello", "signature": "S"}
    return SmsSendOperator(**{**defaults, **kwargs})


def sends_seen(sim: GatewaySimulator) -> int:
    return int(sim.gateway.stats()["requests"].get("paasw_v2 /message/send", 0))


def stored_requests(home: Path) -> dict[str, str]:
    """Idempotency key -> state (accepted or unknown), for every request the store recorded."""
    with sqlite3.connect(home / "sms_store.db") as db:
        return {key: state for key, state in db.execute("SELECT idempotency_key, state FROM sms_requests")}


def accepted_batches(home: Path) -> set[str]:
    with sqlite3.connect(home / "sms_store.db") as db:
        return {row[0] for row in db.execute("SELECT batch_id FROM sms_requests WHERE state = 'accepted'")}


def vendor_batches(sim: GatewaySimulator) -> set[str]:
    return {batch_id for batch_id, _ in sim.gateway.messages["paasw_v2"]}


class InFlight:
    """Wraps ``SmsHook.submit`` to see how many requests overlap and which session each thread uses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = self.peak = 0
        self.sessions: dict[int, set[int]] = {}
        self.lock = threading.Lock()
        real = SmsHook.submit

        def submit(hook: SmsHook, request: Any) -> Any:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.sessions.setdefault(threading.get_ident(), set()).add(id(hook.session))
            try:
                return real(hook, request)
            finally:
                with self.lock:
                    self.now -= 1

        monkeypatch.setattr(SmsHook, "submit", submit)


def test_requests_overlap_up_to_the_limit_and_every_one_is_recorded(
    sim: GatewaySimulator, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.gateway.config.latency = 0.2
    watch = InFlight(monkeypatch)
    started = time.monotonic()
    summary = send_op(mobiles=numbers(8000), max_concurrency=4).execute(context())
    elapsed = time.monotonic() - started
    assert summary["requests"] == summary["sent_requests"] == 8
    assert summary["accepted_numbers"] == 8000
    assert 2 <= watch.peak <= 4
    assert elapsed < 8 * 0.2  # one at a time would take at least 1.6 s
    # batch ids in plan order, whatever order the vendor accepted them in
    with SmsStore() as store:
        progress = store.batch_progress("paasw_v2", summary["batch_ids"])
    assert progress.total == 8000
    assert set(summary["batch_ids"]) == accepted_batches(home) == vendor_batches(sim)
    accepted = sim.gateway.messages["paasw_v2"]
    assert len(accepted) == 8000 and len({mobile for _, mobile in accepted}) == 8000
    with sqlite3.connect(home / "sms_store.db") as db:
        assert db.execute("SELECT count(*) FROM sms_sent_messages").fetchone()[0] == 8000


def test_each_thread_has_its_own_session(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.gateway.config.latency = 0.1
    watch = InFlight(monkeypatch)
    send_op(mobiles=numbers(6000), max_concurrency=3).execute(context())
    assert len(watch.sessions) >= 2
    sessions = [session for per_thread in watch.sessions.values() for session in per_thread]
    assert all(len(per_thread) == 1 for per_thread in watch.sessions.values())
    assert len(set(sessions)) == len(sessions)  # no session is used by two threads
    assert threading.get_ident() not in watch.sessions  # the task's own thread sends nothing


def test_a_crash_mid_way_leaves_every_accepted_request_recorded(
    sim: GatewaySimulator, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.gateway.config.latency = 0.05
    real = SmsHook.submit
    calls = {"n": 0}
    lock = threading.Lock()

    def crash_on_fifth(hook: SmsHook, request: Any) -> Any:
        with lock:
            calls["n"] += 1
            crash = calls["n"] == 5
        if crash:
            raise RuntimeError("worker killed")
        return real(hook, request)

    monkeypatch.setattr(SmsHook, "submit", crash_on_fifth)
    with pytest.raises(RuntimeError, match="worker killed"):
        send_op(mobiles=numbers(12000), max_concurrency=3).execute(context())
    sent_before_retry = sends_seen(sim)
    assert 4 <= sent_before_retry < 12  # stopped early: no new request after the failure
    assert accepted_batches(home) == vendor_batches(sim)  # whatever the vendor took is in the store
    assert len(accepted_batches(home)) == sent_before_retry

    monkeypatch.setattr(SmsHook, "submit", real)
    summary = send_op(mobiles=numbers(12000), max_concurrency=3).execute(context())  # the retry
    assert summary["skipped_requests"] == sent_before_retry
    assert summary["sent_requests"] == 12 - sent_before_retry
    accepted = sim.gateway.messages["paasw_v2"]
    assert len(accepted) == 12000 and len({mobile for _, mobile in accepted}) == 12000  # every number once


def test_an_unknown_outcome_is_recorded_and_resolved_not_resent(
    sim: GatewaySimulator, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMS_PAASW_V2", sim.connection_json("paasw_v2", retry_wait=0.01, timeout=0.5))
    sim.gateway.add_fault(Fault(kind="delay", remaining=1, vendor="paasw_v2", path="/message/send", seconds=1.5))
    with pytest.raises(SmsOutcomeUnknownError):
        send_op(mobiles=numbers(6000), max_concurrency=3).execute(context())
    states = list(stored_requests(home).values())
    assert states.count("unknown") == 1
    # the vendor did take the slow request: everything it took but that one is recorded as accepted
    assert len(vendor_batches(sim)) == states.count("accepted") + 1
    assert accepted_batches(home) < vendor_batches(sim)

    summary = send_op(mobiles=numbers(6000), max_concurrency=3).execute(context())
    assert summary["unknown_requests"] == 1 and summary["resolved_requests"] == 1 and summary["resent_requests"] == 0
    assert len(vendor_batches(sim)) == 6  # the rest went out; the unknown one was resolved from reports, not resent
    assert list(stored_requests(home).values()).count("accepted") == 6


def test_more_places_than_requests_and_https(sim: GatewaySimulator) -> None:
    summary = send_op(sms_conn_id="sms_cloud_mas", signature=None, mobiles=numbers(7000), max_concurrency=8).execute(
        context()
    )
    assert summary["requests"] == 2 and summary["accepted_numbers"] == 7000


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_max_concurrency_must_be_a_whole_number_of_at_least_one(value: Any) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        send_op(mobiles="13800000000", max_concurrency=value)


def test_a_store_failure_in_a_sending_thread_fails_the_send(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vendor refuses a request and the store cannot note it: the thread must not vanish, the task fails."""
    from airflow_provider_sms.errors import SmsVendorError

    real_submit = SmsHook.submit
    calls = {"n": 0}

    def refuse_third(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise SmsVendorError("paasw_v2", "40001", "refused", "", "send request")
        return real_submit(self, request)

    def store_down(self: SmsStore, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database connection lost")

    monkeypatch.setattr(SmsHook, "submit", refuse_third)
    monkeypatch.setattr(SmsStore, "release_intent", store_down)
    with pytest.raises((RuntimeError, SmsVendorError)):
        send_op(mobiles=numbers(20000), max_concurrency=4).execute(context())
    assert sends_seen(sim) < 20  # it stopped
