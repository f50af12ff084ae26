"""``SmsInboundTrigger`` against the simulator over real sockets and a real store (SQLite, and
PostgreSQL when ``SMS_TEST_POSTGRES_URI`` is set), plus the opt-out example DAG's task fed by its events.

The trigger runs here the way the triggerer runs it: ``run()`` is iterated, an event counts as taken
once the next ``__anext__`` is requested, and a stop is a cancellation while it sleeps.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_sms.errors import SmsNotSupportedError
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.records import InboundMessage
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.triggers.inbound import SmsInboundTrigger

pytestmark = pytest.mark.integration

CONN = "sms_paasw_v2"
EXAMPLE = Path(__file__).resolve().parents[3] / "example_dags" / "sms_opt_out.py"


def open_store(store_args: dict[str, Any]) -> SmsStore:
    return SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_"))


def trigger(store_args: dict[str, Any], **kwargs: Any) -> SmsInboundTrigger:
    return SmsInboundTrigger(sms_conn_id=kwargs.pop("sms_conn_id", CONN), poll_interval=0.05, **store_args, **kwargs)


def push(store_args: dict[str, Any], mobile: str, content: str, conn_id: str = CONN) -> None:
    """A message arriving the way the push receiver stores it: straight into the store."""
    with open_store(store_args) as store:
        message = InboundMessage(
            vendor="paasw_v2", mobile=mobile, content=content, received_at=datetime.now(timezone.utc)
        )
        assert store.save_inbound([message], conn_id=conn_id).inserted == 1


class Runner:
    """Drives ``run()`` like the triggerer: ``take`` asks for the next events, ``stop`` cancels while idle."""

    def __init__(self, trig: SmsInboundTrigger) -> None:
        self.trigger = trig
        self.events: AsyncIterator[TriggerEvent] = trig.run()

    async def take(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [(await asyncio.wait_for(anext(self.events), timeout)).payload for _ in range(count)]

    async def stop(self) -> None:
        """The triggerer took every event and asked for the next; the trigger is cancelled while it polls."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(self.events), 0.5)

    async def nothing(self) -> None:
        """No event comes (the trigger keeps polling), then stop."""
        await self.stop()


# ---------------------------------------------------------------------------------------------- events


