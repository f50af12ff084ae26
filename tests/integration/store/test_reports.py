"""Delivery reports: which report wins, exact batch counters, masked numbers, incremental reads."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_sms.numbers import mask_matches
from airflow_provider_sms.records import DeliveryReport
from airflow_provider_sms.store import (
    BatchProgress,
    MaskResolver,
    SaveResult,
    SmsStore,
    report_replaces,
)
from airflow_provider_sms.store.database import utc_text
from tests.integration.store.support import REPORT_COLUMNS, T0, VENDOR, Backend, numbers, progress, record, report

pytestmark = pytest.mark.integration


def test_upsert_rules_and_counters(backend: Backend, store: SmsStore) -> None:
    a, b = numbers(2)
    record(store, "k1", "B1", [a, b])

    assert store.save_reports([report("B1", a, "pending")]) == SaveResult(1, 0, 0)
    assert progress(store, "k1") == (2, 0, 0)
    delivered = store.save_reports([report("B1", a, "delivered")])
    assert delivered == SaveResult(0, 1, 0) and delivered.statuses == {"delivered": 1}  # what the metrics count
    assert progress(store, "k1") == (2, 1, 0)
    seq = backend.report_row("B1", a)["seq"]  # type: ignore[index]

    # a pending report never replaces a final one; the same report again changes nothing
    assert store.save_reports([report("B1", a, "pending", at=T0 + timedelta(hours=1))]) == SaveResult(0, 0, 1)
    again = store.save_reports([report("B1", a, "delivered")])
    assert again == SaveResult(0, 0, 1) and again.statuses == {}  # a repeat is not counted again
    row = backend.report_row("B1", a)
    assert row is not None and (row["status"], row["seq"]) == ("delivered", seq)
    assert progress(store, "k1") == (2, 1, 0)

    # a newer final replaces an older one, and moves the count; an older final does not
    assert store.save_reports([report("B1", a, "failed", at=T0 + timedelta(minutes=5))]) == SaveResult(0, 1, 0)
    assert progress(store, "k1") == (2, 0, 1)
    assert store.save_reports([report("B1", a, "delivered", at=T0 - timedelta(minutes=5))]) == SaveResult(0, 0, 1)
    row = backend.report_row("B1", a)
    assert row is not None and (row["status"], row["code"]) == ("failed", "UNDELIV")
    assert row["seq"] > seq
    assert progress(store, "k1") == (2, 0, 1)

    # several reports for one message within one call are applied in order
    result = store.save_reports([report("B1", b, "pending"), report("B1", b, "delivered"), report("B1", b, "pending")])
    assert result == SaveResult(inserted=1, updated=1, unchanged=1)
    assert result.statuses == {"delivered": 1}  # one row written, in its final state
    assert backend.report_row("B1", b)["status"] == "delivered"  # type: ignore[index]
    assert progress(store, "k1") == (2, 1, 1)
    backend.assert_counters_exact()


def _oracle(reports: Sequence[DeliveryReport]) -> tuple[dict[tuple[str, str], DeliveryReport], SaveResult]:
    """The documented rule, applied one report at a time, written independently of the store."""
    state: dict[tuple[str, str], DeliveryReport] = {}
    inserted = updated = unchanged = 0
    for new in reports:
        key = (new.batch_id, new.mobile)
        old = state.get(key)
        if old is None:
            inserted += 1
            state[key] = new
            continue
        same = (old.status, old.code, old.description, old.reported_at) == (
            new.status,
            new.code,
            new.description,
            new.reported_at,
        )
        if same or (old.is_final and not new.is_final):
            unchanged += 1
        elif new.is_final and not old.is_final:
            updated += 1
            state[key] = new
        elif old.reported_at and (new.reported_at is None or new.reported_at < old.reported_at):
            unchanged += 1
        else:
            updated += 1
            state[key] = new
    return state, SaveResult(inserted, updated, unchanged)


@pytest.mark.parametrize("page_size", [3, 50])  # a few rows: VALUES lists on PostgreSQL; more: arrays
def test_counters_stay_exact_under_random_repeats(backend: Backend, store: SmsStore, page_size: int) -> None:
    rng = random.Random(20240501)
    batches = {f"B{i}": numbers(40, 1000 * i) for i in range(3)}
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        record(store, f"k{i}", batch_id, mobiles)
    pool = [(b, m) for b, ms in batches.items() for m in ms] + [("ELSEWHERE", m) for m in numbers(10, 9000)]
    reports = [
        report(
            b,
            m,
            rng.choice(["pending", "delivered", "failed"]),
            at=rng.choice([None, T0 + timedelta(minutes=rng.randrange(30))]),
        )
        for b, m in (rng.choice(pool) for _ in range(900))
    ]
    store.page_size = page_size  # many pages, with repeats inside pages and across them
    total = SaveResult(0, 0, 0)
    for start in range(0, len(reports), 300):
        got = store.save_reports(reports[start : start + 300], conn_id="sms_test")
        total = SaveResult(total.inserted + got.inserted, total.updated + got.updated, total.unchanged + got.unchanged)

    expected, expected_result = _oracle(reports)
    assert total == expected_result
    assert total.total == len(reports)
    for (batch_id, mobile), final in expected.items():
        row = backend.report_row(batch_id, mobile)
        assert row is not None
        assert (row["status"], row["reported_at"]) == (final.status, utc_text(final.reported_at)), (
            batch_id,
            mobile,
        )
    assert backend.count("delivery_reports") == len(expected)
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        finals = [expected.get((batch_id, m)) for m in mobiles]
        delivered = sum(1 for r in finals if r is not None and r.status == "delivered")
        failed = sum(1 for r in finals if r is not None and r.status == "failed")
        assert progress(store, f"k{i}") == (40, delivered, failed)
    backend.assert_counters_exact()


def test_reports_taken_along_once_the_lock_is_held_are_stored_in_the_same_commit(
    backend: Backend, store: SmsStore
) -> None:
    """``more``: reports handed over once the lock is held follow the page's own, in one commit: the same
    rows, results and counters as saving them all at once, masked numbers resolved, seq in order."""
    rng = random.Random(20261130)
    batches = {f"B{i}": numbers(20, 1000 * i) for i in range(3)}
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        record(store, f"k{i}", batch_id, mobiles)
    record(store, "km", "M1", ["13512349831", "13800000001"], vendor="account_md5")
    pool = [(b, m) for b, ms in batches.items() for m in ms] + [("ELSEWHERE", m) for m in numbers(5, 9000)]
    reports = [
        report(b, m, rng.choice(["pending", "delivered", "failed"]), at=T0 + timedelta(minutes=rng.randrange(30)))
        for b, m in (rng.choice(pool) for _ in range(120))
    ]
    asked: list[int] = []
    before = backend.count("delivery_reports")

    def more(room: int) -> list[DeliveryReport]:
        asked.append(room)
        return [*reports[60:], report("M1", "135****9831", vendor="account_md5")]  # repeats of the page's keys too

    got = store.save_reports(reports[:60], conn_id="sms_test", more=more)
    assert asked == [store.page_size - 60]  # asked once, in the one page's transaction
    expected, expected_result = _oracle(reports)
    assert got == SaveResult(expected_result.inserted + 1, expected_result.updated, expected_result.unchanged)
    for (batch_id, mobile), final in expected.items():
        row = backend.report_row(batch_id, mobile)
        assert row is not None and (row["status"], row["reported_at"]) == (final.status, utc_text(final.reported_at))
    resolved = backend.report_row("M1", "13512349831", "account_md5")
    assert resolved is not None and resolved["reported_mobile"] == "135****9831"
    assert backend.count("delivery_reports") == before + len(expected) + 1
    seqs = sorted(row["seq"] for page in store.iter_reports() for row in page)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one commit: one run of seq numbers
    for i, (batch_id, mobiles) in enumerate(batches.items()):
        finals = [expected.get((batch_id, m)) for m in mobiles]
        delivered = sum(1 for r in finals if r is not None and r.status == "delivered")
        failed = sum(1 for r in finals if r is not None and r.status == "failed")
        assert progress(store, f"k{i}") == (20, delivered, failed)
    assert progress(store, "km") == (2, 1, 0)
    backend.assert_counters_exact()


def test_the_seq_counter_ends_at_the_last_seq_written(backend: Backend, store: SmsStore) -> None:
    """A page draws a seq per message as it takes the lock: the counter is set back when it writes fewer
    rows (repeats, reports that change nothing) and forward when reports join it, so it always stands at
    the last seq written and the next page's seqs follow without a gap."""
    a, b, c = numbers(3)
    record(store, "k1", "B1", [a, b, c])

    def counter() -> int:
        return int(backend.query("SELECT value FROM {p}counters WHERE name = 'delivery_reports'")[0][0])

    def top() -> int:
        return int(backend.query("SELECT COALESCE(MAX(seq), 0) FROM {p}delivery_reports")[0][0])

    pages: list[tuple[list[DeliveryReport], list[DeliveryReport]]] = [
        ([report("B1", a, "pending")], []),  # one message, one row: as drawn
        ([report("B1", a, "pending")], []),  # changes nothing: no row
        ([report("B1", b, "pending"), report("B1", b, "delivered")], []),  # one message twice: one row
        ([report("B1", a, "delivered")], [report("B1", c, "failed"), report("ELSEWHERE", a)]),  # two joined
        ([report("B1", a, "delivered"), report("B1", b, "delivered")], []),  # nothing new
    ]
    written = 0
    for page, joining in pages:

        def more(room: int, joining: list[DeliveryReport] = joining) -> list[DeliveryReport]:
            return joining

        result = store.save_reports(page, more=more)
        written += sum(result.statuses.values())  # the rows it wrote
        assert counter() == top() == written, page
    seqs = sorted(row["seq"] for p in store.iter_reports() for row in p)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert progress(store, "k1") == (3, 2, 1)
    backend.assert_counters_exact()


