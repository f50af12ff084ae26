"""AccountMd5Hook against requests-mock: exact wire format, reply parsing, errors, batching, secrets."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks import hook_class_for_conn_type
from airflow_provider_sms.hooks.account_md5 import AccountMd5Hook
from airflow_provider_sms.records import DELIVERED, FAILED

BASE = "https://sms.example.com"
ACCOUNT = "acct-7788"
PASSWORD = "Pa55-word-md5"
PWD = hashlib.md5(PASSWORD.encode()).hexdigest()
CONN_ID = "sms_md5_unit"
FORM = "application/x-www-form-urlencoded"
WIDE_ID = "39036632588910887018"  # wider than 64 bits
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

SEND_URL = f"{BASE}/api/v1/send"
REPORT_URL = f"{BASE}/api/v1/report"
MO_URL = f"{BASE}/api/v1/mo"
BALANCE_URL = f"{BASE}/api/v1/queryBalance"


def set_conn(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> None:
    conn: dict[str, Any] = {
        "conn_type": "sms_account_md5",
        "host": BASE,
        "login": ACCOUNT,
        "password": PASSWORD,
        "extra": {"retry_wait": 0.01},
    }
    extra = overrides.pop("extra", {})
    conn.update(overrides)
    conn["extra"] = {**conn["extra"], **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> AccountMd5Hook:
    set_conn(monkeypatch)
    return AccountMd5Hook(CONN_ID, retry_wait=0.01)


def ok(data: Any) -> dict[str, Any]:
    return {"code": "00", "data": data, "message": "成功"}


def form_of(request: Any) -> dict[str, str]:
    """The request body as a form, asserting each field appears once."""
    parsed = parse_qs(request.text or "", keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {key: values[0] for key, values in parsed.items()}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Any:
    """Everything logged so far: Airflow's task-SDK logger prints through structlog, stdlib goes to caplog."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        out, err = capsys.readouterr()
        captured = caplog.text + out + err
        print(out, end="")  # keep it visible in pytest's report
        return captured

    return text


def assert_form_post(request: Any, url: str) -> None:
    assert request.method == "POST"
    assert request.url == url
    assert request.headers["Content-Type"] == FORM


# --- configuration


def test_class_attributes_and_registry() -> None:
    assert hook_class_for_conn_type("sms_account_md5") is AccountMd5Hook
    assert AccountMd5Hook.conn_type == "sms_account_md5"
    assert AccountMd5Hook.hook_name == "SMS: account + MD5 password"
    assert AccountMd5Hook.vendor == "account_md5"
    assert AccountMd5Hook.default_host is None
    assert AccountMd5Hook.max_numbers_per_request == 3000
    assert AccountMd5Hook.supported_options == {"signature", "ext_no", "client_ref"}


def test_features(hook: AccountMd5Hook) -> None:
    assert [hook.supports(f) for f in ("send", "reports", "inbound", "balance")] == [True] * 4
    assert not hook.supports("send_template")


def test_template_not_supported(hook: AccountMd5Hook, requests_mock: Any) -> None:
    with pytest.raises(SmsNotSupportedError, match="account_md5 does not support template messages"):
        hook.send_template("13800138000", "T1", {"code": "1"})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    "options",
    [{"scheduled_at": datetime(2030, 1, 1, tzinfo=timezone.utc)}, {"kind": "marketing"}, {"sender_id": "X"}],
)
def test_unsupported_options_rejected(hook: AccountMd5Hook, requests_mock: Any, options: dict[str, Any]) -> None:
    with pytest.raises(SmsInvalidRequestError, match="does not support the send option"):
        hook.send("13800138000", "hi", signature="Shop", **options)
    assert requests_mock.call_count == 0


def test_host_is_required(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, host="")
    with pytest.raises(SmsConfigurationError, match="has no host"):
        AccountMd5Hook(CONN_ID).get_balance()
    assert requests_mock.call_count == 0


def test_password_is_required(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, password="")
    with pytest.raises(SmsConfigurationError, match="missing password"):
        AccountMd5Hook(CONN_ID).get_balance()
    assert requests_mock.call_count == 0


