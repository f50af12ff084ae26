"""The send ledger: requests recorded accepted or unknown, idempotently."""

from __future__ import annotations

import pytest

from airflow_provider_sms.store import (
    SmsStore,
    TaskIdentity,
)
from tests.integration.store.support import TASK, VENDOR, Backend, numbers, progress, record

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