def test_masked_mobiles_resolve_to_the_one_sent_number(backend: Backend, store: SmsStore) -> None:
    vendor = "account_md5"
    record(store, "k1", "M1", ["13512349831", "13800000001", "13900000002"], vendor=vendor)
    record(store, "k2", "M2", ["13511119831", "13522229831"], vendor=vendor)

    result = store.save_reports(
        [
            report("M1", "135****9831", vendor=vendor),  # exactly one sent number matches
            report("M2", "135****9831", "failed", vendor=vendor),  # two match: ambiguous
            report("M1", "137****0000", vendor=vendor),  # none matches
            report("M3", "139****0002", vendor=vendor),  # a batch the store never sent
        ]
    )
    assert result == SaveResult(4, 0, 0)
    resolved = backend.report_row("M1", "13512349831", vendor)
    assert resolved is not None and resolved["reported_mobile"] == "135****9831"
    assert backend.report_row("M1", "135****9831", vendor) is None
    for batch_id, masked in (("M2", "135****9831"), ("M1", "137****0000"), ("M3", "139****0002")):
        row = backend.report_row(batch_id, masked, vendor)
        assert row is not None and row["reported_mobile"] is None, (batch_id, masked)
    assert progress(store, "k1") == (3, 1, 0)
    assert progress(store, "k2") == (2, 0, 0), "an ambiguous report must not count for either number"
    assert store.pending_pairs(vendor, ["M1"]) == [("M1", "13800000001"), ("M1", "13900000002")]

    assert store.save_reports([report("M1", "135****9831", vendor=vendor)]) == SaveResult(0, 0, 1)
    assert progress(store, "k1") == (3, 1, 0)
    backend.assert_counters_exact()