def test_pwd_case_upper(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"pwd_case": "upper"})
    requests_mock.post(BALANCE_URL, json=ok({"balance": 1, "payment": 0, "paymentName": "预付"}))
    AccountMd5Hook(CONN_ID).get_balance()
    assert form_of(requests_mock.last_request) == {"account": ACCOUNT, "pwd": PWD.upper()}


def test_pwd_case_invalid(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"pwd_case": "mixed"})
    with pytest.raises(SmsConfigurationError, match="pwd_case"):
        AccountMd5Hook(CONN_ID).get_balance()
    assert requests_mock.call_count == 0


# --- send


def test_send_wire_format(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"taskId": "order-42"}))
    receipts = hook.send(
        ["+86 138-0013-8000", "13900139000"],
        "您的验证码是1234",
        signature="Shop",
        ext_no="12",
        client_ref="order-42",
    )
    assert requests_mock.call_count == 1
    request = requests_mock.last_request
    assert_form_post(request, SEND_URL)
    assert form_of(request) == {
        "account": ACCOUNT,
        "pwd": PWD,
        "mobiles": "13800138000,13900139000",
        "content": "【Shop】您的验证码是1234",
        "taskId": "order-42",
        "extNo": "12",
    }
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt.vendor == "account_md5"
    assert receipt.batch_id == "order-42"
    assert receipt.mobiles == ("13800138000", "13900139000")
    assert receipt.submitted_at.tzinfo is not None
    assert PWD not in json.dumps(receipt.to_dict(include_raw=True), default=str)


def test_send_signature_from_connection_and_no_ext_no(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"sign": "连接签名"})
    requests_mock.post(SEND_URL, json=ok({"taskId": "t1"}))
    AccountMd5Hook(CONN_ID).send("13800138000", "hello", client_ref="t1")
    body = form_of(requests_mock.last_request)
    assert body["content"] == "【连接签名】hello"
    assert "extNo" not in body


