"""Opt-out keyword matching and reading inbound messages out of triggering asset events."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.opt_out import (
    DEFAULT_OPT_OUT_KEYWORDS,
    is_opt_out,
    keyword_table,
    match_keyword,
    normalize_reply,
    opt_out_number,
    payloads_from_asset_events,
    record_opt_out,
    record_opt_outs,
)
from airflow_provider_sms.records import InboundMessage
from airflow_provider_sms.store import SmsStore


@pytest.mark.parametrize(
    ("reply", "keyword"),
    [
        ("TD", "TD"),
        ("td", "TD"),
        ("Td", "TD"),
        ("ＴＤ", "TD"),  # full-width letters
        ("ｔｄ", "TD"),
        (" TD ", "TD"),
        ("\tTD\r\n", "TD"),
        ("TD。", "TD"),  # ideographic full stop
        ("TD！", "TD"),  # full-width exclamation mark
        ("“TD”", "TD"),
        ("【TD】", "TD"),
        ("TD👍", "TD"),  # a symbol at the end
        ("\u200btd\u200b", "TD"),  # zero-width spaces around it
        ("T D", "TD"),  # spaces inside are dropped
        ("t", "T"),
        ("T.", "T"),
        ("Ｔ", "T"),
        ("退订", "退订"),
        (" 退订。", "退订"),
        ("退 订", "退订"),
        ("STOP", "STOP"),
        ("stop!", "STOP"),
        ("Stop.", "STOP"),
        ("ＳＴＯＰ", "STOP"),
        ("unsubscribe", "UNSUBSCRIBE"),
        # not opt-outs: the whole reply must be the keyword
        ("", None),
        ("。", None),
        ("Thanks", None),
        ("TD是什么", None),
        ("不要退订", None),
        ("please stop", None),
        ("STOPPED", None),
        ("TDD", None),
        ("T-D", None),  # inner punctuation is kept
        ("1", None),
    ],
)
def test_default_keywords(reply: str, keyword: str | None) -> None:
    assert match_keyword(reply) == keyword
    assert is_opt_out(reply) is (keyword is not None)


def test_defaults() -> None:
    assert set(DEFAULT_OPT_OUT_KEYWORDS) == {"TD", "T", "退订", "STOP", "UNSUBSCRIBE"}


@pytest.mark.parametrize(
    ("keywords", "reply", "keyword"),
    [
        (["N", "取消"], "n", "N"),
        (["N", "取消"], "取消！", "取消"),
        (["N", "取消"], "TD", None),  # a custom list replaces the defaults
        (["退订", "退定"], "退定", "退定"),
        (("QUXIAO",), "ＱｕＸｉａｏ", "QUXIAO"),
    ],
)
def test_custom_keywords(keywords: list[str], reply: str, keyword: str | None) -> None:
    assert match_keyword(reply, keywords) == keyword
    assert match_keyword(reply, keyword_table(keywords)) == keyword


def test_normalize_reply() -> None:
    assert normalize_reply("  ＨｅＬＬｏ，  Wörld！ ") == "hello,wörld"
    assert normalize_reply("ß") == "ss"  # casefold, not lower


def test_keyword_table_rejects_what_cannot_match() -> None:
    with pytest.raises(ValueError, match="empty"):
        keyword_table(["TD", " ！ "])
    with pytest.raises(ValueError, match="at least one"):
        keyword_table([])
    with pytest.raises(TypeError, match="list of strings"):
        keyword_table("TD")
    assert keyword_table(["td", "TD", "ＴＤ"]) == {"td": "td"}  # the first spelling wins


@pytest.mark.parametrize(
    ("mobile", "number"),
    [
        ("13800138000", "13800138000"),
        ("+86 138 0013 8000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("+44 7700 900123", "447700900123"),
        ("abc", None),
        ("", None),
    ],
)
def test_opt_out_number(mobile: str, number: str | None) -> None:
    assert opt_out_number(mobile) == number


def test_record_opt_outs_from_records_and_payloads(tmp_path: Path) -> None:
    at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    messages: list[Any] = [
        InboundMessage(vendor="paasw_v2", mobile="+8613800000001", content="ＴＤ", received_at=at),
        {"vendor": "paasw_v2", "conn_id": "sms_x", "mobile": "13800000002", "content": "退订。", "seq": 7},
        {"vendor": "paasw_v2", "conn_id": "sms_x", "mobile": "13800000003", "content": "谢谢", "seq": 8},
        {"vendor": "paasw_v2", "conn_id": "sms_x", "mobile": "13800000001", "content": "stop", "seq": 9},
        {"vendor": "paasw_v2", "conn_id": "sms_x", "mobile": "not-a-number", "content": "TD", "seq": 10},
    ]
    with SmsStore(path=str(tmp_path / "store.db")) as store:
        result = record_opt_outs(messages, store)
        assert result.to_dict() == {
            "messages": 5,
            "opt_outs": 3,
            "added": 2,
            "unusable_numbers": 1,
            "by_keyword": {"TD": 1, "退订": 1, "STOP": 1},
        }
        assert store.opted_out(["13800000001", "13800000002", "13800000003"]) == {"13800000001", "13800000002"}
        assert record_opt_outs(messages, store).added == 0  # a re-run adds nothing
        assert record_opt_out({"mobile": "13800000004", "content": "T"}, store) is True
        assert record_opt_out({"mobile": "13800000004", "content": "T"}, store) is False
        assert record_opt_out({"mobile": "13800000005", "content": "hello"}, store) is False
        with pytest.raises(ValueError, match="'mobile' and 'content'"):
            record_opt_outs([{"mobile": "13800000006"}], store)
    import sqlite3

    with sqlite3.connect(tmp_path / "store.db") as db:
        rows = dict(db.execute("SELECT mobile, reason || ' / ' || source FROM sms_opt_outs").fetchall())
    assert rows["13800000001"] == "reply TD / inbound:paasw_v2"
    assert rows["13800000002"] == "reply 退订 / inbound:sms_x"


def _event(payload: dict[str, Any] | None, *, asset: str = "replies", extra: dict[str, Any] | None = None) -> Any:
    """An event as a DAG run's task sees it, for a watcher event stored by ``Trigger.submit_event``."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset={"name": asset, "uri": asset, "extra": {}},
        extra=extra if extra is not None else {"from_trigger": True, "payload": payload},
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=datetime(2026, 5, 1, tzinfo=timezone.utc),
    )


def test_payloads_from_triggering_asset_events() -> None:
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    p1 = {"vendor": "v", "conn_id": "c", "mobile": "13800000001", "content": "TD", "seq": 5}
    p2 = {"vendor": "v", "conn_id": "c", "mobile": "13800000002", "content": "hi", "seq": 3}
    p3 = {"vendor": "v", "conn_id": "c", "mobile": "13800000003", "content": "T", "seq": 9}
    events = [
        _event(p1),
        _event(p2),
        _event(p1),  # the same message twice (an event listed twice) counts once
        _event(None, extra={"note": "not a message"}),
        _event(None, asset="other", extra=dict(p3)),  # a message posted as the event's extra itself
    ]
    accessor = TriggeringAssetEventsAccessor.build(events)
    assert [p["seq"] for p in payloads_from_asset_events(accessor)] == [3, 5, 9]
    assert [p["seq"] for p in payloads_from_asset_events(accessor[Asset("replies")])] == [3, 5]
    assert payloads_from_asset_events(None) == []
    with pytest.raises(TypeError, match="triggering asset events"):
        payloads_from_asset_events(42)
