"""``SmsNotifier`` through the simulator over real sockets, with its quiet period held in a real store
(SQLite, and PostgreSQL when ``SMS_TEST_POSTGRES_URI`` is set) across threads and processes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_sms.errors import SmsTransportError
from airflow_provider_sms.notifications import SmsNotifier, send_sms_notification
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import FakeTaskInstance

pytestmark = pytest.mark.integration

CONN = "sms_paasw_v2"
ONCALL = ["13900000001", "13900000002"]
TEXT = "{{ dag.dag_id }}.{{ ti.task_id }} failed: {{ exception }}"


def failure_context(task_id: str = "load", dag_id: str = "etl", error: str = "disk full") -> dict[str, Any]:
    """What a task's on_failure_callback gets (the parts the notifier and its templates use)."""
    dag = DAG(dag_id=dag_id, schedule=None)
    return {
        "dag": dag,
        "ti": FakeTaskInstance(dag_id=dag_id, task_id=task_id),
        "task_instance": FakeTaskInstance(dag_id=dag_id, task_id=task_id),
        "run_id": "run-1",
        "exception": RuntimeError(error),
    }


def notifier(**kwargs: Any) -> SmsNotifier:
    defaults: dict[str, Any] = {"sms_conn_id": CONN, "mobiles": ONCALL, "text": TEXT, "signature": "Ops"}
    return SmsNotifier(**{**defaults, **kwargs})


def sent(sim: GatewaySimulator) -> list[tuple[str, str]]:
    """(mobile, content) of every message the simulated vendor accepted."""
    return sorted((m.mobile, m.content) for m in sim.gateway.messages["paasw_v2"].values())


def send_requests(sim: GatewaySimulator) -> int:
    return int(sim.gateway.stats()["requests"].get("paasw_v2 /message/send", 0))


# ---------------------------------------------------------------------------------------------- sending


def test_renders_the_context_and_sends_one_message_per_number(sim: GatewaySimulator) -> None:
    note = notifier(mobiles="13900000001, +86 139 0000 0002")
    note(failure_context())
    assert sent(sim) == [(m, "【Ops】etl.load failed: disk full") for m in ONCALL]
    assert send_requests(sim) == 1
    assert note.text == TEXT  # the instance keeps its templates for the next callback
    assert send_sms_notification is SmsNotifier


def test_each_call_renders_its_own_context(sim: GatewaySimulator) -> None:
    note = notifier(mobiles=["13900000001"], quiet_period=0)
    note(failure_context(task_id="extract"))
    note(failure_context(task_id="load"))
    assert sent(sim) == [
        ("13900000001", "【Ops】etl.extract failed: disk full"),
        ("13900000001", "【Ops】etl.load failed: disk full"),
    ]


def test_templated_numbers_and_a_long_exception_cut_short(sim: GatewaySimulator) -> None:
    context = {**failure_context(error="x" * 5000), "params": {"oncall": "13900000003"}}
    notifier(mobiles=["{{ params.oncall }}"], max_chars=40)(context)
    [(mobile, content)] = sent(sim)
    assert mobile == "13900000003"
    assert content.startswith("【Ops】etl.load failed: xxx") and content.endswith("…")
    assert len(content) == len("【Ops】") + 40


def test_the_send_is_recorded_in_the_store(sim: GatewaySimulator, home: Path) -> None:
    notifier()(failure_context())
    with sqlite3.connect(home / "sms_store.db") as db:
        rows = db.execute("SELECT vendor, conn_id, state, total, dag_id, task_id FROM sms_requests").fetchall()
        assert rows == [("paasw_v2", CONN, "accepted", 2, "etl", "load")]
        assert db.execute("SELECT COUNT(*) FROM sms_sent_messages").fetchone()[0] == 2


def test_async_notify(sim: GatewaySimulator) -> None:
    async def fire() -> None:
        await notifier(context=failure_context())  # type: ignore[arg-type]

    asyncio.run(fire())
    assert sent(sim) == [(m, "【Ops】etl.load failed: disk full") for m in ONCALL]


# ---------------------------------------------------------------------------------------------- quiet period


