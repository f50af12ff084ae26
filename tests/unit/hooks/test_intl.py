"""IntlSmsHook against requests-mock: the wire format of every endpoint and every way a reply can go wrong."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from airflow_provider_sms.errors import (
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsPartialResponseError,
    SmsResponseError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.base import BALANCE, INBOUND, REPORTS, SEND, SEND_TEMPLATE
from airflow_provider_sms.hooks.intl import CODE_MEANINGS, IntlSmsHook

BASE = "http://gw.test:9118/api/v1/international/sms"
SEND_URL, STATUS_URL, BALANCE_URL = f"{BASE}/send", f"{BASE}/status", f"{BASE}/balance"
SECRET = "abc123"
APP_SECRET = "E99A18C428CB38D5F260853678922E03"  # the document's own example of MD5("abc123")
WIDE_ID = 39036632588910887018  # does not fit 64 bits
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def ok(data: Any) -> dict[str, Any]:
    return {"code": 0, "msg": "ok", "data": data}


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> IntlSmsHook:
    conn = {
        "conn_type": "sms_intl",
        "host": "http://gw.test:9118",
        "login": "10002",
        "password": SECRET,
        "extra": {"retry_wait": 0.01, "sign": "Acme"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMS_INTL_UNIT", json.dumps(conn))
    return IntlSmsHook("sms_intl_unit", retry_wait=0.01)


def assert_headers(request: Any) -> None:
    assert request.headers["appKey"] == "10002"
    assert request.headers["appSecret"] == APP_SECRET
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"


# ---------------------------------------------------------------------- send


def test_send_wire_format_and_receipt(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"msgId": "240924162017564896"}))
    when = datetime(2030, 1, 1, 0, 0, 2, tzinfo=timezone.utc)

    receipts = hook.send(
        ["+86 138-0013-8000", "002348031000010"], "验证码 279275", sender_id="Univasa", scheduled_at=when
    )

    assert requests_mock.call_count == 1
    sent = requests_mock.last_request
    assert sent.method == "POST"
    assert sent.url == SEND_URL
    assert_headers(sent)
    assert json.loads(sent.body.decode("utf-8")) == {
        "mobile": "8613800138000,2348031000010",
        "content": "【Acme】验证码 279275",
        "senderID": "Univasa",
        "sendTime": "20300101080002",  # Asia/Shanghai wall time
    }
    assert "【Acme】".encode() in sent.body  # UTF-8 on the wire, as the charset says
    assert len(receipts) == 1
    assert receipts[0].vendor == "intl"
    assert receipts[0].batch_id == "240924162017564896"
    assert receipts[0].mobiles == ("8613800138000", "2348031000010")
    assert receipts[0].submitted_at.tzinfo is not None


def test_send_minimal_body_has_no_optional_fields(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"msgId": WIDE_ID}))

    receipts = hook.send("8613800138000", "【Own】hello", signature="Ignored")

    assert requests_mock.last_request.json() == {"mobile": "8613800138000", "content": "【Own】hello"}
    assert receipts[0].batch_id == str(WIDE_ID)  # an integer wider than 64 bits stays exact


def test_sender_id_from_extra_and_option_wins(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    conn = {
        "conn_type": "sms_intl",
        "host": "http://gw.test:9118",
        "login": "10002",
        "password": SECRET,
        "extra": {"sender_id": "Default"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMS_INTL_SENDER", json.dumps(conn))
    hook = IntlSmsHook("sms_intl_sender")
    requests_mock.post(SEND_URL, json=ok({"msgId": "1"}))

    hook.send("8613800138000", "text", signature="S")
    assert requests_mock.last_request.json()["senderID"] == "Default"
    hook.send("8613800138000", "text", signature="S", sender_id="Chosen")
    assert requests_mock.last_request.json()["senderID"] == "Chosen"


def test_batches_split_at_1000_numbers(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, [{"json": ok({"msgId": str(n)})} for n in (1, 2, 3)])
    numbers = [f"2348031{n:06d}" for n in range(2500)]

    receipts = hook.send(numbers, "hi")

    assert requests_mock.call_count == 3
    sizes = [len(r.json()["mobile"].split(",")) for r in requests_mock.request_history]
    assert sizes == [1000, 1000, 500]
    assert [r.batch_id for r in receipts] == ["1", "2", "3"]
    assert [len(r.mobiles) for r in receipts] == [1000, 1000, 500]
    assert requests_mock.request_history[1].json()["mobile"].split(",")[0] == numbers[1000]


def test_invalid_numbers_rejected_before_any_request(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json=ok({"msgId": "1"}))
    with pytest.raises(SmsInvalidNumbersError) as info:
        hook.send(["8613800138000", "12345", "+86abc"], "hi")
    assert info.value.invalid == ["12345", "+86abc"]
    assert "nothing was sent" in str(info.value)
    assert requests_mock.call_count == 0


def test_content_without_signature_rejected_before_any_request(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    conn = {"conn_type": "sms_intl", "host": "http://gw.test:9118", "login": "10002", "password": SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_INTL_NOSIGN", json.dumps(conn))
    with pytest.raises(SmsInvalidRequestError, match="【signature】"):
        IntlSmsHook("sms_intl_nosign").send("8613800138000", "no signature here")
    assert requests_mock.call_count == 0


def test_unsupported_option_rejected(hook: IntlSmsHook, requests_mock: Any) -> None:
    with pytest.raises(SmsInvalidRequestError, match="ext_no"):
        hook.send("8613800138000", "hi", ext_no="12")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("code", [1001, 1003, 1006, 1007, 1009, 1011, 9999])
def test_send_vendor_error_carries_documented_meaning(hook: IntlSmsHook, requests_mock: Any, code: int) -> None:
    requests_mock.post(SEND_URL, json={"code": code, "msg": "Illegal cell phone"})
    with pytest.raises(SmsVendorError) as info:
        hook.send("8613800138000", "hi")
    assert info.value.code == str(code)
    assert info.value.meaning == CODE_MEANINGS[str(code)]
    assert CODE_MEANINGS[str(code)] in str(info.value)
    assert "Illegal cell phone" in str(info.value)
    assert requests_mock.call_count == 1


def test_insufficient_balance_is_named(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json={"code": 1009, "msg": "AmountNotEnough"})
    with pytest.raises(SmsVendorError, match="balance is insufficient"):
        hook.send("8613800138000", "hi")


def test_send_5xx_is_outcome_unknown_and_not_retried(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, text=HTML_502, status_code=502)
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1"):
        hook.send("8613800138000", "hi")
    assert requests_mock.call_count == 1


def test_send_read_timeout_is_outcome_unknown_and_not_retried(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, exc=requests.ReadTimeout)
    with pytest.raises(SmsOutcomeUnknownError, match="read timeout"):
        hook.send("8613800138000", "hi")
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"text": "<<not json>>", "status_code": 200}, "not JSON"),
        ({"json": {"msg": "ok", "data": {"msgId": "1"}}}, "'code'"),
        ({"json": ok({})}, "'msgId'"),
        ({"json": ok(None)}, "'msgId'"),
        ({"json": ok(["1"])}, "'msgId'"),
        (
            {"text": '{"code": 0, "msg": "ok", "data": {"msgId": 2.4092416201756e17}}'},
            "float would lose digits",
        ),
        ({"json": ok({"msgId": True})}, "not an id"),
        ({"json": [1, 2]}, "'code'"),
    ],
)
def test_send_garbage_replies_are_clear_errors(
    hook: IntlSmsHook, requests_mock: Any, reply: dict[str, Any], problem: str
) -> None:
    """An unreadable reply came after the send reached the vendor: outcome unknown, named, not resent."""
    requests_mock.post(SEND_URL, **reply)
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send("8613800138000", "hi")
    assert problem in str(info.value)
    assert "send request #1" in str(info.value)
    assert requests_mock.call_count == 1


# ---------------------------------------------------------------------- status (delivery reports)


def test_status_query_wire_format_and_parsing(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(
        STATUS_URL,
        json=ok(
            [
                {
                    "mobile": "2348031000010",
                    "msgId": WIDE_ID,
                    "timestamp": "20240924050907",
                    "status": 0,
                    "desc": "",
                    "errorCode": "DELIVRD",
                },
                {
                    "mobile": "2348031000011",
                    "msgId": "240924170907169917",
                    "timestamp": "202211042057",
                    "status": 2,
                    "desc": "",
                    "errorCode": "UNDELIV",
                },
                {
                    "mobile": "2348031000012",
                    "msgId": "240924170907169917",
                    "timestamp": "",
                    "status": 1,
                    "desc": "",
                    "errorCode": "",
                },
            ]
        ),
    )
    pairs = [
        (str(WIDE_ID), "2348031000010"),
        ("240924170907169917", "2348031000011"),
        ("240924170907169917", "2348031000012"),
    ]

    reports = hook.fetch_reports(pairs)

    sent = requests_mock.last_request
    assert (sent.method, sent.url) == ("POST", STATUS_URL)
    assert_headers(sent)
    assert sent.json() == {"data": [{"msgId": b, "mobile": m} for b, m in pairs]}
    delivered, failed, pending = reports
    assert delivered.batch_id == str(WIDE_ID)
    assert (delivered.mobile, delivered.status, delivered.code) == ("2348031000010", "delivered", "DELIVRD")
    assert delivered.reported_at == datetime(2024, 9, 23, 21, 9, 7, tzinfo=timezone.utc)
    assert (failed.status, failed.code) == ("failed", "UNDELIV")
    assert "UNDELIV" in failed.description
    assert failed.reported_at == datetime(2022, 11, 4, 12, 57, tzinfo=timezone.utc)  # 12-digit form
    assert (pending.status, pending.reported_at, pending.is_final) == ("pending", None, False)


def test_status_string_status_and_desc(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(
        STATUS_URL,
        json=ok(
            [
                {
                    "mobile": "2348031000010",
                    "msgId": "9",
                    "timestamp": "20240924050907",
                    "status": "2",
                    "desc": "Absent subscriber",
                    "errorCode": "16",
                }
            ]
        ),
    )
    (report,) = hook.fetch_reports([("9", "2348031000010")])
    assert (report.status, report.code, report.description) == ("failed", "16", "Absent subscriber")


def test_no_report_error_means_none_found(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(STATUS_URL, json={"code": 1012, "msg": "NoReportError"})
    assert hook.fetch_reports([("1", "2348031000010")]) == []
    assert requests_mock.call_count == 1


def test_other_status_errors_raise(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(STATUS_URL, json={"code": 9999, "msg": "other"})
    with pytest.raises(SmsVendorError, match="9999"):
        hook.fetch_reports([("1", "2348031000010")])


def test_1010_concerns_only_the_pairs_past_30_days(hook: IntlSmsHook, requests_mock: Any) -> None:
    """One old pair makes the vendor refuse the whole query: it is found by halving, and expired."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        pairs = request.json()["data"]
        if any(pair["mobile"] == "2348031000012" for pair in pairs):
            return {"code": 1010, "msg": "TimeSuperRange"}
        return {
            "code": 0,
            "msg": "ok",
            "data": [{**pair, "status": 0, "timestamp": "20261130101010"} for pair in pairs],
        }

    requests_mock.post(STATUS_URL, json=answer)
    pairs = [("1", f"234803100001{i}") for i in range(4)]
    reports = hook.fetch_reports(pairs)
    assert sorted((r.mobile, r.status) for r in reports) == [
        ("2348031000010", "delivered"),
        ("2348031000011", "delivered"),
        ("2348031000012", "expired"),
        ("2348031000013", "delivered"),
    ]
    assert requests_mock.call_count == 5  # [0-3] [0-1] [2-3] [2] [3]


