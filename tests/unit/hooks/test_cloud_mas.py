"""CloudMasHook against requests-mock: the exact wire format, reply parsing, errors, caps and secrecy."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsTransportError,
    SmsVendorError,
)
from airflow_provider_sms.hooks import cloud_mas
from airflow_provider_sms.hooks.base import retry_after_seconds
from airflow_provider_sms.hooks.cloud_mas import RSPCOD_MEANINGS, CloudMasHook

BASE = "https://mas.example.com:28888"
CONN_ID = "sms_mas_unit"
EC_NAME = "测试企业"
AP_ID = "ap01"
SECRET = "s3cr3t-Mas-Key"
SIGN = "SIGNX01"
WIDE_ID = "123456789012345678901234"  # wider than 64 bits


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def wire(request: Any) -> dict[str, Any]:
    """The JSON object inside a request's base64 body."""
    body = request.body if isinstance(request.body, bytes) else request.body.encode("ascii")
    result: dict[str, Any] = json.loads(base64.b64decode(body, validate=True).decode("utf-8"))
    return result


def ok(group: Any = WIDE_ID) -> dict[str, Any]:
    return {"json": {"rspcod": "success", "mgsGroup": group, "success": True}}


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN_ID, **overrides: Any) -> None:
    extra: dict[str, Any] = {"ec_name": EC_NAME, "sign": SIGN, "retry_wait": 0.01}
    extra.update(overrides.pop("extra", {}))
    conn = {"conn_type": "sms_cloud_mas", "host": BASE, "login": AP_ID, "password": SECRET, "extra": extra}
    conn.update(overrides)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture(autouse=True)
def _fast_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> CloudMasHook:
    set_conn(monkeypatch)
    return CloudMasHook(CONN_ID)


def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Everything logged: Airflow's structlog writes task-hook logs to stdout, not to ``caplog``."""
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err


def numbers(count: int) -> list[str]:
    return [f"138{i:08d}" for i in range(count)]


# ------------------------------------------------------------------------------------------ connection


def test_class_attributes() -> None:
    assert CloudMasHook.conn_type == "sms_cloud_mas"
    assert CloudMasHook.hook_name == "SMS: China Mobile Cloud MAS (HTTPS)"
    assert CloudMasHook.vendor == "cloud_mas"
    assert CloudMasHook.default_host is None
    assert CloudMasHook.max_numbers_per_request == 5000
    assert CloudMasHook.supported_options == {"signature", "ext_no"}
    assert not CloudMasHook(CONN_ID).supports("balance")


def test_host_without_scheme_defaults_to_https(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, host="mas.example.com", port=28888)
    assert CloudMasHook(CONN_ID).config.base_url == BASE


def test_host_is_required(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, host="")
    with pytest.raises(SmsConfigurationError, match="no host"):
        CloudMasHook(CONN_ID).send("13800138000", "hi")
    assert requests_mock.call_count == 0


def test_missing_ec_name_is_named_before_any_request(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"ec_name": ""})
    hook = CloudMasHook(CONN_ID)
    with pytest.raises(SmsConfigurationError, match="ec_name"):
        hook.send("13800138000", "hi")
    with pytest.raises(SmsConfigurationError, match="ec_name"):
        hook.fetch_reports()
    assert requests_mock.call_count == 0


def test_missing_secret_key_is_named(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, password="")
    with pytest.raises(SmsConfigurationError, match="secretKey"):
        CloudMasHook(CONN_ID).fetch_inbound()
    assert requests_mock.call_count == 0


def test_missing_sign_fails_before_sending(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"sign": ""})
    with pytest.raises(SmsConfigurationError, match="signature code"):
        CloudMasHook(CONN_ID).send("13800138000", "hi")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("value", ["12ab", "1" * 21, "١٢"])