def test_send_without_client_ref_generates_task_id(
    hook: AccountMd5Hook, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = iter(["gen-1", "gen-2"])
    monkeypatch.setattr(hook, "new_client_ref", lambda: next(refs))
    requests_mock.post(SEND_URL, [{"json": ok({"taskId": "gen-1"})}, {"json": ok({"taskId": "gen-2"})}])
    receipts = hook.send(["13800138000"], "【S】hi") + hook.send(["13800138000"], "【S】hi")
    assert [form_of(r)["taskId"] for r in requests_mock.request_history] == ["gen-1", "gen-2"]
    assert [r.batch_id for r in receipts] == ["gen-1", "gen-2"]


@pytest.mark.parametrize(
    "reply",
    [ok({"taskId": ""}), {"code": "00", "message": "成功"}, ok(None), ok("unexpected")],
    ids=["empty-task-id-as-in-sample", "no-data", "null-data", "data-not-object"],
)
def test_send_receipt_uses_our_task_id_when_reply_has_none(
    hook: AccountMd5Hook, requests_mock: Any, reply: dict[str, Any]
) -> None:
    requests_mock.post(SEND_URL, json=reply)
    [receipt] = hook.send("13800138000", "【S】hi", client_ref="mine-1")
    assert receipt.batch_id == "mine-1"


def test_send_receipt_follows_vendor_task_id(hook: AccountMd5Hook, requests_mock: Any, logs: Any) -> None:
    requests_mock.post(SEND_URL, text=f'{{"code": "00", "data": {{"taskId": {WIDE_ID}}}, "message": "ok"}}')
    [receipt] = hook.send("13800138000", "【S】hi", client_ref="mine-1")
    assert receipt.batch_id == WIDE_ID  # an integer wider than 64 bits, exact
    assert "sent with taskId mine-1 but accepted as " + WIDE_ID in logs()


def test_send_float_task_id_keeps_our_task_id(
    hook: AccountMd5Hook, requests_mock: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The vendor accepted the send ("00"): an unreadable echo must not lose track of it."""
    requests_mock.post(SEND_URL, text='{"code": "00", "data": {"taskId": 3.9036632588910887e19}, "message": "ok"}')
    receipts = hook.send("13800138000", "【S】hi", client_ref="mine-1")
    assert [r.batch_id for r in receipts] == ["mine-1"]
    logged = caplog.text + capsys.readouterr().out
    assert "unreadable" in logged and "keeping mine-1" in logged


def test_send_splits_at_3000_numbers(hook: AccountMd5Hook, requests_mock: Any) -> None:
    mobiles = [f"138{i:08d}" for i in range(7000)]
    requests_mock.post(SEND_URL, [{"json": ok({"taskId": f"bulk-{n}"})} for n in (1, 2, 3)])
    receipts = hook.send(mobiles, "【S】hi", client_ref="bulk")
    bodies = [form_of(r) for r in requests_mock.request_history]
    assert [len(b["mobiles"].split(",")) for b in bodies] == [3000, 3000, 1000]
    assert [b["taskId"] for b in bodies] == ["bulk-1", "bulk-2", "bulk-3"]
    assert ",".join(b["mobiles"] for b in bodies) == ",".join(mobiles)
    assert [r.batch_id for r in receipts] == ["bulk-1", "bulk-2", "bulk-3"]
    assert [len(r.mobiles) for r in receipts] == [3000, 3000, 1000]


def test_send_exactly_3000_numbers_is_one_request(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"taskId": "one"}))
    hook.send([f"139{i:08d}" for i in range(3000)], "【S】hi", client_ref="one")
    assert requests_mock.call_count == 1


def test_invalid_numbers_rejected_before_any_request(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"taskId": "x"}))
    with pytest.raises(SmsInvalidNumbersError, match=r"2 of 3 mobile numbers are invalid: '12345', '23800138000'"):
        hook.send(["13800138000", "12345", "23800138000"], "【S】hi")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("ext_no", ["0", "000", "abc", "-5"])
def test_ext_no_must_be_a_positive_integer(hook: AccountMd5Hook, requests_mock: Any, ext_no: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match="ext_no must be"):
        hook.send("13800138000", "【S】hi", ext_no=ext_no)
    assert requests_mock.call_count == 0


def test_long_content_warns(hook: AccountMd5Hook, requests_mock: Any, logs: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"taskId": "x"}))
    hook.send("13800138000", "x" * 494, signature="Shop")  # 500 with 【Shop】: still fine
    first = logs()
    assert "accepted as batch x" in first
    assert "advises" not in first
    hook.send("13800138000", "x" * 495, signature="Shop")
    assert "content is 501 characters; the vendor advises at most 500" in logs()
    assert requests_mock.call_count == 2  # a warning, not a refusal


def test_send_vendor_error_carries_message(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json={"code": "07", "data": None, "message": "余额不足"})
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "【S】hi", client_ref="r-1")
    assert info.value.code == "07"
    assert info.value.vendor_message == "余额不足"
    assert str(info.value) == "account_md5 rejected send request #1: code 07 - vendor says: 余额不足"
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("message", ["taskId dup-1 已存在", "taskId重复", "taskId already used", "dup-1 exists"])
def test_a_refusal_of_a_used_task_id_is_the_earlier_acceptance(
    hook: AccountMd5Hook, requests_mock: Any, message: str
) -> None:
    requests_mock.post(SEND_URL, json={"code": "06", "data": None, "message": message})
    [receipt] = hook.send("13800138000", "【S】hi", client_ref="dup-1")
    assert receipt.already_accepted and receipt.batch_id == "dup-1"
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("message", ["相同内容重复发送", "template not exist", "dup-1: 余额不足"])
def test_other_refusals_that_sound_alike_stay_errors(hook: AccountMd5Hook, requests_mock: Any, message: str) -> None:
    requests_mock.post(SEND_URL, json={"code": "09", "data": None, "message": message})
    with pytest.raises(SmsVendorError):
        hook.send("13800138000", "【S】hi", client_ref="dup-1")


def test_a_first_send_of_a_planned_request_is_never_taken_for_a_repeat(
    hook: AccountMd5Hook, requests_mock: Any
) -> None:
    """A plan's request that never went out carries its taskId for the first time: a refusal is a refusal."""
    requests_mock.post(SEND_URL, json={"code": "06", "data": None, "message": "taskId dup-1 已存在"})
    options = hook.prepare_send("【S】hi")
    request = hook.stored_request(0, ["13800138000"], "【S】hi", options, client_ref="dup-1", may_repeat=False)
    with pytest.raises(SmsVendorError):
        hook.submit(request)


def test_a_refusal_of_a_fresh_task_id_stays_an_error(hook: AccountMd5Hook, requests_mock: Any) -> None:
    """Without a client_ref of ours the taskId is new: no refusal can mean "accepted before"."""
    requests_mock.post(SEND_URL, json={"code": "06", "data": None, "message": "taskId 已存在"})
    with pytest.raises(SmsVendorError):
        hook.send("13800138000", "【S】hi")


def test_send_5xx_is_not_retried(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, status_code=502, text=HTML_502)
    with pytest.raises(SmsOutcomeUnknownError, match=r"outcome of send request #1 .* HTTP 502"):
        hook.send("13800138000", "【S】hi", client_ref="r")
    assert requests_mock.call_count == 1


def test_send_read_timeout_is_outcome_unknown(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, exc=requests.exceptions.ReadTimeout)
    with pytest.raises(SmsOutcomeUnknownError, match="read timeout"):
        hook.send("13800138000", "【S】hi", client_ref="r")
    assert requests_mock.call_count == 1


def test_send_garbage_reply(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, text="<<not json>>")
    with pytest.raises(SmsOutcomeUnknownError, match="not JSON"):
        hook.send("13800138000", "【S】hi")
    assert requests_mock.call_count == 1


# --- reports

REPORT_ITEMS = [
    {
        "sendId": "b681adb3-fc1a",
        "status": "DELIVER",
        "times": "2019-04-12 17:57:08",
        "mobile": "135****9831",
        "extNo": "",
    },
    {
        "sendId": "feebfa40-0680",
        "status": "MBBLACK",
        "times": "2019-04-12 17:57:09",
        "mobile": "136****0014",
        "extNo": "",
    },
    {"sendId": "push-style", "status": "DELIVRD", "times": "2019-04-13 00:00:00", "mobile": "137****0001"},
]


def test_reports_wire_format_and_parsing(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(REPORT_URL, json=ok(REPORT_ITEMS))
    reports = hook.fetch_reports()
    request = requests_mock.last_request
    assert_form_post(request, REPORT_URL)
    assert form_of(request) == {"account": ACCOUNT, "pwd": PWD}
    assert [(r.batch_id, r.mobile, r.status, r.code, r.description) for r in reports] == [
        ("b681adb3-fc1a", "135****9831", DELIVERED, "DELIVER", "delivered"),
        ("feebfa40-0680", "136****0014", FAILED, "MBBLACK", "MBBLACK"),
        ("push-style", "137****0001", DELIVERED, "DELIVRD", "delivered"),
    ]
    assert reports[0].reported_at == datetime(2019, 4, 12, 9, 57, 8, tzinfo=timezone.utc)
    assert reports[2].reported_at == datetime(2019, 4, 12, 16, 0, 0, tzinfo=timezone.utc)
    assert reports[0].vendor == "account_md5"
    assert reports[0].raw == REPORT_ITEMS[0]


def test_reports_wide_integer_send_id(hook: AccountMd5Hook, requests_mock: Any) -> None:
    body = f'{{"code": "00", "data": [{{"sendId": {WIDE_ID}, "status": "DELIVER", "mobile": "135****9831"}}]}}'
    requests_mock.post(REPORT_URL, text=body)
    [report] = hook.fetch_reports()
    assert report.batch_id == WIDE_ID
    assert report.reported_at is None


def test_reports_honour_connection_timezone(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"timezone": "UTC"})
    requests_mock.post(REPORT_URL, json=ok(REPORT_ITEMS[:1]))
    [report] = AccountMd5Hook(CONN_ID).fetch_reports()
    assert report.reported_at == datetime(2019, 4, 12, 17, 57, 8, tzinfo=timezone.utc)


@pytest.mark.parametrize("key", ["list", "records"])
def test_reports_data_wrapped_in_an_object(hook: AccountMd5Hook, requests_mock: Any, key: str) -> None:
    requests_mock.post(REPORT_URL, json=ok({key: REPORT_ITEMS[:2]}))
    assert [r.batch_id for r in hook.fetch_reports()] == ["b681adb3-fc1a", "feebfa40-0680"]


@pytest.mark.parametrize(
    "reply",
    [ok(None), {"code": "00", "message": "成功"}, ok([]), ok({}), ok({"list": None})],
    ids=["null", "absent", "empty-list", "empty-object", "wrapped-null"],
)
def test_reports_nothing_pending(hook: AccountMd5Hook, requests_mock: Any, reply: dict[str, Any]) -> None:
    requests_mock.post(REPORT_URL, json=reply)
    assert hook.fetch_reports() == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"a": [], "b": []}, "got an object with keys"),
        ("DELIVER", "should be a list of objects, got str"),
        ([["135****9831"]], "should be a list of objects"),
        ({"list": "x"}, "should be a list of objects"),
    ],
)
def test_reports_data_of_wrong_shape(hook: AccountMd5Hook, requests_mock: Any, data: Any, problem: str) -> None:
    requests_mock.post(REPORT_URL, json=ok(data))
    with pytest.raises(SmsResponseError, match=problem):
        hook.fetch_reports()


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"status": "DELIVER", "mobile": "135****9831"}, "no 'sendId' field"),
        ({"sendId": "a", "mobile": "135****9831"}, "no 'status' field"),
        ({"sendId": "a", "status": "DELIVER"}, "no 'mobile' field"),
        ({"sendId": 1.5, "status": "DELIVER", "mobile": "135****9831"}, "would lose digits"),
        (
            {"sendId": "a", "status": "DELIVER", "mobile": "135****9831", "times": "12/04/2019"},
            "matches none",
        ),
    ],
)
def test_reports_bad_item(hook: AccountMd5Hook, requests_mock: Any, item: dict[str, Any], problem: str) -> None:
    requests_mock.post(REPORT_URL, json=ok([item]))
    with pytest.raises(SmsResponseError, match=problem):
        hook.fetch_reports()


