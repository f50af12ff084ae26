"""IntlSmsHook against the simulated international gateway over real sockets."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import (
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.intl import IntlSmsHook
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.simulator.core import md5_hex
from airflow_provider_sms.testing import task_context

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/international/sms"
SEND_PATH, STATUS_PATH, BALANCE_PATH = f"{PREFIX}/send", f"{PREFIX}/status", f"{PREFIX}/balance"


@pytest.fixture
def hook(sms_connections: dict[str, str]) -> IntlSmsHook:
    return IntlSmsHook(sms_connections["intl"])


def requests_seen(sim: GatewaySimulator, path: str) -> int:
    return sim.gateway.stats()["requests"].get(f"intl {path}", 0)


def balance(sim: GatewaySimulator) -> Decimal:
    return sim.gateway.balances["intl"]


def use_connection(monkeypatch: pytest.MonkeyPatch, sim: GatewaySimulator, conn_id: str, **changes: Any) -> None:
    conn = json.loads(sim.connection_json("intl", retry_wait=0.01))
    extra = changes.pop("extra", {})
    conn.update(changes)
    conn["extra"].update(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def raw(sim: GatewaySimulator, method: str, path: str, body: Any = None, **header_changes: str | None) -> Any:
    """A hand-made request, for what the hook would never send."""
    account = sim.gateway.account("intl")
    headers: dict[str, str | None] = {
        "appKey": account.login,
        "appSecret": md5_hex(account.secret).upper(),
        "Accept": "application/json",
        "Content-Type": "application/json;charset=utf-8",
        **header_changes,
    }
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    response = requests.request(method, sim.http_url + path, data=data, headers=headers, timeout=5)
    return response.json() if response.headers.get("Content-Type", "").startswith("application/json") else response


# ---------------------------------------------------------------------- the happy path


def test_send_then_reports_then_balance(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    start = hook.get_balance()
    assert (start.amount, start.currency) == (balance(sms_simulator), "CNY")
    long_text = "x" * 150  # with 【Acme】 that is 156 characters: 3 parts of 67

    (short,) = hook.send(["+86 138 0013 8000", "2348031000010"], "code 1234", signature="Acme", sender_id="Acme")
    (long,) = hook.send("2348031000011", long_text, signature="Acme")

    assert short.batch_id != long.batch_id
    assert short.mobiles == ("8613800138000", "2348031000010")
    stored = sms_simulator.gateway.messages["intl"][(short.batch_id, "8613800138000")]
    assert stored.content == "【Acme】code 1234"
    assert hook.get_balance().amount == start.amount - 2 - 3

    pairs = [(short.batch_id, m) for m in short.mobiles] + [(long.batch_id, "2348031000011")]
    reports = hook.fetch_reports(pairs)
    assert [(r.batch_id, r.mobile, r.status, r.code) for r in reports] == [
        (b, m, "delivered", "DELIVRD") for b, m in pairs
    ]
    now = datetime.now(timezone.utc)
    assert all(r.reported_at and abs(r.reported_at - now) < timedelta(seconds=5) for r in reports)
    # a query, not a queue: asking again gives the same answer
    assert [r.status for r in hook.fetch_reports(pairs)] == ["delivered"] * 3


def test_reports_pending_until_due_then_delivered(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0.6
    (receipt,) = hook.send("2348031000010", "hi", signature="Acme")
    pair = (receipt.batch_id, "2348031000010")

    (pending,) = hook.fetch_reports([pair])
    assert (pending.status, pending.reported_at) == ("pending", None)
    time.sleep(0.7)
    (delivered,) = hook.fetch_reports([pair])
    assert delivered.status == "delivered"
    assert delivered.reported_at is not None


def test_failed_reports_carry_undeliv(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    sms_simulator.gateway.config.failure_rate = 1.0
    (receipt,) = hook.send(["2348031000010", "2348031000011"], "hi", signature="Acme")
    reports = hook.fetch_reports([(receipt.batch_id, m) for m in receipt.mobiles])
    assert [(r.status, r.code) for r in reports] == [("failed", "UNDELIV")] * 2


def test_unknown_pairs_are_left_out(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    (receipt,) = hook.send("2348031000010", "hi", signature="Acme")
    reports = hook.fetch_reports(
        [(receipt.batch_id, "2348031000010"), (receipt.batch_id, "2348031000099"), ("1", "2348031000010")]
    )
    assert [(r.batch_id, r.mobile) for r in reports] == [(receipt.batch_id, "2348031000010")]
    # none known: the vendor answers 1012 and the hook reads that as "no reports"
    assert hook.fetch_reports([("1", "2348031000010")]) == []
    assert requests_seen(sms_simulator, STATUS_PATH) == 2


def test_reports_older_than_30_days_are_gone(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    """The vendor answers 1010 for a pair past its 30 days: it will never report it, so it is expired."""
    sms_simulator.gateway.config.report_delay = 0
    (receipt,) = hook.send("2348031000010", "hi", signature="Acme")
    message = sms_simulator.gateway.messages["intl"][(receipt.batch_id, "2348031000010")]
    message.submitted_at -= timedelta(days=31)
    [report] = hook.fetch_reports([(receipt.batch_id, "2348031000010")])
    assert (report.status, report.code, report.batch_id) == ("expired", "1010", receipt.batch_id)


def test_inbound_is_not_supported(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_inbound("intl", "2348031000010", "STOP")
    with pytest.raises(SmsNotSupportedError, match="intl does not support inbound"):
        hook.fetch_inbound()
    assert sms_simulator.gateway.stats()["requests"] == {}
    assert sms_simulator.gateway.stats()["inbound_queued"] == {"intl": 1}


def test_scheduled_send(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    (receipt,) = hook.send(
        "2348031000010",
        "later",
        signature="Acme",
        scheduled_at=datetime.now(timezone.utc) + timedelta(hours=2),
    )
    assert (receipt.batch_id, "2348031000010") in sms_simulator.gateway.messages["intl"]
    # a time already past is refused by the hook before it goes out ...
    with pytest.raises(SmsInvalidRequestError, match="is in the past"):
        hook.send(
            "2348031000010",
            "too late",
            signature="Acme",
            scheduled_at=datetime.now(timezone.utc) - timedelta(hours=2),
        )
    assert requests_seen(sms_simulator, SEND_PATH) == 1
    # ... and by the vendor too (SendTimeError), should one get there
    past = (datetime.now(timezone.utc) - timedelta(hours=2)).astimezone(hook.config.timezone)
    body = {"mobile": "2348031000010", "content": "【A】x", "sendTime": past.strftime("%Y%m%d%H%M%S")}
    assert raw(sms_simulator, "POST", SEND_PATH, body)["code"] == 1011


def test_test_connection(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    ok, message = hook.test_connection()
    assert ok is True
    assert "CNY" in message
    assert requests_seen(sms_simulator, BALANCE_PATH) == 1


# ---------------------------------------------------------------------- caps


def test_send_split_at_1000_numbers(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    numbers = [f"2348031{n:06d}" for n in range(2500)]
    receipts = hook.send(numbers, "hi", signature="Acme")
    assert [len(r.mobiles) for r in receipts] == [1000, 1000, 500]
    assert requests_seen(sms_simulator, SEND_PATH) == 3
    assert sms_simulator.gateway.stats()["accepted_messages"]["intl"] == 2500


def test_status_split_at_500_pairs(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    receipts = hook.send([f"2348031{n:06d}" for n in range(1200)], "hi", signature="Acme")
    pairs = [(r.batch_id, m) for r in receipts for m in r.mobiles]

    reports = hook.fetch_reports(pairs)

    assert requests_seen(sms_simulator, STATUS_PATH) == 3
    assert len(reports) == 1200
    assert {r.status for r in reports} == {"delivered"}


def test_simulator_enforces_caps_and_fields(sms_simulator: GatewaySimulator) -> None:
    mobiles = ",".join(f"2348031{n:06d}" for n in range(1001))
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": mobiles, "content": "【A】x"})["code"] == 1001
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": "+2348031000010", "content": "【A】x"})["code"] == 1007
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": "13800138000,", "content": "【A】x"})["code"] == 1007
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": "2348031000010", "content": "no sign"})["code"] == 1006
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": "2348031000010", "content": "【】x"})["code"] == 1006
    assert raw(sms_simulator, "POST", SEND_PATH, {"mobile": "2348031000010"})["code"] == 1001
    assert raw(sms_simulator, "POST", SEND_PATH, {"content": "【A】x"})["code"] == 1001
    bad_time = {"mobile": "2348031000010", "content": "【A】x", "sendTime": "2030-01-01 10:00:00"}
    assert raw(sms_simulator, "POST", SEND_PATH, bad_time)["code"] == 1011
    pairs = [{"msgId": "1", "mobile": "2348031000010"}] * 501
    assert raw(sms_simulator, "POST", STATUS_PATH, {"data": pairs})["code"] == 1001
    assert raw(sms_simulator, "POST", STATUS_PATH, {"data": [{"msgId": 1, "mobile": "2348031000010"}]})["code"] == 1001
    assert raw(sms_simulator, "POST", STATUS_PATH, {"data": []})["code"] == 1001
    assert raw(sms_simulator, "POST", STATUS_PATH, {"msgId": "1"})["code"] == 1001
    assert raw(sms_simulator, "POST", SEND_PATH, b"mobile=2348031000010")["code"] == 1001
    assert sms_simulator.gateway.stats()["accepted_requests"] == {}


def test_simulator_enforces_headers_and_methods(sms_simulator: GatewaySimulator) -> None:
    lower = md5_hex(sms_simulator.gateway.account("intl").secret)
    assert raw(sms_simulator, "GET", BALANCE_PATH, appSecret=lower)["code"] == 1003
    assert raw(sms_simulator, "GET", BALANCE_PATH, appSecret=None)["code"] == 1003
    assert raw(sms_simulator, "GET", BALANCE_PATH, appKey="99999")["code"] == 1002
    assert raw(sms_simulator, "GET", BALANCE_PATH, **{"Content-Type": None})["code"] == 1001
    form = "application/x-www-form-urlencoded"
    assert raw(sms_simulator, "POST", STATUS_PATH, {"data": []}, **{"Content-Type": form})["code"] == 1001
    assert raw(sms_simulator, "GET", BALANCE_PATH, **{"Content-Type": "application/json;charset=gbk"})["code"] == 1001
    assert raw(sms_simulator, "GET", BALANCE_PATH, Accept="text/html")["code"] == 1001
    spaced = raw(sms_simulator, "GET", BALANCE_PATH, **{"Content-Type": "application/json; charset=UTF-8"})
    assert spaced["code"] == 0
    assert spaced["data"]["currencyName"] == "人民币"
    assert raw(sms_simulator, "POST", BALANCE_PATH).status_code == 405
    assert raw(sms_simulator, "GET", SEND_PATH).status_code == 405


# ---------------------------------------------------------------------- vendor errors


def test_wrong_secret_gives_1003(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_intl_badsecret", password="wrong")
    hook = IntlSmsHook("sms_intl_badsecret")
    with pytest.raises(SmsVendorError) as info:
        hook.send("2348031000010", "hi", signature="Acme")
    assert info.value.code == "1003"
    assert "appSecret is wrong" in str(info.value)
    ok, message = hook.test_connection()
    assert not ok
    assert "1003" in message
    assert sms_simulator.gateway.stats()["accepted_requests"] == {}


def test_wrong_app_key_gives_1002(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_intl_badkey", login="55555")
    with pytest.raises(SmsVendorError) as info:
        IntlSmsHook("sms_intl_badkey").get_balance()
    assert info.value.code == "1002"
    assert "appKey" in str(info.value)


def test_insufficient_balance_gives_1009(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.balances["intl"] = Decimal(2)
    with pytest.raises(SmsVendorError) as info:
        hook.send(["2348031000010", "2348031000011", "2348031000012"], "hi", signature="Acme")
    assert info.value.code == "1009"
    assert "insufficient" in str(info.value)
    assert balance(sms_simulator) == 2


# ---------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["html", "status"])
def test_reads_retried_through_5xx(hook: IntlSmsHook, sms_simulator: GatewaySimulator, kind: str) -> None:
    sms_simulator.gateway.config.report_delay = 0
    (receipt,) = hook.send("2348031000010", "hi", signature="Acme")
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor="intl"))
    assert hook.get_balance().currency == "CNY"
    assert requests_seen(sms_simulator, BALANCE_PATH) == 3
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor="intl", path=STATUS_PATH))
    assert [r.status for r in hook.fetch_reports([(receipt.batch_id, "2348031000010")])] == ["delivered"]
    assert requests_seen(sms_simulator, STATUS_PATH) == 3


def test_reads_give_up_after_retries(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="html", remaining=10, vendor="intl"))
    with pytest.raises(SmsResponseError, match="HTTP 502"):
        hook.get_balance()
    assert requests_seen(sms_simulator, BALANCE_PATH) == hook.retries + 1


def test_garbage_is_retried_like_a_5xx(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    (receipt,) = hook.send("2348031000010", "hi", signature="Acme")
    assert hook.retries >= 2  # so that the faults below are really retried
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=hook.retries, vendor="intl", path=BALANCE_PATH))
    assert hook.get_balance().currency == "CNY"
    assert requests_seen(sms_simulator, BALANCE_PATH) == hook.retries + 1
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=hook.retries, vendor="intl", path=STATUS_PATH))
    assert [r.status for r in hook.fetch_reports([(receipt.batch_id, "2348031000010")])] == ["delivered"]
    assert requests_seen(sms_simulator, STATUS_PATH) == hook.retries + 1


def test_garbage_beyond_the_retries_is_a_clear_error(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    attempts = hook.retries + 1
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=attempts, vendor="intl"))
    with pytest.raises(
        SmsResponseError,
        match=rf"balance query: failed after {attempts} attempts: the reply is not JSON \(HTTP 200; body starts",
    ) as info:
        hook.get_balance()
    assert info.value.status == 200
    assert requests_seen(sms_simulator, BALANCE_PATH) == attempts
    assert hook.get_balance().currency == "CNY"  # the fault is spent: the next call is fine


def test_send_hit_by_5xx_is_outcome_unknown_and_not_retried(hook: IntlSmsHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor="intl", path=SEND_PATH))
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1"):
        hook.send("2348031000010", "hi", signature="Acme")
    assert requests_seen(sms_simulator, SEND_PATH) == 1


def test_send_read_timeout_is_outcome_unknown_and_no_double_send(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_intl_slow", extra={"timeout": 0.5})
    sms_simulator.gateway.add_fault(Fault(kind="delay", remaining=1, vendor="intl", path=SEND_PATH, seconds=2))
    hook = IntlSmsHook("sms_intl_slow")
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send("2348031000010", "hi", signature="Acme")
    assert "send request #1" in str(info.value)
    assert "read timeout" in str(info.value)
    assert info.value.mobiles == ("2348031000010",)
    assert requests_seen(sms_simulator, SEND_PATH) == 1
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"] == {"intl": 1}  # the vendor did act: exactly once
    assert stats["accepted_messages"] == {"intl": 1}


# ---------------------------------------------------------------------- numbers (phonenumbers)


def test_numbers_of_several_countries_reach_the_gateway_as_e164_digits(
    hook: IntlSmsHook, sms_simulator: GatewaySimulator
) -> None:
    given = ["+44 (0)7400 123456", "+1 415 555 0100", "0049 151 23456789", "+91 98765 43210", "+86 138 0013 8000"]
    (receipt,) = hook.send(given, "hi", signature="Acme")
    wire = ["447400123456", "14155550100", "4915123456789", "919876543210", "8613800138000"]
    assert receipt.mobiles == tuple(wire)
    accepted = sms_simulator.gateway.ledger.summary("intl", numbers=True)["intl"]["accepted"]["counts"]
    assert accepted == dict.fromkeys(wire, 1)


def test_a_bad_international_number_is_refused_before_any_request(
    hook: IntlSmsHook, sms_simulator: GatewaySimulator
) -> None:
    good = [f"86138{i:08d}" for i in range(1500)] + ["447400123456"]
    with pytest.raises(SmsInvalidNumbersError) as info:  # the fixed line comes last: after two requests' worth
        hook.send([*good, "+44 20 7946 0958"], "hi", signature="Acme")
    assert str(info.value) == (
        "intl: 1 of 1502 mobile numbers are invalid: '+44 20 7946 0958' is not a valid mobile number for "
        "United Kingdom (GB): it is a fixed-line number, which cannot receive SMS; nothing was sent"
    )
    assert sms_simulator.gateway.stats()["requests"] == {}  # counted at the simulator: no request at all
    assert sms_simulator.gateway.ledger.summary("intl")["intl"]["accepted"]["numbers"] == 0


def test_the_send_operator_refuses_a_bad_international_number_before_any_request(sim: GatewaySimulator) -> None:
    operator = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_intl",
        mobiles=[f"86138{i:08d}" for i in range(1500)] + ["13800138000", "+65 6123 456"],
        content="hi",
        signature="Acme",
    )
    with pytest.raises(SmsInvalidNumbersError) as info:
        operator.execute(task_context())
    message = str(info.value)
    assert "'13800138000' is not a valid mobile number for United States (US) or another of the 25" in message
    assert "write it with its country code: 8613800138000" in message
    assert "'+65 6123 456' is not a valid mobile number for Singapore (SG): too short" in message
    assert sim.gateway.stats()["requests"] == {}
