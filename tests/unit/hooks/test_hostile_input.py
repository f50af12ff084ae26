"""Hostile input refused before anything is sent, on every vendor, and one balance parser for all of them.

Each send refusal is checked with requests-mock holding no route at all: a request that went out would
fail with ``NoMockAddress`` instead of the error asserted, and ``call_count`` stays 0.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_sms.errors import SmsInvalidRequestError, SmsResponseError
from airflow_provider_sms.hooks import get_sms_hook
from airflow_provider_sms.hooks.base import SCHEDULE_SKEW, SmsHook
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook

#: per vendor: connection fields and a number it takes
CONNECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "paasw_v2": ({"login": "app", "password": "secret", "extra": {"sign": "S"}}, "13800138000"),
    "paasw_v1": ({"login": "app", "password": "secret", "extra": {"sign": "S"}}, "13800138000"),
    "intl": ({"login": "key", "password": "secret", "extra": {"sign": "S"}}, "8613800138000"),
    "account_md5": (
        {"host": "http://md5.example", "login": "acct", "password": "pw", "extra": {"sign": "S"}},
        "13800138000",
    ),
    "cloud_mas": (
        {"host": "https://mas.example", "login": "ap", "password": "key", "extra": {"ec_name": "E", "sign": "SIGN"}},
        "13800138000",
    ),
}
VENDORS = sorted(CONNECTIONS)
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def hook_for(vendor: str, monkeypatch: pytest.MonkeyPatch) -> tuple[SmsHook, str]:
    fields, mobile = CONNECTIONS[vendor]
    conn_id = f"hostile_{vendor}"
    conn = {"conn_type": f"sms_{vendor}", **fields, "extra": {"retry_wait": 0.01, **fields["extra"]}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return get_sms_hook(conn_id), mobile


# ---------------------------------------------------------------------------- 1. template_id=""


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("template_id", ["", "   "])
def test_empty_template_id_is_refused_on_every_vendor(
    vendor: str, template_id: str, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    """It used to send a message holding only the signature, even on vendors that have no templates."""
    hook, mobile = hook_for(vendor, monkeypatch)
    with pytest.raises(SmsInvalidRequestError, match="template_id is empty"):
        hook.plan_send([mobile], None, template_id=template_id)
    with pytest.raises(SmsInvalidRequestError, match="template_id is empty"):
        hook.send_template([mobile], template_id, None)
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- 2. empty or invisible text


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    "content",
    ["", " \t\n", *INVISIBLE, "".join(INVISIBLE), " \u200b\n\ufeff \u2060 "],
    ids=["empty", "whitespace", "zwsp", "zwnj", "zwj", "word-joiner", "bom", "all-invisible", "mixed"],
)
def test_text_with_nothing_visible_is_refused(
    vendor: str, content: str, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, mobile = hook_for(vendor, monkeypatch)
    with pytest.raises(SmsInvalidRequestError, match="message content is empty"):
        hook.send([mobile], content)
    assert requests_mock.call_count == 0


def test_text_with_invisible_characters_around_a_word_is_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, mobile = hook_for("paasw_v2", monkeypatch)
    (request,) = hook.plan_send([mobile], "\u200bhi\ufeff")
    assert request.content == "\u200bhi\ufeff"  # refused only when nothing else is there; never rewritten


def test_personalized_text_with_nothing_visible_is_refused(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, _ = hook_for("cloud_mas", monkeypatch)
    assert isinstance(hook, CloudMasHook)
    with pytest.raises(SmsInvalidRequestError, match="the message for 13800138001 is empty"):
        hook.send_personalized({"13800138000": "hi", "13800138001": "\u200b \u200d"})
    with pytest.raises(TypeError, match="the message for 13800138000 must be a str, got int"):
        hook.send_personalized({"13800138000": 123})  # type: ignore[dict-item]
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- 3. wrong types


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("mobiles", [None, 13800138000, 1.5])
def test_mobiles_of_the_wrong_type_is_a_type_error_naming_it(
    vendor: str, mobiles: Any, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, _ = hook_for(vendor, monkeypatch)
    with pytest.raises(TypeError, match=rf"mobiles must be a list of numbers .*got {type(mobiles).__name__}"):
        hook.send(mobiles, "hi")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("content", [123, b"hi", ["hi"]])
def test_content_of_the_wrong_type_is_a_type_error_naming_it(
    vendor: str, content: Any, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, mobile = hook_for(vendor, monkeypatch)
    with pytest.raises(TypeError, match=rf"content must be a str, got {type(content).__name__}"):
        hook.send([mobile], content)
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- 4. signature length


@pytest.mark.parametrize("signature", ["签" * 21, "【" + "签" * 21 + "】"])
def test_paasw_v1_signature_over_20_characters_is_refused(
    signature: str, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    """paasw-v1.md caps ``sign`` at 20; the other four documents give no signature limit, so none is made up."""
    hook, mobile = hook_for("paasw_v1", monkeypatch)
    with pytest.raises(SmsInvalidRequestError, match="21 characters; the sign field takes at most 20"):
        hook.send([mobile], "hi", signature=signature)
    with pytest.raises(SmsInvalidRequestError, match="21 characters"):
        hook.send_template([mobile], "T1", ["1"], signature=signature)
    assert requests_mock.call_count == 0
    assert len(hook.plan_send([mobile], "hi", signature="签" * 20)) == 1


# ---------------------------------------------------------------------------- 5. scheduled_at in the past


@pytest.mark.parametrize("vendor", ["paasw_v2", "intl"])  # the vendors that take a schedule
@pytest.mark.parametrize("ago", [timedelta(seconds=61), timedelta(hours=2), timedelta(days=400)])
def test_scheduled_at_in_the_past_is_refused(
    vendor: str, ago: timedelta, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, mobile = hook_for(vendor, monkeypatch)
    when = datetime.now(timezone.utc) - ago
    with pytest.raises(SmsInvalidRequestError, match=r"scheduled_at .* is in the past \(allowing 60 s for clock sk"):
        hook.send([mobile], "hi", scheduled_at=when)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("vendor", ["paasw_v2", "intl"])
def test_scheduled_at_within_the_clock_skew_allowance_is_planned(vendor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hook, mobile = hook_for(vendor, monkeypatch)
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(hook, "now", lambda: now)
    assert hook.plan_send([mobile], "hi", scheduled_at=now - SCHEDULE_SKEW)
    assert hook.plan_send([mobile], "hi", scheduled_at=now + timedelta(seconds=1))
    with pytest.raises(SmsInvalidRequestError, match="in the past"):
        hook.plan_send([mobile], "hi", scheduled_at=now - SCHEDULE_SKEW - timedelta(microseconds=1))


# ---------------------------------------------------------------------------- 6. one balance parser

#: (vendor, balance URL, method, the reply with ``{}`` where the balance literal goes)
BALANCE_REPLIES: dict[str, tuple[str, str, str]] = {
    "paasw_v2": ("POST", "http://openapi.gateway.paasw.com/message/balance", '{{"code":0,"data":{{"balance":{}}}}}'),
    "paasw_v1": ("GET", "http://openapi.gateway.paasw.com/sms/balance", '{{"code":"10000","balance":{}}}'),
    "intl": (
        "GET",
        "http://39.107.123.194:9118/api/v1/international/sms/balance",
        '{{"code":0,"data":{{"balance":{},"currencyCode":"CNY"}}}}',
    ),
    "account_md5": ("POST", "http://md5.example/api/v1/queryBalance", '{{"code":"00","data":{{"balance":{}}}}}'),
}


def mock_balance(requests_mock: rm.Mocker, vendor: str, literal: str) -> None:
    requests_mock.post(
        "http://openapi.gateway.paasw.com/message/token", json={"code": 0, "data": {"token": "T", "expires_in": 7200}}
    )
    requests_mock.get(
        "http://openapi.gateway.paasw.com/api/token", json={"code": "10000", "token": "T", "expires_in": 7200}
    )
    method, url, template = BALANCE_REPLIES[vendor]
    requests_mock.register_uri(method, url, text=template.format(literal))


@pytest.mark.parametrize("vendor", sorted(BALANCE_REPLIES))
@pytest.mark.parametrize(
    ("literal", "problem"),
    [
        ('"NaN"', "is not a number"),
        ('"nan"', "is not a number"),
        ('"sNaN"', "is not a number"),
        ('"Infinity"', "is not a number"),
        ('"-inf"', "is not a number"),
        ("1e400", "overflows"),
        ('"1e400"', "overflows"),
        ("1" + "0" * 400, "overflows"),
        ("true", "is not a number (bool)"),
        ("false", "is not a number (bool)"),
        ('"1_000"', "is not a number"),
        ('"12abc"', "is not a number"),
        ('"1.2.3"', "is not a number"),
        ('"\\u0661\\u0662"', "is not a number"),  # Arabic-Indic digits, which Decimal would read
        ('""', "is not a number"),
        ("[1]", "is not a number (list)"),
        ('{"amount": 1}', "is not a number (dict)"),
    ],
)
def test_balance_that_is_not_a_finite_number_is_a_response_error(
    vendor: str, literal: str, problem: str, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    """Before, paasw_v1/v2 and account_md5 took "NaN" or "Infinity" and ``min_balance`` then failed with a bare
    ``decimal.InvalidOperation``; 1e400 passed every vendor."""
    hook, _ = hook_for(vendor, monkeypatch)
    mock_balance(requests_mock, vendor, literal)
    with pytest.raises(SmsResponseError, match=re.escape(problem)) as info:
        hook.get_balance()
    assert f"{vendor} balance query" in str(info.value)


@pytest.mark.parametrize("vendor", sorted(BALANCE_REPLIES))
@pytest.mark.parametrize(
    ("literal", "amount"),
    [
        ("100.10", "100.10"),
        ('" 100.10 "', "100.10"),
        ("-5", "-5"),  # a postpaid account can owe
        ("0", "0"),
        ("1e300", "1E+300"),
        ('"2.5E3"', "2.5E+3"),
        ("39036632588910887018", "39036632588910887018"),
    ],
)
def test_balance_that_is_a_number_is_exact(
    vendor: str, literal: str, amount: str, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    hook, _ = hook_for(vendor, monkeypatch)
    mock_balance(requests_mock, vendor, literal)
    balance = hook.get_balance()
    assert isinstance(balance.amount, Decimal)
    assert str(balance.amount) == amount


@pytest.mark.parametrize("amount", [1.5, float("nan"), float("inf"), None, Decimal("NaN"), Decimal("-Infinity")])
def test_balance_parser_refuses_floats_and_non_finite_decimals(amount: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A float has already rounded the vendor's digits; a Decimal NaN can only come from some other parser."""
    hook, _ = hook_for("paasw_v2", monkeypatch)
    with pytest.raises(SmsResponseError, match=r"paasw_v2 balance query: balance .* is not a"):
        hook.balance_amount(amount)


