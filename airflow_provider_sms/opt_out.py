"""Opt-out replies: which inbound texts mean "stop messaging me", and recording their senders.

Phones answer ``TD``, ``ｔｄ``, ``"TD。"``, ``退订`` or ``STOP!``; all of them must count, while
``TD是什么`` (a question) must not. So a reply is normalised (NFKC folds full-width letters and
punctuation to ASCII, case is folded, whitespace and punctuation or symbols at either end and all
whitespace inside are dropped) and must then *equal* a keyword: no prefix or substring matching,
because ``T`` is a keyword and ``Thanks`` is not an opt-out.

Pure functions plus two helpers that write to the store; no Airflow import at module level, so the
example DAG can import the keyword list at parse time for free.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_sms.numbers import normalize_domestic, normalize_international

if TYPE_CHECKING:
    from airflow_provider_sms.records import InboundMessage
    from airflow_provider_sms.store import SmsStore

log = logging.getLogger(__name__)

#: The replies Chinese carriers tell recipients to send (``回T退订``, ``回TD退订``, ``退订回T``) and the
#: usual English ones.
DEFAULT_OPT_OUT_KEYWORDS: Final = ("TD", "T", "退订", "STOP", "UNSUBSCRIBE")

_SPACE = re.compile(r"\s+")


def _edge_character(char: str) -> bool:
    """Punctuation, symbols (emoji included), separators and control characters around a keyword."""
    return unicodedata.category(char)[0] in "PSZC"


def normalize_reply(text: str) -> str:
    """The comparable form of a reply or keyword: NFKC, case-folded, no whitespace, no edge punctuation."""
    folded = _SPACE.sub("", unicodedata.normalize("NFKC", text).casefold())
    start, end = 0, len(folded)
    while start < end and _edge_character(folded[start]):
        start += 1
    while end > start and _edge_character(folded[end - 1]):
        end -= 1
    return folded[start:end]


def keyword_table(keywords: Iterable[str] | None = None) -> dict[str, str]:
    """Normalised form -> keyword as given; ``None`` means the defaults. Empty keywords are an error."""
    if isinstance(keywords, str):
        raise TypeError(f"keywords must be a list of strings, not the string {keywords!r}")
    chosen = DEFAULT_OPT_OUT_KEYWORDS if keywords is None else tuple(keywords)
    table: dict[str, str] = {}
    for keyword in chosen:
        normal = normalize_reply(str(keyword))
        if not normal:
            raise ValueError(f"opt-out keyword {keyword!r} is empty once spaces and punctuation are removed")
        table.setdefault(normal, str(keyword))
    if not table:
        raise ValueError("at least one opt-out keyword is needed")
    return table


def match_keyword(content: str, keywords: Iterable[str] | Mapping[str, str] | None = None) -> str | None:
    """The keyword (as configured) that the whole reply equals once normalised, or None.

    Pass a ``keyword_table()`` when matching many replies, so the keywords are normalised once.
    """
    table = keywords if isinstance(keywords, Mapping) else keyword_table(keywords)
    return table.get(normalize_reply(content))


def is_opt_out(content: str, keywords: Iterable[str] | Mapping[str, str] | None = None) -> bool:
    return match_keyword(content, keywords) is not None


def opt_out_number(mobile: str) -> str | None:
    """The number as ``SmsSendOperator`` compares it: 11 digits for a mainland mobile, else digits with
    country code and no ``+``; None when it is neither (nothing useful can be recorded)."""
    return normalize_domestic(mobile) or normalize_international(mobile)


@dataclass(frozen=True)
class OptOutResult:
    """What one batch of replies did to the opt-out table; counts only (numbers stay out of XCom)."""

    messages: int
    opt_outs: int
    added: int
    unusable_numbers: int
    by_keyword: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "opt_outs": self.opt_outs,
            "added": self.added,
            "unusable_numbers": self.unusable_numbers,
            "by_keyword": dict(self.by_keyword),
        }


def _fields(message: InboundMessage | Mapping[str, Any]) -> tuple[str, str, str]:
    """(mobile, content, source) of a record or of a trigger-event payload."""
    if isinstance(message, Mapping):
        mobile, content = message.get("mobile"), message.get("content")
        if not isinstance(mobile, str) or not isinstance(content, str):
            raise ValueError(f"an inbound message needs string 'mobile' and 'content', got keys {sorted(message)}")
        vendor, conn_id = message.get("vendor") or "", message.get("conn_id") or ""
    else:
        mobile, content, vendor, conn_id = message.mobile, message.content, message.vendor, ""
    source = f"inbound:{conn_id or vendor}" if (conn_id or vendor) else "inbound"
    return mobile, content, source


def record_opt_outs(
    messages: Iterable[InboundMessage | Mapping[str, Any]],
    store: SmsStore,
    *,
    keywords: Iterable[str] | None = None,
) -> OptOutResult:
    """Add the senders of opt-out replies to the store's opt-out table (idempotent: re-runs add nothing).

    ``messages`` are ``InboundMessage`` records or ``SmsInboundTrigger`` event payloads. The reason
    kept with each number is the keyword it sent; the source is the connection (or vendor).
    """
    table = keyword_table(keywords)
    count = unusable = 0
    by_keyword: dict[str, int] = {}
    wanted: dict[tuple[str, str], list[str]] = {}  # (reason, source) -> numbers
    for message in messages:
        count += 1
        mobile, content, source = _fields(message)
        keyword = table.get(normalize_reply(content))
        if keyword is None:
            continue
        number = opt_out_number(mobile)
        if number is None:
            unusable += 1
            log.warning("opt-out reply %r from a number that cannot be normalised; not recorded", keyword)
            continue
        by_keyword[keyword] = by_keyword.get(keyword, 0) + 1
        wanted.setdefault((f"reply {keyword}", source), []).append(number)
    added = sum(
        store.add_opt_outs(numbers, reason=reason, source=source) for (reason, source), numbers in wanted.items()
    )
    opt_outs = sum(by_keyword.values())
    if opt_outs:
        log.info("opt-out replies: %d of %d messages, %d numbers newly opted out", opt_outs, count, added)
    return OptOutResult(count, opt_outs, added, unusable, by_keyword)


def record_opt_out(
    message: InboundMessage | Mapping[str, Any], store: SmsStore, *, keywords: Iterable[str] | None = None
) -> bool:
    """Record one reply's sender if the reply is an opt-out; True when the number was newly added."""
    return record_opt_outs([message], store, keywords=keywords).added == 1