def test_batch_progress_and_status_counts(store: SmsStore) -> None:
    b1, b2 = numbers(4), numbers(3, 100)
    record(store, "k1", "B1", b1)
    record(store, "k2", "B2", b2)
    store.save_reports(
        [
            report("B1", b1[0]),
            report("B1", b1[1]),
            report("B1", b1[2], "failed", code="DB:0141"),
            report("B1", b1[3], "pending"),
            report("B2", b2[0], "failed", code="MK:0001"),
            report("OTHER", "13900000000", "failed", code="XX"),
            report("B1", b1[0], vendor="another_vendor"),
        ]
    )
    both = store.batch_progress(VENDOR, ["B1", "B2"])
    assert both == BatchProgress(total=7, delivered=2, failed=2)
    assert both.pending == 3
    assert store.batch_progress(VENDOR, ["B1", "B1"]) == BatchProgress(4, 2, 1)
    assert store.batch_progress(VENDOR, ["nope"]) == BatchProgress(0, 0, 0)
    assert store.batch_progress("another_vendor", ["B1"]) == BatchProgress(0, 0, 0)
    assert store.batch_progress(VENDOR, []) == BatchProgress(0, 0, 0)

    assert store.status_counts(VENDOR, ["B1", "B2"]) == {
        "by_status": {"delivered": 2, "failed": 2, "pending": 3},
        "by_code": {"DELIVRD": 2, "DB:0141": 1, "MK:0001": 1},
    }
    assert store.status_counts(VENDOR, ["OTHER"]) == {
        "by_status": {"delivered": 0, "failed": 1, "pending": 0},
        "by_code": {"XX": 1},
    }