@pytest.mark.parametrize("pairs", [None, []])
def test_no_pairs_no_request(hook: IntlSmsHook, requests_mock: Any, pairs: Any) -> None:
    assert hook.fetch_reports(pairs) == []
    assert requests_mock.call_count == 0


def test_status_query_split_at_500_pairs(hook: IntlSmsHook, requests_mock: Any) -> None:
    def echo(request: Any, context: Any) -> dict[str, Any]:
        return ok(
            [
                {**p, "timestamp": "20240924050907", "status": 0, "desc": "", "errorCode": "DELIVRD"}
                for p in request.json()["data"]
            ]
        )

    requests_mock.post(STATUS_URL, json=echo)
    pairs = [(str(n // 3), f"2348031{n:06d}") for n in range(1200)]

    reports = hook.fetch_reports(pairs)

    assert [len(r.json()["data"]) for r in requests_mock.request_history] == [500, 500, 200]
    assert [(r.batch_id, r.mobile) for r in reports] == pairs


def test_status_read_is_retried_after_html_502(hook: IntlSmsHook, requests_mock: Any) -> None:
    good = ok(
        [
            {
                "mobile": "2348031000010",
                "msgId": "1",
                "timestamp": "20240924050907",
                "status": 0,
                "desc": "",
                "errorCode": "DELIVRD",
            }
        ]
    )
    requests_mock.post(STATUS_URL, [{"text": HTML_502, "status_code": 502}, {"json": good}])
    assert [r.status for r in hook.fetch_reports([("1", "2348031000010")])] == ["delivered"]
    assert requests_mock.call_count == 2


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"mobile": "1"}, "should be a list"),
        (["x"], "should be a list"),
        ([{"mobile": "2348031000010", "status": 0, "timestamp": "20240924050907"}], "'msgId'"),
        ([{"msgId": "1", "status": 0, "timestamp": "20240924050907"}], "'mobile'"),
        ([{"msgId": "1", "mobile": "2348031000010", "timestamp": "20240924050907"}], "'status'"),
        ([{"msgId": "1", "mobile": "2348031000010", "status": 7, "timestamp": ""}], "not 0, 1 or 2"),
        ([{"msgId": "1", "mobile": "2348031000010", "status": True, "timestamp": ""}], "not 0, 1 or 2"),
        ([{"msgId": "1", "mobile": "2348031000010", "status": 0, "timestamp": "2024-09-24"}], "timestamp"),
        ([{"msgId": "1", "mobile": "2348031000010", "status": 0, "timestamp": "2024092405090"}], "timestamp"),
        ([{"msgId": "1", "mobile": "2348031000010", "status": 0, "timestamp": "20241324050907"}], "formats"),
        ([{"msgId": 1.5, "mobile": "2348031000010", "status": 0, "timestamp": ""}], "float"),
    ],
)
def test_status_garbage_is_clear_error(hook: IntlSmsHook, requests_mock: Any, data: Any, problem: str) -> None:
    requests_mock.post(STATUS_URL, json=ok(data))
    with pytest.raises(SmsResponseError) as info:
        hook.fetch_reports([("1", "2348031000010")])
    assert problem in str(info.value)


