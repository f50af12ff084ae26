"""PaaswV1Hook against requests-mock: exact requests on the wire, reply parsing, errors and secrecy."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock as rm
from airflow.sdk._shared.secrets_masker import _secrets_masker

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.base import BALANCE, INBOUND, REPORTS, SEND, SEND_TEMPLATE, TOKEN_CACHE
from airflow_provider_sms.hooks.paasw_v1 import PaaswV1Hook
from airflow_provider_sms.provider_info import CONNECTION_TYPES
from airflow_provider_sms.records import DELIVERED, FAILED

BASE = "http://gw.paasw.test"
APP_ID = "0189457543"
SECRET = "23f757bad208226ec301e117e4"
SECRET_MD5 = hashlib.md5(SECRET.encode()).hexdigest()
TOKEN = "k67jwkqzSqN6gtGHjo8KwrQrkfE4r6m4px5YEpjsWnYoBZxFwNzxQrxdQbzDSdkr"
TOKEN_2 = "second-token-after-refresh-0123456789abcdef"
WIDE_ID = 39036632588910887018  # wider than 64 bits
CONN_ID = "paasw_v1_test"
MOBILE_A, MOBILE_B = "13651688564", "13568988547"
TOKEN_OK = {"code": "10000", "message": "操作成功", "token": TOKEN, "expires_in": 7200}
FORM = "application/x-www-form-urlencoded"


def _connect(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    extras: dict[str, Any] = {"sign": "圆通快递", "retry_wait": 0.01, **extra}
    extras = {k: v for k, v in extras.items() if v is not None}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "sms_paasw_v1", "host": BASE, "login": APP_ID, "password": SECRET, "extra": extras}),
    )


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> PaaswV1Hook:
    _connect(monkeypatch)
    return PaaswV1Hook(CONN_ID)


@pytest.fixture
def token_mock(requests_mock: rm.Mocker) -> Any:
    return requests_mock.get(f"{BASE}/api/token", json=TOKEN_OK)


def _query(request: Any) -> dict[str, str]:
    """Exact query values (requests-mock's ``qs`` lower-cases them)."""
    parsed = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def _form(request: Any) -> dict[str, str]:
    assert request.headers["Content-Type"] == FORM
    parsed = parse_qs(request.text, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def _path(request: Any) -> str:
    return urlsplit(request.url).path


def _sent(requests_mock: rm.Mocker, path: str) -> list[Any]:
    return [r for r in requests_mock.request_history if _path(r) == path]


# ---------------------------------------------------------------------- metadata


def test_hook_metadata_matches_provider_info() -> None:
    info = next(c for c in CONNECTION_TYPES if c["connection-type"] == PaaswV1Hook.conn_type)
    assert info["hook-class-name"] == "airflow_provider_sms.hooks.paasw_v1.PaaswV1Hook"
    assert info["hook-name"] == PaaswV1Hook.hook_name == "SMS: PaaSW gateway v1"
    assert PaaswV1Hook.vendor == "paasw_v1"
    assert PaaswV1Hook.default_host == "http://openapi.gateway.paasw.com"
    assert (PaaswV1Hook.max_numbers_per_request, PaaswV1Hook.max_mobiles_chars) == (1000, 1500)
    assert {"sign", "kind"} <= set(info["conn-fields"])


def test_default_host_is_the_documented_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "sms_paasw_v1", "login": APP_ID, "password": SECRET}),
    )
    assert PaaswV1Hook(CONN_ID).config.base_url == "http://openapi.gateway.paasw.com"


def test_features(hook: PaaswV1Hook) -> None:
    for feature in (SEND, SEND_TEMPLATE, REPORTS, INBOUND, BALANCE):
        assert hook.supports(feature)
    assert not hook.supports("push")


@pytest.mark.parametrize(
    ("option", "value"),
    [("ext_no", "12"), ("scheduled_at", datetime(2030, 1, 1, tzinfo=timezone.utc)), ("sender_id", "X")],
)
def test_unsupported_options_rejected_before_sending(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, option: str, value: Any
) -> None:
    with pytest.raises(SmsInvalidRequestError, match=option):
        hook.send([MOBILE_A], "hello", **{option: value})
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------- token


