"""Watermarks, balances and opt-outs."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from airflow_provider_sms.records import Balance
from airflow_provider_sms.store import (
    SmsStore,
)
from tests.integration.store.support import T0, VENDOR, numbers

pytestmark = pytest.mark.integration


def test_watermarks(store: SmsStore) -> None:
    assert store.get_watermark("reports:sms_x:xcom") == 0
    assert store.get_watermark("reports:sms_x:xcom", default=None) is None  # a first run, told apart
    store.set_watermark("reports:sms_x:xcom", 42)
    store.set_watermark("inbound:sms_x:xcom", 7)
    store.set_watermark("reports:sms_x:xcom", 50)
    assert store.get_watermark("reports:sms_x:xcom") == 50
    assert store.get_watermark("inbound:sms_x:xcom") == 7


def test_balance_round_trips_exactly(store: SmsStore) -> None:
    assert store.latest_balance("sms_test") is None
    amount = Decimal("123456789012345678.000100")
    store.save_balance(
        Balance(vendor=VENDOR, amount=amount, currency="CNY", raw={"balance": "123456789012345678.000100"}),
        conn_id="sms_test",
        taken_at=T0 + timedelta(hours=1),
    )
    store.save_balance(Balance(vendor=VENDOR, amount=Decimal("1")), conn_id="sms_test", taken_at=T0)  # older
    store.save_balance(Balance(vendor="intl", amount=Decimal("9.5")), conn_id="sms_other")

    latest = store.latest_balance("sms_test")
    assert latest is not None
    assert latest.amount == amount and str(latest.amount) == "123456789012345678.000100"
    assert (latest.vendor, latest.currency, latest.raw) == (
        VENDOR,
        "CNY",
        {"balance": "123456789012345678.000100"},
    )
    other = store.latest_balance("sms_other")
    assert other is not None and other.amount == Decimal("9.5")


def test_opt_outs(store: SmsStore) -> None:
    assert store.add_opt_outs(["13800000001", "13800000002", "13800000002"], reason="TD", source="mo") == 2
    assert store.add_opt_outs(["13800000002", "13800000003"]) == 1
    assert store.opted_out(["13800000001", "13800000003", "13800000004"]) == {"13800000001", "13800000003"}
    assert store.opted_out([]) == set()

    many = numbers(100_000, 10_000_000)
    assert store.add_opt_outs(many[::3]) == len(many[::3])
    started = time.perf_counter()
    found = store.opted_out(many)
    elapsed = time.perf_counter() - started
    assert found == set(many[::3])
    assert elapsed < 10, f"opted_out of 100,000 numbers took {elapsed:.1f}s"
    # one person, two spellings: a domestic opt-out stops an intl send and the other way round
    assert store.opted_out(["8613800000001", "8613800000004"]) == {"8613800000001"}
    store.add_opt_outs(["8613900000009"], reason="STOP", source="manual")
    assert store.opted_out(["13900000009", "13800000001"]) == {"13900000009", "13800000001"}
    # a list longer than the numbers asked about is looked up by key, not read whole
    few = ["13800000001", "13800000004", many[3], many[4], many[3]]
    assert store.opted_out(few) == {"13800000001", many[3]}
    assert store.opted_out(["8613800000001", "13900000009", "8613900000009"]) == {
        "8613800000001",
        "13900000009",
        "8613900000009",
    }
    assert store.opted_out(many[:1200]) == set(many[:1200:3])  # more than one IN list on SQLite


def test_the_old_names_still_answer_with_a_deprecation_warning(store: SmsStore) -> None:
    store.set_watermark("w", 3)
    with pytest.warns(DeprecationWarning, match="get_watermark"):
        assert store.find_watermark("w") == 3
    with pytest.warns(DeprecationWarning, match="since_seq"):
        assert list(store.iter_reports(since_id=0)) == []
