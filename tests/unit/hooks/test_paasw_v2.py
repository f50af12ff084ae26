"""PaaswV2Hook against ``paasw-v2.md``: every endpoint in json and form mode, reply parsing and garbage."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsOutcomeUnknownError,
    SmsPartialResponseError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook
from airflow_provider_sms.records import DELIVERED, FAILED, DeliveryReport, InboundMessage

CONN_ID = "sms_paasw_v2_unit"
APP_ID = "0189457543"
SECRET = "gw7ewiz4eJ5646grg"
TOKEN = "pGxh639MQAVaZvOEn4uzMRkIQEw_EQh9FHi_UDmexpDJ3frYdLSVoTf63UYQG1Uhz5PIe7g"
BASE = "http://openapi.gateway.paasw.com"
WIDE = "39036632588910887018"  # does not fit 64 bits
JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"
NOT_JSON = "the reply is not JSON"

# (json path, form path) as the document gives them; pulls have no form twin.
PATHS = {
    "token": ("/message/token", "/message/tokenApi"),
    "send": ("/message/send", "/msg/send"),
    "template": ("/message/sendTemplate", "/msg/sendTemplate"),
    "balance": ("/message/balance", "/msg/balance"),
    "deliver": ("/message/deliver", "/message/deliver"),
    "mo": ("/message/mo", "/message/mo"),
}


def set_conn(monkeypatch: pytest.MonkeyPatch, fmt: str = "json", **extra: Any) -> str:
    conn = {
        "conn_type": "sms_paasw_v2",
        "login": APP_ID,
        "password": SECRET,
        "extra": {"retry_wait": 0.01, "format": fmt, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


@pytest.fixture(params=["json", "form"])
def fmt(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, fmt: str) -> PaaswV2Hook:
    return PaaswV2Hook(set_conn(monkeypatch, fmt))


def url(call: str, fmt: str = "json") -> str:
    return BASE + PATHS[call][1 if fmt == "form" else 0]


def reply(data: Any = None, code: Any = 0, message: str = "请求成功", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    if data is not None:
        body["data"] = data
    return {"json": body}


def mock_token(requests_mock: Any, fmt: str = "json") -> Any:
    return requests_mock.post(url("token", fmt), [reply({"expires_in": 7200, "token": TOKEN})])


def assert_attempts(hook: PaaswV2Hook, mock: Any, error: SmsResponseError, problem: str) -> None:
    """An unreadable read reply is retried like a 5xx and then named with the attempts; readable JSON is not."""
    if problem == NOT_JSON:
        assert f"failed after {hook.retries + 1} attempts: {NOT_JSON} (HTTP 200" in str(error)
        assert error.status == 200
        assert mock.call_count == hook.retries + 1 > 1
    else:  # readable JSON, even a wrong one, is an answer: not retried
        assert mock.call_count == 1


def body_of(request: Any, fmt: str) -> dict[str, Any]:
    """The request body as a dict, checking the content type the format promises."""
    content_type = request.headers["Content-Type"].split(";")[0]
    if fmt == "form":
        assert content_type == FORM_CT
        parsed = parse_qs(request.text, keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in parsed.values()), parsed
        return {k: v[0] for k, v in parsed.items()}
    assert content_type == JSON_CT
    result: dict[str, Any] = request.json()
    return result


# ---------------------------------------------------------------------------- token


def test_token_request_on_the_wire(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    token = mock_token(requests_mock, fmt)
    assert hook._fetch_token() == (TOKEN, 7200.0)
    request = token.last_request
    assert request.method == "POST"
    assert request.url == url("token", fmt)
    assert body_of(request, fmt) == {"appId": APP_ID, "secret": SECRET}


def test_token_reply_without_token_is_a_clear_error(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    requests_mock.post(url("token", fmt), [reply({"expires_in": 7200})])
    with pytest.raises(SmsResponseError, match="paasw_v2 token request: the reply has no 'token' field"):
        hook._fetch_token()


def test_token_reply_without_data_is_a_clear_error(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    requests_mock.post(url("token", fmt), [reply()])
    with pytest.raises(SmsResponseError, match="the reply has no 'data' field"):
        hook._fetch_token()


def test_token_without_expiry_is_kept_for_the_documented_7200_s(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str
) -> None:
    requests_mock.post(url("token", fmt), [reply({"token": TOKEN})])
    assert hook._fetch_token() == (TOKEN, 7200.0)


@pytest.mark.parametrize("expires_in", ["soon", {"seconds": 7200}])
def test_token_reply_with_bad_expiry_is_a_clear_error(
    requests_mock: Any, monkeypatch: pytest.MonkeyPatch, expires_in: Any
) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    requests_mock.post(url("token"), [reply({"token": TOKEN, "expires_in": expires_in})])
    with pytest.raises(SmsResponseError, match="expires_in"):
        hook._fetch_token()


def test_test_connection_uses_the_format_s_token_endpoint(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    token = mock_token(requests_mock, fmt)
    assert hook.test_connection() == (True, f"token issued for appId {APP_ID} at {BASE}")
    assert token.call_count == 1


def test_test_connection_with_wrong_secret(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    requests_mock.post(url("token", fmt), [reply(code=40001, message="appId或secret错误")])
    ok, message = hook.test_connection()
    assert not ok
    assert "code 40001 (appId or secret rejected) - vendor says: appId或secret错误" in message


# ---------------------------------------------------------------------------- send


def test_send_on_the_wire(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), [reply({"batchId": 1234567890123456})])
    receipts = hook.send(["15053621452", "+86 158-6325-4125"], "【圆通】你的快件56682551825已签收，谢谢使用")
    request = send.last_request
    assert request.method == "POST"
    assert request.url == url("send", fmt)
    assert body_of(request, fmt) == {
        "token": TOKEN,
        "mobile": "15053621452,15863254125",
        "msg": "【圆通】你的快件56682551825已签收，谢谢使用",
        "productId": "2",
        "time": "",
    }
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt.vendor == "paasw_v2"
    assert receipt.batch_id == "1234567890123456"
    assert receipt.mobiles == ("15053621452", "15863254125")
    assert receipt.submitted_at.tzinfo is not None
    assert abs(receipt.submitted_at - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_send_with_every_option(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), [reply({"batchId": 1})])
    hook.send(
        "13800138000",
        "验证码123456",
        signature="圆通",
        ext_no="8888",
        kind="verification",
        scheduled_at=datetime(2031, 10, 12, 6, 20, 15, tzinfo=timezone.utc),
    )
    assert body_of(send.last_request, fmt) == {
        "token": TOKEN,
        "mobile": "13800138000",
        "msg": "【圆通】验证码123456",
        "productId": "1",
        "extNo": "8888",
        "time": "2031-10-12 14:20:15",
    }


def test_send_batch_id_wider_than_64_bits_is_exact(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("send", fmt), text=f'{{"code":0,"message":"请求成功","data":{{"batchId":{WIDE}}}}}')
    receipt = hook.send("13800138000", "【签名】hi")[0]
    assert receipt.batch_id == WIDE
    assert receipt.raw == {"batchId": int(WIDE)}


def test_send_batch_id_as_string_is_kept(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("send", fmt), [reply({"batchId": WIDE})])
    assert hook.send("13800138000", "【签名】hi")[0].batch_id == WIDE


@pytest.mark.parametrize("batch_id", ["3.9036632588910887e19", "1234567890123456.0", "true", "null", '""', "[]"])
def test_send_batch_id_that_is_not_an_id_is_an_unknown_outcome(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, batch_id: str
) -> None:
    # The vendor answered 200: it may have accepted the batch, so this must not look like a plain failure.
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), text=f'{{"code":0,"message":"ok","data":{{"batchId":{batch_id}}}}}')
    with pytest.raises(SmsOutcomeUnknownError, match=r"outcome of send request #1 \(1 numbers\).*batchId"):
        hook.send("13800138000", "【签名】hi")
    assert send.call_count == 1


def test_float_batch_id_error_says_why(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    mock_token(requests_mock)
    requests_mock.post(url("send"), text='{"code":0,"message":"ok","data":{"batchId":3.9036632588910887e19}}')
    with pytest.raises(SmsOutcomeUnknownError, match="a float would lose digits"):
        hook.send("13800138000", "【签名】hi")


def test_send_vendor_error_code(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("send", fmt), [reply(code=40004, message="余额不足")])
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "【签名】hi")
    assert info.value.code == "40004"
    assert info.value.vendor_message == "余额不足"
    assert str(info.value) == "paasw_v2 rejected send request #1: code 40004 - vendor says: 余额不足"


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"status_code": 200, "text": "<html><body>maintenance</body></html>"}, "the reply is not JSON"),
        ({"status_code": 200, "text": ""}, "the reply is not JSON"),
        ({"json": {"code": 0, "message": "ok"}}, "the reply has no 'data' field"),
        ({"json": {"code": 0, "message": "ok", "data": None}}, "the reply has no 'data' field"),
        ({"json": {"code": 0, "message": "ok", "data": {}}}, "the reply has no 'batchId' field"),
        (
            {"json": {"code": 0, "message": "ok", "data": [1]}},
            "expected a JSON object holding 'batchId', got list",
        ),
        ({"json": {"message": "ok", "data": {"batchId": 1}}}, "the reply has no 'code' field"),
        ({"json": [{"code": 0}]}, "expected a JSON object holding 'code', got list"),
        ({"json": "ok"}, "expected a JSON object holding 'code', got str"),
    ],
)
def test_send_garbage_replies_are_clear_unknown_outcomes(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, response: dict[str, Any], problem: str
) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), [response])
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send("13800138000", "【签名】hi")
    assert problem in str(info.value)
    assert "outcome of send request #1 (1 numbers) is unknown: paasw_v2 send request #1" in str(info.value)
    assert info.value.mobiles == ("13800138000",)
    assert send.call_count == 1


def test_send_http_4xx_is_a_response_error(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), status_code=404, text="<html>Not Found</html>")
    with pytest.raises(SmsResponseError, match=r"send request #1: the vendor answered with an HTTP error \(HTTP 404"):
        hook.send("13800138000", "【签名】hi")
    assert send.call_count == 1


def test_send_html_502_is_an_unknown_outcome_not_retried(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    send = requests_mock.post(url("send", fmt), status_code=502, text=html)
    with pytest.raises(SmsOutcomeUnknownError, match="HTTP 502, body starts: '<html><head><title>502 Bad Gateway"):
        hook.send("13800138000", "【签名】hi")
    assert send.call_count == 1


def test_send_splits_2500_numbers_into_1000_1000_500(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), [reply({"batchId": n}) for n in (11, 12, 13)])
    numbers = [f"1390000{i:04d}" for i in range(2500)]
    receipts = hook.send(numbers, "【签名】hi")
    assert send.call_count == 3
    sent = [body_of(r, fmt)["mobile"].split(",") for r in send.request_history]
    assert [len(s) for s in sent] == [1000, 1000, 500]
    assert [m for s in sent for m in s] == numbers
    assert [r.batch_id for r in receipts] == ["11", "12", "13"]
    assert [list(r.mobiles) for r in receipts] == sent


def test_send_deduplicates_numbers(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    send = requests_mock.post(url("send", fmt), [reply({"batchId": 1})])
    hook.send("13800138000, +8613800138000；13900139000".replace("；", ";"), "【签名】hi")
    assert body_of(send.last_request, fmt)["mobile"] == "13800138000,13900139000"


def test_invalid_numbers_are_listed_and_nothing_is_sent(requests_mock: Any, hook: PaaswV2Hook) -> None:
    numbers = ["13800138000", "1380013800", "12800138000", "+1 415 555 0100", "13900139000"]
    with pytest.raises(SmsInvalidNumbersError) as info:
        hook.send(numbers, "【签名】hi")
    assert info.value.invalid == ["1380013800", "12800138000", "+1 415 555 0100"]
    message = str(info.value)
    assert "3 of 5 mobile numbers are invalid" in message
    for bad in info.value.invalid:
        assert repr(bad) in message
    assert "nothing was sent" in message
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- signature and product id


def test_signature_from_option_or_extra_is_not_doubled(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch, sign="顺丰"))
    mock_token(requests_mock)
    send = requests_mock.post(url("send"), [reply({"batchId": 1})])

    def msg(content: str, **options: Any) -> str:
        hook.send("13800138000", content, **options)
        return str(send.last_request.json()["msg"])

    assert msg("已签收") == "【顺丰】已签收"
    assert msg("已签收", signature="圆通") == "【圆通】已签收"
    assert msg("已签收", signature="【圆通】") == "【圆通】已签收"
    assert msg("【圆通】已签收") == "【圆通】已签收"
    assert msg("【圆通】已签收", signature="圆通") == "【圆通】已签收"


def test_a_text_without_any_signature_is_refused_before_anything_is_sent(
    requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    token = mock_token(requests_mock)
    send = requests_mock.post(url("send"), [reply({"batchId": 1})])
    for text in ("已签收", "已签收【】", "【已签收"):
        with pytest.raises(SmsInvalidRequestError, match="must contain a 【signature】"):
            hook.send("13800138000", text)
    assert (token.call_count, send.call_count) == (0, 0)


def test_a_signature_anywhere_in_the_text_is_enough(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    mock_token(requests_mock)
    send = requests_mock.post(url("send"), [reply({"batchId": 1})])
    hook.send("13800138000", "您的快件已签收【圆通】")
    assert send.last_request.json()["msg"] == "您的快件已签收【圆通】"


@pytest.mark.parametrize(
    ("extra", "option", "expected"),
    [("3", None, "3"), ("marketing", None, "3"), ("3", "verification", "1"), (None, None, "2")],
)
def test_product_id_from_extra_or_kind(
    requests_mock: Any, monkeypatch: pytest.MonkeyPatch, extra: str | None, option: str | None, expected: str
) -> None:
    extras = {"product_id": extra} if extra else {}
    hook = PaaswV2Hook(set_conn(monkeypatch, **extras))
    mock_token(requests_mock)
    send = requests_mock.post(url("send"), [reply({"batchId": 1})])
    hook.send("13800138000", "【签名】hi", kind=option)
    assert send.last_request.json()["productId"] == expected


def test_bad_product_id_extra_is_rejected_before_the_send(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch, product_id="7"))
    mock_token(requests_mock)
    send = requests_mock.post(url("send"), [reply({"batchId": 1})])
    with pytest.raises(SmsInvalidRequestError, match="unknown message kind '7'"):
        hook.send("13800138000", "【签名】hi")
    assert send.call_count == 0


def test_bad_format_extra_is_a_configuration_error(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch, "xml"))
    with pytest.raises(SmsConfigurationError, match="format"):
        hook.send("13800138000", "【签名】hi")
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- template


def test_template_on_the_wire(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    template = requests_mock.post(url("template", fmt), [reply({"batchId": int(WIDE)})])
    receipts = hook.send_template(
        "15050198156",
        "4289538897476608",
        {"code": "523648", "minute": "2"},
        kind="verification",
        ext_no="8866",
    )
    request = template.last_request
    assert request.method == "POST"
    assert request.url == url("template", fmt)
    body = body_of(request, fmt)
    params = body.pop("params")
    assert body == {
        "token": TOKEN,
        "mobile": "15050198156",
        "templateId": "4289538897476608",
        "productId": "1",
        "extNo": "8866",
        "time": "",
    }
    # An object, as the document's example shows: a JSON object in the json body, its JSON text in a form.
    if fmt == "form":
        assert isinstance(params, str)
        params = json.loads(params)
    assert params == {"code": "523648", "minute": "2"}
    assert [r.batch_id for r in receipts] == [WIDE]


def test_template_form_params_keep_chinese_readable(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch, "form"))
    mock_token(requests_mock, "form")
    template = requests_mock.post(url("template", "form"), [reply({"batchId": 1})])
    hook.send_template("15050198156", "42", {"name": "张三"})
    assert body_of(template.last_request, "form")["params"] == '{"name": "张三"}'


def test_template_without_params_sends_an_empty_object(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    mock_token(requests_mock)
    template = requests_mock.post(url("template"), [reply({"batchId": 1})])
    hook.send_template("15050198156", "42")
    assert template.last_request.json()["params"] == {}


@pytest.mark.parametrize("params", [["523648", "2"], "code=523648", 42])
def test_template_params_must_be_a_mapping(requests_mock: Any, hook: PaaswV2Hook, params: Any) -> None:
    with pytest.raises(SmsInvalidRequestError, match=f"template params must be a mapping.*got {type(params).__name__}"):
        hook.send_template("15050198156", "42", params)
    assert requests_mock.call_count == 0


def test_template_is_split_like_a_send(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    template = requests_mock.post(url("template", fmt), [reply({"batchId": 1}), reply({"batchId": 2})])
    receipts = hook.send_template([f"1390000{i:04d}" for i in range(1001)], "42", {"a": "b"})
    assert template.call_count == 2
    assert [len(r.mobiles) for r in receipts] == [1000, 1]


# ---------------------------------------------------------------------------- delivery reports


DELIVER_SAMPLE = (
    '{"code":0,"message":"请求成功","count":3,"data":['
    '{"mobile":"13900000001","chnRptDate":"2017-01-01 00:00:00","chnRptCode":"DB:0141",'
    '"batchId":"3903663258891088785"},'
    '{"mobile":"13900000002","chnRptDate":"2019-10-01 08:30:00","chnRptCode":"DELIVRD",'
    '"batchId":39036632588910887018},'
    '{"mobile":"13900000003","chnRptDate":"","chnRptCode":"delivrd","batchId":"1"}]}'
)


def test_reports_on_the_wire_and_parsed(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    deliver = requests_mock.post(url("deliver", fmt), text=DELIVER_SAMPLE)
    reports = hook.fetch_reports()
    request = deliver.last_request
    assert request.method == "POST"
    assert request.url == f"{BASE}/message/deliver"  # the document gives the pull in JSON only
    assert body_of(request, "json") == {"token": TOKEN}
    assert [(r.batch_id, r.mobile, r.status, r.code) for r in reports] == [
        ("3903663258891088785", "13900000001", FAILED, "DB:0141"),
        (WIDE, "13900000002", DELIVERED, "DELIVRD"),
        ("1", "13900000003", DELIVERED, "delivrd"),
    ]
    assert reports[0].reported_at == datetime(2016, 12, 31, 16, 0, tzinfo=timezone.utc)
    assert reports[1].reported_at == datetime(2019, 10, 1, 0, 30, tzinfo=timezone.utc)
    assert reports[2].reported_at is None
    assert reports[0].description == "operator code DB:0141"
    assert reports[1].description == "delivered"
    assert all(r.vendor == "paasw_v2" and r.is_final for r in reports)
    assert reports[1].raw is not None and reports[1].raw["chnRptCode"] == "DELIVRD"


@pytest.mark.parametrize(
    "body", ['{"code":0,"message":"ok","count":0,"data":[]}', '{"code":0,"message":"ok","data":null}']
)
def test_no_pending_reports(requests_mock: Any, hook: PaaswV2Hook, fmt: str, body: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("deliver", fmt), text=body)
    assert hook.fetch_reports() == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            '{"code":0,"message":"ok","data":{"mobile":"13900000001"}}',
            "'data' should be a list of objects, got dict",
        ),
        ('{"code":0,"message":"ok","data":"none"}', "'data' should be a list of objects, got str"),
        ('{"code":0,"message":"ok","data":[1,2]}', "'data' should be a list of objects"),
        (
            '{"code":0,"data":[{"mobile":"13900000001","chnRptDate":"2017-01-01 00:00:00","batchId":"1"}]}',
            "the reply has no 'chnRptCode' field",
        ),
        (
            '{"code":0,"data":[{"mobile":"13900000001","chnRptCode":"DELIVRD"}]}',
            "the reply has no 'batchId' field",
        ),
        ('{"code":0,"data":[{"batchId":"1","chnRptCode":"DELIVRD"}]}', "the reply has no 'mobile' field"),
        (
            '{"code":0,"data":[{"mobile":"1","batchId":1.5,"chnRptCode":"DELIVRD"}]}',
            "a float would lose digits",
        ),
        (
            '{"code":0,"data":[{"mobile":"1","batchId":"1","chnRptCode":"DELIVRD","chnRptDate":"2017/01/01"}]}',
            "matches none of the formats",
        ),
        ("<<not json>> upstream said: ok?", NOT_JSON),
        ('{"code":0,"data":[{"mobile":"1","batchId":NaN,"chnRptCode":"DELIVRD"}]}', NOT_JSON),
    ],
)
def test_report_garbage_is_a_clear_error(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, body: str, problem: str
) -> None:
    mock_token(requests_mock, fmt)
    deliver = requests_mock.post(url("deliver", fmt), text=body)
    with pytest.raises(SmsResponseError) as info:
        hook.fetch_reports()
    assert problem in str(info.value)
    assert "delivery report pull" in str(info.value)
    assert_attempts(hook, deliver, info.value, problem)


def test_one_bad_report_does_not_cost_the_good_ones(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(
        url("deliver", fmt),
        text='{"code":0,"count":3,"data":['
        '{"mobile":"13900000001","chnRptDate":"2017-01-01 00:00:00","chnRptCode":"DELIVRD","batchId":"7"},'
        '{"mobile":"13900000002","chnRptDate":"2017-01-01 00:00:00","chnRptCode":"DELIVRD","batchId":7.5},'
        '{"mobile":"13900000003","chnRptDate":"2017-01-01 00:00:00","chnRptCode":"DB:0141","batchId":"8"}]}',
    )
    with pytest.raises(SmsPartialResponseError) as info:
        hook.fetch_reports()
    error = info.value
    assert isinstance(error, SmsResponseError)
    reports = [r for r in error.records if isinstance(r, DeliveryReport)]
    assert len(reports) == len(error.records)
    assert [(r.batch_id, r.mobile, r.status) for r in reports] == [
        ("7", "13900000001", DELIVERED),
        ("8", "13900000003", FAILED),
    ]
    assert len(error.rejected) == 1
    item, reason = error.rejected[0]
    assert item == {
        "mobile": "13900000002",
        "chnRptDate": "2017-01-01 00:00:00",
        "chnRptCode": "DELIVRD",
        "batchId": Decimal("7.5"),
    }
    assert "a float would lose digits" in reason
    assert "1 of 3 records are malformed; first: bad report" in str(error)
    assert "delivery report pull" in str(error)


def test_one_bad_inbound_message_does_not_cost_the_good_ones(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(
        url("mo", fmt),
        text='{"code":0,"count":2,"data":[{"mobile":"15000000002","content":"好","replyDate":"2019-01-01 08:08:08"},'
        '{"mobile":"15000000003","replyDate":"2019-01-01 08:08:08"}]}',
    )
    with pytest.raises(SmsPartialResponseError) as info:
        hook.fetch_inbound()
    messages = [m for m in info.value.records if isinstance(m, InboundMessage)]
    assert len(messages) == len(info.value.records)
    assert [(m.mobile, m.content) for m in messages] == [("15000000002", "好")]
    assert info.value.rejected[0][1] == "the reply has no 'content' field"
    assert "1 of 2 records are malformed; first: bad inbound message" in str(info.value)


def test_report_reply_without_data_but_a_count_is_an_error(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    mock_token(requests_mock)
    requests_mock.post(url("deliver"), text='{"code":0,"message":"ok","count":2}')
    with pytest.raises(SmsResponseError, match="data"):
        hook.fetch_reports()


@pytest.mark.parametrize(
    ("count", "records"),
    [("5", 2), ("1", 2), ("0", 1), ('"3"', 2), ('"many"', 1), ("-1", 1), ("2.5", 2), ("5", 0)],
)
def task_log(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """What reached the task log: Airflow's task-SDK logger prints through structlog, stdlib goes to caplog."""
    out, err = capsys.readouterr()
    return "\n".join([caplog.text, out, err])


