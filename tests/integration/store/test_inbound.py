"""Inbound messages: stored once each."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from airflow_provider_sms.records import InboundMessage
from airflow_provider_sms.store import (
    SaveResult,
    SmsStore,
)
from tests.integration.store.support import T0, VENDOR, Backend

pytestmark = pytest.mark.integration


def test_inbound_is_deduplicated(backend: Backend, store: SmsStore) -> None:
    long_text = "退订 " + "x" * 20_000

    def message(mobile: str, content: str, at: datetime | None) -> InboundMessage:
        return InboundMessage(vendor=VENDOR, mobile=mobile, content=content, received_at=at, raw={"c": content[:5]})

    batch = [
        message("13800000001", "好的，谢谢", T0),
        message("13800000001", "好的，谢谢", T0),
        message("13800000001", "TD", None),
        message("13800000001", "TD", None),
        message("13800000002", long_text, T0),
        message("13800000002", long_text, T0),
        message("13800000002", long_text + "!", T0),  # different content: a different message
        message("13800000001", "好的，谢谢", T0 + timedelta(seconds=1)),  # different time
    ]
    assert store.save_inbound(batch, conn_id="sms_test") == SaveResult(5, 0, 3)
    assert store.save_inbound(batch, conn_id="sms_test") == SaveResult(0, 0, 8)
    assert backend.count("inbound_messages") == 5

    rows = [row for page in store.iter_inbound(page_size=2) for row in page]
    assert len(rows) == 5
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert rows[0]["content"] == "好的，谢谢" and rows[0]["conn_id"] == "sms_test"
    assert any(r["content"] == long_text for r in rows)
    assert any(r["received_at"] is None for r in rows)

    last = rows[-1]["seq"]
    assert store.save_inbound([message("13800000003", "N", T0)]) == SaveResult(1, 0, 0)
    newer = [row for page in store.iter_inbound(since_seq=last) for row in page]
    assert [(r["mobile"], r["content"]) for r in newer] == [("13800000003", "N")]
    assert list(store.iter_inbound(vendor="intl")) == []


def test_inbound_taken_along_once_the_lock_is_held_goes_in_the_same_commit(backend: Backend, store: SmsStore) -> None:
    """``more``: messages handed over once the counter's lock is held are deduplicated with the page's own
    and stored in its commit, their seq after the page's."""

    def message(mobile: str, content: str) -> InboundMessage:
        return InboundMessage(vendor=VENDOR, mobile=mobile, content=content, received_at=T0, raw={})

    asked: list[int] = []

    def more(room: int) -> list[InboundMessage]:
        asked.append(room)
        return [message("13800000001", "TD"), message("13800000002", "好的"), message("13800000003", "N")]

    page = [message("13800000001", "TD"), message("13800000004", "Y")]
    assert store.save_inbound(page, conn_id="sms_test", more=more) == SaveResult(4, 0, 1)
    assert asked == [store.page_size - 2]
    rows = [row for p in store.iter_inbound() for row in p]
    assert [r["mobile"] for r in rows] == ["13800000001", "13800000004", "13800000002", "13800000003"]
    assert [r["seq"] for r in rows] == list(range(rows[0]["seq"], rows[0]["seq"] + 4))
    # the lock drew a seq per message of the page; the counter moved on past the ones that joined
    counter = backend.query("SELECT value FROM {p}counters WHERE name = 'inbound_messages'")
    assert int(counter[0][0]) == rows[-1]["seq"]
    assert store.save_inbound([message("13800000005", "N")], conn_id="sms_test") == SaveResult(1, 0, 0)
    assert [r["seq"] for p in store.iter_inbound(since_seq=rows[-1]["seq"]) for r in p] == [rows[-1]["seq"] + 1]
