"""Operators, sensor and trigger against the simulator over real sockets and a real SQLite store.

Task instances are stood in for by a small object with the attributes operators read (dag_id,
run_id, task_id, map_index, xcom_pull), so the tests need no metadata database; the example-DAG
tests run the same code under ``airflow dags test``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_sms.errors import SmsError, SmsInvalidNumbersError, SmsInvalidRequestError
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
from airflow_provider_sms.operators import (
    SmsBalanceOperator,
    SmsInboundSyncOperator,
    SmsReportsSyncOperator,
    SmsSendOperator,
)
from airflow_provider_sms.sensors import SmsDeliverySensor
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import FakeTaskInstance, task_context
from airflow_provider_sms.triggers.delivery import SmsDeliveryTrigger

pytestmark = pytest.mark.integration


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def sends_seen(sim: GatewaySimulator, path: str = "paasw_v2 /message/send") -> int:
    return int(sim.gateway.stats()["requests"].get(path, 0))


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {"task_id": "send", "sms_conn_id": "sms_paasw_v2", "content": "hello", "signature": "S"}
    return SmsSendOperator(**{**defaults, **kwargs})


# ------------------------------------------------------------------------------------------- sending


def test_send_splits_records_and_summarises(sim: GatewaySimulator, home: Path) -> None:
    summary = send_op(mobiles=numbers(2500)).execute(task_context())
    assert summary["requests"] == 3 and summary["sent_requests"] == 3
    assert summary["accepted_numbers"] == summary["numbers"] == 2500
    assert len(summary["batch_ids"]) == 3
    assert "mobiles" not in json.dumps(summary)  # compact: no number list in XCom
    assert sends_seen(sim) == 3
    with sqlite3.connect(home / "sms_store.db") as db:
        assert db.execute("SELECT count(*) FROM sms_sent_messages").fetchone()[0] == 2500
        states = db.execute("SELECT state, count(*) FROM sms_requests GROUP BY state").fetchall()
    assert states == [("accepted", 3)]


def test_the_summary_counts_parts_and_max_parts_refuses_a_long_text_unsent(sim: GatewaySimulator) -> None:
    assert send_op(mobiles=numbers(2), content="字" * 100).execute(task_context())["parts"] == 2  # 【S】 + 100
    with pytest.raises(SmsInvalidRequestError, match="3 SMS parts for each number; more than max_parts=2"):
        send_op(task_id="long", mobiles=numbers(2), content="字" * 140, max_parts=2).execute(
            task_context(FakeTaskInstance(task_id="long"))
        )
    assert sends_seen(sim) == 1


def test_mobiles_from_a_rendered_xcom_list(sim: GatewaySimulator) -> None:
    summary = send_op(mobiles=str(numbers(3))).execute(task_context())
    assert summary["accepted_numbers"] == 3


def test_invalid_numbers_fail_before_anything_is_sent(sim: GatewaySimulator) -> None:
    with pytest.raises(SmsInvalidNumbersError, match="'12345'"):
        send_op(mobiles=[*numbers(1500), "12345"]).execute(task_context())
    assert sends_seen(sim) == 0
    assert sim.gateway.stats()["requests"] == {}


def test_retry_after_a_crash_between_requests_sends_no_number_twice(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_submit = SmsHook.submit
    calls = {"n": 0}

    def crash_on_second(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real_submit(self, request)

    monkeypatch.setattr(SmsHook, "submit", crash_on_second)
    with pytest.raises(RuntimeError):
        send_op(mobiles=numbers(3000)).execute(task_context())
    monkeypatch.setattr(SmsHook, "submit", real_submit)

    summary = send_op(mobiles=numbers(3000)).execute(task_context())  # the retry of the same task instance
    assert summary["skipped_requests"] == 1 and summary["sent_requests"] == 2
    assert sends_seen(sim) == 3
    accepted = sim.gateway.messages["paasw_v2"]
    assert len(accepted) == 3000
    assert len({mobile for _, mobile in accepted}) == 3000  # every number exactly once


def test_another_run_is_not_deduplicated(sim: GatewaySimulator) -> None:
    send_op(mobiles=numbers(10)).execute(task_context())
    send_op(mobiles=numbers(10)).execute(task_context(FakeTaskInstance(run_id="run-2")))
    assert sends_seen(sim) == 2


def test_mapped_instances_are_independent(sim: GatewaySimulator) -> None:
    first = send_op(mobiles=numbers(5)).execute(task_context(FakeTaskInstance(map_index=0)))
    second = send_op(mobiles=numbers(5, "139")).execute(task_context(FakeTaskInstance(map_index=1)))
    again = send_op(mobiles=numbers(5)).execute(task_context(FakeTaskInstance(map_index=0)))
    assert first["sent_requests"] == second["sent_requests"] == 1
    assert again["skipped_requests"] == 1 and again["batch_ids"] == first["batch_ids"]
    assert sends_seen(sim) == 2


def test_account_md5_client_ref_is_the_idempotency_key(sim: GatewaySimulator) -> None:
    op = send_op(sms_conn_id="sms_account_md5", mobiles=numbers(4000))
    summary = op.execute(task_context())
    assert summary["sent_requests"] == 2
    assert all(len(batch) == 32 for batch in summary["batch_ids"])  # taskIds derived from the key


def test_template_send_with_mapping_params(sim: GatewaySimulator) -> None:
    op = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_paasw_v2",
        mobiles="13800000001,13800000002",
        template_id="4289538897476608",
        template_params={"code": "1234"},
    )
    assert op.execute(task_context())["accepted_numbers"] == 2
    assert sends_seen(sim, "paasw_v2 /message/sendTemplate") == 1


def test_content_and_template_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SmsSendOperator(task_id="x", sms_conn_id="c", mobiles="1", content="a", template_id="t")


# ------------------------------------------------------------------------------------------- sensor


def sensor(**kwargs: Any) -> SmsDeliverySensor:
    defaults: dict[str, Any] = {"task_id": "wait", "sms_conn_id": "sms_paasw_v2", "send_task_id": "send"}
    return SmsDeliverySensor(**{**defaults, **kwargs})


def test_sensor_waits_for_final_reports_and_counts_them(sim: GatewaySimulator) -> None:
    sim.gateway.config.report_delay = 0.3
    sim.gateway.config.failure_rate = 0.2
    summary = send_op(mobiles=numbers(1200)).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    wait = sensor()
    assert wait.poke(task_context(ti)) is False  # nothing due yet
    import time

    time.sleep(0.4)
    done = wait.poke(task_context(ti))
    assert not isinstance(done, bool) and done.is_done
    outcome = done.xcom_value
    assert outcome["total"] == 1200
    assert outcome["by_status"]["delivered"] + outcome["by_status"]["failed"] == 1200
    assert outcome["by_status"]["pending"] == 0
    assert 150 < outcome["by_status"]["failed"] < 350
    assert outcome["by_code"]["DELIVRD"] == outcome["by_status"]["delivered"]
    assert outcome["by_code"]["DB:0141"] == outcome["by_status"]["failed"]


def test_reports_of_other_batches_pulled_meanwhile_stay_in_the_store(sim: GatewaySimulator) -> None:
    batch_a = send_op(mobiles=numbers(10)).execute(task_context())
    batch_b = send_op(mobiles=numbers(10, "139")).execute(task_context(FakeTaskInstance(task_id="send_b")))
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": batch_a})
    assert sensor().poke(task_context(ti))  # the pull handed out A's and B's reports
    assert sim.gateway.take_reports("paasw_v2") == []  # the vendor will not hand B's out again
    with SmsStore() as store:
        progress = store.batch_progress("paasw_v2", batch_b["batch_ids"])
    assert (progress.total, progress.delivered) == (10, 10)


def test_sensor_fails_below_the_minimum_delivered_share(sim: GatewaySimulator) -> None:
    sim.gateway.config.failure_rate = 0.5
    summary = send_op(mobiles=numbers(200)).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    with pytest.raises(SmsError, match="below the minimum share"):
        sensor(min_delivered_share=0.9).poke(task_context(ti))
    with pytest.raises(SmsError, match="failed delivery"):
        sensor(fail_on_failure=True).poke(task_context(ti))


def test_sensor_with_batch_ids_and_masked_account_md5_reports(sim: GatewaySimulator) -> None:
    summary = send_op(sms_conn_id="sms_account_md5", mobiles=numbers(50)).execute(task_context())
    done = sensor(sms_conn_id="sms_account_md5", send_task_id=None, batch_ids=summary["batch_ids"]).poke(task_context())
    assert not isinstance(done, bool)
    assert done.xcom_value["by_status"] == {"delivered": 50, "failed": 0, "pending": 0}


def test_sensor_queries_only_pending_pairs_for_intl(sim: GatewaySimulator) -> None:
    intl_numbers = [f"86138{i:08d}" for i in range(1200)]
    summary = send_op(sms_conn_id="sms_intl", mobiles=intl_numbers).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    assert sensor(sms_conn_id="sms_intl").poke(task_context(ti))
    status_calls = sim.gateway.stats()["requests"]["intl /api/v1/international/sms/status"]
    assert status_calls == 3  # 500 pairs a call
    assert sensor(sms_conn_id="sms_intl").poke(task_context(ti))
    assert sim.gateway.stats()["requests"]["intl /api/v1/international/sms/status"] == 3  # nothing pending


def test_query_syncs_reach_every_batch_when_an_older_one_never_reports(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More pending pairs than a sync may ask about: each sync starts at another batch, so numbers that
    never get a report (here a batch the vendor does not know) cannot hold back every later batch."""
    from datetime import datetime, timezone

    from airflow_provider_sms import pulling
    from airflow_provider_sms.hooks import get_sms_hook
    from airflow_provider_sms.records import SendReceipt
    from airflow_provider_sms.store import TaskIdentity

    with SmsStore() as store:
        stuck = SendReceipt("intl", "777", tuple(numbers(500, "86139")), datetime.now(timezone.utc))
        store.record_accepted("stuck", stuck, conn_id="sms_intl", task=TaskIdentity())
    summary = send_op(sms_conn_id="sms_intl", mobiles=numbers(500, "86138")).execute(task_context())
    starts = iter(range(100))
    monkeypatch.setattr(pulling.random, "randrange", lambda _: next(starts))
    hook = get_sms_hook("sms_intl")
    with SmsStore() as store:
        first = pulling.pull_reports(hook, store, max_pulls=1)  # starts at the oldest batch: nothing comes back
        assert (first.pulls, first.fetched) == (1, 0)
        second = pulling.pull_reports(hook, store, max_pulls=1)  # the next batch: its reports arrive
        assert second.inserted == 500
        assert store.batch_progress("intl", summary["batch_ids"]).pending == 0
    hook.close()


