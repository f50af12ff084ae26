"""PaaswV2Hook against the simulated PaaSW v2 gateway over real sockets, and the simulator's strictness."""

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
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook
from airflow_provider_sms.numbers import message_parts
from airflow_provider_sms.records import DELIVERED, FAILED, SendReceipt
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.simulator.core import Gateway, vendor_time

pytestmark = pytest.mark.integration

VENDOR = "paasw_v2"
CONN_ID = "sms_paasw_v2"
START_BALANCE = Decimal("100000.00")
# json path, form path
SEND_PATHS = {"json": "/message/send", "form": "/msg/send"}
TEMPLATE_PATHS = {"json": "/message/sendTemplate", "form": "/msg/sendTemplate"}
TOKEN_PATHS = {"json": "/message/token", "form": "/message/tokenApi"}
BALANCE_PATHS = {"json": "/message/balance", "form": "/msg/balance"}


# ---------------------------------------------------------------------------- helpers


def use_connection(monkeypatch: pytest.MonkeyPatch, sim: GatewaySimulator, **changes: Any) -> str:
    """Point ``sms_paasw_v2`` at the simulator with some fields or extras changed."""
    conn = json.loads(sim.connection_json(VENDOR, retry_wait=0.01))
    conn["extra"].update(changes.pop("extra", {}))
    conn.update(changes)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


