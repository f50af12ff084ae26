"""Dry run, cost limit and balance guard (issue 15, part 1), end to end against the simulator.

Over real sockets and a real store (SQLite, and PostgreSQL where ``store_args`` says so). Every count
is taken at the simulator's side: the requests it was sent (``/_sim/state``) and how many times it
accepted each number (``/_sim/ledger``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsCostLimitError,
    SmsInsufficientBalanceError,
    SmsInvalidNumbersError,
    SmsVendorError,
)
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.testing import task_context
from tests.integration.simulator_ledger import ledger_counts as accepted
from tests.integration.simulator_ledger import set_balance

pytestmark = pytest.mark.integration

TWO_PARTS = "您好" * 40  # 80 characters, with 【S】 83: two SMS parts for every number


def numbers(count: int, prefix: str = "138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


def intl_numbers(count: int) -> list[str]:
    return [f"86138{i:08d}" for i in range(count)]


def send_op(vendor: str = "paasw_v2", **kwargs: Any) -> SmsSendOperator:
    defaults: dict[str, Any] = {"task_id": "send", "sms_conn_id": f"sms_{vendor}", "content": "hello", "signature": "S"}
    return SmsSendOperator(**{**defaults, **kwargs})


def use_connection(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, vendor: str, **extra: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_SMS_{vendor.upper()}", sim.connection_json(vendor, **extra))


def vendor_requests(sim: GatewaySimulator, vendor: str) -> dict[str, int]:
    """Every request the simulated vendor was sent, by path (tokens and balance queries included)."""
    reply = requests.get(f"{sim.http_url}/_sim/state", timeout=10)
    reply.raise_for_status()
    counts = reply.json()["requests"]
    return {key.split(" ", 1)[1]: n for key, n in counts.items() if key.startswith(f"{vendor} ")}


def store_of(store_args: dict[str, Any]) -> SmsStore:
    return SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_"))


# ------------------------------------------------------------------------------------------- dry run


def test_a_dry_run_plans_everything_sends_nothing_and_leaves_the_real_run_its_own_plan(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, store_args: dict[str, Any]
) -> None:
    use_connection(sim, monkeypatch, "paasw_v2", price_per_part=0.045, currency="CNY")
    with store_of(store_args) as store:
        store.add_opt_outs(["13800000007"])
    ask = {"mobiles": numbers(2500), "content": TWO_PARTS, **store_args}
    summary = send_op(dry_run=True, **ask).execute(task_context())
    assert summary == {
        "conn_id": "sms_paasw_v2",
        "vendor": "paasw_v2",
        "dry_run": True,
        "requests": 3,
        "numbers": 2499,
        "opted_out": 1,
        "parts": 2,
        "total_parts": 4998,
        "estimated_cost": "224.910",  # 4998 × 0.045, exactly
        "currency": "CNY",
    }
    assert vendor_requests(sim, "paasw_v2") == {}  # not a token, not a send: not one request
    assert accepted(sim, "paasw_v2") == {}
    # the same task instance, for real: it plans afresh (plan 1) and sends everything once
    real = send_op(**ask).execute(task_context())
    assert (real["plan"], real["sent_requests"], real["skipped_requests"]) == (1, 3, 0)
    assert real["accepted_numbers"] == 2499 and real["estimated_cost"] == "224.910"
    counts = accepted(sim, "paasw_v2")
    assert len(counts) == 2499 and set(counts.values()) == {1} and "13800000007" not in counts


def test_a_dry_run_refuses_what_the_real_run_would_refuse(sim: GatewaySimulator) -> None:
    with pytest.raises(SmsInvalidNumbersError, match="12345"):
        send_op(dry_run=True, mobiles=["13800000000", "12345"]).execute(task_context())
    with pytest.raises(SmsConfigurationError, match="price_per_part"):
        send_op(dry_run=True, max_cost="10", mobiles=numbers(10)).execute(task_context())
    assert vendor_requests(sim, "paasw_v2") == {}


def test_a_template_dry_run_knows_no_parts_or_cost(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(sim, monkeypatch, "paasw_v2", price_per_part="0.05")
    summary = send_op(dry_run=True, content=None, template_id="T1", template_params={"code": "1"}, mobiles=numbers(3))
    result = summary.execute(task_context())
    assert (result["numbers"], result["parts"], result["estimated_cost"]) == (3, None, None)
    assert vendor_requests(sim, "paasw_v2") == {}


# ------------------------------------------------------------------------------------------- max_cost


def test_max_cost_refuses_before_any_request(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(sim, monkeypatch, "paasw_v2", price_per_part="0.045", currency="CNY")
    with pytest.raises(
        SmsCostLimitError, match=r"cost 90\.000 CNY \(1000 numbers × 2 parts × 0\.045\), above max_cost=50"
    ):
        send_op(max_cost=50, mobiles=numbers(1000), content=TWO_PARTS).execute(task_context())
    assert vendor_requests(sim, "paasw_v2") == {}
    summary = send_op(max_cost=Decimal("90.000"), mobiles=numbers(1000), content=TWO_PARTS).execute(task_context())
    assert summary["accepted_numbers"] == 1000 and summary["estimated_cost"] == "90.000"  # at the limit: sent


def test_max_cost_without_a_price_is_a_clear_error(sim: GatewaySimulator) -> None:
    with pytest.raises(SmsConfigurationError, match=r"max_cost needs the cost of a part.*price_per_part"):
        send_op(max_cost="10", mobiles=numbers(10)).execute(task_context())
    assert vendor_requests(sim, "paasw_v2") == {}


# ------------------------------------------------------------------------------------------- check_balance


def test_check_balance_in_parts_refuses_before_any_send(sim: GatewaySimulator, store_args: dict[str, Any]) -> None:
    set_balance(sim, "paasw_v2", "199")
    op = send_op(check_balance=True, mobiles=numbers(100), content=TWO_PARTS, **store_args)
    with pytest.raises(
        SmsInsufficientBalanceError, match=r"needs 200 SMS parts \(100 numbers × 2 parts\), the balance is 199"
    ):
        op.execute(task_context())
    made = vendor_requests(sim, "paasw_v2")
    assert "/message/send" not in made and made.get("/message/balance") == 1
    assert accepted(sim, "paasw_v2") == {}
    set_balance(sim, "paasw_v2", "200")
    summary = op.execute(task_context())  # nothing was planned: the retry plans afresh, with no request in doubt
    assert (summary["plan"], summary["unknown_requests"], summary["accepted_numbers"]) == (1, 0, 100)
    assert set(accepted(sim, "paasw_v2").values()) == {1}


def test_check_balance_in_money_names_both_amounts(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """intl's balance names a currency: it is money, compared with parts × price_per_part (the simulated
    account pays 1 CNY a part)."""
    use_connection(sim, monkeypatch, "intl", price_per_part="1.00", currency="CNY")
    set_balance(sim, "intl", "299.5")
    with pytest.raises(SmsInsufficientBalanceError, match=r"needs 300\.00 CNY .*the balance is 299\.5 CNY"):
        send_op("intl", check_balance=True, mobiles=intl_numbers(300)).execute(task_context())
    assert "/api/v1/international/sms/send" not in vendor_requests(sim, "intl")
    set_balance(sim, "intl", "300")
    assert send_op("intl", check_balance=True, mobiles=intl_numbers(300)).execute(task_context())["sent_requests"] == 1


def test_check_balance_errors_that_send_nothing(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SmsConfigurationError, match=r"balance is money \(100000(\.0+)? CNY\).*price_per_part"):
        send_op("intl", check_balance=True, mobiles=intl_numbers(3)).execute(task_context())
    use_connection(sim, monkeypatch, "intl", price_per_part="0.4", currency="USD")
    with pytest.raises(SmsConfigurationError, match="balance is in CNY, the connection's price_per_part in USD"):
        send_op("intl", check_balance=True, mobiles=intl_numbers(3)).execute(task_context())
    with pytest.raises(SmsConfigurationError, match="cloud_mas has no balance API"):
        send_op("cloud_mas", check_balance=True, signature=None, mobiles=numbers(3)).execute(task_context())
    assert accepted(sim, "intl") == {} and accepted(sim, "cloud_mas") == {}
    assert vendor_requests(sim, "cloud_mas") == {}


# ------------------------------------------------------------------------------------------- mid-send


def test_insufficient_balance_mid_send_stops_and_a_retry_after_top_up_sends_the_rest_once(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    """intl, 2,500 numbers in 3 requests; the balance pays for the first only: the second gets 1009."""
    set_balance(sim, "intl", "1500")
    op = send_op("intl", mobiles=intl_numbers(2500), **store_args)
    with pytest.raises(SmsInsufficientBalanceError, match="balance ran out mid-send") as info:
        op.execute(task_context())
    message = str(info.value)
    assert "1009" in message and "1000 numbers were accepted" in message and "1500 numbers in 2 requests" in message
    summary = info.value.summary
    assert summary is not None
    assert (summary["accepted_numbers"], summary["not_sent_numbers"], summary["not_sent_requests"]) == (1000, 1500, 2)
    assert "AmountNotEnough" in summary["not_sent_reason"]
    counts = accepted(sim, "intl")
    assert len(counts) == 1000 and set(counts.values()) == {1}
    set_balance(sim, "intl", "100000")  # the top-up; then the task's retry
    again = op.execute(task_context())
    assert (again["skipped_requests"], again["sent_requests"], again["accepted_numbers"]) == (1, 2, 2500)
    counts = accepted(sim, "intl")
    assert len(counts) == 2500 and set(counts.values()) == {1}  # the rest, once; nothing twice


def test_a_refusal_without_a_documented_balance_code_stops_the_same_way(sim: GatewaySimulator) -> None:
    """paasw_v2's document lists no codes: the simulator's 40004 is a plain refusal, and the rest still waits.
    A retry with check_balance counts only the numbers still to send."""
    set_balance(sim, "paasw_v2", "1000")
    ask: dict[str, Any] = {"mobiles": numbers(2500), "max_concurrency": 2}
    with pytest.raises(SmsVendorError, match="40004"):
        send_op(**ask).execute(task_context())
    first = accepted(sim, "paasw_v2")
    assert len(first) == 1000 and set(first.values()) == {1}
    sends = vendor_requests(sim, "paasw_v2")["/message/send"]
    set_balance(sim, "paasw_v2", "1499")  # not enough for the 1,500 left
    with pytest.raises(SmsInsufficientBalanceError, match=r"needs 1500 SMS parts \(1500 numbers × 1 part\)"):
        send_op(check_balance=True, **ask).execute(task_context())
    assert vendor_requests(sim, "paasw_v2")["/message/send"] == sends  # refused before any request
    set_balance(sim, "paasw_v2", "1500")
    again = send_op(check_balance=True, **ask).execute(task_context())
    assert (again["skipped_requests"], again["unknown_requests"], again["accepted_numbers"]) == (1, 0, 2500)
    counts = accepted(sim, "paasw_v2")
    assert len(counts) == 2500 and set(counts.values()) == {1}
