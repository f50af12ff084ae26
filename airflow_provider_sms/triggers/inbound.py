"""``SmsInboundTrigger``: an event trigger for ``AssetWatcher`` that fires once per inbound SMS.

The store is the one source of events: each poll first drains the vendor's inbound queue into the
store (queue vendors hand a message out once, so it is committed before anything else happens),
then reads stored messages with ``seq`` above the last one emitted. Messages that reach the store
another way (the push receiver, a sync task) fire the same events, and a message pulled by anyone
fires exactly once.

The position (last ``seq`` emitted) is kept after the triggerer has taken each event, in the
watched asset's state store (Airflow 3.3 injects ``asset_state_store``) and in the SMS store's
watermark table (always: it is the fallback when the asset store is absent, unreadable, or shared
by several assets). A restarted trigger resumes after the larger of the two, so no message is lost
and none repeats, except the one event that may be in flight when the triggerer dies (it is then
emitted again rather than lost).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.store import SmsStore

START_LATEST = "latest"
MAX_BACKOFF_S = 600.0
START_ALL = "all"


class SmsInboundTrigger(BaseEventTrigger):
    """Fire one ``TriggerEvent`` per inbound message of an SMS connection, for ``AssetWatcher``.

    :param sms_conn_id: the ``sms_*`` connection whose replies to watch (its vendor must have an
        inbound API; ``intl`` has none and fails at the first poll).
    :param store_conn_id: the message store (a SQLite/PostgreSQL connection); None: the embedded file.
    :param store_table_prefix: the store's table prefix.
    :param keywords: fire only for replies that equal one of these once normalised (see
        ``airflow_provider_sms.opt_out``), e.g. ``["TD", "退订", "STOP"]``; other messages are
        passed over. None: every message fires.
    :param start: where a trigger with no saved position begins: ``"latest"`` (messages stored
        from its first poll on, including what that poll pulls) or ``"all"`` (every stored message).
    :param pull: drain the vendor's inbound queue on each poll. False: only read the store, when a
        push receiver or a sync task feeds it.
    :param poll_interval: seconds between polls when nothing new was found.
    :param max_pulls_per_poll: vendor pulls per poll at most (a queue that is never empty is
        drained over several polls).
    :param page_size: stored messages read per store query.

    The payload of each event: ``vendor``, ``conn_id``, ``mobile``, ``content``, ``received_at``
    (ISO-8601 UTC or None), ``ext_no``, ``seq`` (the store's sequence number, unique per store) and
    ``keyword`` (the keyword matched, or None without ``keywords``).
    """

    def __init__(
        self,
        sms_conn_id: str,
        store_conn_id: str | None = None,
        store_table_prefix: str = "sms_",
        keywords: Iterable[str] | None = None,
        start: str = START_LATEST,
        pull: bool = True,
        poll_interval: float = 10.0,
        max_pulls_per_poll: int = 20,
        page_size: int = 500,
    ) -> None:
        super().__init__()
        if not sms_conn_id or not isinstance(sms_conn_id, str):
            raise ValueError("SmsInboundTrigger needs an sms_conn_id")
        if start not in (START_LATEST, START_ALL):
            raise ValueError(f"SmsInboundTrigger start must be {START_LATEST!r} or {START_ALL!r}, not {start!r}")
        if not poll_interval > 0:
            raise ValueError(f"SmsInboundTrigger poll_interval must be positive, not {poll_interval!r}")
        if max_pulls_per_poll < 1 or page_size < 1:
            raise ValueError("SmsInboundTrigger max_pulls_per_poll and page_size must be at least 1")
        self.sms_conn_id = sms_conn_id
        self.store_conn_id = store_conn_id
        self.store_table_prefix = store_table_prefix
        self.keywords: list[str] | None = None
        if keywords is not None:
            from airflow_provider_sms.opt_out import keyword_table

            # normalised, de-duplicated and sorted: equal filters serialise alike (Airflow dedupes
            # watchers by classpath + kwargs), and bad keywords fail when the DAG is parsed
            self.keywords = sorted(keyword_table(keywords).values())
        self.start = start
        self.pull = bool(pull)
        self.poll_interval = float(poll_interval)
        self.max_pulls_per_poll = int(max_pulls_per_poll)
        self.page_size = int(page_size)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sms_conn_id": self.sms_conn_id,
                "store_conn_id": self.store_conn_id,
                "store_table_prefix": self.store_table_prefix,
                "keywords": self.keywords,
                "start": self.start,
                "pull": self.pull,
                "poll_interval": self.poll_interval,
                "max_pulls_per_poll": self.max_pulls_per_poll,
                "page_size": self.page_size,
            },
        )

    @property
    def position_key(self) -> str:
        """Name of this trigger's saved position: the connection, the store and the filter.

        ``start``, ``pull`` and the tuning knobs (``poll_interval``, ``page_size``, ...) are left out,
        so changing them resumes where the trigger was instead of starting over.
        """
        identity = [self.sms_conn_id, self.store_conn_id, self.store_table_prefix, self.keywords]
        digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        return f"sms_inbound_trigger:{self.sms_conn_id}:{digest}"

    # ------------------------------------------------------------------ blocking parts (run in threads)

    def _open(self) -> tuple[SmsHook, SmsStore]:
        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.hooks.base import INBOUND
        from airflow_provider_sms.store import SmsStore

        hook = get_sms_hook(self.sms_conn_id)
        if not hook.supports(INBOUND):
            from airflow_provider_sms.errors import SmsNotSupportedError

            raise SmsNotSupportedError(
                hook.vendor, f"inbound messages, so SmsInboundTrigger cannot watch connection {self.sms_conn_id!r}"
            )
        return hook, SmsStore(self.store_conn_id, table_prefix=self.store_table_prefix)

    def _initial_position(self, store: SmsStore, asset_position: int | None) -> tuple[int, bool]:
        """(position, whether it is new and must be saved at once)."""
        saved = store.get_watermark(self.position_key, default=None)
        known = [p for p in (saved, asset_position) if p is not None]
        if known:
            return max(known), saved is None or max(known) != saved
        if self.start == START_ALL:
            return 0, True
        # "latest": fixed once, before this trigger's first pull, and saved at once, so a restart
        # does not move it past messages stored in between
        return store.max_inbound_seq(), True

    def _pull(self, hook: SmsHook, store: SmsStore) -> None:
        """Drain the vendor queue into the store; a failing vendor is logged, and the store still read."""
        from airflow_provider_sms.errors import SmsConfigurationError, SmsError, SmsNotSupportedError
        from airflow_provider_sms.pulling import pull_inbound

        try:
            pulled = pull_inbound(hook, store, max_pulls=self.max_pulls_per_poll)
        except (SmsConfigurationError, SmsNotSupportedError):
            raise
        except SmsError as exc:
            self.log.warning("%s: pulling inbound messages failed, will retry next poll: %s", self.sms_conn_id, exc)
            return
        if pulled.inserted:
            self.log.info("%s: pulled %d new inbound messages into the store", self.sms_conn_id, pulled.inserted)

    def _read(self, store: SmsStore, position: int) -> list[dict[str, Any]]:
        for page in store.iter_inbound(since_seq=position, conn_id=self.sms_conn_id, page_size=self.page_size):
            return page
        return []

    def _payload(self, row: dict[str, Any], keyword: str | None) -> dict[str, Any]:
        return {
            "vendor": row["vendor"],
            "conn_id": row["conn_id"],
            "mobile": row["mobile"],
            "content": row["content"],
            "received_at": row["received_at"],
            "ext_no": row["ext_no"] or "",
            "seq": int(row["seq"]),
            "keyword": keyword,
        }

    # ------------------------------------------------------------------ asset state store (Airflow 3.3+)

    async def _asset_get(self) -> int | None:
        states = getattr(self, "asset_state_store", None)
        if states is None:
            return None
        try:
            value = await states.aget(self.position_key)
        except ValueError:  # one trigger watched by several assets: no single asset to keep it in
            self.log.info("%s: watched by several assets; keeping the position in the SMS store", self.sms_conn_id)
            self.asset_state_store = None
            return None
        except Exception as exc:
            self.log.warning("%s: asset state store unreadable (%s); using the SMS store", self.sms_conn_id, exc)
            self.asset_state_store = None
            return None
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None

    async def _asset_set(self, position: int) -> None:
        states = getattr(self, "asset_state_store", None)
        if states is None:
            return
        try:
            await states.aset(self.position_key, position)
        except Exception as exc:
            self.log.warning("%s: asset state store not writable (%s); using the SMS store", self.sms_conn_id, exc)
            self.asset_state_store = None

    # ------------------------------------------------------------------ the loop

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        from airflow_provider_sms.errors import SmsConfigurationError, SmsNotSupportedError
        from airflow_provider_sms.opt_out import keyword_table

        def in_thread(func: Any) -> Any:
            # not thread_sensitive: a slow vendor must not hold up other triggers' sync calls
            return sync_to_async(func, thread_sensitive=False)

        table = keyword_table(self.keywords) if self.keywords is not None else None
        hook, store = await in_thread(self._open)()
        position: int | None = None
        saved = -1
        failures = 0
        try:
            while True:
                try:
                    if position is None:
                        position, fresh = await in_thread(self._initial_position)(store, await self._asset_get())
                        if fresh:  # before the first pull: a restart must not move "latest" past anything
                            await self._save(store, position, in_thread)
                        saved = position
                        self.log.info("%s: watching inbound messages after seq %d", self.sms_conn_id, position)
                    if self.pull:
                        await in_thread(self._pull)(hook, store)
                    while True:
                        rows = await in_thread(self._read)(store, position)
                        for row in rows:
                            keyword = table.get(_normal(row["content"])) if table is not None else None
                            if table is not None and keyword is None:
                                position = int(row["seq"])  # passed over; saved with the next event or below
                                continue
                            yield TriggerEvent(self._payload(row, keyword))
                            # resumed: the triggerer has queued the event, so it is safe to move past it
                            position = int(row["seq"])
                            await self._save(store, position, in_thread)
                            saved = position
                        if position != saved:
                            await self._save(store, position, in_thread)
                            saved = position
                        if len(rows) < self.page_size:
                            break
                    failures = 0
                except (SmsConfigurationError, SmsNotSupportedError):
                    raise
                except Exception as exc:
                    # a store or network outage must not end a watcher that runs for months: back off, retry
                    failures += 1
                    delay = min(self.poll_interval * 2**failures, MAX_BACKOFF_S)
                    self.log.warning(
                        "%s: inbound poll failed (%s: %s); retrying in %.0f s",
                        self.sms_conn_id,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await in_thread(store.close)()
                    await asyncio.sleep(delay)
                    continue
                await asyncio.sleep(self.poll_interval)
        finally:
            await in_thread(_close)(hook, store)

    async def _save(self, store: SmsStore, position: int, in_thread: Any) -> None:
        await in_thread(store.set_watermark)(self.position_key, position)
        await self._asset_set(position)


def _normal(content: str) -> str:
    from airflow_provider_sms.opt_out import normalize_reply

    return normalize_reply(content)


def _close(hook: SmsHook, store: SmsStore) -> None:
    try:
        store.close()
    finally:
        hook.close()


__all__ = ["START_ALL", "START_LATEST", "SmsInboundTrigger"]
