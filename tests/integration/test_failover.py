"""Safe failover across connections (issue 15, part 4), end to end against the simulator.

Over real sockets and a real store (SQLite, and PostgreSQL where ``store_args`` says so). Every count is
taken at the simulators' side (``/_sim/ledger``): a number accepted once by each account is sent twice all
the same, so the tests add the accounts' counts. Killing the worker at each point of a failover is the
crash runner's (``python -m tests.crash.run``, its ``failover/...`` scenarios).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import SmsConfigurationError, SmsOutcomeUnknownError, SmsVendorError
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sensors import SmsDeliverySensor
from airflow_provider_sms.simulator import GatewaySimulator, SimConfig
from airflow_provider_sms.store import MOVED, SmsStore
from airflow_provider_sms.testing import FakeTaskInstance, task_context
from tests.integration.simulator_ledger import ledger_counts as accepted
from tests.integration.simulator_ledger import set_balance

pytestmark = pytest.mark.integration


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def send_op(**kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {"task_id": "send", "sms_conn_id": "sms_primary", "content": "hello"}
    return SmsSendOperator(**{**defaults, **kwargs})


def together(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for mobile, times in each.items():
            total[mobile] = total.get(mobile, 0) + times
    return total


def sends_made(sim: GatewaySimulator, vendor: str) -> int:
    reply = requests.get(f"{sim.http_url}/_sim/state", timeout=10)
    reply.raise_for_status()
    return sum(n for key, n in reply.json()["requests"].items() if key.startswith(f"{vendor} ") and "send" in key)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def primary(monkeypatch: pytest.MonkeyPatch, sim: GatewaySimulator, vendor: str = "paasw_v2", **extra: Any) -> None:
    """``sms_primary``: the simulated account of ``vendor``, with its text signature in the connection."""
    conn = json.loads(sim.connection_json(vendor, retry_wait=0.01, **({"sign": "S"} | extra)))
    monkeypatch.setenv("AIRFLOW_CONN_SMS_PRIMARY", json.dumps(conn))


def primary_that_refuses_connections(monkeypatch: pytest.MonkeyPatch, sim: GatewaySimulator) -> None:
    conn = json.loads(sim.connection_json("paasw_v2", retry_wait=0.01, retries=1, sign="S"))
    conn["host"] = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_SMS_PRIMARY", json.dumps(conn))


def store_of(store_args: dict[str, Any]) -> SmsStore:
    return SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_"))


def request_states(store_args: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(conn_id, state) -> numbers in such requests, from the store's own table."""
    with store_of(store_args) as store:
        db = store.database
        with db.transaction(write=False) as cur:
            cur.execute(db.sql("SELECT conn_id, state, SUM(total) FROM {p}requests GROUP BY conn_id, state"))
            return {(conn_id, state): int(total) for conn_id, state, total in cur.fetchall()}


@pytest.fixture
def second_sim(home: Any) -> Iterator[GatewaySimulator]:
    """A second simulated gateway: another account of the same vendor, with its own ledger."""
    other = GatewaySimulator().start()
    other.gateway.config = SimConfig(pull_interval=0.0)
    other.gateway.reset()
    yield other
    other.stop()


# ------------------------------------------------------------------------------------------- moving on


def test_a_primary_that_refuses_connections_moves_everything_and_the_sensor_follows_it(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    from airflow_provider_sms import metrics
    from airflow_provider_sms.hooks.cloud_mas import CloudMasHook

    counted: list[tuple[str, int, dict[str, str]]] = []
    real_incr = metrics.incr

    def incr(name: str, count: int, tag_set: dict[str, str]) -> None:
        counted.append((name, count, dict(tag_set)))
        real_incr(name, count, tag_set)

    monkeypatch.setattr(metrics, "incr", incr)
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)  # the simulator here allows pulls back to back
    primary_that_refuses_connections(monkeypatch, sim)
    summary = send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(7000), **store_args).execute(task_context())
    moved = [(count, tag_set) for name, count, tag_set in counted if name == metrics.NUMBERS_MOVED]
    assert moved == [(7000, {"vendor": "paasw_v2", "conn_id": "sms_primary", "to": "sms_cloud_mas"})]
    counts = accepted(sim, "cloud_mas")
    assert len(counts) == 7000 and set(counts.values()) == {1}
    assert accepted(sim, "paasw_v2") == {}
    assert summary["accepted_numbers"] == 7000 and summary["batch_ids"] == []
    first, backup = summary["connections"]
    assert (first["conn_id"], first["accepted_numbers"], first["moved_numbers"]) == ("sms_primary", 0, 7000)
    assert "connection refused" in first["moved_reason"]
    assert (backup["conn_id"], backup["vendor"], backup["accepted_numbers"]) == ("sms_cloud_mas", "cloud_mas", 7000)
    assert summary["batch_ids_by_conn"] == {"sms_primary": [], "sms_cloud_mas": backup["batch_ids"]}
    assert len(backup["batch_ids"]) == 2  # 5,000 numbers a cloud_mas request
    states = request_states(store_args)
    assert states == {("sms_primary", MOVED): 7000, ("sms_cloud_mas", "accepted"): 7000}

    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    wait = SmsDeliverySensor(task_id="wait", sms_conn_id="sms_primary", send_task_id="send", **store_args)
    done = wait.poke(task_context(ti))
    assert not isinstance(done, bool) and done.is_done
    assert done.xcom_value["total"] == 7000 and done.xcom_value["by_status"]["delivered"] == 7000
    assert done.xcom_value["vendors"] == {"sms_primary": "paasw_v2", "sms_cloud_mas": "cloud_mas"}