def test_bad_add_serial_extra_fails_before_sending(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, value: str
) -> None:
    set_conn(monkeypatch, extra={"add_serial": value})
    with pytest.raises(SmsInvalidRequestError, match="addSerial"):
        CloudMasHook(CONN_ID).send("13800138000", "hi")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("false", False),
        (False, False),
        ("0", False),
        ("true", True),
        (True, True),
        ("yes", True),
    ],
)
def test_verify_extra(monkeypatch: pytest.MonkeyPatch, value: Any, expected: bool) -> None:
    set_conn(monkeypatch, extra={} if value is None else {"verify": value})
    hook = CloudMasHook(CONN_ID)
    assert hook.tls_verify is expected
    assert hook.session.verify is expected


def test_verify_ca_bundle_path_is_passed_on_every_call(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, tmp_path: Any
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    set_conn(monkeypatch, extra={"verify": str(bundle)})
    # requests would let REQUESTS_CA_BUNDLE override session.verify: the hook passes verify per call
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    CloudMasHook(CONN_ID).send("13800138000", "hi")
    assert requests_mock.last_request.verify == str(bundle)


def test_verify_path_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, extra={"verify": "/no/such/ca.pem"})
    with pytest.raises(SmsConfigurationError, match="verify"):
        CloudMasHook(CONN_ID).tls_verify  # noqa: B018