def test_cloud_mas_sensor_keeps_to_the_pull_limit(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.5)
    sim.gateway.config.pull_interval = 0.5
    summary = send_op(sms_conn_id="sms_cloud_mas", signature=None, mobiles=numbers(20)).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    assert sensor(sms_conn_id="sms_cloud_mas").poke(task_context(ti))
    assert sim.gateway.stats()["throttle_violations"] == {}


def test_deferrable_sensor_runs_its_trigger(sim: GatewaySimulator) -> None:
    summary = send_op(mobiles=numbers(30)).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    wait = sensor(deferrable=True, poke_interval=0.1, timeout=30)
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute(task_context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, SmsDeliveryTrigger)
    classpath, kwargs = trigger.serialize()
    rebuilt = SmsDeliveryTrigger(**kwargs)  # what the triggerer does
    assert classpath.endswith("SmsDeliveryTrigger")

    async def first_event() -> Any:
        return await anext(rebuilt.run())

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert event.payload["status"] == "done" and event.payload["pending"] == 0
    outcome = wait.execute_complete(task_context(ti), event.payload)
    assert outcome["by_status"]["delivered"] == 30


# ------------------------------------------------------------------------------------------- syncs


def warehouse(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    path = home / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def test_reports_sync_twice_adds_no_row(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    target = warehouse(monkeypatch, home)
    send_op(mobiles=numbers(1500)).execute(task_context())
    sync = SmsReportsSyncOperator(
        task_id="sync", sms_conn_id="sms_paasw_v2", target_conn_id="warehouse", target_table="dlr"
    )
    first = sync.execute(task_context())
    assert first["fetched"] == 1500 and first["copied"] == 1500
    second = sync.execute(task_context())
    assert second["fetched"] == 0 and second["copied"] == 0
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*), count(DISTINCT batch_id || mobile) FROM dlr").fetchone() == (1500, 1500)
        assert db.execute("SELECT DISTINCT status FROM dlr").fetchall() == [("delivered",)]


def test_reports_sync_into_xcom(sim: GatewaySimulator) -> None:
    send_op(mobiles=numbers(5)).execute(task_context())
    result = SmsReportsSyncOperator(task_id="sync", sms_conn_id="sms_paasw_v2").execute(task_context())
    assert result["fetched"] == 5 and len(result["reports"]) == 5
    json.dumps(result)  # XCom-safe


def test_inbound_sync_and_unsupported_vendor_skips(sim: GatewaySimulator, capsys: pytest.CaptureFixture[str]) -> None:
    sim.gateway.add_inbound("paasw_v2", "13800000001", "TD")
    sim.gateway.add_inbound("paasw_v2", "13800000002", "好的")
    result = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_paasw_v2").execute(task_context())
    assert sorted(m["content"] for m in result["messages"]) == ["TD", "好的"]
    again = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_paasw_v2").execute(task_context())
    assert again["messages"] == []
    reason = "sms_intl: skipped, the intl gateway has no inbound (MO) messages API"
    capsys.readouterr()
    with pytest.raises(AirflowSkipException, match=re.escape(reason)):
        SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_intl").execute(task_context())
    # the task log (Airflow's structured logger writes to stdout here) says why in a line of its own,
    # not only in a field of Airflow's "Skipping task."
    assert reason in capsys.readouterr().out


def test_mapped_sync_tasks_are_labelled_with_their_connection() -> None:
    from airflow.sdk import DAG
    from jinja2 import Environment

    with DAG("labels", schedule=None):
        default = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_intl")
        own = SmsBalanceOperator(task_id="b", sms_conn_id="sms_intl", map_index_template="{{ task.task_id }}")
        mapped = SmsReportsSyncOperator.partial(task_id="r").expand(sms_conn_id=["sms_paasw_v1", "sms_intl"])
    assert Environment().from_string(default.map_index_template or "").render(task=default) == "sms_intl"
    assert own.map_index_template == "{{ task.task_id }}"
    assert mapped.partial_kwargs["map_index_template"] == default.map_index_template  # what the task runner reads


def test_balance_threshold_and_target(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    target = warehouse(monkeypatch, home)
    op = SmsBalanceOperator(
        task_id="b", sms_conn_id="sms_intl", target_conn_id="warehouse", target_table="balances", min_balance=10
    )
    row = op.execute(task_context())
    assert row["currency"] == "CNY"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", row["taken_at"]), (
        "the store's fixed-width time"
    )
    sim.gateway.balances["intl"] = Decimal("3.50")
    with pytest.raises(SmsError, match="below the minimum 10"):
        op.execute(task_context())
    with sqlite3.connect(target) as db:
        amounts = [Decimal(r[0]) for r in db.execute("SELECT amount FROM balances ORDER BY taken_at")]
    assert amounts[-1] == Decimal("3.5") and len(amounts) == 2
    with pytest.raises(AirflowSkipException, match="the cloud_mas gateway has no balance queries API"):
        SmsBalanceOperator(task_id="b", sms_conn_id="sms_cloud_mas").execute(task_context())


def test_opted_out_numbers_are_left_out_and_counted(sim: GatewaySimulator) -> None:
    with SmsStore() as store:
        store.add_opt_outs(["13800000001", "13800000003"], reason="TD", source="test")
    summary = send_op(mobiles=["+86 138 0000 0001", *numbers(5)]).execute(task_context())
    assert summary["opted_out"] == 2 and summary["accepted_numbers"] == 3
    sent = {mobile for _, mobile in sim.gateway.messages["paasw_v2"]}
    assert sent == {"13800000000", "13800000002", "13800000004"}
    everyone = send_op(mobiles=numbers(5), skip_opted_out=False).execute(task_context(FakeTaskInstance(run_id="r2")))
    assert everyone["accepted_numbers"] == 5 and everyone["opted_out"] == 0


def test_all_opted_out_sends_nothing(sim: GatewaySimulator) -> None:
    with SmsStore() as store:
        store.add_opt_outs(["13800000001"])
    assert send_op(mobiles="13800000001").execute(task_context())["requests"] == 0
    assert sends_seen(sim) == 0
    with pytest.raises(SmsInvalidNumbersError):  # invalid numbers still fail, opt-outs or not
        send_op(mobiles="13800000001,999").execute(task_context())


# ------------------------------------------------------------------------------------------- resources


def count_hooks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many hooks ``get_sms_hook`` built, and how many hooks were closed."""
    from airflow_provider_sms import hooks

    counts = {"built": 0, "closed": 0}
    build, close = hooks.get_sms_hook, SmsHook.close

    def built(*args: Any, **kwargs: Any) -> SmsHook:
        counts["built"] += 1
        return build(*args, **kwargs)

    def closed(self: SmsHook) -> None:
        counts["closed"] += 1
        close(self)

    monkeypatch.setattr(hooks, "get_sms_hook", built)
    monkeypatch.setattr(SmsHook, "close", closed)
    return counts


def test_sync_and_balance_operators_close_their_hooks(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hook holds a ``requests.Session`` (its pooled sockets): the task closes it, skipped or failed too."""
    send_op(mobiles=numbers(5)).execute(task_context())
    counts = count_hooks(monkeypatch)
    SmsReportsSyncOperator(task_id="sync", sms_conn_id="sms_paasw_v2").execute(task_context())
    SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_paasw_v2").execute(task_context())
    SmsBalanceOperator(task_id="b", sms_conn_id="sms_intl").execute(task_context())
    with pytest.raises(AirflowSkipException):
        SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_intl").execute(task_context())
    sim.gateway.balances["intl"] = Decimal("3.50")
    with pytest.raises(SmsError, match="below the minimum"):
        SmsBalanceOperator(task_id="b", sms_conn_id="sms_intl", min_balance=10).execute(task_context())
    assert counts == {"built": 5, "closed": 5}


def test_the_sensor_builds_no_hook_to_name_the_vendor(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check learns the vendor (poke, and the trigger's event); only a check builds a hook."""
    summary = send_op(mobiles=numbers(5)).execute(task_context())
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    counts = count_hooks(monkeypatch)
    done = sensor().poke(task_context(ti))
    assert not isinstance(done, bool) and done.xcom_value["vendor"] == "paasw_v2"
    assert counts == {"built": 1, "closed": 1}

    trigger = SmsDeliveryTrigger("sms_paasw_v2", summary["batch_ids"], poll_interval=0.1)
    event = asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout=30))
    assert event.payload["vendor"] == "paasw_v2"
    assert counts == {"built": 2, "closed": 2}
    outcome = sensor(deferrable=True).execute_complete(task_context(ti), event.payload)
    assert outcome["vendor"] == "paasw_v2" and outcome["by_status"]["delivered"] == 5
    assert counts == {"built": 2, "closed": 2}
    # an event from before the vendor was in it: the connection's type names the vendor, still no hook
    older = {k: v for k, v in event.payload.items() if k != "vendor"}
    assert sensor(deferrable=True).execute_complete(task_context(ti), older)["vendor"] == "paasw_v2"
    assert counts == {"built": 2, "closed": 2}


# ------------------------------------------------------------------------------------------- consistency


def test_an_inbound_message_without_a_time_copies_to_the_warehouse(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    """A reply may come without a time (a push that leaves it out). The warehouse table is keyed by the store's
    own key for the message, so the row copies, and the watermark goes past it (before: the key included
    ``received_at`` under NOT NULL, and every later sync failed on the same row)."""
    from airflow_provider_sms.records import InboundMessage

    postgres = "store_conn_id" in store_args
    table = f"{store_args['store_table_prefix']}mo" if postgres else "mo"
    if not postgres:
        warehouse(monkeypatch, home)
    target = {"target_conn_id": "sms_test_pg" if postgres else "warehouse", "target_table": table}
    timeless = InboundMessage("paasw_v2", "13800000009", "STOP", None, raw={"mobile": "13800000009"})
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        store.save_inbound([timeless, timeless], conn_id="sms_paasw_v2")  # the same message twice: one row
    sim.gateway.add_inbound("paasw_v2", "13800000001", "好的")

    def sync() -> dict[str, Any]:
        op = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_paasw_v2", **store_args, **target)
        return op.execute(task_context())

    try:
        assert sync()["copied"] == 2
        sim.gateway.add_inbound("paasw_v2", "13800000002", "TD")
        assert sync()["copied"] == 1  # the watermark went past the timeless row
        assert sync()["copied"] == 0
        from airflow.sdk import BaseHook

        rows = BaseHook.get_hook(target["target_conn_id"]).get_records(
            f"SELECT mobile, received_at, content FROM {table} ORDER BY mobile"
        )
        assert [(m, t is None, c) for m, t, c in rows] == [
            ("13800000001", False, "好的"),
            ("13800000002", False, "TD"),
            ("13800000009", True, "STOP"),
        ]
    finally:
        if postgres:
            from airflow.sdk import BaseHook

            BaseHook.get_hook("sms_test_pg").run(f"DROP TABLE IF EXISTS {table}")


def test_everyone_opted_out_gives_the_usual_summary_shape(sim: GatewaySimulator) -> None:
    with SmsStore() as store:
        store.add_opt_outs(["13800000001"])
    nobody = send_op(mobiles="13800000001").execute(task_context())
    somebody = send_op(mobiles="13800000002").execute(task_context(FakeTaskInstance(run_id="r2")))
    assert set(nobody) == set(somebody)
    assert (nobody["batch_ids"], nobody["opted_out"], nobody["accepted_numbers"]) == ([], 1, 0)


def test_kind_and_sender_id_are_templated(sim: GatewaySimulator) -> None:
    """Like the other send options, ``kind`` and ``sender_id`` may come from params or another task's XCom."""
    from airflow.sdk import DAG

    with DAG("templated", schedule=None):
        op = send_op(
            sms_conn_id="sms_intl", mobiles="8613800000001", kind="{{ params.kind }}", sender_id="{{ params.sid }}"
        )
    assert {"kind", "sender_id"} <= set(op.template_fields)
    op.render_template_fields({"params": {"kind": "notification", "sid": "ACME"}})  # type: ignore[arg-type]
    assert (op.kind, op.sender_id) == ("notification", "ACME")