# --- inbound


def test_inbound_wire_format_and_parsing(hook: AccountMd5Hook, requests_mock: Any) -> None:
    items = [
        {"mobile": "138****1234", "content": "端午节快乐", "times": "2019-04-12 17:57:08", "extNo": 10},
        {"mobile": "139****1234", "content": "TD", "times": "2019-04-12 08:00:00", "extNo": "007"},
        {"mobile": "137****1234", "content": "ok", "times": ""},
    ]
    requests_mock.post(MO_URL, json=ok(items))
    messages = hook.fetch_inbound()
    request = requests_mock.last_request
    assert_form_post(request, MO_URL)
    assert form_of(request) == {"account": ACCOUNT, "pwd": PWD}
    assert [(m.mobile, m.content, m.ext_no) for m in messages] == [
        ("138****1234", "端午节快乐", "10"),
        ("139****1234", "TD", "007"),
        ("137****1234", "ok", ""),
    ]
    assert messages[0].received_at == datetime(2019, 4, 12, 9, 57, 8, tzinfo=timezone.utc)
    assert messages[1].received_at == datetime(2019, 4, 12, 0, 0, 0, tzinfo=timezone.utc)
    assert messages[2].received_at is None


def test_inbound_wrapped_and_empty(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(
        MO_URL,
        [
            {"json": ok({"list": [{"mobile": "138****1234", "content": "hi", "extNo": 10.0}]})},
            {"json": ok(None)},
        ],
    )
    [message] = hook.fetch_inbound()
    assert message.ext_no == "10"
    assert hook.fetch_inbound() == []


def test_inbound_missing_content(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(MO_URL, json=ok([{"mobile": "138****1234", "times": "2019-04-12 17:57:08"}]))
    with pytest.raises(SmsResponseError, match="no 'content' field"):
        hook.fetch_inbound()


# --- balance


def test_balance_wire_format_and_decimal(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(
        BALANCE_URL,
        text='{"code": "00", "data": {"balance": 200000.10, "payment": 0, "paymentName": "预付"}}',
    )
    balance = hook.get_balance()
    request = requests_mock.last_request
    assert_form_post(request, BALANCE_URL)
    assert form_of(request) == {"account": ACCOUNT, "pwd": PWD}
    assert balance.amount == Decimal("200000.10")
    assert str(balance.amount) == "200000.10"
    assert balance.currency == ""
    assert balance.vendor == "account_md5"
    assert balance.raw == {"balance": Decimal("200000.10"), "payment": 0, "paymentName": "预付"}


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"code": "00", "message": "成功"}, "no 'data' field"),
        (ok({"payment": 0}), "no 'balance' field"),
        (ok({"balance": "lots"}), "balance 'lots' is not a number"),
        (ok([1, 2]), "expected a JSON object holding 'balance', got list"),
    ],
)
def test_balance_bad_reply(hook: AccountMd5Hook, requests_mock: Any, reply: Any, problem: str) -> None:
    requests_mock.post(BALANCE_URL, json=reply)
    with pytest.raises(SmsResponseError, match=problem):
        hook.get_balance()