@pytest.mark.parametrize(
    ("count", "records"),
    [("5", 2), ("1", 2), ("0", 1), ('"3"', 2), ('"many"', 1), ("-1", 1), ("2.5", 2), ("5", 0)],
)
def test_a_count_that_disagrees_with_the_records_is_a_warning_and_the_records_are_kept(
    requests_mock: Any,
    hook: PaaswV2Hook,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    count: str,
    records: int,
) -> None:
    """A pull hands its records out once: a ``count`` that does not match them cannot bring others back,
    and failing would only hold up the ones that came; the task log says what the reply claimed."""
    mock_token(requests_mock, fmt)
    record = '{"mobile":"1390000000%d","chnRptDate":"2017-01-01 00:00:00","chnRptCode":"DELIVRD","batchId":"7"}'
    data = ",".join(record % i for i in range(records))
    requests_mock.post(url("deliver", fmt), text=f'{{"code":0,"message":"ok","count":{count},"data":[{data}]}}')
    inbound = '{"mobile":"15000000002","content":"好","replyDate":"2019-01-01 08:08:08"}'
    requests_mock.post(url("mo", fmt), text=f'{{"code":0,"count":{count},"data":[{inbound}]}}')
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        reports = hook.fetch_reports()
        log = task_log(caplog, capsys)
        assert "delivery report pull: " in log and f"the {records} records of the reply are kept" in log, log
        messages = hook.fetch_inbound()
        log = task_log(caplog, capsys)
    assert [r.mobile for r in reports] == [f"1390000000{i}" for i in range(records)]
    assert [m.content for m in messages] == ["好"]
    agrees = count == "1"  # with the one inbound message
    assert ("inbound pull: " in log) is not agrees, log