def test_token_request_on_the_wire_and_cached(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.get(f"{BASE}/sms/balance", json={"code": "10000", "message": "请求成功", "balance": 1})
    hook.get_balance()
    hook.get_balance()
    assert token_mock.call_count == 1
    token_request = token_mock.last_request
    assert token_request.method == "GET"
    assert _query(token_request) == {"appId": APP_ID, "secret": SECRET}
    assert token_request.body is None
    balance_requests = _sent(requests_mock, "/sms/balance")
    assert [_query(r) for r in balance_requests] == [{"token": TOKEN}, {"token": TOKEN}]


def test_token_vendor_error(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{BASE}/api/token", json={"code": "10001", "message": "appId或secret错误"})
    with pytest.raises(SmsVendorError) as info:
        hook.get_balance()
    assert info.value.code == "10001"
    assert "token request" in str(info.value)
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    "reply",
    [
        {"code": "10000", "message": "ok"},
        {"code": "10000", "token": 12345},
        {"code": "10000", "token": ""},
        {"code": "10000", "token": "abc", "expires_in": "soon"},
        ["not", "an", "object"],
    ],
)
def test_token_bad_reply_is_clear_and_does_not_quote_the_body(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, reply: Any
) -> None:
    requests_mock.get(f"{BASE}/api/token", json=reply)
    with pytest.raises(SmsResponseError) as info:
        hook.get_balance()
    assert "token request" in str(info.value)
    assert "body starts" not in str(info.value)
    assert _sent(requests_mock, "/sms/balance") == []


def test_test_connection_ok(hook: PaaswV1Hook, token_mock: Any) -> None:
    ok, message = hook.test_connection()
    assert ok is True
    assert APP_ID in message and BASE in message
    assert SECRET not in message and TOKEN not in message
    assert _query(token_mock.last_request) == {"appId": APP_ID, "secret": SECRET}


def test_test_connection_rejected(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{BASE}/api/token", json={"code": "10001", "message": "appId或secret错误"})
    ok, message = hook.test_connection()
    assert ok is False
    assert "10001" in message and "appId or secret rejected" in message
    assert SECRET not in message and SECRET_MD5 not in message


def test_missing_secret_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "sms_paasw_v1", "host": BASE, "login": APP_ID, "extra": {"sign": "X"}}),
    )
    with pytest.raises(SmsConfigurationError, match="secret"):
        PaaswV1Hook(CONN_ID).get_balance()
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------- send


def test_send_on_the_wire(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    send = requests_mock.post(
        f"{BASE}/sms/send", json={"code": "10000", "message": "操作成功", "bizId": "39036632588910887018"}
    )
    receipts = hook.send(f"{MOBILE_A}, +86 {MOBILE_B}", "你的快件56682551825已签收，谢谢使用")
    assert send.call_count == 1
    assert send.request_history[-1].method == "POST"
    assert _form(send.last_request) == {
        "token": TOKEN,
        "phoneNumbers": f"{MOBILE_A},{MOBILE_B}",
        "sign": "圆通快递",
        "content": "【圆通快递】你的快件56682551825已签收，谢谢使用",
    }
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt.batch_id == "39036632588910887018"
    assert receipt.mobiles == (MOBILE_A, MOBILE_B)
    assert receipt.vendor == "paasw_v1"
    assert receipt.submitted_at.tzinfo is not None
    assert TOKEN not in json.dumps(dict(receipt.raw or {}), ensure_ascii=False)


def test_send_wide_integer_biz_id_is_exact(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/send", text=f'{{"code": "10000", "message": "ok", "bizId": {WIDE_ID}}}')
    (receipt,) = hook.send([MOBILE_A], "hello")
    assert receipt.batch_id == "39036632588910887018"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"code": "10000", "message": "ok", "bizId": 3.9036632588910887e19}', "float"),
        ('{"code": "10000", "message": "ok"}', "bizId"),
        ('{"code": "10000", "message": "ok", "bizId": true}', "bizId"),
        ('{"message": "ok", "bizId": "1"}', "code"),
        ('["10000"]', "JSON object"),
        ("<html><body>hello</body></html>", "not JSON"),
    ],
)
def test_send_unreadable_reply_is_outcome_unknown(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, body: str, problem: str
) -> None:
    """The request reached the vendor; a reply we cannot read leaves its outcome open, never a KeyError."""
    send = requests_mock.post(f"{BASE}/sms/send", text=body)
    with pytest.raises(SmsOutcomeUnknownError, match=problem) as info:
        hook.send([MOBILE_A], "hello")
    assert "send request #1" in str(info.value)
    assert info.value.mobiles == (MOBILE_A,)
    assert send.call_count == 1


