"""The send ledger: requests recorded accepted or unknown, idempotently."""

from __future__ import annotations

import pytest

from airflow_provider_sms.records import IntentClaim, PlanRequest, StoredPlan
from airflow_provider_sms.store import (
    SmsStore,
    TaskIdentity,
)
from tests.integration.store.support import TASK, VENDOR, Backend, numbers, progress, receipt, record, report

pytestmark = pytest.mark.integration


def test_record_accepted_is_idempotent(backend: Backend, store: SmsStore) -> None:
    record(store, "k1", "B1", numbers(3))
    first = store.accepted_requests(["k1", "missing"])
    assert set(first) == {"k1"}
    found = first["k1"]
    assert (found.state, found.batch_id, found.vendor, found.conn_id) == (
        "accepted",
        "B1",
        VENDOR,
        "sms_test",
    )
    assert (found.total, found.delivered, found.failed, found.pending) == (3, 0, 0, 3)
    assert found.task == TASK
    assert found.created_at.tzinfo is not None

    record(store, "k1", "B1", numbers(3))
    record(store, "k1", "B2", numbers(2, 100))  # a different batch for a recorded key is not taken
    assert store.accepted_requests(["k1"])["k1"] == found
    assert backend.count("requests") == 1
    assert backend.query("SELECT batch_id, COUNT(*) FROM {p}sent_messages GROUP BY batch_id") == [("B1", 3)]
    sent = backend.query("SELECT idempotency_key, conn_id, task_id, map_index FROM {p}sent_messages")
    assert set(sent) == {("k1", "sms_test", "send", 0)}

    record(store, "k2", "B3", ["13800000001", "13800000001", "13800000002"])
    assert progress(store, "k2") == (2, 0, 0)


def test_unknown_then_accepted(store: SmsStore) -> None:
    store.record_unknown("k", vendor=VENDOR, conn_id="sms_test", mobiles=numbers(5), task=TASK, reason="read timed out")
    unknown = store.accepted_requests(["k"])["k"]
    assert (unknown.state, unknown.batch_id, unknown.total, unknown.reason) == (
        "unknown",
        None,
        5,
        "read timed out",
    )

    record(store, "k", "B9", numbers(5))
    accepted = store.accepted_requests(["k"])["k"]
    assert (accepted.state, accepted.batch_id, accepted.total) == ("accepted", "B9", 5)
    assert accepted.reason == "read timed out", "the earlier doubt stays on record"
    assert accepted.created_at == unknown.created_at

    store.record_unknown("k", vendor=VENDOR, conn_id="sms_test", mobiles=numbers(5), task=TASK, reason="again")
    assert store.accepted_requests(["k"])["k"] == accepted, "unknown never downgrades an accepted request"


def test_task_identity_from_context() -> None:
    class Ti:
        dag_id, run_id, task_id, map_index = "d", "r", "t", None

    assert TaskIdentity.from_context({"ti": Ti()}) == TaskIdentity("d", "r", "t", -1)
    assert TaskIdentity.from_context({}) == TaskIdentity()


def _planned(store: SmsStore, requests: int, per_request: int, *, first_sending: bool = True) -> list[PlanRequest]:
    """A stored plan of ``requests`` requests, the first one's intent stored, as a send's first commit leaves it."""
    rows = tuple(
        PlanRequest(key=f"t-1-{i}", index=i, state="planned", mobiles=tuple(numbers(per_request, per_request * i)))
        for i in range(requests)
    )
    plan = StoredPlan(
        task_key="t",
        plan_key="t-1",
        generation=1,
        inputs={},
        numbers=requests * per_request,
        opted_out=0,
        requests=rows,
    )
    store.save_plan(plan, vendor=VENDOR, conn_id="sms_test", task=TASK, intents={rows[0].key} if first_sending else ())
    return list(rows)


def _accept(store: SmsStore, request: PlanRequest, batch_id: str, following: PlanRequest | None) -> bool:
    claim = IntentClaim(following.key, "planned", "") if following is not None else None
    return store.record_accepted(
        request.key, receipt(batch_id, request.mobiles), conn_id="sms_test", task=TASK, next_intent=claim
    )


def _state(backend: Backend, key: str) -> tuple[str, str | None]:
    rows = backend.query("SELECT state, batch_id FROM {p}requests WHERE idempotency_key = ?", (key,))
    return rows[0][0], rows[0][1]


def test_planned_requests_are_accepted_with_the_next_intent_in_every_case(backend: Backend, store: SmsStore) -> None:
    """The usual acceptance is one statement with no lookup before it; every other case (a report of the batch
    came first, the vendor gave two requests one batch id, the request was accepted already, the next request's
    row changed meanwhile) takes the lookup, and each ends with the same rows as before the shortcut."""
    first, second, third, fourth, fifth = _planned(store, 5, 4)

    assert _accept(store, first, "B1", second)  # the usual case
    assert _state(backend, first.key) == ("accepted", "B1") and _state(backend, second.key)[0] == "sending"
    assert progress(store, first.key) == (4, 0, 0)

    store.save_reports([report("B2", second.mobiles[0]), report("B2", second.mobiles[1], "failed")])
    assert _accept(store, second, "B2", third)  # two reports of its batch came before it was recorded
    assert _state(backend, third.key)[0] == "sending"
    assert progress(store, second.key) == (4, 1, 1)

    assert _accept(store, third, "B1", fourth)  # the vendor gave it the batch id of the first request
    assert (_state(backend, third.key), _state(backend, fourth.key)[0]) == (("accepted", "B1"), "sending")
    assert progress(store, third.key) == (4, 0, 0)

    assert _accept(store, third, "B1", None)  # recorded twice: nothing changes
    assert _state(backend, third.key) == ("accepted", "B1")

    backend.query("UPDATE {p}requests SET sending_at = 'another try' WHERE idempotency_key = ?", (fifth.key,))
    assert not _accept(store, fourth, "B4", fifth), "the next request's row changed: its intent is not stored"
    assert _state(backend, fourth.key) == ("accepted", "B4"), "the acceptance is recorded all the same"
    assert _state(backend, fifth.key)[0] == "planned"
    assert _accept(store, fifth, "B5", None)
    assert [progress(store, r.key) for r in (first, second, third, fourth, fifth)] == [
        (4, 0, 0),
        (4, 1, 1),
        (4, 0, 0),
        (4, 0, 0),
        (4, 0, 0),
    ]
    backend.assert_counters_exact()