def test_pending_pairs(store: SmsStore) -> None:
    b1, b2 = numbers(3), numbers(2, 100)
    record(store, "k1", "B1", b1)
    record(store, "k2", "B2", b2)
    store.save_reports([report("B1", b1[0]), report("B1", b1[1], "pending")])

    assert store.pending_pairs(VENDOR, ["B2", "B1"]) == [
        ("B2", b2[0]),
        ("B2", b2[1]),
        ("B1", b1[1]),
        ("B1", b1[2]),
    ]
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=3) == [("B2", b2[0]), ("B2", b2[1]), ("B1", b1[1])]
    assert store.pending_pairs(VENDOR, ["B1"], limit=0) == []
    # a start rotates the batches, wrapping around: limited calls can reach every batch
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=2, start=1) == [("B1", b1[1]), ("B1", b1[2])]
    assert store.pending_pairs(VENDOR, ["B2", "B1"], limit=3, start=3) == [("B1", b1[1]), ("B1", b1[2]), ("B2", b2[0])]
    assert sorted(store.pending_pairs(VENDOR, None)) == sorted([("B1", b1[1]), ("B1", b1[2]), *(("B2", m) for m in b2)])
    assert store.pending_pairs("another_vendor", ["B1"]) == []

    store.save_reports([report("B1", m, "failed") for m in b1] + [report("B2", m) for m in b2])
    assert store.pending_pairs(VENDOR, ["B1", "B2"]) == []
    assert store.pending_pairs(VENDOR, None) == []


def test_report_for_a_batch_the_store_did_not_send(backend: Backend, store: SmsStore) -> None:
    sent = numbers(2)
    record(store, "k1", "B1", sent)
    result = store.save_reports(
        [report("ELSEWHERE", "13900000001"), report("B1", "13900000009", "failed")], conn_id="sms_test"
    )
    assert result == SaveResult(2, 0, 0)
    assert backend.report_row("ELSEWHERE", "13900000001") is not None
    assert backend.report_row("B1", "13900000009") is not None
    assert progress(store, "k1") == (2, 0, 0)
    assert store.batch_progress(VENDOR, ["ELSEWHERE"]) == BatchProgress(0, 0, 0)
    assert store.status_counts(VENDOR, ["ELSEWHERE"])["by_status"] == {
        "delivered": 1,
        "failed": 0,
        "pending": 0,
    }