def test_send_kind_option_and_extra(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, token_mock: Any) -> None:
    send = requests_mock.post(f"{BASE}/sms/send", json={"code": "10000", "message": "ok", "bizId": "1"})
    _connect(monkeypatch, kind="notification")
    hook = PaaswV1Hook(CONN_ID)
    hook.send([MOBILE_A], "hello")
    assert _form(send.last_request)["kind"] == "2"
    hook.send([MOBILE_A], "hello", kind="marketing")
    assert _form(send.last_request)["kind"] == "3"
    hook.send([MOBILE_A], "hello", kind="1")
    assert _form(send.last_request)["kind"] == "1"


def test_send_unknown_kind_rejected_before_sending(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    _connect(monkeypatch, kind="7")
    with pytest.raises(SmsInvalidRequestError, match="kind"):
        PaaswV1Hook(CONN_ID).send([MOBILE_A], "hello")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("extra_sign", "signature", "expected"),
    [("【圆通快递】", None, "圆通快递"), ("圆通快递", "【顺丰】", "顺丰"), (" 京东 ", None, "京东")],
)
def test_sign_without_brackets(
    monkeypatch: pytest.MonkeyPatch,
    *,
    requests_mock: rm.Mocker,
    token_mock: Any,
    extra_sign: str,
    signature: str | None,
    expected: str,
) -> None:
    _connect(monkeypatch, sign=extra_sign)
    send = requests_mock.post(f"{BASE}/sms/send", json={"code": "10000", "message": "ok", "bizId": "1"})
    PaaswV1Hook(CONN_ID).send([MOBILE_A], "hello", signature=signature)
    assert _form(send.last_request)["sign"] == expected
    assert _form(send.last_request)["content"] == f"【{expected}】hello"


@pytest.mark.parametrize("text", ["【顺丰】您的快件已签收", "您的快件已签收【顺丰】", "您的快件【顺丰】已签收"])
def test_content_with_a_signature_anywhere_is_not_signed_again(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, text: str
) -> None:
    """包含【XX】签名: a text that holds a 【signature】 goes out as it is; ``sign`` is still sent."""
    send = requests_mock.post(f"{BASE}/sms/send", json={"code": "10000", "message": "ok", "bizId": "1"})
    hook.send([MOBILE_A], text)
    assert _form(send.last_request)["content"] == text
    assert _form(send.last_request)["sign"] == "圆通快递"