# --- errors shared by reads


READS = [
    (REPORT_URL, "fetch_reports", "delivery report pull"),
    (MO_URL, "fetch_inbound", "inbound pull"),
    (BALANCE_URL, "get_balance", "balance query"),
]


@pytest.mark.parametrize(("url", "method", "operation"), READS)
def test_vendor_error_codes(hook: AccountMd5Hook, requests_mock: Any, url: str, method: str, operation: str) -> None:
    requests_mock.post(url, json={"code": "02", "data": None, "message": "账号或密码错误"})
    with pytest.raises(SmsVendorError) as info:
        getattr(hook, method)()
    assert info.value.code == "02"
    assert str(info.value) == f"account_md5 rejected {operation}: code 02 - vendor says: 账号或密码错误"
    assert requests_mock.call_count == 1  # an error reply is an answer: not retried


@pytest.mark.parametrize(("url", "method", "operation"), READS)
def test_reads_retry_html_502_then_give_up(
    hook: AccountMd5Hook, requests_mock: Any, url: str, method: str, operation: str
) -> None:
    hook = AccountMd5Hook(CONN_ID, retry_wait=0.01, retries=2)
    requests_mock.post(url, status_code=502, text=HTML_502, headers={"Content-Type": "text/html"})
    with pytest.raises(SmsResponseError, match=f"{operation}: failed after 3 attempts.*HTTP 502.*502 Bad Gateway"):
        getattr(hook, method)()
    assert requests_mock.call_count == 3


