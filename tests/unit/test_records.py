"""The records every hook returns: exact through XCom (JSON), UTC-only times, string ids, Decimal money."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sms.records import (
    DELIVERED,
    FAILED,
    PENDING,
    Balance,
    DeliveryReport,
    InboundMessage,
    SendReceipt,
)

WIDE_ID = "39036632588910887018"  # wider than 64 bits, as the paasw documents show
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _xcom(data: dict[str, Any]) -> dict[str, Any]:
    """What XCom does to a value: JSON out and back in."""
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


def _receipt() -> SendReceipt:
    return SendReceipt(
        "paasw_v2",
        WIDE_ID,
        ("13800138000", "13900139000"),
        datetime(2024, 1, 2, 3, 4, 5, 123456, timezone.utc),
        raw={"batchId": int(WIDE_ID)},
    )


def _report(status: str = DELIVERED) -> DeliveryReport:
    return DeliveryReport(
        vendor="paasw_v2",
        batch_id=WIDE_ID,
        mobile="13800138000",
        status=status,  # type: ignore[arg-type]
        code="DELIVRD",
        description="delivered",
        reported_at=datetime(2024, 1, 2, 8, 0, tzinfo=SHANGHAI),
        raw={"chnRptCode": "DELIVRD"},
    )


def _inbound() -> InboundMessage:
    return InboundMessage(
        "paasw_v2", "13800138000", "收到，准时参加", datetime(2024, 1, 2, 0, 0, tzinfo=timezone.utc), "8866"
    )


def _balance() -> Balance:
    return Balance("intl", Decimal("25638.23"), "USD", raw={"balance": "25638.23"})


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("make", [_receipt, _report, _inbound, _balance])
def test_round_trip_through_json_is_exact(make: Any) -> None:
    record = make()
    data = record.to_dict()
    restored = type(record).from_dict(_xcom(data))
    assert restored == record
    assert restored.to_dict() == data


def test_receipt_to_dict_is_plain_json_types() -> None:
    data = _receipt().to_dict()
    assert data == {
        "vendor": "paasw_v2",
        "batch_id": WIDE_ID,
        "mobiles": ["13800138000", "13900139000"],
        "submitted_at": "2024-01-02T03:04:05.123456+00:00",
        "already_accepted": False,
    }


def test_receipt_mobiles_become_a_tuple_again() -> None:
    restored = SendReceipt.from_dict(_xcom(_receipt().to_dict()))
    assert restored.mobiles == ("13800138000", "13900139000")
    assert isinstance(restored.mobiles, tuple)
    hash(restored)  # records must stay hashable (sets of receipts)
    given_a_list = SendReceipt("v", "1", ["13800138000"], datetime(2024, 1, 1, tzinfo=timezone.utc))  # type: ignore[arg-type]
    assert given_a_list.mobiles == ("13800138000",)


def test_wide_ids_stay_exact_strings() -> None:
    receipt = SendReceipt.from_dict(_xcom(_receipt().to_dict()))
    assert receipt.batch_id == WIDE_ID
    assert isinstance(receipt.batch_id, str)
    assert int(receipt.batch_id) > 2**64
    report = DeliveryReport.from_dict(_xcom(_report().to_dict()))
    assert report.batch_id == WIDE_ID


def test_balance_decimal_is_exact_through_json() -> None:
    balance = Balance("paasw_v2", Decimal("0.10"))
    data = _xcom(balance.to_dict())
    assert data["amount"] == "0.10"  # a string: a JSON float would not keep 0.10 exact
    restored = Balance.from_dict(data)
    assert restored.amount == Decimal("0.10")
    assert str(restored.amount) == "0.10"
    assert isinstance(restored.amount, Decimal)


def test_balance_amount_given_as_int_float_or_text_becomes_decimal() -> None:
    assert Balance("x", 532).amount == Decimal(532)  # type: ignore[arg-type]
    assert Balance("x", 0.1).amount == Decimal("0.1")  # type: ignore[arg-type]
    assert Balance("x", "25638.23").amount == Decimal("25638.23")  # type: ignore[arg-type]
    assert Balance("x", Decimal("1.5"), "CNY").currency == "CNY"
    assert Balance("x", Decimal(1)).currency == ""


def test_balance_amount_that_is_not_a_number_is_rejected() -> None:
    with pytest.raises(ArithmeticError):
        Balance("x", "lots")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- times


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="naive"):
        SendReceipt("paasw_v2", "1", ("13800138000",), naive)
    with pytest.raises(ValueError, match="naive"):
        DeliveryReport("paasw_v2", "1", "13800138000", DELIVERED, "DELIVRD", "", naive)
    with pytest.raises(ValueError, match="naive"):
        InboundMessage("paasw_v2", "13800138000", "hi", naive)


def test_naive_datetime_string_is_rejected_by_from_dict() -> None:
    data = _receipt().to_dict()
    data["submitted_at"] = "2024-01-02T03:04:05"
    with pytest.raises(ValueError, match="naive"):
        SendReceipt.from_dict(data)


def test_non_utc_times_are_converted_to_utc() -> None:
    report = _report()  # 08:00 in Shanghai
    assert report.reported_at == datetime(2024, 1, 2, 0, 0, tzinfo=timezone.utc)
    assert report.reported_at is not None
    assert report.reported_at.utcoffset() == timedelta(0)
    assert report.to_dict()["reported_at"] == "2024-01-02T00:00:00+00:00"
    plus_five = timezone(timedelta(hours=5))
    receipt = SendReceipt("v", "1", ("13800138000",), datetime(2024, 6, 1, 5, 0, tzinfo=plus_five))
    assert receipt.submitted_at.tzinfo == timezone.utc
    assert receipt.submitted_at.hour == 0


def test_from_dict_converts_offset_strings_to_utc() -> None:
    data = _report().to_dict()
    data["reported_at"] = "2024-01-02T08:00:00+08:00"
    report = DeliveryReport.from_dict(data)
    assert report.reported_at == datetime(2024, 1, 2, 0, 0, tzinfo=timezone.utc)
    assert report.reported_at is not None and report.reported_at.utcoffset() == timedelta(0)


def test_missing_times_stay_none() -> None:
    report = DeliveryReport("paasw_v2", "1", "13800138000", PENDING, "", "", None)
    restored = DeliveryReport.from_dict(_xcom(report.to_dict()))
    assert restored.reported_at is None
    inbound = InboundMessage("paasw_v2", "13800138000", "hi", None)
    assert InboundMessage.from_dict(_xcom(inbound.to_dict())).received_at is None


# ---------------------------------------------------------------------------- validation


def test_unknown_fields_are_rejected() -> None:
    data = _report().to_dict()
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="colour"):
        DeliveryReport.from_dict(data)
    with pytest.raises(ValueError, match="unknown fields"):
        Balance.from_dict({"vendor": "x", "amount": "1", "secret": "s"})


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown delivery status 'lost'"):
        _report("lost")
    data = _report().to_dict()
    data["status"] = "DELIVRD"  # a vendor code is not a status
    with pytest.raises(ValueError, match="status"):
        DeliveryReport.from_dict(data)


@pytest.mark.parametrize(("status", "final"), [(DELIVERED, True), (FAILED, True), (PENDING, False)])
def test_is_final(status: str, final: bool) -> None:
    assert _report(status).is_final is final


# ---------------------------------------------------------------------------- raw


def test_raw_is_excluded_by_default_and_included_on_request() -> None:
    report = _report()
    assert "raw" not in report.to_dict()
    assert report.to_dict(include_raw=True)["raw"] == {"chnRptCode": "DELIVRD"}
    restored = DeliveryReport.from_dict(_xcom(report.to_dict(include_raw=True)))
    assert restored.raw == {"chnRptCode": "DELIVRD"}


def test_raw_does_not_take_part_in_equality_or_repr() -> None:
    a = _report()
    b = DeliveryReport.from_dict(a.to_dict())
    assert b.raw is None
    assert a == b
    assert hash(a) == hash(b)
    assert "chnRptCode" not in repr(a)


def test_raw_with_vendor_decimals_is_plain_json() -> None:
    balance = Balance("paasw_v2", Decimal("532.50"), raw={"balance": Decimal("532.50"), "items": [Decimal("1.0")]})
    data = json.loads(json.dumps(balance.to_dict(include_raw=True)))
    assert data["raw"] == {"balance": "532.50", "items": ["1.0"]}  # exact text, not a float