def test_status_non_json_is_retried_then_a_clear_error(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(STATUS_URL, text="<<not json>>")
    attempts = hook.retries + 1
    with pytest.raises(
        SmsResponseError,
        match=rf"failed after {attempts} attempts: the reply is not JSON \(HTTP 200; body starts: '<<not json>>'\)",
    ) as info:
        hook.fetch_reports([("1", "2348031000010")])
    assert info.value.status == 200
    assert requests_mock.call_count == attempts > 1


def test_status_non_json_then_a_good_reply(hook: IntlSmsHook, requests_mock: Any) -> None:
    item = {"mobile": "2348031000010", "msgId": "1", "timestamp": "20240924050907", "status": 0, "desc": ""}
    good = ok([{**item, "errorCode": "DELIVRD"}])
    requests_mock.post(STATUS_URL, [{"text": "<html>busy</html>"}, {"text": "Infinity"}, {"json": good}])
    assert [r.status for r in hook.fetch_reports([("1", "2348031000010")])] == ["delivered"]
    assert requests_mock.call_count == 3


# ---------------------------------------------------------------------- balance and test_connection


def test_balance_wire_format_and_decimal(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.get(
        BALANCE_URL,
        text='{"msg": "ok", "code": 0, "data": {"balance": 1234.56, "currencyName": "人民币", "currencyCode": "CNY"}}',
    )

    balance = hook.get_balance()

    sent = requests_mock.last_request
    assert (sent.method, sent.url) == ("GET", BALANCE_URL)
    assert_headers(sent)  # Content-Type too, although a GET has no body
    assert not sent.body
    assert balance.amount == Decimal("1234.56")
    assert isinstance(balance.amount, Decimal)
    assert balance.currency == "CNY"
    assert balance.vendor == "intl"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"currencyName": "人民币", "currencyCode": "CNY"}, "'balance'"),
        ({"balance": 1, "currencyName": "人民币"}, "'currencyCode'"),
        ({"balance": "lots", "currencyCode": "CNY"}, "not a number"),
        ({"balance": "NaN", "currencyCode": "CNY"}, "not a number"),
        ({"balance": True, "currencyCode": "CNY"}, "not a number"),
        ({"balance": [1], "currencyCode": "CNY"}, "not a number"),
        (None, "'balance'"),
    ],
)
def test_balance_garbage_is_clear_error(hook: IntlSmsHook, requests_mock: Any, data: Any, problem: str) -> None:
    requests_mock.get(BALANCE_URL, json=ok(data))
    with pytest.raises(SmsResponseError) as info:
        hook.get_balance()
    assert problem in str(info.value)