def test_a_count_that_agrees_logs_nothing(
    requests_mock: Any,
    hook: PaaswV2Hook,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("deliver", fmt), text='{"code":0,"count":0,"data":[]}')
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert hook.fetch_reports() == []
    assert "kept" not in task_log(caplog, capsys)


def test_report_html_502_is_retried_then_a_clear_error(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch), retries=1)
    mock_token(requests_mock)
    html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    deliver = requests_mock.post(url("deliver"), status_code=502, text=html)
    with pytest.raises(
        SmsResponseError,
        match=r"delivery report pull: failed after 2 attempts: HTTP 502 \(HTTP 502; body starts: .*502 Bad Gateway",
    ):
        hook.fetch_reports()
    assert deliver.call_count == 2


def test_report_vendor_error(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    requests_mock.post(url("deliver", fmt), [reply(code=40003, message="参数错误")])
    with pytest.raises(SmsVendorError, match="paasw_v2 rejected delivery report pull: code 40003"):
        hook.fetch_reports()


# ---------------------------------------------------------------------------- inbound


MO_SAMPLE = (
    '{"code":0,"message":"请求成功","count":3,"data":['
    '{"mobile":"15000000002","extNo":"1234567890","content":"收到短信了","replyDate":"2019-01-01 08:08:08"},'
    '{"mobile":"15000000003","extNo":8866,"content":"准时参加","replyDate":"2019-10-01 00:00:00"},'
    '{"mobile":"15000000004","content":"TD","replyDate":"2019-10-01 00:00:00"}]}'
)


def test_inbound_on_the_wire_and_parsed(requests_mock: Any, hook: PaaswV2Hook, fmt: str) -> None:
    mock_token(requests_mock, fmt)
    mo = requests_mock.post(url("mo", fmt), text=MO_SAMPLE)
    messages = hook.fetch_inbound()
    request = mo.last_request
    assert request.method == "POST"
    assert request.url == f"{BASE}/message/mo"
    assert body_of(request, "json") == {"token": TOKEN}
    assert [(m.mobile, m.content, m.ext_no) for m in messages] == [
        ("15000000002", "收到短信了", "1234567890"),
        ("15000000003", "准时参加", "8866"),
        ("15000000004", "TD", ""),
    ]
    assert messages[0].received_at == datetime(2019, 1, 1, 0, 8, 8, tzinfo=timezone.utc)
    assert messages[1].received_at == datetime(2019, 9, 30, 16, 0, tzinfo=timezone.utc)
    assert all(m.vendor == "paasw_v2" for m in messages)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            '{"code":0,"data":[{"mobile":"15000000002","replyDate":"2019-01-01 08:08:08"}]}',
            "the reply has no 'content' field",
        ),
        ('{"code":0,"data":[{"content":"hi"}]}', "the reply has no 'mobile' field"),
        ('{"code":0,"data":[{"mobile":"1","content":"hi","replyDate":"01/01/2019"}]}', "bad inbound message"),
        ('{"code":0,"data":{"mobile":"1"}}', "'data' should be a list of objects, got dict"),
        ("<html>502</html>", NOT_JSON),
    ],
)
def test_inbound_garbage_is_a_clear_error(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, body: str, problem: str
) -> None:
    mock_token(requests_mock, fmt)
    mo = requests_mock.post(url("mo", fmt), text=body)
    with pytest.raises(SmsResponseError) as info:
        hook.fetch_inbound()
    assert problem in str(info.value)
    assert "inbound pull" in str(info.value)
    assert_attempts(hook, mo, info.value, problem)