def test_events_for_pulled_and_pushed_messages(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    push(store_args, "13800000009", "before the trigger started")  # "latest": not an event
    sim.gateway.add_inbound("paasw_v2", "13800000001", "ＴＤ", ext_no="01")  # queued at the vendor: is one
    sim.gateway.add_inbound("paasw_v2", "13800000002", "你好")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        runner = Runner(trigger(store_args))
        pulled = await runner.take(2)
        push(store_args, "13800000003", "退订")  # pushed while the trigger runs
        sim.gateway.add_inbound("paasw_v2", "13800000004", "STOP")
        later = await runner.take(2)
        await runner.nothing()
        return pulled, later

    pulled, later = asyncio.run(scenario())
    assert [(p["mobile"], p["content"]) for p in pulled] == [("13800000001", "ＴＤ"), ("13800000002", "你好")]
    first = pulled[0]
    assert first["vendor"] == "paasw_v2" and first["conn_id"] == CONN and first["ext_no"] == "01"
    assert first["keyword"] is None
    assert datetime.fromisoformat(first["received_at"]).tzinfo is not None
    assert {p["mobile"] for p in later} == {"13800000003", "13800000004"}
    seqs = [p["seq"] for p in pulled + later]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert sim.gateway.stats()["requests"].get("paasw_v2 /message/mo", 0) >= 2  # it did poll the vendor
    with open_store(store_args) as store:  # what it pulled is in the store
        stored = [r["mobile"] for page in store.iter_inbound(conn_id=CONN) for r in page]
    assert sorted(stored) == ["13800000001", "13800000002", "13800000003", "13800000004", "13800000009"]


def test_start_all_emits_what_is_already_stored(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    push(store_args, "13800000001", "one")
    push(store_args, "13800000002", "two")
    push(store_args, "13800000003", "other account", conn_id="sms_paasw_v1")

    async def scenario() -> list[dict[str, Any]]:
        runner = Runner(trigger(store_args, start="all", pull=False))
        taken = await runner.take(2)
        await runner.nothing()
        return taken

    assert [p["content"] for p in asyncio.run(scenario())] == ["one", "two"]  # its own connection only
    assert sim.gateway.stats()["requests"].get("paasw_v2 /message/mo", 0) == 0  # pull=False: store only


def test_restart_neither_repeats_nor_loses(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    for i in range(3):
        sim.gateway.add_inbound("paasw_v2", f"1380000000{i}", f"m{i}")
    first = trigger(store_args)
    classpath, kwargs = first.serialize()
    assert classpath == "airflow_provider_sms.triggers.inbound.SmsInboundTrigger"

    async def run_first() -> list[dict[str, Any]]:
        runner = Runner(first)
        taken = await runner.take(3)
        await runner.stop()
        return taken

    assert [p["content"] for p in asyncio.run(run_first())] == ["m0", "m1", "m2"]

    sim.gateway.add_inbound("paasw_v2", "13800000005", "while stopped, at the vendor")
    push(store_args, "13800000006", "while stopped, pushed")
    sim.gateway.add_inbound("paasw_v2", "13800000007", "in flight")

    async def run_second() -> list[dict[str, Any]]:
        runner = Runner(SmsInboundTrigger(**kwargs))  # as the triggerer re-creates it
        taken = await runner.take(3)  # one page: the position moves event by event, not per page
        # the triggerer dies with the third event handed over but not taken: it must come again
        await runner.events.aclose()  # type: ignore[attr-defined]
        return taken

    second = asyncio.run(run_second())
    # the pushed one was stored first (it is in the store before the first pull), so it comes first
    assert [p["content"] for p in second] == ["while stopped, pushed", "while stopped, at the vendor", "in flight"]

    async def run_third() -> list[dict[str, Any]]:
        runner = Runner(SmsInboundTrigger(**kwargs))
        taken = await runner.take(1)
        await runner.nothing()
        return taken

    assert [p["content"] for p in asyncio.run(run_third())] == ["in flight"]


def test_latest_is_fixed_at_the_first_start(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    push(store_args, "13800000001", "old")

    async def first_start() -> None:
        await Runner(trigger(store_args)).nothing()  # polls, finds nothing new, is stopped

    asyncio.run(first_start())
    push(store_args, "13800000002", "arrived while the triggerer was down")

    async def restart() -> list[dict[str, Any]]:
        runner = Runner(trigger(store_args))
        taken = await runner.take(1)
        await runner.nothing()
        return taken

    assert [p["content"] for p in asyncio.run(restart())] == ["arrived while the triggerer was down"]


def test_keyword_filter(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    for i, text in enumerate(["hello", "ＴＤ", "退订。", "TD是什么", "stop!"]):
        sim.gateway.add_inbound("paasw_v2", f"1380000000{i}", text)
    kwargs = {"keywords": ["退订", "TD", "STOP", "td"]}

    async def scenario() -> list[dict[str, Any]]:
        runner = Runner(trigger(store_args, **kwargs))
        taken = await runner.take(3)
        await runner.nothing()
        return taken

    taken = asyncio.run(scenario())
    assert [(p["content"], p["keyword"]) for p in taken] == [("ＴＤ", "TD"), ("退订。", "退订"), ("stop!", "STOP")]
    assert trigger(store_args, **kwargs).serialize()[1]["keywords"] == ["STOP", "TD", "退订"]

    sim.gateway.add_inbound("paasw_v2", "13800000009", "just chatting")

    async def resumed() -> None:
        runner = Runner(trigger(store_args, **kwargs))
        await runner.nothing()  # passed-over messages were saved past too: nothing repeats

    asyncio.run(resumed())
    with open_store(store_args) as store:
        last = max(r["seq"] for page in store.iter_inbound() for r in page)
        assert store.get_watermark(trigger(store_args, **kwargs).position_key) == last


def test_a_failing_vendor_is_retried_and_pushes_still_fire(
    sim: GatewaySimulator,
    store_args: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # every pull is 4 attempts: the vendor is down for the first 10 polls
    sim.gateway.add_fault(Fault(kind="status", remaining=40, vendor="paasw_v2", path="/message/mo", status=503))
    sim.gateway.add_inbound("paasw_v2", "13800000001", "from the vendor")

    async def scenario() -> list[dict[str, Any]]:
        runner = Runner(trigger(store_args))
        taking = asyncio.create_task(runner.take(2))
        await asyncio.sleep(0.2)
        push(store_args, "13800000002", "pushed")
        return await taking

    with caplog.at_level(logging.WARNING):
        taken = asyncio.run(scenario())
    assert [p["content"] for p in taken] == ["pushed", "from the vendor"]  # the vendor came back later
    captured = capsys.readouterr()  # Airflow's loggers are structlog, rendered to the captured output
    logged = caplog.text + captured.out + captured.err
    assert "pulling inbound messages failed, will retry next poll" in logged
    assert "gw7ewiz4eJ5646grg" not in logged  # the simulated account's secret


def test_a_vendor_without_inbound_fails_clearly(sim: GatewaySimulator) -> None:
    async def scenario() -> None:
        await anext(SmsInboundTrigger(sms_conn_id="sms_intl", poll_interval=0.05).run())

    with pytest.raises(SmsNotSupportedError, match=r"intl does not support inbound messages.*'sms_intl'"):
        asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------- position


class FakeAssetState:
    """Stands in for the triggerer's ``AssetStateStoreAccessors`` of one watched asset (``aget``/``aset``)."""

    def __init__(self, values: dict[str, Any] | None = None, *, assets: int = 1) -> None:
        self.values = dict(values or {})
        self.assets = assets

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.assets != 1:
            raise ValueError(f"Task has {self.assets} concrete inlets and outlets")
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_position_kept_in_the_asset_state_store(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    for i in range(3):
        push(store_args, f"1380000000{i}", f"m{i}")
    state = FakeAssetState()
    first = trigger(store_args, start="all", pull=False)
    key = first.position_key

    async def run(trig: SmsInboundTrigger, count: int) -> list[str]:
        trig.asset_state_store = state  # type: ignore[assignment]
        runner = Runner(trig)
        taken = await runner.take(count)
        await runner.stop()
        return [p["content"] for p in taken]

    assert asyncio.run(run(first, 3)) == ["m0", "m1", "m2"]
    with open_store(store_args) as store:
        seqs = [r["seq"] for page in store.iter_inbound() for r in page]
        assert state.values[key] == store.get_watermark(key) == seqs[-1]
        # the SMS store's copy lags (a crash between the two writes): the larger position wins
        store.set_watermark(key, seqs[0])
    push(store_args, "13800000005", "m5")
    assert asyncio.run(run(trigger(store_args, start="all", pull=False), 1)) == ["m5"]

    # several assets share the trigger: the asset store cannot say which, the SMS store carries on
    state.assets = 2
    push(store_args, "13800000006", "m6")
    assert asyncio.run(run(trigger(store_args, start="all", pull=False), 1)) == ["m6"]


def test_serialize_round_trip_and_asset_watcher(home: Path) -> None:
    from airflow.sdk import Asset, AssetWatcher
    from airflow.serialization.decoders import smart_decode_trigger_kwargs
    from airflow.serialization.encoders import encode_trigger

    trig = SmsInboundTrigger(
        sms_conn_id=CONN, store_conn_id="pg", keywords=("退订", "TD"), start="all", poll_interval=30
    )
    classpath, kwargs = trig.serialize()
    encoded = encode_trigger({"classpath": classpath, "kwargs": kwargs})
    decoded = {k: smart_decode_trigger_kwargs(v) for k, v in encoded["kwargs"].items()}
    again = SmsInboundTrigger(**decoded)
    assert again.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(*again.serialize()) == BaseEventTrigger.hash(classpath, kwargs)
    assert again.position_key == trig.position_key
    assert SmsInboundTrigger(**{**kwargs, "poll_interval": 5, "pull": False}).position_key == trig.position_key
    assert SmsInboundTrigger(**{**kwargs, "keywords": ["STOP"]}).position_key != trig.position_key

    asset = Asset("replies", watchers=[AssetWatcher(name="replies_watcher", trigger=trig)])
    assert asset.watchers[0].trigger is trig
    for bad in ({"start": "earliest"}, {"poll_interval": 0}, {"keywords": ["?!"]}, {"sms_conn_id": ""}):
        with pytest.raises(ValueError):
            SmsInboundTrigger(**{"sms_conn_id": CONN, **bad})


# ---------------------------------------------------------------------------------------------- example DAG


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_sms_opt_out", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_dag_records_opt_outs_and_sends_skip_them(sim: GatewaySimulator, home: Path) -> None:
    """Trigger events -> asset events as the scheduler stores them -> the DAG's task -> SmsSendOperator."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    example = load_example()
    asset = example.opt_out_replies
    watcher_trigger = asset.watchers[0].trigger
    assert isinstance(watcher_trigger, SmsInboundTrigger)
    _, kwargs = watcher_trigger.serialize()
    kwargs["poll_interval"] = 0.05

    for mobile, text in [("13800000001", "TD"), ("13800000002", "谢谢"), ("+86 138 0000 0003", "退订！")]:
        sim.gateway.add_inbound("paasw_v2", mobile, text)

    async def watch() -> list[dict[str, Any]]:
        runner = Runner(SmsInboundTrigger(**kwargs))
        taken = await runner.take(2)
        await runner.nothing()
        return taken

    payloads = asyncio.run(watch())
    assert [p["keyword"] for p in payloads] == ["TD", "退订"]  # the thank-you fired nothing

    events = [  # what Trigger.submit_event stores, as the DAG run's task receives it
        AssetEventDagRunReferenceResult(
            asset={"name": asset.name, "uri": asset.uri, "extra": {}},
            extra={"from_trigger": True, "payload": payload},
            source_task_id=None,
            source_dag_id=None,
            source_run_id=None,
            source_map_index=None,
            source_aliases=[],
            timestamp=datetime.now(timezone.utc),
        )
        for payload in payloads
    ]
    record = example.dag.task_dict["record_opt_outs"].python_callable
    result = record(triggering_asset_events=TriggeringAssetEventsAccessor.build(events))
    assert result == {
        "messages": 2,
        "opt_outs": 2,
        "added": 2,
        "unusable_numbers": 0,
        "by_keyword": {"TD": 1, "退订": 1},
    }
    assert record(triggering_asset_events=TriggeringAssetEventsAccessor.build(events))["added"] == 0

    send = SmsSendOperator(
        task_id="campaign",
        sms_conn_id=CONN,
        mobiles=["13800000001", "13800000002", "13800000003", "13800000004"],
        content="新品上市",
        signature="S",
    )
    summary = send.execute({"ti": None})  # type: ignore[arg-type]
    assert summary["opted_out"] == 2 and summary["accepted_numbers"] == 2
    assert sorted(mobile for _, mobile in sim.gateway.messages["paasw_v2"]) == ["13800000002", "13800000004"]