def test_insufficient_balance_mid_send_moves_the_rest_to_another_account(
    sim: GatewaySimulator,
    second_sim: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    store_args: dict[str, Any],
) -> None:
    """intl, 2,500 numbers in 3 requests: the primary account pays for the first only (1009 on the second);
    the second account, on another gateway, sends the other 1,500."""
    primary(monkeypatch, sim, "intl")
    monkeypatch.setenv("AIRFLOW_CONN_SMS_BACKUP", second_sim.connection_json("intl", retry_wait=0.01))
    set_balance(sim, "intl", "1500")
    mobiles = numbers(2500, "86138")
    summary = send_op(fallback_conn_ids=["sms_backup"], mobiles=mobiles, signature="S", **store_args).execute(
        task_context()
    )
    first, second = accepted(sim, "intl"), accepted(second_sim, "intl")
    assert (len(first), len(second)) == (1000, 1500)
    assert together(first, second) == dict.fromkeys(mobiles, 1)  # every number once, on one account
    assert [c["accepted_numbers"] for c in summary["connections"]] == [1000, 1500]
    assert summary["connections"][0]["moved_numbers"] == 1500 and "1009" in summary["connections"][0]["moved_reason"]
    assert summary["accepted_numbers"] == 2500

    # the same task instance again (a retry after a later task failed): nothing goes out anywhere
    again = send_op(fallback_conn_ids=["sms_backup"], mobiles=mobiles, signature="S", **store_args).execute(
        task_context()
    )
    assert again["accepted_numbers"] == 2500 and again["sent_requests"] == 0
    assert (accepted(sim, "intl"), accepted(second_sim, "intl")) == (first, second)


def test_a_code_the_connection_names_as_not_accepted_moves_the_rest(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """paasw_v2's document lists no codes; the account knows its 40004 means "balance insufficient"."""
    primary(monkeypatch, sim, not_accepted_codes="40004")
    set_balance(sim, "paasw_v2", "2000")
    summary = send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(4500), **store_args).execute(task_context())
    first, backup = accepted(sim, "paasw_v2"), accepted(sim, "cloud_mas")
    assert (len(first), len(backup)) == (2000, 2500)
    assert together(first, backup) == dict.fromkeys(numbers(4500), 1)
    assert summary["batch_ids"] == summary["batch_ids_by_conn"]["sms_primary"] and len(summary["batch_ids"]) == 2


# ------------------------------------------------------------------------------------------- staying put


def test_a_code_nobody_named_fails_the_task_and_moves_nothing(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    primary(monkeypatch, sim)
    set_balance(sim, "paasw_v2", "1000")
    with pytest.raises(SmsVendorError, match="40004"):
        send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(2500), **store_args).execute(task_context())
    assert len(accepted(sim, "paasw_v2")) == 1000
    assert sends_made(sim, "cloud_mas") == 0


def test_an_unknown_outcome_never_moves(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """The primary accepts the second request, and its reply never comes in time: that request stays with
    the primary, to be resolved there; the numbers after it still go out through it, none elsewhere."""
    from airflow_provider_sms.simulator import Fault

    primary(monkeypatch, sim, timeout=0.3, retries=0)
    sim.gateway.add_fault(Fault(kind="delay", remaining=1, vendor="paasw_v2", path="/message/send", seconds=0.8))
    op = send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(2500), unknown_grace_period=0, **store_args)
    with pytest.raises(SmsOutcomeUnknownError):
        op.execute(task_context())
    assert sends_made(sim, "cloud_mas") == 0
    counts = accepted(sim, "paasw_v2")
    assert set(counts.values()) == {1}
    assert request_states(store_args).get(("sms_primary", MOVED)) is None


def test_opt_outs_apply_on_the_fallback_too(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """The try that moved the numbers dies before the fallback sends; a number opts out meanwhile: the retry
    leaves it out of the fallback's requests and sends every other number once."""
    from airflow_provider_sms.store.ledger import SendLedger

    primary_that_refuses_connections(monkeypatch, sim)
    real = SendLedger.hand_over

    def then_die(self: SendLedger, *args: Any, **kwargs: Any) -> Any:
        real(self, *args, **kwargs)
        raise SystemExit("the worker died after the move")

    monkeypatch.setattr(SendLedger, "hand_over", then_die)
    op = send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(3000), **store_args)
    with pytest.raises(SystemExit):
        op.execute(task_context())
    assert sends_made(sim, "cloud_mas") == 0
    monkeypatch.setattr(SendLedger, "hand_over", real)
    with store_of(store_args) as store:
        store.add_opt_outs(["13800000042"])
    summary = op.execute(task_context())
    counts = accepted(sim, "cloud_mas")
    assert len(counts) == 2999 and "13800000042" not in counts and set(counts.values()) == {1}
    assert summary["accepted_numbers"] == 2999