@pytest.fixture(params=["json", "form"])
def fmt(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def hook(
    sms_connections: dict[str, str],
    sms_simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> PaaswV2Hook:
    assert sms_connections[VENDOR] == CONN_ID
    return PaaswV2Hook(use_connection(monkeypatch, sms_simulator, extra={"format": fmt}))


def seen(sim: GatewaySimulator, path: str) -> int:
    return int(sim.gateway.stats()["requests"].get(f"{VENDOR} {path}", 0))


def accepted(sim: GatewaySimulator) -> tuple[int, int]:
    """(accepted requests, accepted messages) of the paasw_v2 account."""
    stats = sim.gateway.stats()
    return stats["accepted_requests"].get(VENDOR, 0), stats["accepted_messages"].get(VENDOR, 0)


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"1370000{i:04d}" for i in range(start, start + count)]


def close_to_now(when: datetime | None) -> bool:
    return (
        when is not None and when.tzinfo is not None and abs(when - datetime.now(timezone.utc)) < timedelta(seconds=30)
    )


class Raw:
    """Hand-made requests to the simulator, for what the hook would never send."""

    def __init__(self, sim: GatewaySimulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        account = sim.gateway.account(VENDOR)
        self.login, self.secret = account.login, account.secret

    def post(self, path: str, body: Any = None, *, form: bool = False, **kwargs: Any) -> requests.Response:
        if form:
            return self.session.post(self.sim.http_url + path, data=body, timeout=5, **kwargs)
        return self.session.post(self.sim.http_url + path, json=body, timeout=5, **kwargs)

    def token(self) -> str:
        reply = self.post("/message/token", {"appId": self.login, "secret": self.secret}).json()
        assert reply["code"] == 0, reply
        token: str = reply["data"]["token"]
        return token

    def send_body(self, **changes: Any) -> dict[str, Any]:
        body = {
            "token": self.token(),
            "mobile": "13800138000",
            "msg": "【签名】hello",
            "productId": "2",
            "extNo": "",
            "time": "",
        }
        body.update(changes)
        return {k: v for k, v in body.items() if v is not None}

    def code(self, path: str, body: Any = None, *, form: bool = False, **kwargs: Any) -> Any:
        response = self.post(path, body, form=form, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()["code"]


@pytest.fixture
def raw(sms_simulator: GatewaySimulator) -> Raw:
    return Raw(sms_simulator)


# ---------------------------------------------------------------------------- the whole flow


def test_send_reports_inbound_balance(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    sim = sms_simulator
    sim.gateway.config.report_delay = 0
    assert hook.get_balance().amount == START_BALANCE

    short = hook.send(
        ["13800138000", "+86 139-0013-9000", "0086 13700137000"],
        "您的验证码是123456",
        signature="签名",
        kind="verification",
        ext_no="8866",
    )
    long_text = "【签名】" + "很长的通知" * 20  # 104 characters: two parts
    long = hook.send(["13600136000", "13500135000"], long_text)
    template = hook.send_template(["13400134000"], "4289538897476608", {"code": "523648", "minute": "2"})
    receipts = short + long + template
    assert len(receipts) == 3
    assert seen(sim, SEND_PATHS[fmt]) == 2
    assert seen(sim, TEMPLATE_PATHS[fmt]) == 1
    assert seen(sim, TOKEN_PATHS[fmt]) == 1  # one token for every call
    for receipt in receipts:
        assert int(receipt.batch_id) > 2**64  # wider than 64 bits, exact
    assert len({r.batch_id for r in receipts}) == 3
    assert short[0].mobiles == ("13800138000", "13900139000", "13700137000")
    stored = sim.gateway.messages[VENDOR]
    assert stored[(short[0].batch_id, "13800138000")].content == "【签名】您的验证码是123456"
    assert stored[(short[0].batch_id, "13800138000")].ext_no == "8866"

    reports = hook.fetch_reports()
    assert sorted((r.batch_id, r.mobile) for r in reports) == sorted(
        (r.batch_id, m) for r in receipts for m in r.mobiles
    )
    assert all(r.status == DELIVERED and r.code == "DELIVRD" for r in reports)
    assert all(close_to_now(r.reported_at) for r in reports)  # naive Shanghai time read back as UTC
    assert hook.fetch_reports() == []  # handed out once

    sim.gateway.add_inbound(VENDOR, "13800138000", "收到，准时参加", ext_no="8866")
    sim.gateway.add_inbound(VENDOR, "13900139000", "TD")
    inbound = hook.fetch_inbound()
    assert [(m.mobile, m.content, m.ext_no) for m in inbound] == [
        ("13800138000", "收到，准时参加", "8866"),
        ("13900139000", "TD", ""),
    ]
    assert all(close_to_now(m.received_at) for m in inbound)
    assert hook.fetch_inbound() == []

    template_text = stored[(template[0].batch_id, "13400134000")].content
    parts = 3 * 1 + 2 * message_parts(long_text) + message_parts(template_text)
    assert message_parts(long_text) == 2
    balance = hook.get_balance()
    assert balance.amount == START_BALANCE - parts
    assert balance.amount == sim.gateway.balances[VENDOR]
    assert seen(sim, BALANCE_PATHS[fmt]) == 2


def test_batches_split_at_1000_numbers(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    receipts = hook.send(numbers(2500), "【签名】通知")
    assert [len(r.mobiles) for r in receipts] == [1000, 1000, 500]
    assert seen(sms_simulator, SEND_PATHS[fmt]) == 3
    assert accepted(sms_simulator) == (3, 2500)
    assert sms_simulator.gateway.balances[VENDOR] == START_BALANCE - 2500


def test_template_batches_split_at_1000_numbers(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    receipts = hook.send_template(numbers(1001), "42", {"code": "1"})
    assert [len(r.mobiles) for r in receipts] == [1000, 1]
    assert seen(sms_simulator, TEMPLATE_PATHS[fmt]) == 2
    assert accepted(sms_simulator) == (2, 1001)


def test_scheduled_send_is_accepted(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    when = datetime.now(timezone.utc) + timedelta(days=1)
    receipts = hook.send("13800138000", "【签名】明天见", scheduled_at=when)
    assert len(receipts) == 1
    assert accepted(sms_simulator) == (1, 1)


def test_a_signature_anywhere_in_the_text_is_accepted_and_none_is_refused_unsent(
    hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str
) -> None:
    assert len(hook.send("13800138000", "您的快件已签收【圆通】")) == 1  # 包含: not only at the start
    assert accepted(sms_simulator) == (1, 1)
    before = dict(sms_simulator.gateway.stats()["requests"])
    with pytest.raises(SmsInvalidRequestError, match="must contain a 【signature】"):
        hook.send("13800138000", "您的快件已签收")
    assert sms_simulator.gateway.stats()["requests"] == before


def test_invalid_numbers_never_reach_the_gateway(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    with pytest.raises(SmsInvalidNumbersError):
        hook.send(["13800138000", "555-0100"], "【签名】hi")
    assert sms_simulator.gateway.stats()["requests"] == {}


# ---------------------------------------------------------------------------- tokens and credentials


def test_token_refresh_after_revocation(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    assert hook.get_balance().amount == START_BALANCE
    sms_simulator.gateway.revoke_tokens(VENDOR)
    assert hook.get_balance().amount == START_BALANCE
    assert seen(sms_simulator, TOKEN_PATHS[fmt]) == 2
    assert seen(sms_simulator, BALANCE_PATHS[fmt]) == 3  # ok, refused on the dead token, ok with the new one


def test_send_after_revocation_is_sent_once(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    hook.get_balance()
    sms_simulator.gateway.revoke_tokens()
    receipts = hook.send(["13800138000", "13900139000"], "【签名】hi")
    assert len(receipts) == 1
    assert seen(sms_simulator, SEND_PATHS[fmt]) == 2  # refused on the dead token, then accepted
    assert accepted(sms_simulator) == (1, 2)


def test_wrong_secret_is_the_vendor_s_40001(
    sms_connections: dict[str, str],
    sms_simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    conn_id = use_connection(monkeypatch, sms_simulator, password="not-the-secret", extra={"format": fmt})
    hook = PaaswV2Hook(conn_id)
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "【签名】hi")
    assert info.value.code == "40001"
    assert info.value.operation == "token request"
    assert "not-the-secret" not in str(info.value)
    assert seen(sms_simulator, SEND_PATHS[fmt]) == 0
    ok, message = hook.test_connection()
    assert not ok
    assert "code 40001 (appId or secret rejected)" in message


def test_wrong_app_id_is_the_vendor_s_40001(
    sms_connections: dict[str, str], sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = PaaswV2Hook(use_connection(monkeypatch, sms_simulator, login="0000000000"))
    with pytest.raises(SmsVendorError, match="code 40001"):
        hook.get_balance()


def test_test_connection(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert message == f"token issued for appId 0189457543 at {sms_simulator.http_url}"


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["garbage", "html", "status"])
@pytest.mark.parametrize("call", ["balance", "deliver", "mo"])
def test_read_faults_are_retried(
    sms_connections: dict[str, str], sms_simulator: GatewaySimulator, kind: str, call: str
) -> None:
    hook = PaaswV2Hook(sms_connections[VENDOR])
    path = {"balance": "/message/balance", "deliver": "/message/deliver", "mo": "/message/mo"}[call]
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor=VENDOR, path=path))
    sms_simulator.gateway.add_inbound(VENDOR, "13800138000", "hi")
    if call == "balance":
        assert hook.get_balance().amount == START_BALANCE
    elif call == "deliver":
        assert hook.fetch_reports() == []
    else:
        assert [m.content for m in hook.fetch_inbound()] == ["hi"]
    assert seen(sms_simulator, path) == 3  # two faults, then the real reply


def test_read_faults_beyond_the_retries_give_a_clear_error(
    sms_connections: dict[str, str], sms_simulator: GatewaySimulator
) -> None:
    hook = PaaswV2Hook(sms_connections[VENDOR], retries=1)
    sms_simulator.gateway.add_fault(Fault(kind="html", remaining=5, vendor=VENDOR, path="/message/balance"))
    with pytest.raises(
        SmsResponseError,
        match=r"balance query: failed after 2 attempts: HTTP 502 \(HTTP 502; body starts: .*Bad Gateway",
    ):
        hook.get_balance()
    assert seen(sms_simulator, "/message/balance") == 2


def test_garbage_beyond_the_retries_is_a_clear_error(
    sms_connections: dict[str, str], sms_simulator: GatewaySimulator
) -> None:
    hook = PaaswV2Hook(sms_connections[VENDOR], retries=1)
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=5, vendor=VENDOR, path="/message/deliver"))
    with pytest.raises(
        SmsResponseError,
        match=r"delivery report pull: failed after 2 attempts: the reply is not JSON "
        r"\(HTTP 200; body starts: .*upstream said",
    ):
        hook.fetch_reports()
    assert seen(sms_simulator, "/message/deliver") == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_send_hit_by_5xx_is_not_retried(
    hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str, status: int
) -> None:
    path = SEND_PATHS[fmt]
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, path=path, status=status))
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send(["13800138000", "13900139000"], "【签名】hi")
    assert info.value.description == "send request #1"
    assert f"HTTP {status}" in str(info.value)
    assert seen(sms_simulator, path) == 1


def test_send_hit_by_html_502_is_not_retried(hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str) -> None:
    path = SEND_PATHS[fmt]
    sms_simulator.gateway.add_fault(Fault(kind="html", remaining=1, vendor=VENDOR, path=path))
    with pytest.raises(SmsOutcomeUnknownError, match="502 Bad Gateway"):
        hook.send("13800138000", "【签名】hi")
    assert seen(sms_simulator, path) == 1


def test_send_with_garbage_reply_is_an_unknown_outcome(
    hook: PaaswV2Hook, sms_simulator: GatewaySimulator, fmt: str
) -> None:
    path = SEND_PATHS[fmt]
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=1, vendor=VENDOR, path=path))
    with pytest.raises(SmsOutcomeUnknownError, match="not JSON"):
        hook.send("13800138000", "【签名】hi")
    assert seen(sms_simulator, path) == 1


def test_second_request_of_a_split_send_hit_by_5xx(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    planned = hook.plan_send(numbers(1500), "【签名】hi")
    receipts: list[SendReceipt] = []
    hook.submit(planned[0])  # warm the token so the fault below hits the second send
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, status=500))
    with pytest.raises(SmsOutcomeUnknownError) as info:
        receipts.extend(hook.iter_send(planned[1:]))
    assert receipts == []
    assert info.value.mobiles == tuple(numbers(500, 1000))
    assert accepted(sms_simulator) == (1, 1000)


def test_read_timeout_after_a_send_is_an_unknown_outcome_and_the_gateway_did_accept(
    sms_connections: dict[str, str],
    sms_simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    hook = PaaswV2Hook(use_connection(monkeypatch, sms_simulator, extra={"timeout": 0.5, "format": fmt}))
    path = SEND_PATHS[fmt]
    sms_simulator.gateway.add_fault(Fault(kind="delay", remaining=1, vendor=VENDOR, path=path, seconds=2))
    started = time.monotonic()
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send(["13800138000", "13900139000"], "【签名】hi")
    assert time.monotonic() - started < 1.9  # gave up on the reply, did not wait for it
    assert "send request #1 (2 numbers) is unknown: read timeout" in str(info.value)
    assert seen(sms_simulator, path) == 1  # not resent
    assert accepted(sms_simulator) == (1, 2)  # yet the vendor did act on it


# ---------------------------------------------------------------------------- reports: delay, failures, queue


def test_reports_are_not_handed_out_before_due(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0.6
    receipts = hook.send("13800138000", "【签名】hi")
    assert hook.fetch_reports() == []
    time.sleep(0.7)
    reports = hook.fetch_reports()
    assert [(r.batch_id, r.mobile) for r in reports] == [(receipts[0].batch_id, "13800138000")]
    assert hook.fetch_reports() == []


def test_failure_rate_gives_failed_reports(hook: PaaswV2Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.failure_rate = 0.3
    hook.send(numbers(1000), "【签名】hi")
    reports = hook.fetch_reports()
    assert len(reports) == 1000
    failed = [r for r in reports if r.status == FAILED]
    assert 0.25 <= len(failed) / 1000 <= 0.35
    assert {r.code for r in failed} == {"DB:0141"}
    assert {r.code for r in reports if r.status == DELIVERED} == {"DELIVRD"}


# ---------------------------------------------------------------------------- simulator strictness, raw


def test_simulator_token_is_the_same_while_valid(raw: Raw) -> None:
    first = raw.token()
    assert raw.token() == first
    form = raw.post("/message/tokenApi", {"appId": raw.login, "secret": raw.secret}, form=True).json()
    assert form["code"] == 0
    assert form["data"]["token"] == first
    assert 7000 < form["data"]["expires_in"] <= 7200


@pytest.mark.parametrize("form", [False, True])
def test_simulator_rejects_wrong_credentials(raw: Raw, form: bool) -> None:
    path = "/message/tokenApi" if form else "/message/token"
    assert raw.code(path, {"appId": raw.login, "secret": "wrong"}, form=form) == 40001
    assert raw.code(path, {"appId": "1", "secret": raw.secret}, form=form) == 40001
    assert raw.code(path, {"appId": raw.login}, form=form) == 40001


def test_simulator_accepts_a_well_formed_send(raw: Raw) -> None:
    reply = raw.post("/message/send", raw.send_body(mobile="13800138000,13900139000", extNo="8888"))
    body = reply.json()
    assert body["code"] == 0
    batch_id = body["data"]["batchId"]
    assert isinstance(batch_id, int)  # a JSON number, as the document shows
    assert batch_id > Gateway.BATCH_ID_BASE > 2**64
    # exact digits on the wire, not a float; the id counter is session-wide, so the digits depend on test order
    assert f'"batchId": {batch_id}}}' in reply.text
    form = raw.post("/msg/send", raw.send_body(), form=True).json()
    assert form["code"] == 0


def test_simulator_rejects_wrong_content_types(raw: Raw) -> None:
    body = raw.send_body()
    assert raw.code("/message/send", body, form=True) == 40003  # form to the JSON endpoint
    assert raw.code("/msg/send", json.dumps(body), form=True, headers={"Content-Type": "application/json"}) == 40003
    assert raw.code("/msg/send", body) == 40003  # JSON to the form endpoint
    assert raw.code("/message/send", json.dumps(body), form=True, headers={"Content-Type": "text/plain"}) == 40003
    assert raw.code("/message/send", "{not json", form=True, headers={"Content-Type": "application/json"}) == 40003
    assert raw.code("/message/send", [body]) == 40003  # a JSON array is no request object
    assert raw.code("/message/balance", {"token": body["token"]}, form=True) == 40003


def test_simulator_caps_numbers_at_1000(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    assert raw.code("/message/send", raw.send_body(mobile=",".join(numbers(1001)))) == 40003
    assert raw.code("/msg/send", raw.send_body(mobile=",".join(numbers(1001))), form=True) == 40003
    assert accepted(sms_simulator) == (0, 0)
    assert raw.code("/message/send", raw.send_body(mobile=",".join(numbers(1000)))) == 0
    assert accepted(sms_simulator) == (1, 1000)


@pytest.mark.parametrize(
    "changes",
    [
        {"productId": None},
        {"productId": ""},
        {"productId": "4"},
        {"mobile": None},
        {"mobile": ""},
        {"mobile": "1380013800"},
        {"mobile": "13800138000,+8613900139000"},  # the vendor wants bare 11-digit numbers
        {"mobile": "13800138000;13900139000"},
        {"msg": None},
        {"msg": "no signature"},
        {"extNo": "88a"},
        {"time": "2019/10/12 14:20:15"},
        {"time": "2019-10-12 14:20:15"},  # in the past
        {"time": "tomorrow"},
    ],
)
def test_simulator_rejects_bad_send_fields(raw: Raw, sms_simulator: GatewaySimulator, changes: dict[str, Any]) -> None:
    assert raw.code("/message/send", raw.send_body(**changes)) == 40003
    assert accepted(sms_simulator) == (0, 0)


def test_simulator_accepts_a_future_time(raw: Raw) -> None:
    future = vendor_time(datetime.now(timezone.utc) + timedelta(days=2), "%Y-%m-%d %H:%M:%S")
    assert raw.code("/message/send", raw.send_body(time=future)) == 0


@pytest.mark.parametrize(
    "path", ["/message/send", "/message/sendTemplate", "/message/deliver", "/message/mo", "/message/balance"]
)
def test_simulator_rejects_bad_tokens(raw: Raw, path: str) -> None:
    body = raw.send_body(templateId="42", params={"a": "b"})
    for token in ("bad-token", "", None):
        assert (
            raw.code(
                path,
                {**body, "token": token} if token is not None else {k: v for k, v in body.items() if k != "token"},
            )
            == 40002
        )


def test_simulator_checks_template_fields(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    body = raw.send_body(msg=None, templateId="42", params={"code": "1"})
    assert raw.code("/message/sendTemplate", body) == 0
    assert raw.code("/message/sendTemplate", {**body, "templateId": ""}) == 40003
    assert raw.code("/message/sendTemplate", {**body, "params": '{"code": "1"}'}) == 40003  # JSON mode: an object
    assert raw.code("/message/sendTemplate", {**body, "params": ["1"]}) == 40003
    form = {**body, "params": '{"code": "1"}'}
    assert raw.code("/msg/sendTemplate", form, form=True) == 0
    assert raw.code("/msg/sendTemplate", {**form, "params": "code=1"}, form=True) == 40003
    assert raw.code("/msg/sendTemplate", {k: v for k, v in form.items() if k != "params"}, form=True) == 40003
    assert accepted(sms_simulator) == (2, 2)


def test_simulator_refuses_sends_beyond_the_balance(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.balances[VENDOR] = Decimal(1)
    assert raw.code("/message/send", raw.send_body(mobile="13800138000,13900139000")) == 40004
    assert accepted(sms_simulator) == (0, 0)
    assert raw.code("/message/send", raw.send_body(mobile="13800138000")) == 0
    assert sms_simulator.gateway.balances[VENDOR] == 0


def test_simulator_refuses_a_multi_part_send_beyond_the_balance(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.balances[VENDOR] = Decimal(1)
    assert raw.code("/message/send", raw.send_body(msg="【签名】" + "长" * 80)) == 40004
    assert sms_simulator.gateway.balances[VENDOR] >= 0


def test_simulator_pull_replies_have_the_documented_shape(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    token = raw.token()
    raw.post("/message/send", raw.send_body(mobile="13800138000"))
    sms_simulator.gateway.add_inbound(VENDOR, "13900139000", "收到", ext_no="12")
    deliver = raw.post("/message/deliver", {"token": token}).json()
    assert deliver["code"] == 0
    assert deliver["count"] == 1
    (item,) = deliver["data"]
    assert set(item) == {"batchId", "mobile", "chnRptDate", "chnRptCode"}
    assert isinstance(item["batchId"], str)
    datetime.strptime(item["chnRptDate"], "%Y-%m-%d %H:%M:%S")
    mo = raw.post("/message/mo", {"token": token}).json()
    assert mo["count"] == 1
    assert mo["data"][0]["content"] == "收到"
    assert mo["data"][0]["extNo"] == "12"
    assert set(mo["data"][0]) == {"mobile", "extNo", "content", "replyDate"}
    assert raw.post("/message/deliver", {"token": token}).json() == {
        "code": 0,
        "message": "请求成功",
        "count": 0,
        "data": [],
    }


def test_simulator_routes_only_documented_methods(raw: Raw, sms_simulator: GatewaySimulator) -> None:
    assert requests.get(sms_simulator.http_url + "/message/send", timeout=5).status_code == 405
    assert requests.get(sms_simulator.http_url + "/msg/deliver", timeout=5).status_code == 404  # no form twin
    assert raw.post("/msg/mo", {"token": raw.token()}, form=True).status_code == 404
