"""The cost arithmetic behind dry runs, ``max_cost`` and ``check_balance``: exact decimals, read as written."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from airflow_provider_sms.cost import estimate, parse_amount, render, total_parts
from airflow_provider_sms.errors import SmsConfigurationError, SmsVendorError
from airflow_provider_sms.hooks import hook_class_for_conn_type
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.sending import SendPolicy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            0.045,
            "0.045",
        ),  # a float by its shortest repr, never 0.04499999999999999833466546306226518936455249786376953125
        ("0.045", "0.045"),
        (" 12.50 ", "12.50"),
        ("+3", "3"),
        (7, "7"),
        (Decimal("1E+3"), "1E+3"),
        (0.1, "0.1"),
        (".5", "0.5"),
    ],
)
def test_amounts_are_read_exactly_as_written(value: object, expected: str) -> None:
    assert parse_amount(value, "price") == Decimal(expected)


@pytest.mark.parametrize(
    "value",
    ["-0.01", -1, "NaN", "Infinity", float("nan"), float("inf"), "1_000", "١", "0x10", "", "1e3", True, None, [1]],
)
def test_anything_else_is_refused_naming_the_setting(value: object) -> None:
    with pytest.raises(ValueError, match=r"^max_cost must be"):
        parse_amount(value, "max_cost")


def test_a_cost_is_exact_at_any_size_a_send_can_have() -> None:
    price = parse_amount(0.045, "price")
    assert estimate(total_parts(2499, 2), price) == Decimal("224.910")
    assert sum([price] * 3) == estimate(3, price) == Decimal("0.135")  # where floats give 0.13499999999999998
    # a million numbers of 10 parts at a price with 12 decimals: 19 significant digits, none rounded away
    assert estimate(total_parts(1_000_000, 10), Decimal("0.123456789012")) == Decimal("1234567.890120000000")
    assert estimate(0, price) == 0


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(Decimal("224.910"), "224.910"), (Decimal("1E+3"), "1000"), (Decimal("0E-7"), "0.0000000"), (Decimal(15), "15")],
)
def test_amounts_render_in_plain_notation_keeping_their_places(amount: Decimal, shown: str) -> None:
    assert render(amount) == shown


def test_max_cost_is_checked_when_the_policy_is_made() -> None:
    assert SendPolicy(max_cost=Decimal("50")).max_cost == Decimal("50")
    assert SendPolicy(max_cost="12.5").max_cost == Decimal("12.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_cost must be"):
        SendPolicy(max_cost="lots")  # type: ignore[arg-type]


def hook(monkeypatch: pytest.MonkeyPatch, conn_type: str, **extra: object) -> SmsHook:
    conn = {"conn_type": conn_type, "host": "https://gw.example.com", "login": "app", "password": "pw-0123456789"}
    extras = {"ec_name": "Acme", **extra} if conn_type == "sms_cloud_mas" else extra
    monkeypatch.setenv("AIRFLOW_CONN_SMS_PRICED", json.dumps({**conn, "extra": extras}))
    return hook_class_for_conn_type(conn_type)(sms_conn_id="sms_priced")


def test_price_and_currency_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    priced = hook(monkeypatch, "sms_paasw_v2", price_per_part=0.045, currency="cny")
    assert (priced.price_per_part, priced.currency) == (Decimal("0.045"), "CNY")
    unset = hook(monkeypatch, "sms_paasw_v2", price_per_part=None, currency=None)  # what an empty form saves
    assert (unset.price_per_part, unset.currency) == (None, "")
    with pytest.raises(SmsConfigurationError, match="'sms_priced': extra 'price_per_part' must be"):
        _ = hook(monkeypatch, "sms_intl", price_per_part="about 5 fen").price_per_part


@pytest.mark.parametrize(
    ("conn_type", "code", "insufficient"),
    [
        ("sms_intl", "1009", True),  # AmountNotEnough, from the document
        ("sms_intl", "1006", False),  # a content error: the message's problem, not the account's
        ("sms_paasw_v2", "40004", False),  # the simulator's code: the document lists none
        ("sms_paasw_v1", "10004", False),
        ("sms_account_md5", "07", False),
    ],
)
def test_only_a_documented_code_means_insufficient_balance(
    monkeypatch: pytest.MonkeyPatch, conn_type: str, code: str, insufficient: bool
) -> None:
    h = hook(monkeypatch, conn_type)
    assert h.is_insufficient_balance(SmsVendorError(h.vendor, code, "余额不足")) is insufficient
    assert not h.is_insufficient_balance(ValueError(code))


def test_each_hook_declares_its_not_accepted_codes() -> None:
    """What the failover part reads: codes that mean the vendor surely did not take the request, for the account."""
    intl = hook_class_for_conn_type("sms_intl")
    assert intl.insufficient_balance_codes <= intl.not_accepted_codes
    assert {"1005", "1009"} <= intl.not_accepted_codes and "1006" not in intl.not_accepted_codes
    assert hook_class_for_conn_type("sms_cloud_mas").not_accepted_codes == {"InvalidUsrOrPwd"}
    assert intl.balance_is_money and not hook_class_for_conn_type("sms_paasw_v2").balance_is_money
