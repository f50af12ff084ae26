"""AccountMd5Hook against the bundled simulator over real sockets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import SmsOutcomeUnknownError, SmsResponseError, SmsVendorError
from airflow_provider_sms.hooks.account_md5 import AccountMd5Hook
from airflow_provider_sms.numbers import mask_matches
from airflow_provider_sms.records import DELIVERED, FAILED
from airflow_provider_sms.simulator import Account, Fault, GatewaySimulator
from airflow_provider_sms.simulator.core import md5_hex

pytestmark = pytest.mark.integration

VENDOR = "account_md5"
SEND_PATH = "/api/v1/send"
SEND_KEY = f"{VENDOR} {SEND_PATH}"


@pytest.fixture
def hook(sms_connections: dict[str, str]) -> AccountMd5Hook:
    return AccountMd5Hook(sms_connections[VENDOR])


def custom_hook(sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, conn_id: str, **changes: Any) -> AccountMd5Hook:
    """A hook on a connection to the simulator with some fields or extras changed."""
    conn = json.loads(sim.connection_json(VENDOR, retry_wait=0.01))
    conn["extra"].update(changes.pop("extra", {}))
    conn.update(changes)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return AccountMd5Hook(conn_id)


def requests_to(sim: GatewaySimulator, path: str) -> int:
    return int(sim.gateway.stats()["requests"].get(f"{VENDOR} {path}", 0))


def raw_post(sim: GatewaySimulator, path: str, **fields: str) -> dict[str, Any]:
    """A form post straight to the simulator, to check what the hook never sends."""
    account = sim.gateway.account(VENDOR)
    body = {"account": account.login, "pwd": md5_hex(account.secret), **fields}
    reply: dict[str, Any] = requests.post(f"{sim.http_url}{path}", data=body, timeout=10).json()
    return reply


# --- the whole flow


def test_send_reports_inbound_balance(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    start = hook.get_balance()
    assert start.currency == ""
    assert start.amount == Decimal("100000")

    mobiles = ["13800138000", "13912345678", "15011112222"]
    text = "您好" * 40  # 80 characters with the signature: two parts each
    [receipt] = hook.send(mobiles, text, signature="测试", ext_no="21", client_ref="order-1")
    assert receipt.batch_id == "order-1"
    assert receipt.mobiles == tuple(mobiles)
    stored = sms_simulator.gateway.messages[VENDOR]
    assert sorted(stored) == sorted(("order-1", m) for m in mobiles)
    assert stored[("order-1", "13800138000")].content == "【测试】" + text
    assert stored[("order-1", "13800138000")].ext_no == "21"

    assert hook.get_balance().amount == start.amount - 3 * 2

    reports = hook.fetch_reports()
    assert len(reports) == 3
    assert {r.batch_id for r in reports} == {receipt.batch_id}
    assert sorted(r.mobile for r in reports) == ["138****8000", "139****5678", "150****2222"]
    for report in reports:
        assert report.status == DELIVERED
        assert report.code == "DELIVER"
        assert sum(mask_matches(report.mobile, m) for m in mobiles) == 1
        assert report.reported_at is not None
        assert abs(report.reported_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert hook.fetch_reports() == []  # a queue: handed out once

    sms_simulator.gateway.add_inbound(VENDOR, "13800138000", "好的，收到", ext_no="21")
    [message] = hook.fetch_inbound()
    assert message.mobile == "138****8000"
    assert message.content == "好的，收到"
    assert message.ext_no == "21"  # a JSON number on the wire
    assert message.raw is not None and message.raw["extNo"] == 21
    assert message.received_at is not None
    assert abs(message.received_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert hook.fetch_inbound() == []


def test_failed_reports(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.failure_rate = 1.0
    [receipt] = hook.send("13800138000", "【S】hi")
    [report] = hook.fetch_reports()
    assert (report.batch_id, report.mobile, report.status, report.code) == (
        receipt.batch_id,
        "138****8000",
        FAILED,
        "MBBLACK",
    )
    assert report.description == "MBBLACK"


def test_generated_task_id_is_the_batch_id(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    first = hook.send("13800138000", "【S】one")[0].batch_id
    second = hook.send("13800138000", "【S】two")[0].batch_id
    assert first != second
    assert {b for b, _ in sms_simulator.gateway.messages[VENDOR]} == {first, second}


def test_test_connection(hook: AccountMd5Hook) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith("account simaccount at http://127.0.0.1:")
    assert message.endswith(": balance 100000.0 (prepaid)")


# --- batching


def test_7000_numbers_make_3_requests(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    mobiles = [f"139{i:08d}" for i in range(7000)]
    receipts = hook.send(mobiles, "【S】bulk", client_ref="bulk")
    assert requests_to(sms_simulator, SEND_PATH) == 3
    assert [r.batch_id for r in receipts] == ["bulk-1", "bulk-2", "bulk-3"]
    assert [len(r.mobiles) for r in receipts] == [3000, 3000, 1000]
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"][VENDOR] == 3
    assert stats["accepted_messages"][VENDOR] == 7000
    assert Decimal(stats["balances"][VENDOR]) == Decimal("100000.00") - 7000
    first_pull = hook.fetch_reports()
    assert len(first_pull) == 1000  # the simulator hands out at most 1000 a pull
    assert {r.batch_id for r in first_pull} <= {"bulk-1", "bulk-2", "bulk-3"}


# --- credentials


def test_wrong_password(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_wrong", password="not-the-password")
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "【S】hi")
    assert (info.value.code, info.value.vendor_message) == ("02", "账号或密码错误")
    assert sms_simulator.gateway.stats()["accepted_messages"] == {}
    ok, message = hook.test_connection()
    assert not ok
    assert "code 02 (account, password or source IP rejected) - vendor says: 账号或密码错误" in message
    assert md5_hex("not-the-password") not in message


def test_wrong_account(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_other", login="someone-else")
    with pytest.raises(SmsVendorError, match="code 02"):
        hook.get_balance()


def test_upper_case_md5_refused_when_account_expects_lower(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_upper", extra={"pwd_case": "upper"})
    with pytest.raises(SmsVendorError, match="code 02"):
        hook.fetch_reports()


def test_account_set_up_for_upper_case_md5(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    account = sms_simulator.gateway.account(VENDOR)
    monkeypatch.setitem(
        sms_simulator.gateway.accounts,
        VENDOR,
        Account(VENDOR, account.login, account.secret, {"pwd_case": "upper"}),
    )
    lower = custom_hook(sms_simulator, monkeypatch, "sms_md5_lower", extra={"pwd_case": "lower"})
    with pytest.raises(SmsVendorError, match="code 02"):
        lower.get_balance()
    upper = custom_hook(sms_simulator, monkeypatch, "sms_md5_upper2", extra={"pwd_case": "upper"})
    assert upper.get_balance().amount == Decimal("100000")


# --- idempotency


def test_a_repeated_client_ref_is_the_earlier_acceptance(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    """taskId is unique at the vendor: asking again is refused there, which proves the first was accepted."""
    [first] = hook.send("13800138000", "【S】hi", client_ref="once")
    [again] = hook.send("13800138000", "【S】hi", client_ref="once")
    assert not first.already_accepted and again.already_accepted
    assert again.batch_id == first.batch_id == "once"
    assert requests_to(sms_simulator, SEND_PATH) == 2
    assert sms_simulator.gateway.stats()["accepted_requests"][VENDOR] == 1
    assert Decimal(sms_simulator.gateway.stats()["balances"][VENDOR]) == Decimal("100000.00") - 1


def test_read_timeout_after_send_then_retry_is_resolved(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_slow", extra={"timeout": 0.5})
    sms_simulator.gateway.add_fault(Fault(kind="delay", remaining=1, vendor=VENDOR, path=SEND_PATH, seconds=2))
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send(["13800138000", "13900139000"], "【S】hi", client_ref="slow")
    assert "outcome of send request #1 (2 numbers) is unknown: read timeout" in str(info.value)
    assert info.value.mobiles == ("13800138000", "13900139000")
    assert requests_to(sms_simulator, SEND_PATH) == 1  # not resent by the hook
    # the vendor did act on it
    assert sorted(sms_simulator.gateway.messages[VENDOR]) == [
        ("slow", "13800138000"),
        ("slow", "13900139000"),
    ]
    # a retry by the caller with the same client_ref cannot send it twice, and learns it was accepted
    [receipt] = hook.send(["13800138000", "13900139000"], "【S】hi", client_ref="slow")
    assert receipt.already_accepted and receipt.batch_id == "slow"
    assert sms_simulator.gateway.stats()["accepted_requests"][VENDOR] == 1
    assert len(sms_simulator.gateway.messages[VENDOR]) == 2


# --- faults


@pytest.mark.parametrize("kind", ["status", "html"])
def test_send_hit_by_5xx_is_not_retried(hook: AccountMd5Hook, sms_simulator: GatewaySimulator, kind: str) -> None:
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=1, vendor=VENDOR, path=SEND_PATH))
    with pytest.raises(SmsOutcomeUnknownError, match=r"outcome of send request #1 \(1 numbers\) is unknown: HTTP 50"):
        hook.send("13800138000", "【S】hi", client_ref="x")
    assert requests_to(sms_simulator, SEND_PATH) == 1


@pytest.mark.parametrize("kind", ["status", "html"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get_balance", "/api/v1/queryBalance"),
        ("fetch_reports", "/api/v1/report"),
        ("fetch_inbound", "/api/v1/mo"),
    ],
)
def test_reads_retried_through_5xx(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, kind: str, method: str, path: str
) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_retry", extra={"retries": 2})
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor=VENDOR))
    getattr(hook, method)()
    assert requests_to(sms_simulator, path) == 3


def test_reads_give_up_after_retries(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_retry", extra={"retries": 1})
    sms_simulator.gateway.add_fault(Fault(kind="html", remaining=5, vendor=VENDOR))
    with pytest.raises(
        SmsResponseError,
        match=r"balance query: failed after 2 attempts: HTTP 502 \(HTTP 502; body starts: .*Bad Gateway",
    ):
        hook.get_balance()
    assert requests_to(sms_simulator, "/api/v1/queryBalance") == 2


def test_garbage_reply_is_retried_like_a_5xx(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_garbage", extra={"retries": 2})
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=2, vendor=VENDOR))
    assert hook.get_balance().amount == Decimal("100000")  # two garbage replies, then the real one
    assert requests_to(sms_simulator, "/api/v1/queryBalance") == 3


def test_garbage_beyond_the_retries_is_a_clear_error(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = custom_hook(sms_simulator, monkeypatch, "sms_md5_garbage", extra={"retries": 2})
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=3, vendor=VENDOR))
    with pytest.raises(
        SmsResponseError,
        match=r"balance query: failed after 3 attempts: the reply is not JSON \(HTTP 200; body starts: .*not json",
    ) as info:
        hook.get_balance()
    assert info.value.status == 200
    assert requests_to(sms_simulator, "/api/v1/queryBalance") == 3
    assert hook.get_balance().amount == Decimal("100000")  # the fault is spent: the next call is fine
    assert requests_to(sms_simulator, "/api/v1/queryBalance") == 4


# --- simulator strictness


def test_signature_required(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    with pytest.raises(SmsVendorError, match="code 05 - vendor says: content须包含【签名】"):
        hook.send("13800138000", "no signature here")
    assert sms_simulator.gateway.stats()["accepted_messages"] == {}


def test_balance_insufficient(hook: AccountMd5Hook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.balances[VENDOR] = Decimal(1)
    with pytest.raises(SmsVendorError, match="code 07"):
        hook.send(["13800138000", "13900139000"], "【S】hi")
    assert hook.get_balance().amount == Decimal(1)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"mobiles": ",".join(f"139{i:08d}" for i in range(3001)), "content": "【S】hi"}, "04"),
        ({"mobiles": "13800138000,1380013800", "content": "【S】hi"}, "03"),
        ({"mobiles": "+8613800138000", "content": "【S】hi"}, "03"),
        ({"mobiles": "13800138000", "content": "【S】hi", "extNo": "0"}, "08"),
        ({"mobiles": "13800138000", "content": "【S】hi", "extNo": "1a"}, "08"),
        ({"mobiles": "13800138000"}, "05"),
        ({"content": "【S】hi"}, "01"),
    ],
    ids=[
        "3001-mobiles",
        "short-number",
        "plus-prefix",
        "ext-zero",
        "ext-letters",
        "no-content",
        "no-mobiles",
    ],
)
def test_simulator_rejects_bad_sends(sms_simulator: GatewaySimulator, fields: dict[str, str], code: str) -> None:
    reply = raw_post(sms_simulator, SEND_PATH, **fields)
    assert reply["code"] == code, reply
    assert reply["message"]
    assert sms_simulator.gateway.stats()["accepted_messages"] == {}


def test_simulator_accepts_3000_mobiles_and_made_up_task_id(sms_simulator: GatewaySimulator) -> None:
    reply = raw_post(sms_simulator, SEND_PATH, mobiles=",".join(f"139{i:08d}" for i in range(3000)), content="x【S】")
    assert reply["code"] == "00"
    assert reply["data"]["taskId"]
    assert sms_simulator.gateway.stats()["accepted_messages"][VENDOR] == 3000


def test_simulator_wants_form_posts(sms_simulator: GatewaySimulator) -> None:
    account = sms_simulator.gateway.account(VENDOR)
    url = f"{sms_simulator.http_url}/api/v1/queryBalance"
    credentials = {"account": account.login, "pwd": md5_hex(account.secret)}
    as_json = requests.post(url, json=credentials, timeout=10).json()
    assert as_json["code"] == "01"
    assert "application/x-www-form-urlencoded" in as_json["message"]
    assert requests.get(url, params=credentials, timeout=10).status_code == 405
    missing = requests.post(url, data={"account": account.login}, timeout=10).json()
    assert (missing["code"], missing["message"]) == ("01", "缺少参数 pwd")
    assert requests.post(url, data=credentials, timeout=10).json()["code"] == "00"
