"""Quarantine, never drop: a record that cannot be parsed or stored is kept raw; its page's good records are stored.

Pulls over real sockets from the simulator into SQLite and PostgreSQL, for every vendor with an
inbound queue, with the values a vendor can hand out that a store cannot hold (a lone surrogate,
which no UTF-8 database takes; NUL, which PostgreSQL's text refuses) and a record the parser rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from airflow_provider_sms.errors import SmsResponseError
from airflow_provider_sms.hooks import get_sms_hook
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
from airflow_provider_sms.pulling import pull_inbound, replay_quarantined
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.simulator.core import Fault
from airflow_provider_sms.store import SmsStore

pytestmark = pytest.mark.integration

INBOUND_VENDORS = ["paasw_v2", "paasw_v1", "account_md5", "cloud_mas"]


@pytest.fixture(autouse=True)
def _no_pull_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)  # the test simulator allows pulls back to back


def queue_replies(sim: GatewaySimulator, vendor: str, *texts: str) -> None:
    for i, text in enumerate(texts):
        sim.gateway.add_inbound(vendor, f"1380013800{i}", text)


def stored_contents(store: SmsStore) -> list[str]:
    return sorted(row["content"] for page in store.iter_inbound() for row in page)


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
@pytest.mark.parametrize("bad", ["lone \ud800 surrogate", "NUL \x00 byte"], ids=["surrogate", "nul"])
def test_a_value_the_store_cannot_hold_is_quarantined_and_the_page_stored(
    sim: GatewaySimulator, store_args: dict[str, Any], vendor: str, bad: str
) -> None:
    queue_replies(sim, vendor, "first", bad, "last")
    hook = get_sms_hook(f"sms_{vendor}")
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        result = pull_inbound(hook, store)
        held = store.dialect == "sqlite" and "\x00" in bad  # SQLite's text holds NUL; nothing holds a lone surrogate
        assert result.fetched == 3
        assert result.quarantined == (0 if held else 1)
        assert stored_contents(store) == sorted(["first", "last", *([bad] if held else [])])
        kept = store.quarantined(conn_id=hook.sms_conn_id)
        if not held:
            [row] = kept
            assert row["raw"]["content" if vendor != "cloud_mas" else "smsContent"] == bad
            assert row["source"] == "pull" and "cannot hold" in row["reason"]
            # no fix makes the store take it: a replay keeps it, with the reason
            assert replay_quarantined(hook, store) == {"replayed": 0, "still_failing": 1}
    assert sim.gateway.take_inbound(vendor) == []  # handed out once: the quarantine is the only copy


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
def test_a_record_the_parser_rejects_is_quarantined_and_replayed_after_a_fix(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    queue_replies(sim, vendor, "first", "BROKEN", "last")
    hook = get_sms_hook(f"sms_{vendor}")
    real = type(hook).inbound_from_record

    def strict(self: SmsHook, item: Mapping[str, Any], *, pushed: bool = False) -> Any:
        if "BROKEN" in item.values():
            raise ValueError("time '2024-13-01' matches none of the formats")
        return real(self, item, pushed=pushed)

    monkeypatch.setattr(type(hook), "inbound_from_record", strict)
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        result = pull_inbound(hook, store)
        assert (result.fetched, result.inserted, result.quarantined) == (3, 2, 1)
        assert stored_contents(store) == ["first", "last"]
        [row] = store.quarantined(conn_id=hook.sms_conn_id, kind="inbound")
        assert "2024-13-01" in row["reason"]

        monkeypatch.setattr(type(hook), "inbound_from_record", real)  # the fix
        assert replay_quarantined(hook, store) == {"replayed": 1, "still_failing": 0}
        assert stored_contents(store) == ["BROKEN", "first", "last"]
        assert store.quarantined(conn_id=hook.sms_conn_id) == []
        assert len(store.quarantined(conn_id=hook.sms_conn_id, replayed=True)) == 1


# ------------------------------------------------------------------------------------------- the journal


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
def test_a_page_journaled_before_a_crash_is_stored_by_the_next_pull(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    """The vendor hands the page out once; the process dies after journaling it and before storing it."""
    from airflow_provider_sms import pulling

    queue_replies(sim, vendor, "one", "two", "three")
    hook = get_sms_hook(f"sms_{vendor}")
    real = pulling.process_journaled

    def die(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("worker killed after the journal commit")

    store_kwargs = {"table_prefix": store_args.get("store_table_prefix", "sms_")}
    with SmsStore(store_args.get("store_conn_id"), **store_kwargs) as store:
        monkeypatch.setattr(pulling, "process_journaled", die)
        with pytest.raises(KeyboardInterrupt):
            pull_inbound(hook, store)
        assert stored_contents(store) == []
        assert sim.gateway.take_inbound(vendor) == []  # the vendor will not hand them out again
        assert len(store.open_journal(hook.sms_conn_id, "inbound")) == 1

        monkeypatch.setattr(pulling, "process_journaled", real)
        result = pull_inbound(hook, store)  # the next run of any task that pulls this account
        assert (result.fetched, result.inserted) == (3, 3)
        assert stored_contents(store) == ["one", "three", "two"]
        assert store.open_journal(hook.sms_conn_id, "inbound") == []
        assert pull_inbound(hook, store).inserted == 0  # nothing twice


INBOUND_PATHS = {
    "paasw_v2": "/message/mo",
    "paasw_v1": "/sms/smsUp",
    "account_md5": "/api/v1/mo",
    "cloud_mas": "/sms/deliver",
}
TRAILER = b"\n<!-- served by edge-cache-7 -->"


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
@pytest.mark.parametrize("spoilt", ["mangled", "nested"])
def test_a_reply_that_will_not_decode_is_kept_whole_not_lost(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, vendor: str, spoilt: str
) -> None:
    """The vendor hands a page out and the reply arrives spoilt (a proxy's trailer; nesting deeper than a
    parser goes): the bytes are journaled before anything decodes them, and quarantined whole."""
    queue_replies(sim, vendor, "first", "second", "third")
    sim.gateway.add_fault(Fault(kind=spoilt, remaining=1, vendor=vendor, path=INBOUND_PATHS[vendor]))
    hook = get_sms_hook(f"sms_{vendor}")
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        result = pull_inbound(hook, store)  # the spoilt read is retried, and the queue is empty by then
        assert (result.fetched, result.inserted, result.quarantined) == (0, 0, 1)
        assert store.open_journal(hook.sms_conn_id, "inbound") == []
        [row] = store.quarantined(conn_id=hook.sms_conn_id)
        assert row["whole_reply"] and row["source"] == "pull" and "could not be read" in row["reason"]
        assert all(text in row["raw"] for text in ("first", "second", "third"))
        if spoilt == "mangled":  # after a fix (here: a parser that drops the trailer), a replay stores the page
            real = type(hook).records_in_reply

            def lenient(self: SmsHook, kind: str, body: bytes) -> Any:
                return real(self, kind, body.removesuffix(TRAILER))

            monkeypatch.setattr(type(hook), "records_in_reply", lenient)
            assert replay_quarantined(hook, store) == {"replayed": 1, "still_failing": 0}
            assert stored_contents(store) == ["first", "second", "third"]
        else:
            assert replay_quarantined(hook, store) == {"replayed": 0, "still_failing": 1}
    ledger = sim.gateway.ledger.summary(vendor)[vendor]["inbound"]
    assert ledger == {"handed_out": 3, "distinct": 3, "handed_out_more_than_once": 0}


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
def test_a_pull_whose_every_reply_is_spoilt_fails_clearly_and_keeps_each_reply(
    sim: GatewaySimulator, store_args: dict[str, Any], vendor: str
) -> None:
    queue_replies(sim, vendor, "first", "second")
    sim.gateway.add_fault(Fault(kind="mangled", remaining=10, vendor=vendor, path=INBOUND_PATHS[vendor]))
    hook = get_sms_hook(f"sms_{vendor}")
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        with pytest.raises(SmsResponseError, match="not JSON"):
            pull_inbound(hook, store)
        rows = store.quarantined(conn_id=hook.sms_conn_id)
        assert len(rows) == hook.retries + 1 and all(row["whole_reply"] for row in rows)
        assert sum("first" in row["raw"] for row in rows) == 1  # the page came once, in the first reply
        assert store.open_journal(hook.sms_conn_id, "inbound") == []


def test_delivery_reports_journaled_before_a_crash_are_counted_once(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_sms import pulling
    from airflow_provider_sms.operators import SmsSendOperator
    from airflow_provider_sms.testing import task_context

    store_kwargs = {
        "store_conn_id": store_args.get("store_conn_id"),
        "table_prefix": store_args.get("store_table_prefix", "sms_"),
    }
    summary = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_paasw_v2",
        mobiles=[f"1380000{i:04d}" for i in range(1500)],
        content="hi",
        signature="S",
        store_conn_id=store_kwargs["store_conn_id"],
        store_table_prefix=store_kwargs["table_prefix"],
    ).execute(task_context())
    hook = get_sms_hook("sms_paasw_v2")
    real = pulling.store_page
    calls = {"n": 0}

    def die_on_second(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("worker killed mid-sync")
        return real(*args, **kwargs)

    with SmsStore(**store_kwargs) as store:
        monkeypatch.setattr(pulling, "store_page", die_on_second)
        with pytest.raises(KeyboardInterrupt):
            pulling.pull_reports(hook, store)
        monkeypatch.setattr(pulling, "store_page", real)
        pulling.pull_reports(hook, store)
        progress = store.batch_progress("paasw_v2", summary["batch_ids"])
    assert (progress.total, progress.delivered, progress.pending) == (1500, 1500, 0)
    ledger = sim.gateway.ledger.summary("paasw_v2")["paasw_v2"]["reports"]
    assert ledger == {"handed_out": 1500, "distinct": 1500, "handed_out_more_than_once": 0}


# ------------------------------------------------------------------------------------------- reports that never come


def test_numbers_without_a_final_report_expire_so_waits_end_and_a_late_report_still_counts(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_sms.operators import SmsSendOperator
    from airflow_provider_sms.sensors import SmsDeliverySensor
    from airflow_provider_sms.testing import FakeTaskInstance, task_context

    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_PAASW_V2", sim.connection_json("paasw_v2", retry_wait=0.01, report_deadline_hours=0.0001)
    )
    sim.gateway.config.report_delay = 3600  # the vendor never reports in time
    store = {
        "store_conn_id": store_args.get("store_conn_id"),
        "store_table_prefix": store_args.get("store_table_prefix", "sms_"),
    }
    op = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_paasw_v2",
        mobiles=[f"1380000000{i}" for i in range(10)],
        content="hi",
        signature="S",
        **store,
    )
    summary = op.execute(task_context())
    import time

    time.sleep(0.5)  # past the 0.36 s deadline
    ti = FakeTaskInstance(task_id="wait", xcoms={"send": summary})
    done = SmsDeliverySensor(task_id="wait", sms_conn_id="sms_paasw_v2", send_task_id="send", **store).poke(
        task_context(ti)
    )
    assert not isinstance(done, bool) and done.is_done
    assert done.xcom_value["by_status"] == {"delivered": 0, "failed": 0, "pending": 0, "expired": 10}

    with sim.gateway.lock:  # the reports come after all
        for entries in sim.gateway._due.values():
            entries[:] = [(0.0, n, m) for _, n, m in entries]
    from airflow_provider_sms.pulling import pull_reports

    with SmsStore(store["store_conn_id"], table_prefix=store["store_table_prefix"]) as st:
        pull_reports(get_sms_hook("sms_paasw_v2"), st)
        counts = st.status_counts("paasw_v2", summary["batch_ids"])
        progress = st.batch_progress("paasw_v2", summary["batch_ids"])
    assert counts["by_status"] == {"delivered": 10, "failed": 0, "pending": 0}
    assert (progress.delivered, progress.failed) == (10, 0)


def test_intl_reports_expire_after_its_30_day_query_window_at_the_latest(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    assert get_sms_hook("sms_intl").report_deadline == timedelta(hours=72)
    monkeypatch.setenv("AIRFLOW_CONN_SMS_INTL_LONG", sim.connection_json("intl", report_deadline_hours=24 * 90))
    assert get_sms_hook("sms_intl_long").report_deadline == timedelta(days=30)


def test_intl_1010_expires_only_the_pairs_past_the_vendor_s_30_days(
    sim: GatewaySimulator, store_args: dict[str, Any]
) -> None:
    """The vendor refuses a whole status query with 1010 when one pair is older than 30 days: the sync
    finds that pair, expires it, and reads the others' reports as usual."""
    from datetime import timedelta

    from airflow_provider_sms.operators import SmsSendOperator
    from airflow_provider_sms.pulling import pull_reports
    from airflow_provider_sms.testing import task_context

    sim.gateway.config.report_delay = 0
    mobiles = [f"861380013800{i}" for i in range(5)]
    store = {
        "store_conn_id": store_args.get("store_conn_id"),
        "table_prefix": store_args.get("store_table_prefix", "sms_"),
    }
    summary = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_intl",
        mobiles=mobiles,
        content="hi",
        signature="S",
        store_conn_id=store["store_conn_id"],
        store_table_prefix=store["table_prefix"],
    ).execute(task_context())
    [batch] = summary["batch_ids"]
    sim.gateway.messages["intl"][(batch, mobiles[3])].submitted_at -= timedelta(days=31)  # the vendor's clock
    hook = get_sms_hook("sms_intl")
    with SmsStore(**store) as st:
        result = pull_reports(hook, st)
        progress = st.batch_progress("intl", [batch])
        [page] = list(st.iter_reports(vendor="intl"))
    assert (progress.total, progress.delivered, progress.pending) == (5, 4, 0)
    assert {row["mobile"]: (row["status"], row["code"]) for row in page if row["status"] == "expired"} == {
        mobiles[3]: ("expired", "1010")
    }
    assert result.pulls == 1 and result.quarantined == 0
    # the refused query, then halves until the old pair stood alone: [0-4] [0-1] [2-4] [2] [3-4] [3] [4]
    assert sim.gateway.stats()["requests"]["intl /api/v1/international/sms/status"] == 7