def test_reports_stored_before_the_send_was_recorded_are_counted(store: SmsStore) -> None:
    sent = numbers(3)
    store.save_reports([report("B1", sent[0]), report("B1", sent[1], "failed"), report("B1", sent[2], "pending")])
    record(store, "k1", "B1", sent)
    assert progress(store, "k1") == (3, 1, 1)


def test_save_reports_consumes_a_generator_page_by_page(backend: Backend, store: SmsStore) -> None:
    batches = 50
    for i in range(batches):
        record(store, f"k{i}", f"B{i:03d}", numbers(1000, 1000 * i))
    committed_midway: list[int] = []

    def reports() -> Iterator[DeliveryReport]:
        for i in range(batches * 1000):
            if i == 20_000:  # by now earlier pages must be committed, and later ones not yet built
                committed_midway.append(backend.count("delivery_reports"))
            status = "failed" if i % 10 == 0 else "delivered"
            yield report(f"B{i // 1000:03d}", f"138{i:08d}", status, raw={"n": i})

    result = store.save_reports(reports(), conn_id="sms_test")
    assert result == SaveResult(50_000, 0, 0)
    assert committed_midway and 15_000 <= committed_midway[0] < 50_000, committed_midway
    assert backend.count("delivery_reports") == 50_000
    assert store.batch_progress(VENDOR, [f"B{i:03d}" for i in range(batches)]) == BatchProgress(50_000, 45_000, 5_000)
    row = backend.report_row("B049", "13800049999")
    assert row is not None and json.loads(row["raw"]) == {"n": 49_999}
    backend.assert_counters_exact()


def test_batch_progress_reads_counters_not_messages(store: SmsStore) -> None:
    batch_ids = [f"B{i:03d}" for i in range(100)]
    for i, batch_id in enumerate(batch_ids):
        record(store, f"k{i}", batch_id, numbers(1000, 1000 * i))
    store.batch_progress(VENDOR, batch_ids[:1])  # connect and warm up
    started = time.perf_counter()
    got = store.batch_progress(VENDOR, batch_ids)
    elapsed = time.perf_counter() - started
    assert got == BatchProgress(100_000, 0, 0) and got.pending == 100_000
    assert elapsed < 0.1, f"batch_progress took {elapsed * 1000:.1f} ms for 100 batches of 1000"


def test_iter_reports_picks_up_new_and_updated_rows_by_seq(backend: Backend, store: SmsStore) -> None:
    mobiles = numbers(12)
    store.save_reports([report("B1", m, "pending", raw={"i": i}) for i, m in enumerate(mobiles[:10])], conn_id="c1")
    store.save_reports([report("B2", m, "delivered", vendor="intl") for m in mobiles[10:]], conn_id="c2")

    pages = list(store.iter_reports(page_size=5))
    assert [len(p) for p in pages] == [5, 5, 2]
    rows = [row for page in pages for row in page]
    assert set(rows[0]) == REPORT_COLUMNS
    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12
    assert json.loads(rows[3]["raw"]) == {"i": 3}
    assert datetime.fromisoformat(rows[0]["reported_at"]) == T0
    last = seqs[-1]

    store.save_reports(
        [report("B1", m, "delivered") for m in mobiles[:3]]  # updates
        + [report("B1", mobiles[5], "pending", raw={"i": 5})]  # a repeat: no change
        + [report("B3", "13900000000", "failed")],  # new
        conn_id="c1",
    )
    fresh = [row for page in store.iter_reports(since_seq=last) for row in page]
    assert sorted((r["batch_id"], r["mobile"], r["status"]) for r in fresh) == sorted(
        [("B1", m, "delivered") for m in mobiles[:3]] + [("B3", "13900000000", "failed")]
    )
    assert all(r["seq"] > last for r in fresh)
    assert [r["seq"] for r in fresh] == sorted(r["seq"] for r in fresh)
    assert [r for page in store.iter_reports(since_seq=last) for r in page] == fresh
    assert list(store.iter_reports(since_seq=max(r["seq"] for r in fresh))) == []

    intl = [r for page in store.iter_reports(vendor="intl") for r in page]
    assert {r["mobile"] for r in intl} == set(mobiles[10:])
    by_conn = [r for page in store.iter_reports(conn_id="c2") for r in page]
    assert {r["mobile"] for r in by_conn} == set(mobiles[10:])