# ------------------------------------------------------------------------------------------ message length


@pytest.mark.parametrize(
    ("text", "parts"),
    [("字" * 70, 1), ("字" * 71, 2), ("字" * 134, 2), ("字" * 135, 3), ("😀" * 35, 1), ("😀" * 36, 2)],
)
def test_parts_are_counted_in_utf16_units_70_for_one_67_each_beyond(text: str, parts: int) -> None:
    from airflow_provider_sms.numbers import message_parts

    assert message_parts(text) == parts


def test_a_text_above_max_parts_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook

    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_LONG",
        json.dumps({"conn_type": "sms_paasw_v2", "host": "http://gw.test", "login": "a", "password": "s" * 16}),
    )
    hook = PaaswV2Hook("sms_long")
    text = "字" * (10 * 67 - 3)  # with 【S】 exactly 10 parts: the default limit
    hook.check_parts(hook.signed_content(text, "S"))
    with pytest.raises(SmsInvalidRequestError, match=r"11 SMS parts for each number; more than max_parts=10"):
        hook.send("13800138000", text + "字", signature="S")
    with pytest.raises(SmsInvalidRequestError, match="max_parts=2"):
        hook.send("13800138000", "字" * 140, signature="S", max_parts=2)
    with pytest.raises(SmsInvalidRequestError, match="max_parts=10"):
        hook.send("13800138000", "字" * 1_000_000, signature="S")
    assert requests_mock.call_count == 0
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_LONG",
        json.dumps(
            {
                "conn_type": "sms_paasw_v2",
                "host": "http://gw.test",
                "login": "a",
                "password": "s",
                "extra": {"max_parts": 12},
            }
        ),
    )
    assert PaaswV2Hook("sms_long").check_parts("字" * (11 * 67)) == 11