def test_fifty_failures_of_one_dag_send_one_sms(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    note = notifier(quiet_period=timedelta(minutes=10), **store_args)
    for i in range(50):
        note(failure_context(task_id=f"task_{i}"))
    assert send_requests(sim) == 1
    assert sent(sim) == [(m, "【Ops】etl.task_0 failed: disk full") for m in ONCALL]

    notifier(**store_args)(failure_context(dag_id="other_dag"))  # another DAG has its own period
    notifier(text="{{ dag.dag_id }} recovered", **store_args)(failure_context())  # so has another notifier
    assert send_requests(sim) == 3
    rows = query(store_args, "SELECT quiet_key, suppressed FROM {p}notifications ORDER BY quiet_key")
    assert len(rows) == 3
    assert sorted(int(n) for _, n in rows) == [0, 0, 49]


def query(store_args: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    prefix = store_args.get("store_table_prefix", "sms_")
    with (
        SmsStore(store_args.get("store_conn_id"), table_prefix=prefix) as s,
        s.database.transaction(write=False) as cur,
    ):
        cur.execute(s.database.sql(sql))
        return [tuple(r) for r in cur.fetchall()]


def test_after_the_quiet_period_another_sms(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    note = notifier(quiet_period=1.0, **store_args)
    note(failure_context(task_id="a"))
    note(failure_context(task_id="b"))
    assert send_requests(sim) == 1
    time.sleep(1.1)
    note(failure_context(task_id="c"))
    note(failure_context(task_id="d"))
    assert send_requests(sim) == 2
    assert {content for _, content in sent(sim)} == {"【Ops】etl.a failed: disk full", "【Ops】etl.c failed: disk full"}


def test_concurrent_threads_send_exactly_one(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    note = notifier(**store_args)
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def fail(i: int) -> None:
        try:
            barrier.wait()
            note(failure_context(task_id=f"t{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert send_requests(sim) == 1
    assert len(sent(sim)) == 2


def _fail_in_a_process(task_id: str, barrier: Any, store_args: dict[str, Any], out: Any) -> None:
    """One worker process's on_failure_callback (spawned: a fresh interpreter, like a task process)."""
    note = notifier(**store_args)
    context = failure_context(task_id=task_id)
    barrier.wait(120)  # every interpreter has imported Airflow: now all fail at once
    out.put(note.send(context)["status"])


def test_concurrent_processes_send_exactly_one(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_fail_in_a_process, args=(f"t{i}", barrier, store_args, out)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    outcomes = sorted(out.get(timeout=5) for _ in procs)
    assert outcomes == ["sent", "suppressed", "suppressed"]
    assert send_requests(sim) == 1


# ---------------------------------------------------------------------------------------------- failures


def test_a_failed_send_is_logged_and_gives_the_period_back(
    sim: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # nothing listens on port 9: the request surely never left, so the claim is released
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_PAASW_V2",
        json.dumps({**json.loads(sim.connection_json("paasw_v2", retry_wait=0.01)), "host": "http://127.0.0.1:9"}),
    )
    note = notifier()
    note(failure_context(task_id="a"))  # logged, not raised
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "SMS notification through sms_paasw_v2 failed: SmsTransportError" in logged
    assert "gw7ewiz4eJ5646grg" not in logged
    with pytest.raises(SmsTransportError, match="could not connect"):  # released: this one tried again
        notifier(raise_on_error=True)(failure_context(task_id="b"))

    monkeypatch.setenv("AIRFLOW_CONN_SMS_PAASW_V2", sim.connection_json("paasw_v2", retry_wait=0.01))
    note(failure_context(task_id="c"))  # the gateway is back: this one is sent
    assert sent(sim) == [(m, "【Ops】etl.c failed: disk full") for m in ONCALL]


def test_an_unknown_outcome_keeps_the_quiet_period(sim: GatewaySimulator) -> None:
    sim.gateway.add_fault(Fault(kind="status", remaining=1, vendor="paasw_v2", path="/message/send", status=502))
    note = notifier()
    note(failure_context(task_id="a"))  # a 5xx after the send went out: it may have been sent
    note(failure_context(task_id="b"))
    assert send_requests(sim) == 1  # not resent by the next failure


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="negative"):
        notifier(quiet_period=-1)
    with pytest.raises(ValueError, match="text"):
        notifier(text="")
    assert notifier(quiet_period=timedelta(minutes=2)).quiet_period == 120.0
    assert notifier(quiet_period=None).quiet_period == 0.0


def test_quiet_claims_are_atomic_in_the_store(store_args: dict[str, Any]) -> None:
    prefix = store_args.get("store_table_prefix", "sms_")
    stores = [SmsStore(store_args.get("store_conn_id"), table_prefix=prefix) for _ in range(8)]
    t0 = datetime.now(timezone.utc)
    won: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(store: SmsStore) -> None:
        barrier.wait()
        won.append(store.claim_quiet_period("k", 60, now=t0))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
    store = stores[0]
    assert store.claim_quiet_period("k", 60, now=t0 + timedelta(seconds=59)) is False
    assert store.claim_quiet_period("k", 60, now=t0 + timedelta(seconds=60)) is True
    assert store.release_quiet_period("k", t0) is False  # not the current claim
    assert store.release_quiet_period("k", t0 + timedelta(seconds=60)) is True
    assert store.claim_quiet_period("k", 60, now=t0 + timedelta(seconds=61)) is True
    for s in stores:
        s.close()


def test_every_outcome_has_the_same_shape(sim: GatewaySimulator) -> None:
    """Sent, suppressed, or every number opted out: one shape, so a caller reads each the same way (the opted-out
    outcome used to carry neither batch_ids nor numbers)."""
    with SmsStore() as store:
        store.add_opt_outs(["13900000009"], reason="TD", source="test")
    opted = notifier(mobiles="13900000009", skip_opted_out=True, quiet_key="a").send(failure_context())
    first = notifier(quiet_key="b").send(failure_context())
    again = notifier(quiet_key="b").send(failure_context())
    assert [o["status"] for o in (opted, first, again)] == ["opted_out", "sent", "suppressed"]
    assert set(opted) == set(first) == set(again)
    assert (opted["batch_ids"], opted["numbers"], opted["opted_out"]) == ([], 0, 1)
    assert (first["numbers"], first["opted_out"], len(first["batch_ids"])) == (2, 0, 1)
    assert send_requests(sim) == 1


def test_a_page_goes_out_through_the_fallback_when_the_primary_is_down(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """The primary refuses connections: the page moves to the fallback, once, recorded with its store; with
    the store unreachable too, it still goes out through the fallback, unrecorded."""
    down = {**json.loads(sim.connection_json("paasw_v2", retry_wait=0.01, retries=0)), "host": "http://127.0.0.1:9"}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_DOWN", json.dumps(down))
    note = notifier(sms_conn_id="sms_down", fallback_conn_ids=["sms_paasw_v1"], raise_on_error=True, **store_args)
    outcome = note.send(failure_context(task_id="a"))
    assert outcome["status"] == "sent" and outcome["numbers"] == len(ONCALL) and len(outcome["batch_ids"]) == 1
    accepted = sorted(m.mobile for m in sim.gateway.messages["paasw_v1"].values())
    assert accepted == ONCALL and sent(sim) == []

    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", "postgresql://sms:sms@127.0.0.1:9/none")
    unrecorded = notifier(
        sms_conn_id="sms_down", fallback_conn_ids=["sms_paasw_v1"], raise_on_error=True, store_conn_id="nowhere"
    ).send(failure_context(task_id="b", dag_id="other"))
    assert unrecorded["status"] == "sent" and unrecorded["numbers"] == len(ONCALL)
    assert len(sim.gateway.messages["paasw_v1"]) == 2 * len(ONCALL)


def test_fallback_conn_ids_of_a_notifier_are_checked() -> None:
    with pytest.raises(ValueError, match="each connection once"):
        notifier(fallback_conn_ids=[CONN])
    with pytest.raises(TypeError, match="a list of connection ids"):
        notifier(fallback_conn_ids="sms_backup")