EARLY, LATE = "2024-05-01T08:00:00.000000+00:00", "2024-05-01T08:00:01.000000+00:00"


@pytest.mark.parametrize(
    ("old", "new", "replaces"),
    [
        (
            ("pending", "", "", LATE),
            ("delivered", "D", "", None),
            True,
        ),  # final beats pending, whatever the time
        (("pending", "", "", None), ("failed", "F", "", EARLY), True),
        (("delivered", "D", "", None), ("pending", "", "", LATE), False),  # pending never beats final
        (("delivered", "D", "", EARLY), ("delivered", "D", "", EARLY), False),  # identical
        (("delivered", "D", "", EARLY), ("failed", "F", "", LATE), True),  # newer final
        (("delivered", "D", "", LATE), ("failed", "F", "", EARLY), False),  # older final
        (("delivered", "D", "", EARLY), ("failed", "F", "", EARLY), True),  # same time: the newer arrival
        (("delivered", "D", "", None), ("failed", "F", "", EARLY), True),  # a time beats no time
        (("delivered", "D", "", EARLY), ("delivered", "D2", "x", None), False),  # no time loses to a time
        (("failed", "F", "", None), ("delivered", "D", "", None), True),  # neither has one: newer arrival
        (("pending", "", "", LATE), ("pending", "Q", "", EARLY), False),
    ],
)
def test_report_replaces(old: Any, new: Any, replaces: bool) -> None:
    assert report_replaces(old, new) is replaces


def test_mask_resolver_matches_like_mask_matches() -> None:
    sent = {
        ("v", "B1"): ["13512349831", "13800000001", "13512340000"],
        ("v", "B2"): ["13511119831", "13522229831"],
    }
    fetched: list[tuple[str, str]] = []

    def fetch(vendor: str, batch_id: str) -> list[str]:
        fetched.append((vendor, batch_id))
        return list(sent.get((vendor, batch_id), []))

    resolver = MaskResolver()
    assert resolver.resolve("v", "B1", "135****9831", fetch) == "13512349831"
    assert resolver.resolve("v", "B1", "1351****831", fetch) == "13512349831"  # another mask shape
    assert resolver.resolve("v", "B1", "138*****001", fetch) == "13800000001"
    assert resolver.resolve("v", "B1", "135****000", fetch) is None  # wrong length
    assert resolver.resolve("v", "B2", "135****9831", fetch) is None  # ambiguous
    assert resolver.resolve("v", "B3", "135****9831", fetch) is None  # nothing sent
    assert fetched == [("v", "B1"), ("v", "B2"), ("v", "B3")], "each batch is read once"
    for masked in ("135****9831", "1351****831", "13*********", "*****", "135****983X"):
        expected = [n for n in sent[("v", "B1")] if mask_matches(masked, n)]
        assert resolver.resolve("v", "B1", masked, fetch) == (expected[0] if len(expected) == 1 else None), masked

    small = MaskResolver(max_numbers=3)
    small.resolve("v", "B1", "135****9831", fetch)
    small.resolve("v", "B2", "135****9831", fetch)  # pushes B1 out
    small.resolve("v", "B1", "135****9831", fetch)
    assert fetched[-3:] == [("v", "B1"), ("v", "B2"), ("v", "B1")]
