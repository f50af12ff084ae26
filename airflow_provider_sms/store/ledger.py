"""The send ledger: each task instance's send plan, and every request's intent and outcome.

A request's row moves ``planned`` -> ``sending`` (its intent, durable before its bytes leave) ->
``accepted`` (the vendor gave a batch id) or ``unknown`` (it may have gone out; never resent blindly).
The row holds its numbers, so the report side can tell which request sent a number.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_sms.records import (
    ACCEPTED,
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    MOVED,
    PLANNED,
    SENDING,
    SKIPPED,
    UNKNOWN,
    IntentClaim,
    PlanRequest,
    SendReceipt,
    StoredPlan,
)
from airflow_provider_sms.store.database import PAGE_SIZE, Database, StoreSection, now_text, utc_text
from airflow_provider_sms.store.schema import numbers_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskIdentity:
    """Which task instance sent: kept with every request for audit and to tie retries together."""

    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskIdentity:
        """The identity of the running task instance, from an Airflow task context."""
        ti = context.get("ti") or context.get("task_instance")
        if ti is None:
            return cls()
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=str(getattr(ti, "dag_id", "") or ""),
            run_id=str(getattr(ti, "run_id", "") or ""),
            task_id=str(getattr(ti, "task_id", "") or ""),
            map_index=int(map_index) if map_index is not None else -1,
        )

    def row(self) -> tuple[str, str, str, int]:
        """As the columns ``dag_id, run_id, task_id, map_index`` of a request or plan row."""
        return (self.dag_id, self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True)
class RequestRecord:
    """What the store knows of one send request, found by its idempotency key.

    ``state`` is ``"accepted"`` (the vendor gave ``batch_id``) or ``"unknown"`` (the request may
    have gone out; ``batch_id`` is None and resending risks a double send).
    """

    idempotency_key: str
    vendor: str
    conn_id: str
    state: str
    batch_id: str | None
    total: int
    delivered: int
    failed: int
    reason: str | None
    task: TaskIdentity
    created_at: datetime
    updated_at: datetime

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed


class SentBatch:
    """Which accepted request of one batch sent a number, from the requests' JSON lists of numbers.

    A number asked about once is found by a substring search of the JSON text (no decoding: a page
    of reports can touch a thousand batches); a batch asked about often is decoded once into a dict.
    """

    __slots__ = ("_owners", "_requests")

    def __init__(self, requests: Sequence[tuple[str, str | None]]) -> None:
        self._requests = requests  # (idempotency_key, numbers as JSON), oldest first
        self._owners: dict[str, str] | None = None

    def index(self) -> dict[str, str]:
        """Number -> the key of the first request that sent it (a new dict the caller may change)."""
        owners: dict[str, str] = {}
        for key, numbers in self._requests:
            for mobile in json.loads(numbers) if numbers else ():
                owners.setdefault(mobile, key)
        return owners

    def owner(self, mobile: str, *, decode: bool) -> str | None:
        if decode and self._owners is None:
            self._owners = self.index()
        if self._owners is not None:
            return self._owners.get(mobile)
        needle = json.dumps(mobile, ensure_ascii=False)  # quotes included: matches whole numbers only
        for key, numbers in self._requests:
            if numbers and needle in numbers:
                return key
        return None


#: the accepted requests of one batch, oldest first, with their numbers
ACCEPTED_IN_BATCH = f"""SELECT r.idempotency_key, {numbers_of("r")} FROM {{p}}requests r
    WHERE r.vendor = ? AND r.batch_id = ? AND r.state = 'accepted' ORDER BY r.created_at, r.idempotency_key"""


def sent_numbers(db: Database, vendor: str, batch_id: str) -> list[str]:
    """Every number the accepted requests of a batch sent."""
    with db.transaction(write=False) as cur:
        cur.execute(db.sql(ACCEPTED_IN_BATCH), (vendor, batch_id))
        return list(SentBatch(cur.fetchall()).index())


def sent_batches(db: Database, cur: Any, batches: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SentBatch]:
    """The accepted requests of each (vendor, batch_id) that has any."""
    return sent_batches_later(db, cur, batches)()


def sent_batches_later(
    db: Database, cur: Any, batches: Sequence[tuple[str, str]]
) -> Callable[[], dict[tuple[str, str], SentBatch]]:
    """:func:`sent_batches`, its queries sent now and read when the returned function is called (in a
    pipeline, with the statements sent in between)."""
    by_vendor: dict[str, list[str]] = {}
    for vendor, batch_id in batches:
        by_vendor.setdefault(vendor, []).append(batch_id)
    sql = f"""SELECT r.batch_id, r.idempotency_key, {numbers_of("r")} FROM {{p}}requests r
        WHERE r.vendor = ? AND r.state = 'accepted' AND r.batch_id IN ({{in}})
        ORDER BY r.created_at, r.idempotency_key"""
    pending = [(vendor, db.select_in_later(cur, sql, (vendor,), batch_ids)) for vendor, batch_ids in by_vendor.items()]

    def read() -> dict[tuple[str, str], SentBatch]:
        found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for vendor, rows in pending:
            for batch_id, request_key, mobiles in rows():
                found.setdefault((vendor, batch_id), []).append((request_key, mobiles))
        return {batch: SentBatch(requests) for batch, requests in found.items()}

    return read


def mobiles_json(mobiles: Sequence[str]) -> str:
    """A JSON list of numbers; digits need no escaping, so the usual list is joined (10x json.dumps)."""
    if "".join(mobiles).encode().isdigit():  # bytes.isdigit: ASCII digits only, and fast
        return '["' + '","'.join(mobiles) + '"]'
    return json.dumps(list(mobiles), ensure_ascii=False, separators=(",", ":"))


# fmt: off
_REQUEST_COLUMNS = (
    "idempotency_key", "vendor", "conn_id", "state", "batch_id", "total", "delivered", "failed", "reason",
    "dag_id", "run_id", "task_id", "map_index", "created_at", "updated_at",
)
# fmt: on
_UPSERT_REQUEST = """INSERT INTO {p}requests (idempotency_key, vendor, conn_id, batch_id, state, total,
        delivered, failed, reason, dag_id, run_id, task_id, map_index, created_at, updated_at,
        mobiles, submitted_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (idempotency_key) DO UPDATE SET
        vendor = excluded.vendor, conn_id = excluded.conn_id, batch_id = excluded.batch_id,
        state = excluded.state, total = excluded.total, delivered = excluded.delivered,
        failed = excluded.failed, reason = COALESCE(excluded.reason, {p}requests.reason),
        dag_id = excluded.dag_id, run_id = excluded.run_id, task_id = excluded.task_id,
        map_index = excluded.map_index, updated_at = excluded.updated_at, mobiles = excluded.mobiles,
        submitted_at = excluded.submitted_at
    WHERE {p}requests.state <> 'accepted'"""
# The accepted request (the first key) and, in the same statement, the next request's intent (the last).
_ACCEPT_SET = """UPDATE {p}requests SET
        state = CASE WHEN idempotency_key = ? THEN 'accepted' ELSE 'sending' END,
        batch_id = CASE WHEN idempotency_key = ? THEN ? ELSE batch_id END,
        total = CASE WHEN idempotency_key = ? THEN COALESCE(?, total) ELSE total END,
        delivered = CASE WHEN idempotency_key = ? THEN ? ELSE delivered END,
        failed = CASE WHEN idempotency_key = ? THEN ? ELSE failed END,
        submitted_at = CASE WHEN idempotency_key = ? THEN ? ELSE submitted_at END,
        sending_at = CASE WHEN idempotency_key = ? THEN sending_at ELSE ? END,
        updated_at = ?"""
_ACCEPT_ROWS = """(idempotency_key = ? AND state <> 'accepted')
       OR (idempotency_key = ? AND state = ? AND COALESCE(sending_at, '') = ?)"""
_ACCEPT_PLANNED = f"""{_ACCEPT_SET}
    WHERE {_ACCEPT_ROWS}"""
# The same for the usual case only, with no lookup before it: the request's row is there and not yet
# accepted, no other request has its batch id, no final report of the batch came first. Anything else
# changes no row, and the lookup runs.
_ACCEPT_PLANNED_ALONE = f"""{_ACCEPT_SET}
    WHERE ({_ACCEPT_ROWS})
    AND EXISTS (SELECT 1 FROM {{p}}requests WHERE idempotency_key = ? AND state <> 'accepted')
    AND NOT EXISTS (SELECT 1 FROM {{p}}requests WHERE vendor = ? AND batch_id = ? AND state = 'accepted')
    AND NOT EXISTS (SELECT 1 FROM {{p}}delivery_reports WHERE vendor = ? AND batch_id = ? AND status IN (?, ?, ?))"""
# One round trip before recording: this key's state, the batch's accepted requests (a vendor that
# reuses batch ids), and the final reports that came before this call.
_BEFORE_RECORDING = f"""SELECT 'state', state, batch_id FROM {{p}}requests WHERE idempotency_key = ?
    UNION ALL SELECT 'request', r.idempotency_key, {numbers_of("r")} FROM {{p}}requests r
        WHERE r.vendor = ? AND r.batch_id = ? AND r.state = 'accepted'
    UNION ALL SELECT 'report', mobile, status FROM {{p}}delivery_reports
        WHERE vendor = ? AND batch_id = ? AND status IN (?, ?, ?)"""
# A request's intent, stored only if its row is as the claiming try read it (``IntentClaim``).
_CLAIM_INTENT = """UPDATE {p}requests SET state = ?, sending_at = ?, updated_at = ?
    WHERE idempotency_key = ? AND state = ? AND COALESCE(sending_at, '') = ?"""
#: a plan this large (its numbers ~16 bytes each) is copied from SQLite's log while the send goes on
_CHECKPOINT_AFTER_NUMBERS = 10_000
_PLAN_COLUMNS = ("plan_key", "generation", "inputs", "numbers", "opted_out", "report_seq")


class SendLedger(StoreSection):
    """Send plans, request intents and outcomes (``requests``, ``send_plans``, ``plan_numbers``)."""

    def accepted_requests(self, keys: Sequence[str]) -> dict[str, RequestRecord]:
        """The keys already recorded (accepted or unknown), so a retry does not send them again."""
        wanted = list(dict.fromkeys(keys))
        sql = f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM {{p}}requests WHERE idempotency_key IN ({{in}})"
        with self._db.transaction(write=False) as cur:
            rows = [dict(zip(_REQUEST_COLUMNS, row, strict=True)) for row in self._db.select_in(cur, sql, (), wanted)]
        return {row["idempotency_key"]: _request_record(row) for row in rows}

    def record_accepted(
        self,
        key: str,
        receipt: SendReceipt,
        *,
        conn_id: str,
        task: TaskIdentity,
        next_intent: IntentClaim | None = None,
    ) -> bool:
        """Record, in one transaction, that the vendor accepted ``key`` as ``receipt.batch_id``.

        One row per request, its numbers a JSON list in it: recording costs the same for one number
        or a thousand. Recording a key that is already accepted changes nothing; an ``unknown`` one is
        upgraded. Reports that arrived before this call are counted into the new request's counters.

        ``next_intent``: the request that goes out next, marked ``sending`` in the same commit, so the intent
        of every request is durable before it leaves at no extra commit. Returns whether that intent was
        stored: False when another try changed its row first (the acceptance is recorded all the same).
        """
        db = self._db
        changed = self._accept_usual(key, receipt, next_intent)
        if changed:  # the request's row always changes in it, the next one's when its claim holds
            return next_intent is None or changed == 2
        # Anything else looks first. In a pipeline (psycopg 3) the lock travels with the lookup, and the writes
        # with the commit: two round trips. Whether the next intent was stored is known once the commit returns.
        with db.pipeline(), db.transaction(write=True) as cur:
            claimed = self._record_accepted(cur, key, receipt, conn_id, task, next_intent)
        return claimed()

    def _accept_usual(self, key: str, receipt: SendReceipt, next_intent: IntentClaim | None) -> int:
        """The usual acceptance (a planned request, alone in its batch, no report before it) as one statement
        with no lookup before it; the rows it changed, 0 when the case is not the usual one (nothing changed).

        SQLite: the statement is its own transaction. PostgreSQL: after the report counter's lock, as the
        whole path takes it, and in a pipeline (psycopg 3) lock, statement and commit are one round trip.
        """
        db = self._db
        batch = (receipt.vendor, receipt.batch_id)
        params = (
            *self._accept_planned_params(key, receipt, None, now_text(), next_intent),
            *(key, *batch, *batch, DELIVERED, FAILED, EXPIRED),
        )
        single_writer = db.dialect.single_writer  # connects, so that the SQL below is the dialect's
        sql = db.sql(_ACCEPT_PLANNED_ALONE)
        if single_writer:
            return db.write_alone(sql, params)
        with db.pipeline(), db.transaction(write=True) as cur:
            locked = db.read_counter_later(cur, "delivery_reports", lock=True)
            changed = db.execute_counted(cur, sql, params)
        locked()  # arrived with the commit; read so that its cursor closes
        return changed()

    def _record_accepted(
        self,
        cur: Any,
        key: str,
        receipt: SendReceipt,
        conn_id: str,
        task: TaskIdentity,
        next_intent: IntentClaim | None,
    ) -> Callable[[], bool]:
        """``record_accepted`` inside its transaction; returns whether the next intent was stored, to be read
        after the commit."""
        db = self._db
        now = now_text()
        batch = (receipt.vendor, receipt.batch_id)
        # The report counter row serialises this with save_reports, so no report slips between the request
        # going in and its counters being set (SQLite's BEGIN IMMEDIATE already does).
        locked = db.read_counter_later(cur, "delivery_reports", lock=True) if db.dialect.lock_row else None
        cur.execute(db.sql(_BEFORE_RECORDING), (key, *batch, *batch, DELIVERED, FAILED, EXPIRED))
        found: dict[str, list[tuple[Any, Any]]] = {"state": [], "request": [], "report": []}
        for kind, first, second in cur.fetchall():
            found[kind].append((first, second))
        if locked is not None:
            locked()  # arrived before the lookup's rows: reading it costs no round trip
        if found["state"] and found["state"][0][0] == ACCEPTED:
            claimed = self._claim_later(cur, next_intent, now)
            recorded_batch = found["state"][0][1]
            if recorded_batch != receipt.batch_id:
                log.warning(
                    "SMS store: request %s is already recorded as %s batch %s; batch %s not recorded",
                    key,
                    receipt.vendor,
                    recorded_batch,
                    receipt.batch_id,
                )
            return claimed
        earlier, finals = found["request"], found["report"]
        if found["state"] and not (earlier or finals):
            # The usual planned request, the first of its batch with no report before it: its row counts
            # its (distinct) numbers already, so no number of it needs looking at.
            return self._accept_planned(cur, key, receipt, (None, 0, 0), now, next_intent)
        counted = set(receipt.mobiles)  # a set, not the ordered list the row may need: half the cost
        if earlier:
            counted.difference_update(SentBatch(earlier).index())
        delivered = sum(1 for mobile, status in finals if status == DELIVERED and mobile in counted)
        failed = sum(1 for mobile, status in finals if status in (FAILED, EXPIRED) and mobile in counted)
        if found["state"]:
            return self._accept_planned(cur, key, receipt, (len(counted), delivered, failed), now, next_intent)
        claimed = self._claim_later(cur, next_intent, now)
        self._upsert_request(
            cur,
            key,
            receipt.vendor,
            conn_id,
            task,
            now,
            batch_id=receipt.batch_id,
            state=ACCEPTED,
            counts=(len(counted), delivered, failed),
            reason=None,
            mobiles=list(dict.fromkeys(receipt.mobiles)),
            submitted_at=utc_text(receipt.submitted_at),
        )
        return claimed

    def _accept_planned(
        self,
        cur: Any,
        key: str,
        receipt: SendReceipt,
        counts: tuple[int | None, int, int],
        now: str,
        next_intent: IntentClaim | None,
    ) -> Callable[[], bool]:
        """A request with a row (planned, or left unknown): its row holds its numbers already, so only its
        outcome is written, and the next request's intent rides in the same statement (one round trip,
        one commit). ``counts``: total (None: the row's own), delivered, failed. Returns whether the intent
        was stored (the statement changed both rows), read after the commit."""
        params = self._accept_planned_params(key, receipt, counts[0], now, next_intent, counts[1:])
        changed = self._db.execute_counted(cur, self._db.sql(_ACCEPT_PLANNED), params)
        return lambda: next_intent is None or changed() == 2

    @staticmethod
    def _accept_planned_params(
        key: str,
        receipt: SendReceipt,
        total: int | None,
        now: str,
        next_intent: IntentClaim | None,
        reported: tuple[int, int] = (0, 0),
    ) -> tuple[Any, ...]:
        """``_ACCEPT_PLANNED``'s parameters: the outcome for ``key`` (``total`` None: the row's own), the intent
        for the next request."""
        outcome = (receipt.batch_id, total, *reported, utc_text(receipt.submitted_at))
        claim = next_intent or IntentClaim(key, "", "")  # none: a clause that matches no row
        return (key, *(v for value in outcome for v in (key, value)), key, now, now, key, *claim)

    def _claim_later(self, cur: Any, claim: IntentClaim | None, now: str) -> Callable[[], bool]:
        """The next request's intent, inside an acceptance's commit; whether it was stored, read after it."""
        if claim is None:
            return lambda: True
        changed = self._db.execute_counted(cur, self._db.sql(_CLAIM_INTENT), (SENDING, now, now, *claim))
        return lambda: changed() == 1

    def _upsert_request(
        self,
        cur: Any,
        key: str,
        vendor: str,
        conn_id: str,
        task: TaskIdentity,
        now: str,
        *,
        batch_id: str | None,
        state: str,
        counts: tuple[int, int, int],
        reason: str | None,
        mobiles: Sequence[str],
        submitted_at: str | None,
    ) -> None:
        """A request row written whole (a request outside any plan); an accepted row is never changed."""
        cur.execute(
            self._db.sql(_UPSERT_REQUEST),
            (
                key,
                vendor,
                conn_id,
                batch_id,
                state,
                *counts,
                reason,
                *task.row(),
                now,
                now,
                mobiles_json(mobiles),
                submitted_at,
            ),
        )

    def record_unknown(
        self,
        key: str,
        *,
        vendor: str,
        conn_id: str,
        mobiles: Sequence[str],
        task: TaskIdentity,
        reason: str,
    ) -> None:
        """Record that ``key`` may have gone out with no answer, so nothing resends it blindly.

        Never downgrades an accepted request; a later ``record_accepted`` upgrades this one.
        """
        unique = list(dict.fromkeys(mobiles))
        with self._db.transaction(write=True) as cur:
            self._upsert_request(
                cur,
                key,
                vendor,
                conn_id,
                task,
                now_text(),
                batch_id=None,
                state=UNKNOWN,
                counts=(len(unique), 0, 0),
                reason=reason,
                mobiles=unique,
                submitted_at=None,
            )

    # ---------------------------------------------------------------------------- send plans

    def find_plan(self, task_key: str) -> StoredPlan | None:
        """The plan a task instance's first try stored, with every request's row, or None."""
        db = self._db
        with db.transaction(write=False) as cur:
            cur.execute(
                db.sql(f"SELECT {', '.join(_PLAN_COLUMNS)} FROM {{p}}send_plans WHERE task_key = ?"), (task_key,)
            )
            found = cur.fetchone()
            if found is None:
                return None
            plan = dict(zip(_PLAN_COLUMNS, found, strict=True))
            cur.execute(
                db.sql(
                    """SELECT r.idempotency_key, r.request_index, r.state, n.mobiles, r.batch_id, r.sending_at,
                        r.reason FROM {p}requests r JOIN {p}plan_numbers n
                            ON n.plan_key = r.plan_key AND n.request_index = r.request_index
                    WHERE r.plan_key = ? ORDER BY r.request_index"""
                ),
                (plan["plan_key"],),
            )
            rows = cur.fetchall()
        requests = tuple(
            PlanRequest(
                key=key,
                index=int(index),
                state=state,
                mobiles=tuple(json.loads(mobiles)) if mobiles else (),
                batch_id=batch_id,
                sending_at=datetime.fromisoformat(sending_at) if sending_at else None,
                reason=reason,
                sending_mark=sending_at or "",
            )
            for key, index, state, mobiles, batch_id, sending_at, reason in rows
        )
        return StoredPlan(
            task_key=task_key,
            plan_key=str(plan["plan_key"]),
            generation=int(plan["generation"]),
            inputs=json.loads(plan["inputs"]),
            numbers=int(plan["numbers"]),
            opted_out=int(plan["opted_out"]),
            report_seq=int(plan["report_seq"]),
            requests=requests,
        )

    def save_plan(
        self,
        plan: StoredPlan,
        *,
        vendor: str,
        conn_id: str,
        task: TaskIdentity,
        intents: Collection[str] = (),
        replaces: str | None = None,
    ) -> StoredPlan:
        """Store a new plan and its requests in one commit, before anything of it goes out.

        ``intents``: the keys that go out first, stored as ``sending`` in the same commit. ``replaces``:
        the plan key of an earlier plan of the same task instance whose unsent requests are cancelled.
        Returns the plan with the report sequence it starts after (evidence for unknown outcomes).
        """
        with self._db.transaction(write=True) as cur:
            report_seq = self._write_plan(cur, plan, plan.requests, vendor, conn_id, task, intents, replaces)
        if plan.numbers >= _CHECKPOINT_AFTER_NUMBERS:
            self._db.checkpoint_in_background()  # while the first requests are on the wire
        return dataclasses.replace(plan, report_seq=report_seq)

    def hand_over(
        self,
        source: StoredPlan,
        moved: Sequence[PlanRequest],
        target: StoredPlan,
        added: Sequence[PlanRequest],
        *,
        vendor: str,
        conn_id: str,
        task: TaskIdentity,
        reason: str,
        replaces: str | None = None,
    ) -> StoredPlan:
        """Move requests another connection will send, in one commit: the source plan's ``moved`` requests
        (every planned one: they never reached their vendor) become ``moved``, and the ``target`` plan, of the next
        connection, is stored with its ``added`` requests for their numbers (appended when the target plan
        exists already). A crash leaves either both or neither, so no number is in two open requests.

        Raises ``SmsPlanChangedError`` when a moved request is no longer planned (another try of the task
        instance sent it meanwhile): then nothing moves.
        """
        from airflow_provider_sms.errors import SmsPlanChangedError

        db = self._db
        with db.transaction(write=True) as cur:
            cur.execute(
                db.sql("UPDATE {p}requests SET state = ?, reason = ?, updated_at = ? WHERE plan_key = ? AND state = ?"),
                (MOVED, reason[:500], now_text(), source.plan_key, PLANNED),
            )
            if cur.rowcount != len(moved):
                raise SmsPlanChangedError(
                    f"the requests of {source.plan_key} to move to {conn_id!r} changed meanwhile ({len(moved)} "
                    f"planned, {cur.rowcount} now): another try of this task instance is sending; nothing was moved"
                )
            report_seq = self._write_plan(cur, target, added, vendor, conn_id, task, (), replaces)
        return dataclasses.replace(target, report_seq=report_seq)

    def _write_plan(
        self,
        cur: Any,
        plan: StoredPlan,
        requests: Sequence[PlanRequest],
        vendor: str,
        conn_id: str,
        task: TaskIdentity,
        intents: Collection[str],
        replaces: str | None,
    ) -> int:
        """The plan's row (new, replacing an earlier plan, or the same plan grown) and ``requests``' rows;
        returns the report sequence the plan starts after (kept when the same plan grows). A new plan whose
        key is stored already was made by a try running beside this one: ``SmsConcurrentSendError``."""
        db = self._db
        grows = len(requests) != len(plan.requests)  # requests added to those it has
        now = now_text()
        rows = [
            (
                request.key,
                vendor,
                conn_id,
                SENDING if request.key in intents else PLANNED,
                len(request.mobiles),
                *task.row(),
                now,
                now,
                plan.plan_key,
                request.index,
                now if request.key in intents else None,
            )
            for request in requests
        ]
        numbers = [(plan.plan_key, request.index, mobiles_json(request.mobiles)) for request in requests]
        # fmt: off
        columns = (
            "idempotency_key", "vendor", "conn_id", "state", "total", "dag_id", "run_id", "task_id", "map_index",
            "created_at", "updated_at", "plan_key", "request_index", "sending_at",
        )
        # fmt: on
        report_seq = db.read_counter(cur, "delivery_reports")
        cur.execute(
            db.sql(
                """INSERT INTO {p}send_plans (task_key, plan_key, generation, vendor, conn_id, dag_id, run_id,
                    task_id, map_index, inputs, numbers, requests, opted_out, report_seq, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (task_key) DO UPDATE SET plan_key = excluded.plan_key,
                    generation = excluded.generation, inputs = excluded.inputs, numbers = excluded.numbers,
                    requests = excluded.requests, opted_out = excluded.opted_out,
                    report_seq = CASE WHEN {p}send_plans.plan_key = excluded.plan_key
                        THEN {p}send_plans.report_seq ELSE excluded.report_seq END,
                    updated_at = excluded.updated_at
                WHERE {p}send_plans.plan_key <> excluded.plan_key OR ?"""
            ),
            (
                plan.task_key,
                plan.plan_key,
                plan.generation,
                vendor,
                conn_id,
                *task.row(),
                json.dumps(plan.inputs, sort_keys=True),
                plan.numbers,
                len(plan.requests),
                plan.opted_out,
                report_seq,
                now,
                now,
                grows,
            ),
        )
        if cur.rowcount != 1:  # the same plan key stored already, by a try running beside this one
            from airflow_provider_sms.errors import SmsConcurrentSendError

            raise SmsConcurrentSendError(
                f"plan {plan.plan_key} was stored by another try of the same task instance running at the same "
                "time (one Airflow took for dead, and its retry): this try sends nothing and leaves it to that one"
            )
        cur.execute(db.sql("SELECT report_seq FROM {p}send_plans WHERE task_key = ?"), (plan.task_key,))
        report_seq = int(cur.fetchone()[0])  # a plan grown by a hand-over keeps its own
        if replaces is not None:
            cur.execute(
                db.sql("UPDATE {p}requests SET state = ?, updated_at = ? WHERE plan_key = ? AND state = ?"),
                (CANCELLED, now, replaces, PLANNED),
            )
        db.insert_many(cur, "plan_numbers", ("plan_key", "request_index", "mobiles"), numbers, "ON CONFLICT DO NOTHING")
        db.insert_many(cur, "requests", columns, rows, "ON CONFLICT (idempotency_key) DO NOTHING")
        return report_seq

    def cancel_planned(self, plan_key: str) -> int:
        """Cancel a plan's requests not yet sent (a plan no try will follow); returns how many."""
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql("UPDATE {p}requests SET state = ?, updated_at = ? WHERE plan_key = ? AND state = ?"),
                (CANCELLED, now_text(), plan_key, PLANNED),
            )
            return max(cur.rowcount, 0)

    def update_plan(self, plan: StoredPlan, changed: Sequence[PlanRequest], *, opted_out: int = 0) -> None:
        """In one commit at the start of a retry: new number lists for requests not yet sent (opt-outs left
        out; a request left with no number is skipped)."""
        db = self._db
        now = now_text()
        with db.transaction(write=True) as cur:
            for request in changed:
                cur.execute(
                    db.sql(
                        "UPDATE {p}requests SET total = ?, state = ?, updated_at = ? "
                        "WHERE idempotency_key = ? AND state = ?"
                    ),
                    (len(request.mobiles), PLANNED if request.mobiles else SKIPPED, now, request.key, PLANNED),
                )
                cur.execute(
                    db.sql("UPDATE {p}plan_numbers SET mobiles = ? WHERE plan_key = ? AND request_index = ?"),
                    (mobiles_json(request.mobiles), plan.plan_key, request.index),
                )
            if opted_out:
                cur.execute(
                    db.sql("UPDATE {p}send_plans SET opted_out = opted_out + ?, updated_at = ? WHERE task_key = ?"),
                    (opted_out, now, plan.task_key),
                )

    def last_submitted(self, keys: Sequence[str]) -> datetime | None:
        """When the last of these accepted requests was accepted (a canary's wait for reports starts then)."""
        sql = "SELECT MAX(submitted_at) FROM {p}requests WHERE state = 'accepted' AND idempotency_key IN ({in})"
        latest: str | None = None
        with self._db.transaction(write=False) as cur:
            for (value,) in self._db.select_in(cur, sql, (), list(dict.fromkeys(keys))):
                if value is not None and (latest is None or value > latest):
                    latest = value
        return datetime.fromisoformat(latest) if latest else None

    def mark_sending(self, claims: Sequence[IntentClaim]) -> None:
        """Store the intent of requests about to go out (a resend of an unknown one included), all or none:
        raises ``SmsConcurrentSendError``, storing none, when another try changed one of their rows first."""
        from airflow_provider_sms.errors import SmsConcurrentSendError

        with self._db.transaction(write=True) as cur:
            stored = self._mark_sending(cur, claims, now_text())
            if stored != len(claims):
                raise SmsConcurrentSendError(
                    f"{len(claims) - stored} of the {len(claims)} requests this try was about to send were taken "
                    "by another try of the same task instance (one Airflow took for dead, and its retry): this "
                    "try sent nothing more and leaves them to it"
                )

    def _mark_sending(self, cur: Any, claims: Sequence[IntentClaim], now: str) -> int:
        """The intents of ``claims`` whose rows are as their try read them; returns how many were stored."""
        sql = self._db.sql(_CLAIM_INTENT)
        stored = 0
        for claim in claims:  # one, inside an acceptance's commit, or the few of a try's start
            cur.execute(sql, (SENDING, now, now, *claim))
            stored += max(cur.rowcount, 0)
        return stored

    def release_intent(self, key: str, reason: str) -> None:
        """The request surely did not go out (or the vendor refused it): it may be sent again later."""
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE {p}requests SET state = ?, sending_at = NULL, reason = ?, updated_at = ? "
                    "WHERE idempotency_key = ? AND state = ?"
                ),
                (PLANNED, reason[:500], now_text(), key, SENDING),
            )

    def acceptance_evidence(
        self, vendor: str, since_seq: int, unknown: Mapping[str, tuple[datetime, Sequence[str]]]
    ) -> tuple[dict[str, str], int]:
        """Batch ids that delivery reports prove the vendor accepted unknown requests under.

        ``unknown`` maps a request key to (when it went out, its numbers). A batch is evidence for a
        request when no accepted request in the store has it (the batch the lost reply would have named),
        and every report of it read here is for one of the request's numbers and arrived after the
        request went out: a batch of someone else's that also messaged one of the numbers has others too.
        Only reports written after ``since_seq`` are read; returns the evidence and the last seq read,
        where the next look may start.
        """
        db = self._db
        owners: dict[str, str] = {}
        for key, (_, mobiles) in unknown.items():
            for mobile in mobiles:
                owners[mobile] = key
        since_text = {key: utc_text(when) or "" for key, (when, _) in unknown.items()}
        votes: dict[str, dict[str, int]] = {}
        rows_of_batch: dict[str, int] = {}
        last_seq = since_seq
        with db.transaction(write=False) as cur:
            cur.execute(
                db.sql(
                    "SELECT batch_id, mobile, fetched_at, seq FROM {p}delivery_reports WHERE vendor = ? AND seq > ?"
                ),
                (vendor, since_seq),
            )
            while rows := cur.fetchmany(PAGE_SIZE):
                for batch_id, mobile, fetched_at, seq in rows:
                    last_seq = max(last_seq, int(seq))
                    rows_of_batch[batch_id] = rows_of_batch.get(batch_id, 0) + 1
                    owner = owners.get(mobile)
                    if owner is not None and fetched_at >= since_text[owner]:
                        counts = votes.setdefault(owner, {})
                        counts[batch_id] = counts.get(batch_id, 0) + 1
            candidates = sorted({batch for counts in votes.values() for batch in counts})
            sql = "SELECT batch_id FROM {p}requests WHERE vendor = ? AND state = 'accepted' AND batch_id IN ({in})"
            known = {batch_id for (batch_id,) in db.select_in(cur, sql, (vendor,), candidates)}
        found: dict[str, str] = {}
        for key, counts in votes.items():
            best = max(
                (
                    (count, batch)
                    for batch, count in counts.items()
                    if batch not in known and count == rows_of_batch[batch]
                ),
                default=None,
            )
            if best is not None:
                found[key] = best[1]
        return found, last_seq


def _request_record(row: Mapping[str, Any]) -> RequestRecord:
    return RequestRecord(
        idempotency_key=row["idempotency_key"],
        vendor=row["vendor"],
        conn_id=row["conn_id"],
        state=row["state"],
        batch_id=row["batch_id"],
        total=int(row["total"]),
        delivered=int(row["delivered"]),
        failed=int(row["failed"]),
        reason=row["reason"],
        task=TaskIdentity(
            dag_id=row["dag_id"], run_id=row["run_id"], task_id=row["task_id"], map_index=int(row["map_index"])
        ),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )
