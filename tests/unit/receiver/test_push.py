"""The push receiver's pure parts: body decoding, the vendors' envelopes and answers, the hooks' record
parsing of pushed records, the allow-list, and keeping the secret out of query strings and logs."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_sms.hooks.account_md5 import AccountMd5Hook
from airflow_provider_sms.hooks.intl import IntlSmsHook
from airflow_provider_sms.hooks.paasw_v1 import PaaswV1Hook
from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook
from airflow_provider_sms.receiver import app as receiver_app
from airflow_provider_sms.receiver.__main__ import RedactQueryFilter, redact_query
from airflow_provider_sms.receiver.push import (
    INBOUND,
    REPORTS,
    PushRejected,
    decode_body,
    media_type,
    push_format,
    push_items,
)
from airflow_provider_sms.records import DELIVERED, FAILED, PENDING

#: each vendor's push format, as its hook carries it
PUSH_FORMATS = {hook.vendor: hook.push for hook in (PaaswV2Hook, PaaswV1Hook, IntlSmsHook, AccountMd5Hook)}


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for vendor in ("paasw_v2", "paasw_v1", "intl", "account_md5"):
        conn = {"conn_type": f"sms_{vendor}", "host": "http://gw.example", "login": "app", "password": "secret"}
        monkeypatch.setenv(f"AIRFLOW_CONN_SMS_{vendor.upper()}", json.dumps(conn))


# ---------------------------------------------------------------------- envelopes


@pytest.mark.parametrize(
    ("vendor", "body", "count"),
    [
        ("paasw_v2", {"count": 2, "data": [{"batchId": "1"}, {"batchId": "2"}]}, 2),
        ("paasw_v2", {"count": 0, "data": []}, 0),
        ("paasw_v2", {"count": 0}, 0),
        ("paasw_v2", {"count": 1, "data": {"batchId": "1"}}, 1),  # one object where a list belongs
        ("paasw_v2", {"count": "2", "data": [{"batchId": "1"}, {"batchId": "2"}]}, 2),  # a count as digits
        ("paasw_v1", [{"biz_id": "1", "extra": [[[{"deep": [[]]}]]]}], 1),  # nested, within the cap
        ("paasw_v2", [{"batchId": "1"}], 1),
        ("paasw_v1", [{"biz_id": "1"}, {"biz_id": "2"}, {"biz_id": "3"}], 3),
        ("paasw_v1", {"code": "10000", "data": [{"biz_id": "1"}]}, 1),
        ("paasw_v1", {"biz_id": "1", "phone_number": "13800138000"}, 1),
        ("intl", {"msgId": "1", "mobile": "86138", "status": 0}, 1),
        ("intl", [{"msgId": "1"}, {"msgId": "2"}], 2),
        ("account_md5", {"sendId": "1", "mobile": "135****9831"}, 1),
        ("account_md5", {}, 1),  # one record; the hook then names its missing fields
    ],
)
def test_items_take_every_shape_the_documents_show(vendor: str, body: Any, count: int) -> None:
    data = json.dumps(body).encode()
    assert len(push_items(PUSH_FORMATS[vendor], REPORTS, data, "application/json")) == count


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"count": 3}', "announces 3 records"),
        (b'{"count": 1, "data": "x"}', "should be a list"),
        (b"[1]", "record #1 of 1 is not a JSON object"),
        (b'[{"batchId": "1"}, []]', "record #2 of 2"),
        (b'"text"', "JSON object or list"),
        (b"", "empty"),
        (b"{", "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"count": 5, "data": []}', "announces 5 records but 'data' carries 0"),
        (b'{"count": 1, "data": [{"batchId": "1"}, {"batchId": "2"}]}', "announces 1 records but 'data' carries 2"),
        (b'{"count": "1", "data": []}', "announces 1 records"),
        (b'{"count": 1.0, "data": [{"batchId": "1"}]}', "'count' should be a non-negative integer"),
        (b'{"count": true, "data": [{"batchId": "1"}]}', "'count' should be a non-negative integer"),
        (b"[" * 2000 + b"]" * 2000, "nests more than 32 levels"),
        (b"[" * 33 + b"]" * 33, "nests more than 32 levels"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, problem: str) -> None:
    with pytest.raises(PushRejected) as caught:
        push_items(PUSH_FORMATS["paasw_v2"], REPORTS, body, "application/json")
    assert caught.value.status == 400
    assert problem in caught.value.problem


def test_media_types_and_charsets() -> None:
    assert media_type("Application/JSON; charset=UTF-8") == ("application/json", "utf-8")
    assert media_type(None) == ("", "utf-8")
    assert media_type('text/plain; charset="gbk"') == ("text/plain", "gbk")
    v2, md5 = PUSH_FORMATS["paasw_v2"], PUSH_FORMATS["account_md5"]
    for accepted in ("application/json", "text/plain", "", "application/vnd.sms+json"):
        assert decode_body(v2, b'{"count": 0}', accepted) == {"count": 0}
    for refused in ("application/xml", "multipart/form-data", "application/x-www-form-urlencoded"):
        with pytest.raises(PushRejected) as caught:
            decode_body(v2, b"{}", refused)
        assert caught.value.status == 415
    with pytest.raises(PushRejected) as caught:
        decode_body(v2, b"{}", "application/json; charset=no-such-codec")
    assert caught.value.status == 415
    # a GBK-encoded push is read as GBK when it says so, and refused as UTF-8 when it does not
    gbk = json.dumps({"mobile": "13800138000", "content": "收到"}, ensure_ascii=False).encode("gbk")
    assert decode_body(md5, gbk, "application/json;charset=GBK")["content"] == "收到"
    with pytest.raises(PushRejected):
        decode_body(md5, gbk, "application/json")
    # form posts only where the vendor's API is forms
    form = decode_body(md5, b"mobile=135****9831&content=%E5%A5%BD&extNo=", "application/x-www-form-urlencoded")
    assert form == {"mobile": "135****9831", "content": "好", "extNo": ""}


def test_json_is_read_exactly() -> None:
    payload = decode_body(PUSH_FORMATS["paasw_v2"], b'{"batchId": 39036632588910887018, "x": 1.10}', "application/json")
    assert payload["batchId"] == 39036632588910887018 and payload["x"] == Decimal("1.10")


def test_push_format_by_connection_type() -> None:
    assert push_format("sms_paasw_v2") is PUSH_FORMATS["paasw_v2"]
    assert push_format("sms_cloud_mas") is None
    assert push_format("postgres") is None
    assert push_format(None) is None
    assert PUSH_FORMATS["intl"].kinds == frozenset({REPORTS})
    assert PUSH_FORMATS["account_md5"].kinds == frozenset({REPORTS, INBOUND})


def test_answers_per_vendor() -> None:
    intl, v1, v2, md5 = (PUSH_FORMATS[v] for v in ("intl", "paasw_v1", "paasw_v2", "account_md5"))
    assert (intl.ok().status, intl.ok().body) == (200, {"code": 0, "msg": "ok"})
    # intl re-pushes on a non-zero code: a store failure answers 200 with 9999 so that its client reads it
    assert (intl.not_stored().status, intl.not_stored().body["code"]) == (200, 9999)
    assert intl.refused(401, "x").body["code"] == 1003 and intl.refused(403, "x").body["code"] == 1004
    assert intl.refused(400, "x").body["code"] == 1001
    assert v1.ok().body["code"] == "10000" and v1.not_stored().status == 503
    assert v2.ok().body["code"] == 0 and v2.not_stored().status == 503
    assert md5.ok().status == 200 and md5.not_stored().status == 503


# ---------------------------------------------------------------------- the hooks read pushed records


def test_intl_push_status_1_is_failed_while_the_query_status_1_is_pending() -> None:
    hook = IntlSmsHook("sms_intl")
    record = {"mobile": "99121244155", "msgId": "240924170907169917", "timestamp": "202409240509", "errorCode": "16"}
    assert hook.report_from_record({**record, "status": 0}, pushed=True).status == DELIVERED
    assert hook.report_from_record({**record, "status": 1}, pushed=True).status == FAILED
    assert hook.report_from_record({**record, "status": 2}, pushed=True).status == FAILED  # the §5.5 sample
    assert hook.report_from_record({**record, "status": 1}).status == PENDING  # the §4.5 query meaning
    pushed = hook.report_from_record({**record, "status": 2, "timestamp": "20240924050907"}, pushed=True)
    assert pushed.reported_at is not None and pushed.reported_at.isoformat() == "2024-09-23T21:09:07+00:00"
    assert pushed.code == "16" and pushed.batch_id == "240924170907169917"
    for bad in (3, "x", True, 0.0):
        with pytest.raises(ValueError):
            hook.report_from_record({**record, "status": bad}, pushed=True)


def test_the_other_hooks_read_pushed_records_with_their_pull_code() -> None:
    v2 = PaaswV2Hook("sms_paasw_v2").report_from_record(
        {
            "mobile": "13900000001",
            "chnRptDate": "2017-01-01 00:00:00",
            "chnRptCode": "DB:0141",
            "batchId": 3903663258891088785,
        },
        pushed=True,
    )
    assert (v2.status, v2.batch_id, v2.code) == (FAILED, "3903663258891088785", "DB:0141")
    v1 = PaaswV1Hook("sms_paasw_v1").report_from_record(
        {"phone_number": "13900000001", "report_time": "2017-01-01 00:00:00", "success": True, "code": "10000",
         "message": "请求成功", "sms_size": "1", "biz_id": "39036632588910887018", "send_time": "2017-01-01 00:00:00"},
        pushed=True,
    )  # fmt: skip
    assert (v1.status, v1.batch_id, v1.mobile) == (DELIVERED, "39036632588910887018", "13900000001")
    md5 = AccountMd5Hook("sms_account_md5")
    report = md5.report_from_record({"sendId": "t-1", "mobile": "135****9831", "times": "2019-04-12 17:57:08",
                                     "status": "DELIVRD"}, pushed=True)  # fmt: skip
    assert (report.status, report.mobile, report.batch_id) == (DELIVERED, "135****9831", "t-1")
    mo = md5.inbound_from_record(
        {"mobile": "139****1234", "content": "端午节快乐", "times": "2019-04-12 17:57:08", "extNo": 10}
    )
    assert (mo.ext_no, mo.content) == ("10", "端午节快乐")
    inbound = PaaswV1Hook("sms_paasw_v1").inbound_from_record(
        {"phone_number": "18612345678", "send_time": "2017-09-01 00:00:00", "content": "内容", "sign": "签名",
         "sequence_id": 1234567890},
        pushed=True,
    )  # fmt: skip
    assert inbound.mobile == "18612345678" and inbound.received_at is not None


# ---------------------------------------------------------------------- settings, allow-list, secrets


def test_settings_come_from_the_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert receiver_app.ReceiverSettings() == receiver_app.ReceiverSettings(None, "sms_", 1024 * 1024)
    monkeypatch.setenv("AIRFLOW__SMS__CALLBACK_STORE_CONN_ID", "warehouse_pg")
    monkeypatch.setenv("AIRFLOW__SMS__CALLBACK_MAX_BODY_BYTES", "2048")
    settings = receiver_app.ReceiverSettings.from_config()
    assert (settings.store_conn_id, settings.store_table_prefix, settings.max_body_bytes) == (
        "warehouse_pg",
        "sms_",
        2048,
    )
    app = receiver_app.create_app(max_body_bytes=10, store_table_prefix="t_")
    assert app.state.settings == receiver_app.ReceiverSettings("warehouse_pg", "t_", 10)
    with pytest.raises(ValueError, match="positive"):
        receiver_app.ReceiverSettings(max_body_bytes=0)


def test_the_read_timeout_is_ten_seconds_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert receiver_app.ReceiverSettings().read_timeout == receiver_app.DEFAULT_READ_TIMEOUT == 10.0
    monkeypatch.setenv("AIRFLOW__SMS__CALLBACK_READ_TIMEOUT", "2.5")
    assert receiver_app.ReceiverSettings.from_config().read_timeout == 2.5
    assert receiver_app.create_app(read_timeout=4).state.settings.read_timeout == 4
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="read_timeout must be positive"):
            receiver_app.ReceiverSettings(read_timeout=bad)


@pytest.mark.parametrize(
    ("spec", "client", "allowed"),
    [
        (None, "203.0.113.9", True),
        ("", "203.0.113.9", True),
        ("203.0.113.0/24", "203.0.113.9", True),
        ("203.0.113.0/24", "198.51.100.1", False),
        (" 198.51.100.1 , 203.0.113.9 ", "203.0.113.9", True),
        (["203.0.113.9"], "203.0.113.9", True),
        ("203.0.113.9", "::ffff:203.0.113.9", True),  # IPv4-mapped, as dual-stack sockets report it
        ("2001:db8::/32", "2001:db8::1", True),
        ("2001:db8::/32", "203.0.113.9", False),
        ("203.0.113.9", None, False),
        ("203.0.113.9", "testclient", False),
        ("203.0.113.9, bogus", "203.0.113.9", False),  # a broken list fails closed
        (",", "203.0.113.9", False),
    ],
)
def test_allow_list(spec: Any, client: str | None, allowed: bool) -> None:
    assert receiver_app._client_allowed(spec, client, "c") is allowed


def test_the_secret_is_taken_out_of_the_query_string() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    middleware = receiver_app._HideSecret(app)
    scope = {"type": "http", "query_string": b"a=1&secret=s%2Fx&b=2"}
    asyncio.run(middleware(scope, None, None))
    assert scope["query_string"] == b"a=1&secret=***&b=2"
    assert seen[receiver_app._SECRET_SCOPE_KEY] == ["s/x"]
    scope = {"type": "http", "query_string": b"secret=a&secret=b"}
    asyncio.run(middleware(scope, None, None))
    assert scope[receiver_app._SECRET_SCOPE_KEY] == ["a", "b"]
    untouched = {"type": "http", "query_string": b"a=1"}
    asyncio.run(middleware(untouched, None, None))
    assert untouched == {"type": "http", "query_string": b"a=1"}
    lifespan = {"type": "lifespan"}
    asyncio.run(middleware(lifespan, None, None))
    assert lifespan == {"type": "lifespan"}


def test_standalone_access_log_filter() -> None:
    assert redact_query("/sms/callbacks/c/reports?secret=abc&x=1") == "/sms/callbacks/c/reports?secret=***&x=1"
    assert redact_query("/sms/callbacks/c/reports?Token=abc") == "/sms/callbacks/c/reports?Token=***"
    assert redact_query("/sms/health") == "/sms/health"
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", "/sms/callbacks/c/reports?secret=abc", "1.1", 200), None,
    )  # fmt: skip
    assert RedactQueryFilter().filter(record)
    assert "abc" not in record.getMessage() and "secret=***" in record.getMessage()


# ---------------------------------------------------------------------- field types


#: per vendor, kind: a good record and the text fields its parser reads
_TYPED_RECORDS: dict[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]] = {
    ("paasw_v2", REPORTS): (
        {"batchId": "1", "mobile": "13800138000", "chnRptDate": "2024-05-01 16:00:00", "chnRptCode": "DELIVRD"},
        ("mobile", "chnRptCode"),
    ),
    ("paasw_v2", INBOUND): (
        {"mobile": "13800138000", "extNo": "12", "replyDate": "2024-05-01 16:00:00", "content": "好"},
        ("mobile", "content", "extNo"),
    ),
    ("paasw_v1", REPORTS): (
        {
            "phone_number": "13800138000",
            "report_time": "2024-05-01 16:00:00",
            "code": "4",
            "message": "失败",
            "biz_id": "1",
        },
        ("phone_number", "code", "message"),
    ),
    ("paasw_v1", INBOUND): (
        {"phone_number": "13800138000", "send_time": "2024-05-01 16:00:00", "content": "好"},
        ("phone_number", "content"),
    ),
    ("intl", REPORTS): (
        {
            "mobile": "8613800138000",
            "msgId": "1",
            "timestamp": "202405011600",
            "status": 2,
            "desc": "x",
            "errorCode": "UNDELIV",
        },
        ("mobile", "desc", "errorCode"),
    ),
    ("account_md5", REPORTS): (
        {"sendId": "t-1", "mobile": "135****9831", "times": "2024-05-01 16:00:00", "status": "DELIVRD"},
        ("mobile", "status"),
    ),
    ("account_md5", INBOUND): (
        {"mobile": "135****9831", "content": "好", "times": "2024-05-01 16:00:00", "extNo": "10"},
        ("mobile", "content", "extNo"),
    ),
    ("cloud_mas", REPORTS): (
        {
            "msgGroup": "g1",
            "mobile": "13800138000",
            "reportStatus": "UNDELIV",
            "errorCode": "MK:0001",
            "receiveDate": "20240501160000",
        },
        ("mobile", "reportStatus", "errorCode"),
    ),
    ("cloud_mas", INBOUND): (
        {"mobile": "13800138000", "smsContent": "好", "sendTime": "2024-05-01 16:00:00", "addSerial": "12"},
        ("mobile", "smsContent", "addSerial"),
    ),
}


def _typed_hook(vendor: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow_provider_sms.hooks import get_sms_hook

    if vendor == "cloud_mas":
        conn = {"conn_type": "sms_cloud_mas", "host": "https://gw.example", "login": "ec", "password": "k",
                "extra": {"ap_id": "ap", "sign": "s"}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_SMS_CLOUD_MAS", json.dumps(conn))
    return get_sms_hook(f"sms_{vendor}")


@pytest.mark.parametrize(("vendor", "kind"), list(_TYPED_RECORDS))
@pytest.mark.parametrize(
    "bad", [{"a": 1}, [1], True, False, Decimal("1.5"), {}], ids=["object", "list", "true", "false", "float", "empty"]
)
def test_a_text_field_of_another_json_type_is_refused_never_stored_as_a_repr(
    vendor: str, kind: str, bad: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_sms.errors import SmsPartialResponseError, SmsResponseError

    hook = _typed_hook(vendor, monkeypatch)
    good, fields = _TYPED_RECORDS[(vendor, kind)]
    parse = hook.report_from_record if kind == REPORTS else hook.inbound_from_record
    parse(good)  # the good record parses
    for name in fields:
        with pytest.raises(SmsResponseError) as caught:
            parse({**good, name: bad}, pushed=True)
        assert repr(name) in caught.value.problem and "should be a string or an integer" in caught.value.problem
        # a pull or push of the bad record with a good one: the good one parses, the bad one is rejected
        with pytest.raises(SmsPartialResponseError) as partial:
            hook.parse_pulled(kind, [good, {**good, name: bad}])
        assert len(partial.value.records) == 1 and len(partial.value.rejected) == 1


@pytest.mark.parametrize(("vendor", "kind"), list(_TYPED_RECORDS))
def test_text_fields_take_strings_and_integers(vendor: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _typed_hook(vendor, monkeypatch)
    good, fields = _TYPED_RECORDS[(vendor, kind)]
    parse = hook.report_from_record if kind == REPORTS else hook.inbound_from_record
    record = parse({**good, fields[0]: 13800138000})
    assert record.mobile == "13800138000"
    for name in fields[1:]:
        parse({**good, name: 12})  # a code or extension sent as a JSON number