def test_reads_retry_and_succeed(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(
        BALANCE_URL,
        [
            {"status_code": 503, "text": HTML_502},
            {"exc": requests.exceptions.ReadTimeout},
            {"json": ok({"balance": 5, "payment": 1, "paymentName": "后付"})},
        ],
    )
    assert hook.get_balance().amount == Decimal(5)
    assert requests_mock.call_count == 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"data": [], "message": "成功"}', "the reply has no 'code' field"),
        ('["00"]', "expected a JSON object holding 'code', got list"),
    ],
)
@pytest.mark.parametrize("read", READS)
def test_reads_malformed_json_200(
    hook: AccountMd5Hook, requests_mock: Any, read: tuple[str, str, str], body: str, problem: str
) -> None:
    url, method, operation = read
    requests_mock.post(url, text=body)
    with pytest.raises(SmsResponseError, match=f"{operation}: {problem}"):
        getattr(hook, method)()
    assert requests_mock.call_count == 1  # readable JSON is an answer, even a wrong one: not retried


@pytest.mark.parametrize(
    ("body", "preview"),
    [
        ("<<not json>> upstream said: ok?", " (HTTP 200; body starts: '<<not json>> upstream said: ok?')"),
        ("", " (HTTP 200)"),
        ('{"code": "00", "data": {"balance": NaN}}', " (HTTP 200; body starts: "),
    ],
)
@pytest.mark.parametrize("read", READS)
def test_reads_garbage_200_are_retried_then_a_clear_error(
    hook: AccountMd5Hook, requests_mock: Any, read: tuple[str, str, str], body: str, preview: str
) -> None:
    url, method, operation = read
    hook = AccountMd5Hook(CONN_ID, retry_wait=0.01, retries=2)
    requests_mock.post(url, text=body)
    with pytest.raises(SmsResponseError) as info:
        getattr(hook, method)()
    assert str(info.value).startswith(
        f"account_md5 {operation}: failed after 3 attempts: the reply is not JSON{preview}"
    )
    assert info.value.status == 200
    assert requests_mock.call_count == 3


