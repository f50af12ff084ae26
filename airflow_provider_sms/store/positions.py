"""The small things the store keeps: copy watermarks, balances, opt-outs, notifier quiet periods, and
the slots that pace calls to a vendor across every process sharing the store."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import overload

from airflow_provider_sms.numbers import china_mobile_forms
from airflow_provider_sms.records import Balance
from airflow_provider_sms.store.database import StoreSection, json_text, now_text, pages, utc_text


class Positions(StoreSection):
    """Watermarks, balances, opt-outs, quiet periods and paced-call slots."""

    # ---------------------------------------------------------------------------- copy watermarks

    @overload
    def get_watermark(self, name: str) -> int: ...
    @overload
    def get_watermark(self, name: str, default: None) -> int | None: ...
    def get_watermark(self, name: str, default: int | None = 0) -> int | None:
        """The last ``seq`` an incremental copy named ``name`` has taken; ``default`` (0) before its first
        run (``default=None`` tells a first run apart)."""
        with self._db.transaction(write=False) as cur:
            cur.execute(self._db.sql("SELECT seq FROM {p}watermarks WHERE name = ?"), (name,))
            row = cur.fetchone()
        return int(row[0]) if row else default

    def find_watermark(self, name: str) -> int | None:
        """Deprecated: ``get_watermark(name, default=None)``."""
        warnings.warn(
            "SmsStore.find_watermark is deprecated; use get_watermark(name, default=None)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.get_watermark(name, default=None)

    def set_watermark(self, name: str, seq: int) -> None:
        """Remember how far the copy ``name`` got, once its rows are safely in the target."""
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql(
                    "INSERT INTO {p}watermarks (name, seq, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
                ),
                (name, int(seq), now_text()),
            )

    # ---------------------------------------------------------------------------- balance

    def save_balance(self, balance: Balance, *, conn_id: str, taken_at: datetime | None = None) -> None:
        """Keep a balance reading (amount as text, so the Decimal comes back exactly)."""
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql(
                    "INSERT INTO {p}balances (conn_id, vendor, amount, currency, raw, taken_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    conn_id,
                    balance.vendor,
                    str(balance.amount),
                    balance.currency,
                    json_text(balance.raw),
                    utc_text(taken_at) or now_text(),
                ),
            )

    def latest_balance(self, conn_id: str) -> Balance | None:
        """The most recent reading for the connection, or None if there is none."""
        with self._db.transaction(write=False) as cur:
            cur.execute(
                self._db.sql(
                    "SELECT vendor, amount, currency, raw FROM {p}balances WHERE conn_id = ? "
                    "ORDER BY taken_at DESC, id DESC LIMIT 1"
                ),
                (conn_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        vendor, amount, currency, raw = row
        return Balance(vendor=vendor, amount=Decimal(amount), currency=currency, raw=json.loads(raw) if raw else None)

    # ---------------------------------------------------------------------------- opt-outs

    def add_opt_outs(self, mobiles: Iterable[str], *, reason: str = "", source: str = "") -> int:
        """Add numbers that must not be messaged; returns how many were not already listed."""
        db = self._db
        added = 0
        for page in pages(mobiles, max(1, self.page_size)):
            now = now_text()
            with db.transaction(write=True) as cur:
                wanted = list(dict.fromkeys(page))
                sql = "SELECT mobile FROM {p}opt_outs WHERE mobile IN ({in})"
                present = {mobile for (mobile,) in db.select_in(cur, sql, (), wanted)}
                rows = [(m, reason, source, now) for m in wanted if m not in present]
                db.insert_many(
                    cur,
                    "opt_outs",
                    ("mobile", "reason", "source", "created_at"),
                    rows,
                    "ON CONFLICT (mobile) DO NOTHING",
                )
                added += len(rows)
        return added

    def opted_out(self, mobiles: Sequence[str]) -> set[str]:
        """Which of the numbers are opted out; a mainland mobile in either form (``138…`` or ``86138…``).

        An opt-out list no longer than the numbers asked about (the usual case: a few hundred
        against a send of thousands) is read whole, in one query; a longer one is looked up by
        key: one array query on PostgreSQL, IN lists of a few hundred on SQLite.
        """
        if not mobiles:
            return set()
        db = self._db
        with db.transaction(write=False) as cur:
            cur.execute(db.sql("SELECT mobile FROM {p}opt_outs LIMIT ?"), (len(mobiles) + 1,))
            listed = [mobile for (mobile,) in cur.fetchall()]
            if not listed:  # an empty opt-out table: no set of the numbers asked about is needed
                return set()
            wanted = set(mobiles)
            if len(listed) > len(mobiles):
                keys = list({form for mobile in wanted for form in china_mobile_forms(mobile)})
                if db.dialect.array_params:
                    cur.execute(db.sql("SELECT mobile FROM {p}opt_outs WHERE mobile = ANY(?)"), (keys,))
                    listed = [mobile for (mobile,) in cur.fetchall()]
                else:
                    sql = "SELECT mobile FROM {p}opt_outs WHERE mobile IN ({in})"
                    listed = [mobile for (mobile,) in db.select_in(cur, sql, (), keys)]
        return {form for mobile in listed for form in china_mobile_forms(mobile) if form in wanted}

    # ---------------------------------------------------------------------------- quiet periods

    def claim_quiet_period(self, key: str, seconds: float, *, now: datetime | None = None) -> bool:
        """True for exactly one caller per ``seconds`` and ``key``, across every process sharing the store.

        One upsert whose ``WHERE`` lets it through only when the last claim is at least ``seconds``
        old; whether it changed a row tells the winner. SQLite runs it under the database write
        lock, PostgreSQL under the row lock of ``ON CONFLICT DO UPDATE``, so two callers can never
        both win. A loser is counted in the row's ``suppressed`` column.
        """
        at = now or datetime.now(timezone.utc)
        claimed_at = utc_text(at)
        cutoff = utc_text(datetime.fromtimestamp(at.timestamp() - max(0.0, float(seconds)), tz=timezone.utc))
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql(
                    "INSERT INTO {p}notifications (quiet_key, sent_at, suppressed, updated_at) VALUES (?, ?, 0, ?) "
                    "ON CONFLICT (quiet_key) DO UPDATE SET sent_at = excluded.sent_at, suppressed = 0, "
                    "updated_at = excluded.updated_at WHERE {p}notifications.sent_at <= ?"
                ),
                (key, claimed_at, claimed_at, cutoff),
            )
            claimed = cur.rowcount == 1
            if not claimed:
                cur.execute(
                    self._db.sql(
                        "UPDATE {p}notifications SET suppressed = suppressed + 1, updated_at = ? WHERE quiet_key = ?"
                    ),
                    (claimed_at, key),
                )
        return claimed

    def release_quiet_period(self, key: str, claimed_at: datetime) -> bool:
        """Give back the claim made at ``claimed_at`` (nothing was sent), so the next caller may notify.

        Only that claim is removed: a later one, made after the period ran out, is left alone.
        """
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql("DELETE FROM {p}notifications WHERE quiet_key = ? AND sent_at = ?"),
                (key, utc_text(claimed_at)),
            )
            return bool(cur.rowcount == 1)

    # ---------------------------------------------------------------------------- paced calls

    def reserve_slot(self, key: str, interval: float) -> float:
        """Book the next call of ``key`` at least ``interval`` s after the one booked before it, for every
        process sharing this store; returns how long the caller must wait before making it.

        Clocks of the machines sharing a PostgreSQL store are assumed in step (NTP); the interval's own
        margin covers the rest.
        """
        db = self._db
        with db.transaction(write=True) as cur:
            cur.execute(
                db.sql(
                    "INSERT INTO {p}slots (slot_key, next_at, updated_at) VALUES (?, 0, ?) "
                    "ON CONFLICT (slot_key) DO NOTHING"
                ),
                (key, now_text()),
            )
            cur.execute(db.sql("SELECT next_at FROM {p}slots WHERE slot_key = ?" + db.dialect.lock_row), (key,))
            now = time.time()
            start = max(now, float(cur.fetchone()[0]))
            cur.execute(
                db.sql("UPDATE {p}slots SET next_at = ?, updated_at = ? WHERE slot_key = ?"),
                (start + interval, now_text(), key),
            )
        return start - now

    def slot_finished(self, key: str, interval: float) -> None:
        """A booked call came back: the next may go ``interval`` s from now at the earliest (the vendor
        timed its arrival, which a slow handshake delays)."""
        earliest = time.time() + interval
        with self._db.transaction(write=True) as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE {p}slots SET next_at = CASE WHEN next_at > ? THEN next_at ELSE ? END, updated_at = ? "
                    "WHERE slot_key = ?"
                ),
                (earliest, earliest, now_text(), key),
            )