def payloads_from_asset_events(events: Any) -> list[dict[str, Any]]:
    """The ``SmsInboundTrigger`` payloads in a run's triggering asset events, in store order, each once.

    ``events`` is ``context["triggering_asset_events"]`` (asset -> events), one asset's list of
    events, or a single event. A watcher's event keeps the trigger's payload under
    ``extra["payload"]``; an event whose ``extra`` is itself a message (one posted through the REST
    API, say) is taken as it is. Events without a message are skipped, and an event listed under
    both its asset and an alias counts once.
    """
    seen: set[tuple[Any, Any]] = set()
    found: list[dict[str, Any]] = []
    for event in _iter_events(events):
        extra = event.get("extra") if isinstance(event, Mapping) else getattr(event, "extra", None)
        if not isinstance(extra, Mapping):
            continue
        inner = extra.get("payload")
        payload = inner if isinstance(inner, Mapping) else extra
        if not isinstance(payload.get("mobile"), str) or not isinstance(payload.get("content"), str):
            continue
        if payload.get("seq") is not None:
            key = (payload.get("conn_id"), payload.get("seq"))
            if key in seen:
                continue
            seen.add(key)
        found.append(dict(payload))
    found.sort(key=lambda p: (p.get("seq") is None, p.get("seq") or 0))
    return found


def _iter_events(events: Any) -> Iterator[Any]:
    """Flatten asset -> events mappings and lists down to the events (objects or dicts with ``extra``)."""
    if events is None:
        return
    if (isinstance(events, dict) and "extra" in events) or (
        not isinstance(events, Mapping) and hasattr(events, "extra")
    ):
        yield events
    elif isinstance(events, Mapping):
        for value in events.values():
            yield from _iter_events(value)
    elif isinstance(events, Iterable) and not isinstance(events, (str, bytes)):
        for event in events:
            yield from _iter_events(event)
    else:
        raise TypeError(f"expected triggering asset events (a mapping or a list), got {type(events).__name__}")


def opt_outs_from_asset_events(
    events: Any,
    *,
    store_conn_id: str | None = None,
    store_table_prefix: str = "sms_",
    keywords: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A task body for a DAG scheduled on ``SmsInboundTrigger`` events: record the opt-outs among them.

    Returns counts for XCom (no numbers). Safe to re-run: a number already listed is not added again.
    """
    from airflow_provider_sms.store import SmsStore

    payloads = payloads_from_asset_events(events)
    with SmsStore(store_conn_id, table_prefix=store_table_prefix) as store:
        result = record_opt_outs(payloads, store, keywords=keywords)
    return result.to_dict()


__all__ = [
    "DEFAULT_OPT_OUT_KEYWORDS",
    "OptOutResult",
    "is_opt_out",
    "keyword_table",
    "match_keyword",
    "normalize_reply",
    "opt_out_number",
    "opt_outs_from_asset_events",
    "payloads_from_asset_events",
    "record_opt_out",
    "record_opt_outs",
]