@pytest.mark.parametrize("read", READS)
def test_reads_garbage_200_then_a_good_reply(
    hook: AccountMd5Hook, requests_mock: Any, read: tuple[str, str, str]
) -> None:
    url, method, _operation = read
    good = ok({"balance": 5, "payment": 1, "paymentName": "后付"}) if method == "get_balance" else ok([])
    requests_mock.post(url, [{"text": "<html>maintenance</html>"}, {"text": "Infinity"}, {"json": good}])
    result = getattr(hook, method)()
    if method == "get_balance":
        assert result.amount == Decimal(5)
    else:
        assert result == []
    assert requests_mock.call_count == 3


# --- secrets


def test_md5_is_masked_and_never_logged(monkeypatch: pytest.MonkeyPatch, requests_mock: Any, logs: Any) -> None:
    masked: list[str | None] = []
    monkeypatch.setattr("airflow_provider_sms.hooks.account_md5.mask", masked.append)
    set_conn(monkeypatch)
    hook = AccountMd5Hook(CONN_ID, retry_wait=0.01, retries=1)
    requests_mock.post(BALANCE_URL, [{"status_code": 503, "text": "busy"}, {"json": {"code": "02", "message": "x"}}])
    requests_mock.post(REPORT_URL, text="garbage")
    requests_mock.post(SEND_URL, status_code=500, text="boom")
    errors: list[str] = []
    for call in (hook.get_balance, hook.fetch_reports, lambda: hook.send("13800138000", "【S】hi")):
        with pytest.raises(Exception) as info:
            call()
        errors.append(str(info.value))
    ok_, message = hook.test_connection()
    logged = logs()
    assert masked == [PWD]  # registered once, the first time it was computed
    assert "attempt 1 failed" in logged  # the retry was logged, so the log check below looks at real output
    assert ok_ is False
    for text in [logged, message, repr(hook.config), *errors]:
        assert PASSWORD not in text
        assert PWD not in text
        assert PWD.upper() not in text


# --- test_connection


def test_test_connection_ok(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(BALANCE_URL, json=ok({"balance": 200000, "payment": 0, "paymentName": "预付"}))
    assert hook.test_connection() == (True, f"account {ACCOUNT} at {BASE}: balance 200000 (prepaid)")
    assert requests_mock.call_count == 1
    assert form_of(requests_mock.last_request) == {"account": ACCOUNT, "pwd": PWD}


def test_test_connection_rejected(hook: AccountMd5Hook, requests_mock: Any) -> None:
    requests_mock.post(BALANCE_URL, json={"code": "02", "data": None, "message": "账号或密码错误"})
    ok_, message = hook.test_connection()
    assert ok_ is False
    assert message == (
        "SmsVendorError: account_md5 rejected balance query: code 02 "
        "(account, password or source IP rejected) - vendor says: 账号或密码错误"
    )