def test_verify_off_warns_once_per_hook_and_is_sent_as_false(
    hook: CloudMasHook,
    requests_mock: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    with caplog.at_level(logging.WARNING):
        hook.send("13800138000", "one")
        hook.send("13800138001", "two")
    assert logs(caplog, capsys).count("verification is off") == 1
    assert all(r.verify is False for r in requests_mock.request_history)


# ------------------------------------------------------------------------------------------------ send


def test_send_wire_format_and_receipt(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    receipts = hook.send(["13800138000", "+86 139-0013-9000"], "您的验证码是1234")
    assert requests_mock.call_count == 1
    request = requests_mock.last_request
    assert request.method == "POST"
    assert request.url == f"{BASE}/sms/submit"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    mobiles = "13800138000,13900139000"
    content = "您的验证码是1234"
    assert wire(request) == {
        "ecName": EC_NAME,
        "apId": AP_ID,
        "mobiles": mobiles,
        "content": content,
        "sign": SIGN,
        "addSerial": "",
        "mac": md5(EC_NAME + AP_ID + SECRET + mobiles + content + SIGN),
    }
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt.vendor == "cloud_mas"
    assert receipt.batch_id == WIDE_ID
    assert receipt.mobiles == ("13800138000", "13900139000")
    assert receipt.submitted_at.tzinfo is not None
    assert SECRET not in json.dumps(receipt.to_dict(include_raw=True))


def test_mac_is_32_lower_case_hex(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    hook.send("13800138000", "x")
    mac = wire(requests_mock.last_request)["mac"]
    assert len(mac) == 32
    assert mac == mac.lower()
    int(mac, 16)


def test_send_options_override_sign_and_add_serial(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    hook.send("13800138000", "hi", signature="OTHER9", ext_no="0123")
    body = wire(requests_mock.last_request)
    assert body["sign"] == "OTHER9"
    assert body["addSerial"] == "0123"
    assert body["mac"] == md5(EC_NAME + AP_ID + SECRET + "13800138000" + "hi" + "OTHER9" + "0123")


def test_add_serial_extra_is_the_default(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"add_serial": "77"})
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    CloudMasHook(CONN_ID).send("13800138000", "hi")
    body = wire(requests_mock.last_request)
    assert body["addSerial"] == "77"
    assert body["mac"] == md5(EC_NAME + AP_ID + SECRET + "13800138000" + "hi" + SIGN + "77")


def test_integer_batch_id_of_any_width_is_exact(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(
        f"{BASE}/sms/submit",
        text='{"rspcod":"success","mgsGroup":39036632588910887018123,"success":true}',
    )
    assert hook.send("13800138000", "hi")[0].batch_id == "39036632588910887018123"


def test_msg_group_spelling_is_accepted(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", json={"rspcod": "success", "msgGroup": "abc-1", "success": True})
    assert hook.send("13800138000", "hi")[0].batch_id == "abc-1"


def test_msg_group_is_read_before_the_documents_mgs_group(hook: CloudMasHook, requests_mock: Any) -> None:
    """Real replies say msgGroup; the document's mgsGroup is only the fallback."""
    requests_mock.post(
        f"{BASE}/sms/submit",
        [
            {"json": {"rspcod": "success", "msgGroup": "real-1", "mgsGroup": "doc-1", "success": True}},
            {"json": {"rspcod": "success", "msgGroup": "", "mgsGroup": "doc-2", "success": True}},
            {"json": {"rspcod": "success", "mgsGroup": "doc-3", "success": True}},
        ],
    )
    assert [hook.send("13800138000", "hi")[0].batch_id for _ in range(3)] == ["real-1", "doc-2", "doc-3"]


def test_http_host_sends_to_norsubmit(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    """An HTTP account posts the same body to /sms/norsubmit; templates keep /sms/tmpsubmit."""
    http_base = "http://112.35.1.155:1992"
    set_conn(monkeypatch, host=http_base)
    hook = CloudMasHook(CONN_ID)
    norsubmit = requests_mock.post(f"{http_base}/sms/norsubmit", **ok())
    template = requests_mock.post(f"{http_base}/sms/tmpsubmit", **ok())
    hook.send("13800138000", "hi")
    hook.send_personalized({"13800138001": "您好"})
    hook.send_template("13800138002", "T1", ["1"])
    assert norsubmit.call_count == 2 and template.call_count == 1
    body = wire(norsubmit.request_history[0])
    assert body["mac"] == md5(EC_NAME + AP_ID + SECRET + "13800138000" + "hi" + SIGN + "")
    assert norsubmit.request_history[0].headers["Content-Type"] == "application/json;charset=utf-8"
    assert wire(norsubmit.request_history[1])["mobiles"] == ""
    assert [r.url for r in requests_mock.request_history] == [
        f"{http_base}/sms/norsubmit",
        f"{http_base}/sms/norsubmit",
        f"{http_base}/sms/tmpsubmit",
    ]


@pytest.mark.parametrize(("host", "path"), [("mas.example.com:28888", "/sms/submit"), (BASE, "/sms/submit")])
def test_https_or_schemeless_host_sends_to_submit(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, host: str, path: str
) -> None:
    set_conn(monkeypatch, host=host)
    submit = requests_mock.post(f"https://mas.example.com:28888{path}", **ok())
    CloudMasHook(CONN_ID).send("13800138000", "hi")
    assert submit.call_count == 1


def test_base64_wrapped_reply_is_accepted(hook: CloudMasHook, requests_mock: Any) -> None:
    reply = json.dumps({"rspcod": "success", "mgsGroup": WIDE_ID, "success": True}).encode()
    requests_mock.post(f"{BASE}/sms/submit", content=base64.b64encode(reply))
    assert hook.send("13800138000", "hi")[0].batch_id == WIDE_ID


def test_send_splits_at_5000_numbers(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", [ok("g1"), ok("g2"), ok("g3")])
    mobiles = numbers(12000)
    receipts = hook.send(mobiles, "hi")
    assert [r.batch_id for r in receipts] == ["g1", "g2", "g3"]
    sent = [wire(r)["mobiles"].split(",") for r in requests_mock.request_history]
    assert [len(chunk) for chunk in sent] == [5000, 5000, 2000]
    assert [m for chunk in sent for m in chunk] == mobiles
    assert [len(r.mobiles) for r in receipts] == [5000, 5000, 2000]


def test_exactly_5000_numbers_is_one_request(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    hook.send(numbers(5000), "hi")
    assert requests_mock.call_count == 1


def test_invalid_numbers_are_rejected_before_any_request(hook: CloudMasHook, requests_mock: Any) -> None:
    with pytest.raises(SmsInvalidNumbersError, match="12345") as info:
        hook.send(["13800138000", "12345", "not-a-number"], "hi")
    assert info.value.invalid == ["12345", "not-a-number"]
    assert requests_mock.call_count == 0


def test_empty_content_is_rejected(hook: CloudMasHook, requests_mock: Any) -> None:
    with pytest.raises(SmsInvalidRequestError, match="empty"):
        hook.send("13800138000", "  ")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("code", sorted(RSPCOD_MEANINGS))
def test_rspcod_errors_carry_their_meaning(hook: CloudMasHook, requests_mock: Any, code: str) -> None:
    requests_mock.post(f"{BASE}/sms/submit", json={"rspcod": code, "mgsGroup": "", "success": False})
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "hi")
    assert info.value.code == code
    assert info.value.meaning == RSPCOD_MEANINGS[code]
    assert code in str(info.value)
    assert RSPCOD_MEANINGS[code] in str(info.value)
    assert requests_mock.call_count == 1  # a vendor error is an answer: nothing is resent


def test_meanings_cover_the_documented_codes() -> None:
    assert set(RSPCOD_MEANINGS) == {
        "IllegalMac",
        "IllegalSignId",
        "InvalidMessage",
        "InvalidUsrOrPwd",
        "NoSignId",
        "TooManyMobiles",
    }
    assert "MAC" in RSPCOD_MEANINGS["IllegalMac"]
    assert "5000" in RSPCOD_MEANINGS["TooManyMobiles"]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"text": "<<not json>>"}, "not JSON"),
        ({"json": {"mgsGroup": "1", "success": True}}, "'rspcod'"),
        ({"json": {"rspcod": "success", "success": True}}, "mgsGroup"),
        ({"json": {"rspcod": "success", "mgsGroup": "", "success": True}}, "mgsGroup"),
        ({"text": '{"rspcod":"success","mgsGroup":3.9036632588910887e19,"success":true}'}, "float"),
        ({"json": {"rspcod": "success", "mgsGroup": "1", "success": False}}, "success is not true"),
        ({"json": ["rspcod", "success"]}, "JSON object"),
    ],
)
def test_garbage_send_replies_are_clear_errors(
    hook: CloudMasHook, requests_mock: Any, reply: dict[str, Any], problem: str
) -> None:
    """The request reached the vendor, so an unreadable reply leaves the outcome unknown (never resent)."""
    requests_mock.post(f"{BASE}/sms/submit", **reply)
    with pytest.raises(SmsOutcomeUnknownError, match=problem) as info:
        hook.send("13800138000", "hi")
    assert info.value.mobiles == ("13800138000",)
    assert "send request #1" in str(info.value)
    assert requests_mock.call_count == 1


def test_send_hit_by_html_502_is_outcome_unknown_and_not_resent(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(
        f"{BASE}/sms/submit",
        status_code=502,
        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    )
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1") as info:
        hook.send("13800138000", "hi")
    assert info.value.mobiles == ("13800138000",)
    assert requests_mock.call_count == 1


def test_send_read_timeout_is_outcome_unknown(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", exc=requests.ReadTimeout("slow"))
    with pytest.raises(SmsOutcomeUnknownError, match="read timeout"):
        hook.send("13800138000", "hi")
    assert requests_mock.call_count == 1


def test_send_connect_failure_is_retried(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", [{"exc": requests.ConnectTimeout("no route")}, ok()])
    assert hook.send("13800138000", "hi")[0].batch_id == WIDE_ID
    assert requests_mock.call_count == 2


def test_tls_error_is_a_transport_error_and_not_retried(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/report", exc=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(SmsTransportError, match="TLS"):
        hook.fetch_reports()
    assert requests_mock.call_count == 1


def test_unsupported_option_and_balance(hook: CloudMasHook, requests_mock: Any) -> None:
    with pytest.raises(SmsNotSupportedError, match="balance"):
        hook.get_balance()
    with pytest.raises(SmsInvalidRequestError, match="scheduled_at"):
        hook.send("13800138000", "hi", scheduled_at=datetime.now(timezone.utc) + timedelta(hours=1))
    with pytest.raises(SmsInvalidRequestError, match="ext_no"):
        hook.send("13800138000", "hi", ext_no="12a")
    assert requests_mock.call_count == 0


# -------------------------------------------------------------------------------------------- template


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["123456", 5], '["123456","5"]'),
        (("验证码",), '["验证码"]'),
        (None, '[""]'),
        ([], '[""]'),
        ('["a","b"]', '["a","b"]'),
    ],
)
def test_template_wire_format(hook: CloudMasHook, requests_mock: Any, params: Any, expected: str) -> None:
    requests_mock.post(f"{BASE}/sms/tmpsubmit", **ok())
    receipts = hook.send_template(["13800138000", "13800138001"], "tpl-9", params, ext_no="5")
    request = requests_mock.last_request
    assert request.method == "POST"
    assert request.url == f"{BASE}/sms/tmpsubmit"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    mobiles = "13800138000,13800138001"
    assert wire(request) == {
        "ecName": EC_NAME,
        "apId": AP_ID,
        "templateId": "tpl-9",
        "mobiles": mobiles,
        "params": expected,
        "sign": SIGN,
        "addSerial": "5",
        "mac": md5(EC_NAME + AP_ID + SECRET + "tpl-9" + mobiles + expected + SIGN + "5"),
    }
    assert receipts[0].batch_id == WIDE_ID


@pytest.mark.parametrize("params", [{"code": "1"}, "1234", '{"a":"b"}', [None], [True], [{"a": 1}]])
def test_bad_template_params_fail_before_sending(hook: CloudMasHook, requests_mock: Any, params: Any) -> None:
    with pytest.raises(SmsInvalidRequestError, match="params"):
        hook.send_template("13800138000", "tpl-9", params)
    assert requests_mock.call_count == 0


def test_template_vendor_error(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/tmpsubmit", json={"rspcod": "IllegalSignId", "mgsGroup": "", "success": False})
    with pytest.raises(SmsVendorError, match="invalid signature code"):
        hook.send_template("13800138000", "tpl-9", ["1"])


def test_template_splits_at_5000(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/tmpsubmit", **ok())
    hook.send_template(numbers(5001), "tpl-9", ["1"])
    assert [len(wire(r)["mobiles"].split(",")) for r in requests_mock.request_history] == [5000, 1]


# ---------------------------------------------------------------------------------------- many-to-many


def test_personalized_wire_format(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    receipts = hook.send_personalized({"18840310111": "你好！中国！", "+86 176 4031 0111": "你好！世界！"})
    body = wire(requests_mock.last_request)
    content = '{"18840310111":"你好！中国！","17640310111":"你好！世界！"}'
    assert body == {
        "ecName": EC_NAME,
        "apId": AP_ID,
        "mobiles": "",
        "content": content,
        "sign": SIGN,
        "addSerial": "",
        "mac": md5(EC_NAME + AP_ID + SECRET + "" + content + SIGN + ""),
    }
    assert json.loads(body["content"]) == {"18840310111": "你好！中国！", "17640310111": "你好！世界！"}
    assert len(receipts) == 1
    assert receipts[0].mobiles == ("18840310111", "17640310111")


def test_personalized_splits_below_1000(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", [ok("a"), ok("b")])
    messages = {m: f"text {i}" for i, m in enumerate(numbers(1500))}
    receipts = hook.send_personalized(messages)
    sizes = [len(json.loads(wire(r)["content"])) for r in requests_mock.request_history]
    assert sizes == [999, 501]
    assert [r.batch_id for r in receipts] == ["a", "b"]
    assert [len(r.mobiles) for r in receipts] == [999, 501]


def test_personalized_invalid_numbers_rejected_before_sending(hook: CloudMasHook, requests_mock: Any) -> None:
    with pytest.raises(SmsInvalidNumbersError, match="999"):
        hook.send_personalized({"13800138000": "a", "999": "b"})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ({"13800138000": "a", "+8613800138000": "b"}, "twice"),
        ({"13800138000": ""}, "empty"),
        ({}, "no messages"),
        (["13800138000"], "mapping"),
    ],
)
def test_personalized_bad_input(hook: CloudMasHook, requests_mock: Any, messages: Any, problem: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match=problem):
        hook.send_personalized(messages)
    assert requests_mock.call_count == 0


def test_personalized_same_text_for_the_same_number_is_merged(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", **ok())
    hook.send_personalized({"13800138000": "a", "+8613800138000": "a"})
    assert json.loads(wire(requests_mock.last_request)["content"]) == {"13800138000": "a"}


def test_personalized_outcome_unknown_names_the_request(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/submit", status_code=503, text="busy")
    with pytest.raises(SmsOutcomeUnknownError, match="personalized send request #1"):
        hook.send_personalized({"13800138000": "a"})


# ----------------------------------------------------------------------------------------------- pulls


REPORTS = [
    {
        "reportStatus": "DELIVRD",
        "mobile": "13800138000",
        "submitDate": "20240102030400",
        "receiveDate": "20240102030405",
        "errorCode": "DELIVRD",
        "msgGroup": WIDE_ID,
    },
    {
        "reportStatus": "UNDELIV",
        "mobile": "13800138001",
        "submitDate": "20240102030400",
        "receiveDate": "20240102030410",
        "errorCode": "DB:0140",
        "msgGroup": WIDE_ID,
    },
]


@pytest.mark.parametrize(("path", "call"), [("/sms/report", "fetch_reports"), ("/sms/deliver", "fetch_inbound")])
def test_pull_wire_format(hook: CloudMasHook, requests_mock: Any, path: str, call: str) -> None:
    requests_mock.post(f"{BASE}{path}", json=[])
    assert getattr(hook, call)() == []
    request = requests_mock.last_request
    assert request.method == "POST"
    assert request.url == f"{BASE}{path}"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    assert wire(request) == {"ecName": EC_NAME, "apId": AP_ID, "secretKey": SECRET}


def test_reports_are_parsed(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/report", json=REPORTS)
    delivered, failed = hook.fetch_reports()
    assert delivered.batch_id == WIDE_ID
    assert delivered.mobile == "13800138000"
    assert delivered.status == "delivered"
    assert delivered.code == "DELIVRD"
    assert delivered.reported_at == datetime(2024, 1, 1, 19, 4, 5, tzinfo=timezone.utc)
    assert failed.status == "failed"
    assert failed.code == "DB:0140"
    assert "DB:0140" in failed.description
    assert failed.reported_at == datetime(2024, 1, 1, 19, 4, 10, tzinfo=timezone.utc)
    assert failed.raw == REPORTS[1]


def test_report_without_error_code_uses_the_status(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/report", json=[{**REPORTS[1], "errorCode": "", "reportStatus": "EXPIRED"}])
    assert hook.fetch_reports()[0].code == "EXPIRED"


def test_report_with_integer_group_id(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(
        f"{BASE}/sms/report",
        text='[{"reportStatus":"DELIVRD","mobile":"13800138000","submitDate":"20240102030400",'
        '"receiveDate":"20240102030405","errorCode":"","msgGroup":39036632588910887018}]',
    )
    assert hook.fetch_reports()[0].batch_id == "39036632588910887018"


def test_base64_wrapped_pull_reply(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/report", text=base64.b64encode(json.dumps(REPORTS).encode()).decode())
    assert len(hook.fetch_reports()) == 2
    assert requests_mock.call_count == 1  # base64-wrapped JSON is readable: not retried as garbage


def test_inbound_is_parsed(hook: CloudMasHook, requests_mock: Any) -> None:
    item = {
        "smsContent": "退订",
        "mobile": "13800138000",
        "sendTime": "2024-01-02 03:04:05",
        "addSerial": "1065012",
    }
    requests_mock.post(f"{BASE}/sms/deliver", json=[item])
    (message,) = hook.fetch_inbound()
    assert message.vendor == "cloud_mas"
    assert message.mobile == "13800138000"
    assert message.content == "退订"
    assert message.ext_no == "1065012"
    assert message.received_at == datetime(2024, 1, 1, 19, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("path", "reply", "problem"),
    [
        ("/sms/report", {"text": "<html>oops</html>"}, "not JSON"),
        ("/sms/report", {"json": {"data": []}}, "JSON list"),
        ("/sms/report", {"json": ["x"]}, "list of objects"),
        ("/sms/report", {"json": [{k: v for k, v in REPORTS[0].items() if k != "msgGroup"}]}, "'msgGroup'"),
        ("/sms/report", {"json": [{**REPORTS[0], "receiveDate": "2024-01-02"}]}, "bad report"),
        ("/sms/report", {"json": [{**REPORTS[0], "msgGroup": 1.5}]}, "bad report"),
        (
            "/sms/deliver",
            {"json": [{"mobile": "13800138000", "sendTime": "2024-01-02 03:04:05"}]},
            "'smsContent'",
        ),
        (
            "/sms/deliver",
            {"json": [{"mobile": "1", "smsContent": "x", "sendTime": "20240102"}]},
            "bad inbound",
        ),
    ],
)
def test_garbage_pull_replies_are_clear_errors(
    hook: CloudMasHook, requests_mock: Any, path: str, reply: dict[str, Any], problem: str
) -> None:
    requests_mock.post(f"{BASE}{path}", **reply)
    call = hook.fetch_reports if path == "/sms/report" else hook.fetch_inbound
    with pytest.raises(SmsResponseError, match=problem) as info:
        call()
    if problem == "not JSON":  # unreadable: retried like a 5xx, then named with the attempts
        assert f"failed after {hook.retries + 1} attempts: the reply is not JSON (HTTP 200" in str(info.value)
        assert requests_mock.call_count == hook.retries + 1 > 1
    else:  # readable JSON, even a wrong one, is an answer: not retried
        assert requests_mock.call_count == 1


def test_pull_vendor_error(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/deliver", json={"rspcod": "InvalidUsrOrPwd", "mgsGroup": "", "success": False})
    with pytest.raises(SmsVendorError, match="wrong ecName, apId or secretKey") as info:
        hook.fetch_inbound()
    assert info.value.code == "InvalidUsrOrPwd"


def test_pull_retries_html_502_then_succeeds(hook: CloudMasHook, requests_mock: Any) -> None:
    html = {"status_code": 502, "text": "<html><title>502 Bad Gateway</title></html>"}
    requests_mock.post(f"{BASE}/sms/report", [html, html, {"json": REPORTS}])
    assert len(hook.fetch_reports()) == 2
    assert requests_mock.call_count == 3


def test_pull_gives_up_after_retries(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/sms/report", status_code=502, text="<html>502 Bad Gateway</html>")
    with pytest.raises(SmsResponseError, match="4 attempts"):
        hook.fetch_reports()
    assert requests_mock.call_count == 4


def test_pull_429_waits_for_retry_after(
    hook: CloudMasHook, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(CloudMasHook, "retry_sleep", staticmethod(slept.append))
    requests_mock.post(
        f"{BASE}/sms/report",
        [{"status_code": 429, "text": "too many", "headers": {"Retry-After": "5"}}, {"json": REPORTS}],
    )
    assert len(hook.fetch_reports()) == 2
    assert len(slept) == 1
    assert 5.0 <= slept[0] < 5.5  # the server's Retry-After, not the short test backoff
    assert requests_mock.call_count == 2


def test_pulls_keep_to_the_interval(hook: CloudMasHook, requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.4)
    monkeypatch.setattr(CloudMasHook, "pull_margin", 0.1)
    requests_mock.post(f"{BASE}/sms/report", json=[])
    requests_mock.post(f"{BASE}/sms/deliver", json=[])
    start = time.monotonic()
    hook.fetch_reports()
    hook.fetch_inbound()  # another endpoint: its own slot
    assert time.monotonic() - start < 0.4
    hook.fetch_reports()
    assert time.monotonic() - start >= 0.5


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 0.0), ("", 0.0), ("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("9999", 30.0), ("soon", 0.0)],
)
def test_retry_after_parsing(header: str | None, expected: float) -> None:
    assert retry_after_seconds(header, 30.0) == expected


def test_retry_after_http_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=10)
    assert 8.0 <= retry_after_seconds(format_datetime(when, usegmt=True), 30.0) <= 10.0


# --------------------------------------------------------------------------------------------- secrets


def test_secret_and_mac_never_logged_or_in_errors(
    hook: CloudMasHook,
    requests_mock: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    masked: list[str] = []
    monkeypatch.setattr(cloud_mas.redaction, "remember_digest", masked.append)
    requests_mock.post(f"{BASE}/sms/submit", json={"rspcod": "IllegalMac", "mgsGroup": "", "success": False})
    requests_mock.post(f"{BASE}/sms/report", status_code=502, text="<html>bad gateway</html>")
    requests_mock.post(f"{BASE}/sms/deliver", text="not json at all")
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for call in (
            lambda: hook.send("13800138000", "hi"),
            hook.fetch_reports,
            hook.fetch_inbound,
        ):
            with pytest.raises(Exception) as info:  # each call raises a different error
                call()
            errors.append(f"{info.value!s} {info.value!r}")
    sent_mac = wire(requests_mock.request_history[0])["mac"]
    pull_body = requests_mock.request_history[1].body
    pull_body = pull_body.decode() if isinstance(pull_body, bytes) else pull_body
    assert masked == [sent_mac]  # the MAC is remembered for redaction when computed
    logged = logs(caplog, capsys)
    text = logged + " ".join(errors) + repr(hook.config)
    for secret in (SECRET, md5(SECRET), sent_mac, pull_body):
        assert secret not in text
    assert "attempt 1 failed" in logged  # the log was captured: retries are logged, without the body
    assert "IllegalMac" in text


# ------------------------------------------------------------------------------------- test_connection


def test_test_connection_checks_what_it_can(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/", status_code=404, text="<html>404</html>")
    ok_, message = hook.test_connection()
    assert ok_ is True
    assert "HTTP 404" in message
    assert "TLS verification off" in message
    assert "NOT checked" in message
    assert SECRET not in message
    assert requests_mock.call_count == 1
    assert requests_mock.last_request.method == "GET"
    assert requests_mock.last_request.verify is False


def test_test_connection_5xx_still_proves_reachability(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/", status_code=503, text="busy")
    ok_, message = hook.test_connection()
    assert ok_ is True
    assert "HTTP 503" in message


def test_test_connection_requires_sign(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"sign": ""})
    ok_, message = CloudMasHook(CONN_ID).test_connection()
    assert ok_ is False
    assert "'sign'" in message
    assert requests_mock.call_count == 0


def test_test_connection_requires_ec_name(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_conn(monkeypatch, extra={"ec_name": ""})
    ok_, message = CloudMasHook(CONN_ID).test_connection()
    assert ok_ is False
    assert "ec_name" in message


def test_test_connection_unreachable(hook: CloudMasHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/", exc=requests.exceptions.SSLError("certificate verify failed"))
    ok_, message = hook.test_connection()
    assert ok_ is False
    assert "TLS error" in message