# ------------------------------------------------------------------------------------------- refused up front


def test_what_a_fallback_cannot_take_is_refused_before_anything_goes_out(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary(monkeypatch, sim)
    with pytest.raises(SmsConfigurationError, match=r"template 'T1' is paasw_v2's.*same vendor"):
        send_op(
            fallback_conn_ids=["sms_cloud_mas"],
            mobiles=numbers(3),
            content=None,
            template_id="T1",
            template_params={"code": "1"},
        ).execute(task_context())
    with pytest.raises(SmsConfigurationError, match="takes international numbers"):
        send_op(fallback_conn_ids=["sms_intl"], mobiles=numbers(3)).execute(task_context())
    assert sends_made(sim, "paasw_v2") == 0


def test_fallback_conn_ids_are_checked_at_dag_parse_time() -> None:
    with pytest.raises(ValueError, match="each connection once, and not sms_conn_id"):
        send_op(mobiles=["13800000000"], fallback_conn_ids=["sms_primary"])
    with pytest.raises(ValueError, match="each connection once"):
        send_op(mobiles=["13800000000"], fallback_conn_ids=["a", "a"])
    with pytest.raises(TypeError, match="a list of connection ids"):
        send_op(mobiles=["13800000000"], fallback_conn_ids="sms_backup")


def test_the_deferrable_sensor_follows_every_connection(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """The trigger carries the other connections' batches through its serialisation and checks them all."""
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
    from airflow_provider_sms.triggers.delivery import SmsDeliveryTrigger

    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)
    primary(monkeypatch, sim, not_accepted_codes="40004")
    set_balance(sim, "paasw_v2", "1000")
    summary = send_op(fallback_conn_ids=["sms_cloud_mas"], mobiles=numbers(3000), **store_args).execute(task_context())
    assert [c["accepted_numbers"] for c in summary["connections"]] == [1000, 2000]
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    wait = SmsDeliverySensor(
        task_id="wait", sms_conn_id="sms_primary", send_task_id="send", deferrable=True, poke_interval=0.1, **store_args
    )
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute(task_context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, SmsDeliveryTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["other_batches"] == {"sms_cloud_mas": summary["batch_ids_by_conn"]["sms_cloud_mas"]}
    again = SmsDeliveryTrigger(**kwargs)  # as the triggerer builds it from the database

    async def first_event() -> Any:
        return await anext(again.run())

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    outcome = wait.execute_complete(task_context(ti), event.payload)
    assert outcome["total"] == 3000 and outcome["by_status"]["pending"] == 0
    assert outcome["vendors"] == {"sms_primary": "paasw_v2", "sms_cloud_mas": "cloud_mas"}


def test_a_canary_not_yet_judged_is_judged_where_its_numbers_went(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """The primary refuses connections before its canary went out: the fallback sends the canary's numbers
    first and alone, judges them, then sends the rest; every number once."""
    from airflow_provider_sms.hooks.cloud_mas import CloudMasHook

    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)
    primary_that_refuses_connections(monkeypatch, sim)
    op = send_op(fallback_conn_ids=["sms_paasw_v1"], mobiles=numbers(1500), canary=300, canary_timeout=30, **store_args)
    summary = op.execute(task_context())
    assert summary["canary"]["numbers"] == 300 and summary["canary"]["passed"] is True
    counts = accepted(sim, "paasw_v1")
    assert len(counts) == 1500 and set(counts.values()) == {1}
    backup = summary["connections"][1]
    assert backup["conn_id"] == "sms_paasw_v1" and backup["accepted_numbers"] == 1500


def test_a_new_plan_of_the_primary_hands_over_to_a_new_plan_of_the_fallback(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    """on_plan_change="new_plan" with other numbers: the fallback's plan handed over by the old plan is
    replaced, not followed, so the new numbers go out once and the old ones are not sent again."""
    primary_that_refuses_connections(monkeypatch, sim)
    first = send_op(fallback_conn_ids=["sms_paasw_v1"], mobiles=numbers(1500), **store_args).execute(task_context())
    assert first["accepted_numbers"] == 1500
    other = numbers(2000)[1000:]  # 500 numbers sent before, 500 new
    again = send_op(fallback_conn_ids=["sms_paasw_v1"], mobiles=other, on_plan_change="new_plan", **store_args).execute(
        task_context()
    )
    assert again["plan"] == 2 and again["accepted_numbers"] == 1000
    counts = accepted(sim, "paasw_v1")
    assert len(counts) == 2000
    assert {m: n for m, n in counts.items() if n != 1} == dict.fromkeys(numbers(1500)[1000:], 2)  # as asked: anew
    states = request_states(store_args)
    assert states[("sms_primary", MOVED)] == 2500 and states[("sms_paasw_v1", "accepted")] == 2500