@pytest.mark.parametrize("vendor", ["paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas"])
def test_a_delivery_report_the_parser_rejects_is_quarantined_on_every_vendor(
    sim: GatewaySimulator, store_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    from airflow_provider_sms.operators import SmsSendOperator
    from airflow_provider_sms.pulling import pull_reports
    from airflow_provider_sms.testing import task_context

    prefix = "86" if vendor == "intl" else ""
    mobiles = [f"{prefix}1380013800{i}" for i in range(3)]
    store = {
        "store_conn_id": store_args.get("store_conn_id"),
        "table_prefix": store_args.get("store_table_prefix", "sms_"),
    }
    summary = SmsSendOperator(
        task_id="send",
        sms_conn_id=f"sms_{vendor}",
        mobiles=mobiles,
        content="hi",
        signature="S" if vendor != "cloud_mas" else None,
        store_conn_id=store["store_conn_id"],
        store_table_prefix=store["table_prefix"],
    ).execute(task_context())
    hook = get_sms_hook(f"sms_{vendor}")
    real = type(hook).report_from_record
    broken = mobiles[1][-4:]  # account_md5 masks the middle digits

    def strict(self: SmsHook, item: Mapping[str, Any], *, pushed: bool = False) -> Any:
        if any(str(value).endswith(broken) for value in item.values()):
            raise ValueError("time '2024-13-01' matches none of the formats")
        return real(self, item, pushed=pushed)

    monkeypatch.setattr(type(hook), "report_from_record", strict)
    with SmsStore(**store) as st:
        result = pull_reports(hook, st)
        assert (result.inserted, result.quarantined) == (2, 1)
        assert st.batch_progress(vendor, summary["batch_ids"]).pending == 1
        monkeypatch.setattr(type(hook), "report_from_record", real)
        assert replay_quarantined(hook, st) == {"replayed": 1, "still_failing": 0}
        progress = st.batch_progress(vendor, summary["batch_ids"])
    assert (progress.total, progress.delivered, progress.pending) == (3, 3, 0)


# ------------------------------------------------------------------------------------------- field types


@pytest.mark.parametrize("vendor", ["paasw_v2", "paasw_v1", "cloud_mas"])  # account_md5 masks its numbers
def test_a_record_whose_number_is_not_text_is_quarantined_never_stored_as_a_repr(
    sim: GatewaySimulator, store_args: dict[str, Any], vendor: str
) -> None:
    """A ``mobile`` that is an object, a list, a bool or a float would be stored as ``"{'a': 1}"`` or ``"True"``."""
    bad_numbers: list[Any] = [{"a": 1}, [13800138000], True, 1.5]
    sim.gateway.add_inbound(vendor, "13800138000", "first")
    for number in bad_numbers:
        sim.gateway.add_inbound(vendor, number, "bad")
    sim.gateway.add_inbound(vendor, "13912345678", "last")
    hook = get_sms_hook(f"sms_{vendor}")
    with SmsStore(store_args.get("store_conn_id"), table_prefix=store_args.get("store_table_prefix", "sms_")) as store:
        result = pull_inbound(hook, store)
        assert (result.fetched, result.inserted, result.quarantined) == (6, 2, 4)
        assert stored_contents(store) == ["first", "last"]
        kept = store.quarantined(conn_id=hook.sms_conn_id, kind="inbound")
        assert len(kept) == 4
        assert all("should be a string or an integer" in row["reason"] for row in kept)
        assert {row["mobile"] for page in store.iter_inbound() for row in page} == {"13800138000", "13912345678"}