def test_empty_brackets_are_no_signature(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    send = requests_mock.post(f"{BASE}/sms/send", json={"code": "10000", "message": "ok", "bizId": "1"})
    hook.send([MOBILE_A], "【】hello")
    assert _form(send.last_request)["content"] == "【圆通快递】【】hello"


def test_signature_counts_towards_the_1000_content_chars(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    with pytest.raises(SmsInvalidRequestError, match="1001 characters"):
        hook.send([MOBILE_A], "字" * (1000 - len("【圆通快递】") + 1))
    assert requests_mock.call_count == 0


def test_sign_longer_than_20_rejected_before_sending(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    _connect(monkeypatch, sign="【" + "签" * 21 + "】")
    with pytest.raises(SmsConfigurationError, match="21 characters"):
        PaaswV1Hook(CONN_ID).send([MOBILE_A], "hello")
    _connect(monkeypatch)
    with pytest.raises(SmsInvalidRequestError, match="21 characters"):
        PaaswV1Hook(CONN_ID).send([MOBILE_A], "hello", signature="x" * 21)
    assert requests_mock.call_count == 0


def test_missing_sign_rejected_before_sending(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    _connect(monkeypatch, sign=None)
    with pytest.raises(SmsConfigurationError, match="'sign' extra"):
        PaaswV1Hook(CONN_ID).send([MOBILE_A], "hello")
    assert requests_mock.call_count == 0


def test_content_over_1000_chars_rejected_before_sending(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    with pytest.raises(SmsInvalidRequestError, match="1007 characters"):  # 【圆通快递】 + 1001
        hook.send([MOBILE_A], "字" * 1001, max_parts=100)  # the document's cap, past any parts limit
    assert requests_mock.call_count == 0


def test_invalid_numbers_rejected_before_sending(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    with pytest.raises(SmsInvalidNumbersError) as info:
        hook.send([MOBILE_A, "12345", "2365168856"], "hello")
    assert info.value.invalid == ["12345", "2365168856"]
    assert "nothing was sent" in str(info.value)
    assert requests_mock.call_count == 0


def test_batches_split_at_1500_characters(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    send = requests_mock.post(
        f"{BASE}/sms/send",
        [{"json": {"code": "10000", "message": "ok", "bizId": str(WIDE_ID + i)}} for i in range(3)],
    )
    mobiles = [f"138{i:08d}" for i in range(300)]
    receipts = hook.send(mobiles, "hello")
    assert send.call_count == 3
    sent = [_form(r)["phoneNumbers"] for r in send.request_history]
    assert [len(s.split(",")) for s in sent] == [125, 125, 50]
    assert all(len(s) <= 1500 for s in sent)
    assert len(sent[0]) == 125 * 11 + 124  # one more number would pass 1500
    assert ",".join(sent).split(",") == mobiles
    assert [r.batch_id for r in receipts] == [str(WIDE_ID + i) for i in range(3)]
    assert token_mock.call_count == 1


def test_send_vendor_error_on_fresh_token_is_not_repeated(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any
) -> None:
    send = requests_mock.post(f"{BASE}/sms/send", json={"code": "10003", "message": "参数错误"})
    with pytest.raises(SmsVendorError) as info:
        hook.send([MOBILE_A], "hello")
    assert info.value.code == "10003"
    assert "参数错误" in str(info.value)
    assert "send request #1" in str(info.value)
    assert (token_mock.call_count, send.call_count) == (1, 1)


def test_error_on_cached_token_refreshes_once_and_repeats(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    token = requests_mock.get(f"{BASE}/api/token", [{"json": TOKEN_OK}, {"json": {**TOKEN_OK, "token": TOKEN_2}}])
    send = requests_mock.post(
        f"{BASE}/sms/send",
        [
            {"json": {"code": "10000", "message": "ok", "bizId": "1"}},
            {"json": {"code": "40002", "message": "token失效"}},
            {"json": {"code": "10000", "message": "ok", "bizId": "2"}},
        ],
    )
    hook.send([MOBILE_A], "one")
    (receipt,) = hook.send([MOBILE_A], "two")
    assert receipt.batch_id == "2"
    assert token.call_count == 2
    assert [_form(r)["token"] for r in send.request_history] == [TOKEN, TOKEN, TOKEN_2]
    assert [_form(r)["content"] for r in send.request_history] == ["【圆通快递】" + t for t in ("one", "two", "two")]


def test_error_after_refresh_is_raised(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.get(
        f"{BASE}/sms/balance",
        [{"json": {"code": "10000", "balance": 1}}] + [{"json": {"code": "19999", "message": "系统错误"}}] * 3,
    )
    hook.get_balance()
    with pytest.raises(SmsVendorError, match="19999"):
        hook.get_balance()
    assert token_mock.call_count == 2
    assert len(_sent(requests_mock, "/sms/balance")) == 3


def test_send_hit_by_502_is_outcome_unknown_and_not_retried(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any
) -> None:
    send = requests_mock.post(
        f"{BASE}/sms/send",
        status_code=502,
        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        headers={"Content-Type": "text/html"},
    )
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send([MOBILE_A], "hello")
    assert info.value.mobiles == (MOBILE_A,)
    assert "send request #1" in str(info.value)
    assert send.call_count == 1


# ---------------------------------------------------------------------- template


def test_template_on_the_wire_with_params_as_content(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any
) -> None:
    tmpl = requests_mock.post(
        f"{BASE}/sms/sendTemplate", text=f'{{"code": "10000", "message": "操作成功", "bizId": {WIDE_ID}}}'
    )
    (receipt,) = hook.send_template([MOBILE_A, MOBILE_B], "1192360392260608", {"code": "523648", "minute": "2"})
    assert tmpl.request_history[-1].method == "POST"
    params = '{"code":"523648","minute":"2"}'
    assert _form(tmpl.last_request) == {
        "token": TOKEN,
        "phoneNumbers": f"{MOBILE_A},{MOBILE_B}",
        "templateId": "1192360392260608",
        "paramJson": params,
        "sign": "圆通快递",
        "content": "【圆通快递】" + params,
    }
    assert receipt.batch_id == str(WIDE_ID)
    assert _sent(requests_mock, "/sms/send") == []


def test_template_list_params_and_explicit_content(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any
) -> None:
    tmpl = requests_mock.post(f"{BASE}/sms/sendTemplate", json={"code": "10000", "message": "ok", "bizId": "7"})
    hook.send_template([MOBILE_A], "T1", [{"name": "张三"}, {"name": "5"}], content="张三, 5", signature="顺丰")
    assert _form(tmpl.last_request) == {
        "token": TOKEN,
        "phoneNumbers": MOBILE_A,
        "templateId": "T1",
        "paramJson": '[{"name":"张三"},{"name":"5"}]',
        "sign": "顺丰",
        "content": "【顺丰】张三, 5",
    }
    hook.send_template([MOBILE_A], "T1")
    assert _form(tmpl.last_request)["paramJson"] == "[]"
    assert _form(tmpl.last_request)["content"] == "【圆通快递】[]"
    hook.send_template([MOBILE_A], "T1", content="【京东】张三, 5")
    assert _form(tmpl.last_request)["content"] == "【京东】张三, 5"


def test_template_params_over_100_chars_rejected_before_sending(hook: PaaswV1Hook, requests_mock: rm.Mocker) -> None:
    params = {"code": "x" * 90}  # {"code":"xxx…"} is 101 characters
    assert len(json.dumps(params, separators=(",", ":"))) == 101
    with pytest.raises(SmsInvalidRequestError, match="101 characters"):
        hook.send_template([MOBILE_A], "T1", params)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("template_id", "params", "options", "match"),
    [
        ("T" * 21, {}, {}, "21 characters"),
        ("T1", "code=1", {}, "list or a mapping"),
        ("T1", {"when": object()}, {}, "JSON"),
        ("T1", {}, {"kind": "marketing"}, "kind"),
    ],
)
def test_template_invalid_input_rejected_before_sending(
    hook: PaaswV1Hook,
    *,
    requests_mock: rm.Mocker,
    template_id: str,
    params: Any,
    options: dict[str, Any],
    match: str,
) -> None:
    with pytest.raises(SmsInvalidRequestError, match=match):
        hook.send_template([MOBILE_A], template_id, params, **options)
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------- delivery reports


REPORT_ITEMS = [
    {
        "phone_number": MOBILE_A,
        "send_time": "2017-01-01 08:00:00",
        "report_time": "2017-01-01 08:00:05",
        "success": True,
        "code": "10000",
        "message": "请求成功",
        "sms_size": "1",
        "biz_id": "39036632588910887018",
    },
    {
        "phone_number": MOBILE_B,
        "send_time": "2017-01-01 08:00:00",
        "report_time": "2017-01-01 09:30:00",
        "success": False,
        "code": "5",
        "message": "屏蔽词",
        "sms_size": "2",
        "biz_id": "39036632588910887018",
    },
]


@pytest.mark.parametrize("envelope", [True, False], ids=["envelope", "bare-list"])
def test_reports(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, envelope: bool) -> None:
    body = {"code": "10000", "message": "请求成功", "data": REPORT_ITEMS} if envelope else REPORT_ITEMS
    pull = requests_mock.get(f"{BASE}/sms/deliver", json=body)
    delivered, failed = hook.fetch_reports()
    assert pull.request_history[-1].method == "GET"
    assert _query(pull.last_request) == {"token": TOKEN}
    assert delivered.batch_id == failed.batch_id == "39036632588910887018"
    assert (delivered.mobile, delivered.status, delivered.code) == (MOBILE_A, DELIVERED, "10000")
    assert delivered.description == "delivered"
    assert delivered.reported_at == datetime(2017, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert (failed.mobile, failed.status, failed.code) == (MOBILE_B, FAILED, "5")
    assert "blocked word" in failed.description and "屏蔽词" in failed.description
    assert failed.reported_at == datetime(2017, 1, 1, 1, 30, tzinfo=timezone.utc)
    assert failed.raw == REPORT_ITEMS[1]


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("1", "submit failed"),
        ("4", "delivery failed"),
        ("6", "rejected"),
        ("7", "black/white list"),
        ("8", "rate limited"),
        ("9", "unknown"),
        ("42", "undocumented code 42"),
    ],
)
def test_report_code_meanings(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, code: str, meaning: str
) -> None:
    requests_mock.get(f"{BASE}/sms/deliver", json=[{**REPORT_ITEMS[1], "code": code, "message": ""}])
    (report,) = hook.fetch_reports()
    assert report.status == FAILED
    assert meaning in report.description


def test_report_wide_integer_ids_and_integer_code(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    text = (
        '[{"phone_number": "13651688564", "send_time": "2017-01-01 00:00:00", "report_time": "", '
        f'"success": true, "code": 10000, "message": "ok", "sms_size": 1, "biz_id": {WIDE_ID}}}]'
    )
    requests_mock.get(f"{BASE}/sms/deliver", text=text)
    (report,) = hook.fetch_reports()
    assert report.batch_id == "39036632588910887018"
    assert (report.status, report.code, report.reported_at) == (DELIVERED, "10000", None)


def test_reports_empty(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.get(f"{BASE}/sms/deliver", [{"json": []}, {"json": {"code": "10000", "message": "ok"}}])
    assert hook.fetch_reports() == []
    assert hook.fetch_reports() == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"code": "10000", "data": {"phone_number": MOBILE_A}}, "list of objects"),
        ([REPORT_ITEMS[0], "x"], "list of objects"),
        ([{k: v for k, v in REPORT_ITEMS[0].items() if k != "biz_id"}], "biz_id"),
        ([{k: v for k, v in REPORT_ITEMS[0].items() if k != "code"}], "'code'"),
        ([{**REPORT_ITEMS[0], "biz_id": 3.5}], "float"),
        ([{**REPORT_ITEMS[0], "report_time": "2017/01/01"}], "2017/01/01"),
        ("garbage", "JSON object"),
    ],
)
def test_reports_bad_replies(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, body: Any, match: str
) -> None:
    requests_mock.get(f"{BASE}/sms/deliver", json=body)
    with pytest.raises(SmsResponseError, match=match) as info:
        hook.fetch_reports()
    assert "delivery report pull" in str(info.value)


def test_reports_vendor_error(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.get(f"{BASE}/sms/deliver", json={"code": "10003", "message": "参数错误"})
    with pytest.raises(SmsVendorError) as info:
        hook.fetch_reports()
    assert info.value.code == "10003"


def test_read_retried_after_html_502(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    html = {"status_code": 502, "text": "<html><title>502 Bad Gateway</title></html>"}
    pull = requests_mock.get(f"{BASE}/sms/deliver", [html, html, {"json": REPORT_ITEMS}])
    assert len(hook.fetch_reports()) == 2
    assert pull.call_count == 3


def test_read_gives_up_after_retries(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    pull = requests_mock.get(f"{BASE}/sms/deliver", status_code=503, text="<html>busy</html>")
    with pytest.raises(SmsResponseError, match="failed after 4 attempts"):
        hook.fetch_reports()
    assert pull.call_count == 4


def test_read_200_not_json_is_retried_then_a_clear_error(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any
) -> None:
    pull = requests_mock.get(f"{BASE}/sms/deliver", text="<<not json>> upstream said: ok?")
    with pytest.raises(
        SmsResponseError,
        match=r"delivery report pull: failed after 4 attempts: the reply is not JSON \(HTTP 200; body starts: "
        r"'<<not json>> upstream said: ok\?'\)",
    ) as info:
        hook.fetch_reports()
    assert info.value.status == 200
    assert pull.call_count == 4


def test_read_200_not_json_then_a_good_reply(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    pull = requests_mock.get(
        f"{BASE}/sms/deliver", [{"text": "<html>maintenance</html>"}, {"text": "NaN"}, {"json": REPORT_ITEMS}]
    )
    assert len(hook.fetch_reports()) == 2
    assert pull.call_count == 3


# ---------------------------------------------------------------------- inbound


INBOUND_ITEMS = [
    {
        "phone_number": "18612345678",
        "send_time": "2017-09-01 00:00:00",
        "content": "内容",
        "sign": "签名",
        "sequence_id": 1234567890,
    },
]


@pytest.mark.parametrize("envelope", [True, False], ids=["envelope", "bare-list"])
def test_inbound(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, envelope: bool) -> None:
    body = {"code": "10000", "message": "ok", "data": INBOUND_ITEMS} if envelope else INBOUND_ITEMS
    pull = requests_mock.get(f"{BASE}/sms/smsUp", json=body)
    (message,) = hook.fetch_inbound()
    assert pull.request_history[-1].method == "GET"
    assert _query(pull.last_request) == {"token": TOKEN, "sign": "圆通快递"}
    assert (message.vendor, message.mobile, message.content, message.ext_no) == (
        "paasw_v1",
        "18612345678",
        "内容",
        "",
    )
    assert message.received_at == datetime(2017, 8, 31, 16, 0, tzinfo=timezone.utc)
    assert message.raw == INBOUND_ITEMS[0]


def test_inbound_needs_the_sign_extra(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker) -> None:
    _connect(monkeypatch, sign=None)
    with pytest.raises(SmsConfigurationError, match="sign"):
        PaaswV1Hook(CONN_ID).fetch_inbound()
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ([{"send_time": "2017-09-01 00:00:00", "content": "x"}], "phone_number"),
        ([{"phone_number": "18612345678", "send_time": "2017-09-01 00:00:00"}], "content"),
        ([{**INBOUND_ITEMS[0], "send_time": "yesterday"}], "yesterday"),
        ({"code": "10000", "data": "none"}, "list of objects"),
    ],
)
def test_inbound_bad_replies(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, body: Any, match: str
) -> None:
    requests_mock.get(f"{BASE}/sms/smsUp", json=body)
    with pytest.raises(SmsResponseError, match=match):
        hook.fetch_inbound()


# ---------------------------------------------------------------------- balance


def test_balance(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    query = requests_mock.get(f"{BASE}/sms/balance", text='{"code": "10000", "message": "请求成功", "balance": 100.10}')
    balance = hook.get_balance()
    assert query.request_history[-1].method == "GET"
    assert _query(query.last_request) == {"token": TOKEN}
    assert balance.amount == Decimal("100.10")
    assert isinstance(balance.amount, Decimal)
    assert (balance.vendor, balance.currency) == ("paasw_v1", "")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"code": "10000", "message": "ok"}, "'balance'"),
        ({"code": "10000", "balance": "lots"}, "not a number"),
        ({"code": "10000", "balance": True}, "not a number"),
        ({"code": "10000", "balance": [1]}, "not a number"),
    ],
)
def test_balance_bad_replies(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any, body: Any, match: str
) -> None:
    requests_mock.get(f"{BASE}/sms/balance", json=body)
    with pytest.raises(SmsResponseError, match=match):
        hook.get_balance()


def test_balance_as_string_is_exact(hook: PaaswV1Hook, requests_mock: rm.Mocker, token_mock: Any) -> None:
    requests_mock.get(f"{BASE}/sms/balance", json={"code": "10000", "balance": "12.34"})
    assert hook.get_balance().amount == Decimal("12.34")


# ---------------------------------------------------------------------- secrecy


def test_url_encoded_secret_and_token_are_masked_and_redacted_from_quoted_replies(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret with characters a URL encodes reaches a DEBUG transport log only URL-encoded, and an error
    page that echoes the request URL carries both the secret and the token into the quoted body."""
    secret = "ZZV1SEC+ret/Zq9="
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "sms_paasw_v1", "host": BASE, "login": APP_ID, "password": secret, "extra": {}}),
    )
    hook = PaaswV1Hook(CONN_ID, retry_wait=0.01)
    caplog.set_level(logging.DEBUG)
    echo = f"<html>400 Bad Request: /api/token?appId={APP_ID}&secret=ZZV1SEC%2Bret%2FZq9%3D token={TOKEN}</html>"
    requests_mock.get(f"{BASE}/api/token", json=TOKEN_OK)
    requests_mock.get(f"{BASE}/sms/balance", text=echo)
    with pytest.raises(SmsResponseError) as info:
        hook.get_balance()
    message = f"{info.value} {info.value!r} {info.value.body}"
    assert "not JSON" in message and "400 Bad Request" in message  # the body is still quoted
    masked = _secrets_masker().redact(caplog.text + message)
    for form in (secret, "ZZV1SEC%2Bret%2FZq9%3D", TOKEN):
        assert form not in message
        assert form not in masked


def test_secrets_never_in_logs_or_errors(
    hook: PaaswV1Hook, requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    requests_mock.get(
        f"{BASE}/api/token", [{"json": TOKEN_OK}, {"json": {"code": "10001", "message": "appId或secret错误"}}]
    )
    requests_mock.post(
        f"{BASE}/sms/send",
        [
            {"json": {"code": "10000", "message": "ok", "bizId": "1"}},
            {"json": {"code": "10002", "message": "token无效"}},
            {"status_code": 503, "text": "<html>busy</html>"},
        ],
    )
    requests_mock.get(f"{BASE}/sms/balance", status_code=502, text="<html>bad gateway</html>")
    errors: list[str] = []
    hook.send([MOBILE_A], "one")
    for call in (
        hook.get_balance,  # 502 until the retries run out
        lambda: hook.send([MOBILE_A], "two"),  # token error, then the refresh is refused
        PaaswV1Hook(CONN_ID, retry_wait=0.01).test_connection,
    ):
        try:
            errors.append(str(call()))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc!r} {exc}")
    TOKEN_CACHE.clear()
    requests_mock.get(f"{BASE}/api/token", json=TOKEN_OK)
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send([MOBILE_A], "three")
    errors.append(str(info.value))
    # The document puts the secret (token call) and the token (pulls) in GET query strings, so transport
    # DEBUG lines (urllib3, requests-mock) show them; Airflow's masker must redact those, which it can only
    # because the hook registered both. Everything the provider itself logs or raises never holds them.
    own_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("urllib3", "requests_mock")))
    text = own_logs + "\n".join(errors) + repr(hook.config) + repr(hook)
    assert "10001" in text and "failed after 4 attempts" in text  # the errors did happen
    masked_transport = _secrets_masker().redact(caplog.text)
    for secret in (SECRET, SECRET_MD5, SECRET_MD5.upper(), TOKEN):
        assert secret not in text
        assert secret not in masked_transport
