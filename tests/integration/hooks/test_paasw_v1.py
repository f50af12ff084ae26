"""PaaswV1Hook against the simulated PaaSW v1 gateway over real sockets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import SmsOutcomeUnknownError, SmsResponseError, SmsVendorError
from airflow_provider_sms.hooks.paasw_v1 import PaaswV1Hook
from airflow_provider_sms.records import DELIVERED, FAILED
from airflow_provider_sms.simulator import Account, Fault, GatewaySimulator

pytestmark = pytest.mark.integration

VENDOR = "paasw_v1"
SIGN = "圆通快递"
MOBILES = ["13651688564", "13568988547"]


def _connect(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> str:
    """The ``sms_connections`` account plus the ``sign`` every paasw_v1 send needs."""
    extra = {"sign": SIGN, "retry_wait": 0.01, **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sms_simulator.connection_json(VENDOR, **extra))
    return conn_id


@pytest.fixture
def conn_id(sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    sms_simulator.gateway.config.report_delay = 0
    return _connect(sms_simulator, monkeypatch, sms_connections[VENDOR])


@pytest.fixture
def hook(conn_id: str) -> PaaswV1Hook:
    return PaaswV1Hook(conn_id)


def _requests(sms_simulator: GatewaySimulator, path: str) -> int:
    return int(sms_simulator.gateway.stats()["requests"].get(f"{VENDOR} {path}", 0))


def _token(sms_simulator: GatewaySimulator) -> str:
    account = sms_simulator.gateway.account(VENDOR)
    reply = requests.get(
        f"{sms_simulator.http_url}/api/token",
        params={"appId": account.login, "secret": account.secret},
        timeout=5,
    ).json()
    assert reply["code"] == "10000"
    return str(reply["token"])


# ---------------------------------------------------------------------- the whole flow


def test_send_reports_inbound_balance(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    gateway = sms_simulator.gateway
    start = hook.get_balance().amount
    assert start == Decimal("100000")

    (receipt,) = hook.send(MOBILES, "你的验证码是123456")
    assert len(receipt.batch_id) == 20 and int(receipt.batch_id) > 2**64
    assert receipt.mobiles == tuple(MOBILES)
    stored = gateway.messages[VENDOR]
    assert {m.content for m in stored.values()} == {f"【{SIGN}】你的验证码是123456"}
    assert hook.get_balance().amount == start - 2

    long_text = "长" * 70  # 【圆通快递】 + 70 characters: two parts per number
    hook.send(MOBILES, long_text)
    assert hook.get_balance().amount == start - 2 - 4

    reports = hook.fetch_reports()
    assert len(reports) == 4
    first = sorted((r for r in reports if r.batch_id == receipt.batch_id), key=lambda r: r.mobile)
    assert [r.mobile for r in first] == sorted(MOBILES)
    assert all((r.status, r.code, r.description) == (DELIVERED, "10000", "delivered") for r in reports)
    for report in reports:
        assert report.reported_at is not None
        assert abs(report.reported_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert hook.fetch_reports() == []  # a queue: handed out once

    gateway.add_inbound(VENDOR, MOBILES[0], "收到，谢谢", sign=SIGN)
    (message,) = hook.fetch_inbound()
    assert (message.mobile, message.content, message.ext_no) == (MOBILES[0], "收到，谢谢", "")
    assert message.received_at is not None
    assert abs(message.received_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert message.raw is not None and message.raw["sign"] == SIGN
    assert hook.fetch_inbound() == []
    assert _requests(sms_simulator, "/api/token") == 1


def test_failed_delivery_report(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.failure_rate = 1.0
    (receipt,) = hook.send(MOBILES[:1], "hello")
    (report,) = hook.fetch_reports()
    assert (report.batch_id, report.status, report.code) == (receipt.batch_id, FAILED, "4")
    assert "delivery failed" in report.description


def test_template_send(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    (receipt,) = hook.send_template(MOBILES, "1192360392260608", {"code": "523648", "minute": "2"})
    messages = sms_simulator.gateway.messages[VENDOR]
    assert {batch for batch, _ in messages} == {receipt.batch_id}
    assert {m.content for m in messages.values()} == {f'【{SIGN}】{{"code":"523648","minute":"2"}}'}
    assert _requests(sms_simulator, "/sms/sendTemplate") == 1


def test_batches_split_at_1500_characters(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    mobiles = [f"139{i:08d}" for i in range(300)]
    receipts = hook.send(mobiles, "hello")
    assert [len(r.mobiles) for r in receipts] == [125, 125, 50]
    assert _requests(sms_simulator, "/sms/send") == 3
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"][VENDOR] == 3
    assert stats["accepted_messages"][VENDOR] == 300


def test_insufficient_balance(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.balances[VENDOR] = Decimal("1")
    with pytest.raises(SmsVendorError) as info:
        hook.send(MOBILES, "hello")
    assert (info.value.code, info.value.vendor_message) == ("10004", "余额不足")
    assert _requests(sms_simulator, "/sms/send") == 1
    assert sms_simulator.gateway.stats()["accepted_messages"].get(VENDOR, 0) == 0
    assert hook.get_balance().amount == Decimal("1")


# ---------------------------------------------------------------------- credentials and tokens


def test_wrong_credentials(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(sms_simulator.connection_json(VENDOR, sign=SIGN, retry_wait=0.01))
    conn["password"] = "not-the-secret"
    monkeypatch.setenv(f"AIRFLOW_CONN_{sms_connections[VENDOR].upper()}", json.dumps(conn))
    hook = PaaswV1Hook(sms_connections[VENDOR])
    with pytest.raises(SmsVendorError) as info:
        hook.send(MOBILES, "hello")
    assert info.value.code == "10001"
    ok, message = hook.test_connection()
    assert ok is False and "appId or secret rejected" in message
    assert "not-the-secret" not in message
    assert _requests(sms_simulator, "/sms/send") == 0


def test_test_connection(hook: PaaswV1Hook) -> None:
    ok, message = hook.test_connection()
    assert ok is True and "0189457544" in message


def test_token_refresh_after_revocation(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    hook.send(MOBILES[:1], "one")
    assert _requests(sms_simulator, "/api/token") == 1
    sms_simulator.gateway.revoke_tokens(VENDOR)
    (receipt,) = hook.send(MOBILES[:1], "two")
    assert _requests(sms_simulator, "/api/token") == 2
    assert _requests(sms_simulator, "/sms/send") == 3  # one refused on the dead token, repeated once
    assert sms_simulator.gateway.stats()["accepted_requests"][VENDOR] == 2
    assert (receipt.batch_id, MOBILES[0]) in sms_simulator.gateway.messages[VENDOR]
    sms_simulator.gateway.revoke_tokens(VENDOR)
    assert hook.get_balance().amount == Decimal("99998")
    assert _requests(sms_simulator, "/api/token") == 3


def test_multi_kind_account_needs_kind(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = sms_simulator.gateway.account(VENDOR)
    monkeypatch.setitem(
        sms_simulator.gateway.accounts,
        VENDOR,
        Account(VENDOR, account.login, account.secret, {"kinds": "1,2"}),
    )
    hook = PaaswV1Hook(_connect(sms_simulator, monkeypatch, sms_connections[VENDOR]))
    with pytest.raises(SmsVendorError, match="kind") as info:
        hook.send(MOBILES[:1], "hello")
    assert info.value.code == "10003"
    with pytest.raises(SmsVendorError, match="kind"):
        hook.send(MOBILES[:1], "hello", kind="marketing")
    hook.send(MOBILES[:1], "hello", kind="verification")
    assert sms_simulator.gateway.stats()["accepted_requests"][VENDOR] == 1


# ---------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["html", "status"])
def test_reads_retried_through_5xx(hook: PaaswV1Hook, sms_simulator: GatewaySimulator, kind: str) -> None:
    hook.send(MOBILES[:1], "hello")
    for path in ("/sms/balance", "/sms/deliver", "/sms/smsUp"):
        sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor=VENDOR, path=path))
    sms_simulator.gateway.add_inbound(VENDOR, MOBILES[0], "ok")
    assert hook.get_balance().amount == Decimal("99999")
    assert len(hook.fetch_reports()) == 1
    assert len(hook.fetch_inbound()) == 1
    for path in ("/sms/balance", "/sms/deliver", "/sms/smsUp"):
        assert _requests(sms_simulator, path) == 3


def test_garbage_reads_are_retried_like_a_5xx(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    hook.send(MOBILES[:1], "hello")
    assert hook.retries >= 2  # so that the faults below are really retried
    for path in ("/sms/balance", "/sms/deliver", "/sms/smsUp"):
        sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=hook.retries, vendor=VENDOR, path=path))
    sms_simulator.gateway.add_inbound(VENDOR, MOBILES[0], "ok")
    assert hook.get_balance().amount == Decimal("99999")
    assert len(hook.fetch_reports()) == 1
    assert len(hook.fetch_inbound()) == 1
    for path in ("/sms/balance", "/sms/deliver", "/sms/smsUp"):
        assert _requests(sms_simulator, path) == hook.retries + 1


def test_garbage_reply_beyond_the_retries_is_a_clear_error(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    attempts = hook.retries + 1
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=attempts, vendor=VENDOR, path="/sms/balance"))
    with pytest.raises(
        SmsResponseError,
        match=rf"balance query: failed after {attempts} attempts: the reply is not JSON \(HTTP 200; body starts",
    ) as info:
        hook.get_balance()
    assert info.value.status == 200
    assert _requests(sms_simulator, "/sms/balance") == attempts
    assert hook.get_balance().amount == Decimal("100000")  # the fault is spent: the next call is fine


def test_send_hit_by_5xx_is_outcome_unknown_and_not_retried(hook: PaaswV1Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, path="/sms/send"))
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1"):
        hook.send(MOBILES, "hello")
    assert _requests(sms_simulator, "/sms/send") == 1
    assert sms_simulator.gateway.stats()["accepted_messages"].get(VENDOR, 0) == 0


def test_read_timeout_after_send(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = PaaswV1Hook(_connect(sms_simulator, monkeypatch, sms_connections[VENDOR], timeout=0.5))
    sms_simulator.gateway.add_fault(Fault(kind="delay", remaining=1, vendor=VENDOR, path="/sms/send", seconds=2))
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send(MOBILES, "hello")
    assert "send request #1" in str(info.value) and "read timeout" in str(info.value)
    assert info.value.mobiles == tuple(MOBILES)
    assert _requests(sms_simulator, "/sms/send") == 1  # not resent
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"][VENDOR] == 1  # the vendor did act
    assert stats["accepted_messages"][VENDOR] == 2


# ------------------------------------------------------------ the simulator is as strict as the document


def _send_raw(sms_simulator: GatewaySimulator, path: str = "/sms/send", **fields: str) -> dict[str, Any]:
    body = {
        "token": _token(sms_simulator),
        "phoneNumbers": MOBILES[0],
        "sign": SIGN,
        "content": f"【{SIGN}】hi",
        **fields,
    }
    body = {k: v for k, v in body.items() if v is not None}
    reply: dict[str, Any] = requests.post(f"{sms_simulator.http_url}{path}", data=body, timeout=5).json()
    return reply


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"phoneNumbers": ",".join(f"139{i:08d}" for i in range(126))}, "phoneNumbers长度超过1500"),
        ({"phoneNumbers": "1365168856"}, "手机号格式错误"),
        ({"phoneNumbers": None}, "缺少参数 phoneNumbers"),
        ({"sign": "【圆通快递】"}, "sign不包含【】"),
        ({"sign": "签" * 21}, "sign长度超过20"),
        ({"sign": None}, "缺少参数 sign"),
        ({"content": "字" * 1001}, "content长度超过1000"),
        ({"content": None}, "缺少参数 content"),
        ({"content": "hi"}, "content须包含【签名】"),
        ({"content": "【】hi"}, "content须包含【签名】"),
        ({"kind": "4"}, "kind"),
        ({"token": "forged"}, "token"),
    ],
)
def test_simulator_rejects_bad_sends(sms_simulator: GatewaySimulator, fields: dict[str, Any], message: str) -> None:
    reply = _send_raw(sms_simulator, **fields)
    assert reply["code"] in ("10002", "10003")
    assert message in reply["message"]
    assert sms_simulator.gateway.stats()["accepted_messages"].get(VENDOR, 0) == 0


@pytest.mark.parametrize("content", ["【圆通快递】您的快件已签收", "您的快件已签收【圆通快递】"])
def test_simulator_bills_the_content_as_sent(sms_simulator: GatewaySimulator, content: str) -> None:
    """包含: a signature anywhere will do, and the platform adds none of its own."""
    assert _send_raw(sms_simulator, content=content)["code"] == "10000"
    assert {m.content for m in sms_simulator.gateway.messages[VENDOR].values()} == {content}


def test_simulator_accepts_a_documented_send(sms_simulator: GatewaySimulator) -> None:
    reply = _send_raw(sms_simulator, kind="2", phoneNumbers=",".join(f"139{i:08d}" for i in range(125)))
    assert reply["code"] == "10000" and isinstance(reply["bizId"], str)
    assert sms_simulator.gateway.stats()["accepted_messages"][VENDOR] == 125


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"templateId": None, "paramJson": "[]"}, "缺少参数 templateId"),
        ({"templateId": "T" * 21, "paramJson": "[]"}, "templateId长度超过20"),
        ({"templateId": "T1", "paramJson": None}, "缺少参数 paramJson"),
        ({"templateId": "T1", "paramJson": "x" * 101}, "paramJson长度超过100"),
        ({"templateId": "T1", "paramJson": "code=1"}, "paramJson须为JSON"),
        ({"templateId": "T1", "paramJson": "[]", "content": None}, "缺少参数 content"),
    ],
)
def test_simulator_rejects_bad_templates(sms_simulator: GatewaySimulator, fields: dict[str, Any], message: str) -> None:
    reply = _send_raw(sms_simulator, "/sms/sendTemplate", **fields)
    assert (reply["code"], message in reply["message"]) == ("10003", True)


def test_simulator_takes_form_bodies_and_documented_methods(sms_simulator: GatewaySimulator) -> None:
    url = sms_simulator.http_url
    body = {"token": _token(sms_simulator), "phoneNumbers": MOBILES[0], "sign": SIGN, "content": "hi"}
    as_json = requests.post(f"{url}/sms/send", json=body, timeout=5).json()
    assert as_json["code"] == "10003" and "表单" in as_json["message"]
    assert requests.get(f"{url}/sms/send", params=body, timeout=5).status_code == 405
    assert requests.post(f"{url}/api/token", timeout=5).status_code == 405
    assert requests.post(f"{url}/sms/balance", data={"token": body["token"]}, timeout=5).status_code == 405


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"appId": "0189457544", "secret": "wrong"}, "10001"),
        ({"appId": "01894575440", "secret": "23f757bad208226ec301e117e4"}, "10003"),
        ({"appId": "0189457544", "secret": "s" * 31}, "10003"),
        ({"appId": "0189457544"}, "10003"),
    ],
)
def test_simulator_token_checks(sms_simulator: GatewaySimulator, params: dict[str, str], code: str) -> None:
    reply = requests.get(f"{sms_simulator.http_url}/api/token", params=params, timeout=5).json()
    assert reply["code"] == code
    assert "token" not in reply


def test_simulator_inbound_needs_sign(sms_simulator: GatewaySimulator) -> None:
    url = sms_simulator.http_url
    token = _token(sms_simulator)
    reply = requests.get(f"{url}/sms/smsUp", params={"token": token}, timeout=5).json()
    assert (reply["code"], reply["message"]) == ("10003", "缺少参数 sign")
    reply = requests.get(f"{url}/sms/deliver", params={"token": token}, timeout=5).json()
    assert (reply["code"], reply["data"]) == ("10000", [])
    reply = requests.get(f"{url}/sms/balance", params={"token": "forged"}, timeout=5).json()
    assert reply["code"] == "10002" and "balance" not in reply