# ---------------------------------------------------------------------------- balance


@pytest.mark.parametrize(
    ("literal", "amount"),
    [
        ("532", Decimal(532)),
        ("25638.23", Decimal("25638.23")),
        ("0.10", Decimal("0.10")),
        ('"99.5"', Decimal("99.5")),
    ],
)
def test_balance_on_the_wire_and_exact(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, literal: str, amount: Decimal
) -> None:
    mock_token(requests_mock, fmt)
    balance = requests_mock.post(
        url("balance", fmt), text=f'{{"code":0,"message":"请求成功","data":{{"balance":{literal}}}}}'
    )
    result = hook.get_balance()
    request = balance.last_request
    assert request.method == "POST"
    assert request.url == url("balance", fmt)
    assert body_of(request, fmt) == {"token": TOKEN}
    assert isinstance(result.amount, Decimal)
    assert result.amount == amount
    assert str(result.amount) == str(amount)
    assert result.currency == ""
    assert result.vendor == "paasw_v2"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"code":0,"data":{"balance":"lots"}}', "balance 'lots' is not a number"),
        ('{"code":0,"data":{"balance":[1]}}', "is not a number"),
        ('{"code":0,"data":{}}', "the reply has no 'balance' field"),
        ('{"code":0,"data":532}', "expected a JSON object holding 'balance', got int"),
        ('{"code":0,"message":"ok"}', "the reply has no 'data' field"),
        ("balance=532", NOT_JSON),
        ('{"code":0,"data":{"balance":NaN}}', NOT_JSON),  # JSON has no NaN or Infinity
        ('{"code":0,"data":{"balance":-Infinity}}', NOT_JSON),
    ],
)
def test_balance_garbage_is_a_clear_error(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, body: str, problem: str
) -> None:
    mock_token(requests_mock, fmt)
    balance = requests_mock.post(url("balance", fmt), text=body)
    with pytest.raises(SmsResponseError) as info:
        hook.get_balance()
    assert problem in str(info.value)
    assert "paasw_v2 balance query" in str(info.value)
    assert_attempts(hook, balance, info.value, problem)