def test_balance_html_502_retried_then_clear_error(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.get(BALANCE_URL, text=HTML_502, status_code=502)
    with pytest.raises(SmsResponseError, match="HTTP 502") as info:
        hook.get_balance()
    assert "502 Bad Gateway" in str(info.value)
    assert requests_mock.call_count == hook.retries + 1


def test_balance_connection_error_retried(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.get(
        BALANCE_URL,
        [
            {"exc": requests.ConnectionError},
            {"json": ok({"balance": 5, "currencyName": "美元", "currencyCode": "USD"})},
        ],
    )
    assert hook.get_balance().currency == "USD"
    assert requests_mock.call_count == 2


def test_test_connection_queries_balance(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.get(BALANCE_URL, json=ok({"balance": 7, "currencyName": "人民币", "currencyCode": "CNY"}))
    ok_, message = hook.test_connection()
    assert ok_ is True
    assert "10002" in message
    assert "7 CNY" in message
    assert requests_mock.call_count == 1


def test_test_connection_reports_wrong_secret(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.get(BALANCE_URL, json={"code": 1003, "msg": "PasswordError"})
    ok_, message = hook.test_connection()
    assert ok_ is False
    assert "1003" in message
    assert "appSecret is wrong" in message


# ---------------------------------------------------------------------- features and secrets


def test_unsupported_features(hook: IntlSmsHook, requests_mock: Any) -> None:
    assert hook.supports(SEND) and hook.supports(REPORTS) and hook.supports(BALANCE)
    assert not hook.supports(INBOUND) and not hook.supports(SEND_TEMPLATE)
    with pytest.raises(SmsNotSupportedError, match="intl does not support inbound"):
        hook.fetch_inbound()
    with pytest.raises(SmsNotSupportedError, match="intl does not support template"):
        hook.send_template("8613800138000", "T1", {"code": "1"})
    assert requests_mock.call_count == 0


def test_app_secret_is_masked(hook: IntlSmsHook, monkeypatch: pytest.MonkeyPatch) -> None:
    masked: list[str] = []
    monkeypatch.setattr("airflow_provider_sms.hooks.intl.mask", masked.append)
    assert hook.app_secret == APP_SECRET
    assert APP_SECRET in masked


def test_secrets_never_in_errors_logs_or_records(
    hook: IntlSmsHook,
    requests_mock: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = [SECRET, APP_SECRET, APP_SECRET.lower(), hashlib.md5(SECRET.encode()).hexdigest()]
    requests_mock.post(SEND_URL, [{"json": {"code": 1003, "msg": "PasswordError"}}, {"json": ok({"msgId": "1"})}])
    requests_mock.get(BALANCE_URL, [{"text": HTML_502, "status_code": 502}] * 2 + [{"text": "<<not json>>"}])
    texts: list[str] = [repr(hook), repr(hook.config)]
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SmsVendorError) as vendor_error:
            hook.send("8613800138000", "hi")
        receipts = hook.send("8613800138000", "hi")
        with pytest.raises(SmsResponseError) as response_error:
            hook.get_balance()
        texts += [
            str(vendor_error.value),
            str(response_error.value),
            repr(receipts),
            json.dumps(receipts[0].to_dict(include_raw=True), default=str),
            hook.test_connection()[1],
        ]
    # Airflow's hook logger is structlog, rendered to the captured output; stdlib records land in caplog.
    captured = capsys.readouterr()
    log_text = caplog.text + "".join(str(r.args) for r in caplog.records) + captured.out + captured.err
    assert "retrying" in log_text  # the log was captured, so its absence of secrets means something
    for secret in secrets:
        assert secret not in log_text
        for text in texts:
            assert secret not in text


def _echo_status(malformed_mobile: str | None = None) -> Any:
    """A status endpoint that reports every pair it is asked about as delivered (one of them malformed)."""

    def echo(request: Any, context: Any) -> dict[str, Any]:
        return ok(
            [
                {**p, "timestamp": "20240924050907", "status": "?" if p["mobile"] == malformed_mobile else 0}
                for p in request.json()["data"]
            ]
        )

    return echo


def test_one_malformed_report_costs_no_other_query_its_reports(hook: IntlSmsHook, requests_mock: Any) -> None:
    """Three queries, one record of the second malformed: every query is made, and the error carries the
    good reports of all three (before, the first query's reports went with the exception)."""
    pairs = [(str(n // 3), f"2348031{n:06d}") for n in range(1200)]
    requests_mock.post(STATUS_URL, json=_echo_status(malformed_mobile=pairs[700][1]))

    with pytest.raises(SmsPartialResponseError) as caught:
        hook.fetch_reports(pairs)

    assert requests_mock.call_count == 3
    assert len(caught.value.records) == 1199
    assert [raw["mobile"] for raw, _ in caught.value.rejected] == [pairs[700][1]]


def test_a_sync_cuts_the_pairs_into_queries_once_and_stores_each_page(
    hook: IntlSmsHook, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pull_reports`` goes through ``query_reports``, the one place pairs are cut; each page is stored as it comes."""
    from airflow_provider_sms import pulling
    from airflow_provider_sms.store import SaveResult

    pairs = [(str(n // 3), f"2348031{n:06d}") for n in range(1200)]
    requests_mock.post(STATUS_URL, json=_echo_status(malformed_mobile=pairs[1100][1]))
    stored: list[int] = []
    quarantined: list[object] = []

    class Store:
        def expire_overdue(self, vendor: str, **_: Any) -> int:
            return 0

        def pending_pairs(self, vendor: str, batch_ids: Any, limit: int | None = None, **_: Any) -> list[Any]:
            return pairs[:limit]

        def save_reports(self, records: list[Any], **_: Any) -> SaveResult:
            stored.append(len(records))
            return SaveResult(len(records), 0, 0)

        def quarantine(self, bad: list[Any], **_: Any) -> None:
            quarantined.extend(raw for raw, _ in bad)

    def not_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pairs were cut into queries a second time")

    monkeypatch.setattr(hook, "pace_with", lambda store: None)
    monkeypatch.setattr(hook, "fetch_reports", not_again)

    result = pulling.pull_reports(hook, Store())  # type: ignore[arg-type]

    assert [len(r.json()["data"]) for r in requests_mock.request_history] == [500, 500, 200]
    assert (result.pulls, stored, result.quarantined) == (3, [500, 500, 199], 1)
    assert [raw["mobile"] for raw in quarantined] == [pairs[1100][1]]  # type: ignore[index]