# ---------------------------------------------------------------------------- token refresh per endpoint


@pytest.mark.parametrize(
    "case",
    [
        (lambda h: h.get_balance(), "balance", {"balance": 1}),
        (lambda h: h.fetch_reports(), "deliver", []),
        (lambda h: h.fetch_inbound(), "mo", []),
        (lambda h: h.send("13800138000", "【签名】hi"), "send", {"batchId": 1}),
        (lambda h: h.send_template("13800138000", "42", {}), "template", {"batchId": 1}),
    ],
    ids=["balance", "deliver", "mo", "send", "template"],
)
def test_every_call_refreshes_a_dead_cached_token_once(
    requests_mock: Any, hook: PaaswV2Hook, fmt: str, case: tuple[Any, str, Any]
) -> None:
    call, path, good = case
    tokens = requests_mock.post(
        url("token", fmt),
        [reply({"expires_in": 7200, "token": "old-token-1"}), reply({"expires_in": 7200, "token": TOKEN})],
    )
    hook._new_token(hook._token_key())  # a token cached by an earlier task
    endpoint = requests_mock.post(url(path, fmt), [reply(code=40002, message="token无效或已过期"), reply(good)])
    call(hook)
    assert tokens.call_count == 2
    assert [
        body_of(r, fmt if path not in ("deliver", "mo") else "json")["token"] for r in endpoint.request_history
    ] == [
        "old-token-1",
        TOKEN,
    ]
