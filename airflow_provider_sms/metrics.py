"""Counters and timers through Airflow's ``Stats``: StatsD, Datadog or OpenTelemetry, whichever the
deployment configured under ``[metrics]``; nothing is sent when none is.

Every metric is tagged with ``vendor`` and ``conn_id``. Plain StatsD has no tags: Airflow appends them
to the name only with ``statsd_influxdb_enabled``; Datadog and OpenTelemetry carry them as tags. The
names and tags are listed in the README's "Metrics" section; ``METRICS`` below is the same list.

Calls are per HTTP request, per stored page, per push or per send: never per number. ``Stats`` is
imported on first use, not when a DAG file imports the provider.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

PREFIX: Final = "sms."
#: ``SendRequest.description``: what a send's vendor error names as its operation
_SEND_REQUEST: Final = re.compile(r"(send request|template .* request) #\d+")

NUMBERS_SENT: Final = "sms.numbers.sent"
NUMBERS_ACCEPTED: Final = "sms.numbers.accepted"
NUMBERS_UNKNOWN: Final = "sms.numbers.unknown"
NUMBERS_REFUSED: Final = "sms.numbers.refused"
NUMBERS_MOVED: Final = "sms.numbers.moved"
NUMBERS_DELIVERED: Final = "sms.numbers.delivered"
NUMBERS_FAILED: Final = "sms.numbers.failed"
NUMBERS_EXPIRED: Final = "sms.numbers.expired"
RECORDS_PULLED: Final = "sms.records.pulled"
RECORDS_PUSHED: Final = "sms.records.pushed"
RECORDS_QUARANTINED: Final = "sms.records.quarantined"
PUSHES_RECEIVED: Final = "sms.pushes.received"
VENDOR_ERRORS: Final = "sms.vendor_errors"
REQUEST_DURATION: Final = "sms.request.duration"
BALANCE: Final = "sms.balance"

#: name -> (type, tags beyond vendor and conn_id, what it counts); the README's table says the same
METRICS: Final[Mapping[str, tuple[str, tuple[str, ...], str]]] = {
    NUMBERS_SENT: ("counter", (), "numbers in send requests made: accepted + unknown + refused"),
    NUMBERS_ACCEPTED: ("counter", (), "numbers in requests the vendor accepted (or that evidence proved accepted)"),
    NUMBERS_UNKNOWN: ("counter", (), "numbers in requests whose outcome became unknown (no readable answer)"),
    NUMBERS_REFUSED: ("counter", (), "numbers in requests the vendor refused or that surely never left"),
    NUMBERS_MOVED: ("counter", ("to",), "numbers moved to the next connection (fallback_conn_ids): not accepted here"),
    NUMBERS_DELIVERED: ("counter", ("source",), "numbers whose stored report newly became delivered"),
    NUMBERS_FAILED: ("counter", ("source",), "numbers whose stored report newly became failed"),
    NUMBERS_EXPIRED: ("counter", ("source",), "numbers that expired (the vendor said so, or no final report came)"),
    RECORDS_PULLED: ("counter", ("kind",), "records pulled from a vendor queue or report query"),
    RECORDS_PUSHED: ("counter", ("kind",), "records that came in pushes"),
    RECORDS_QUARANTINED: ("counter", ("kind", "source"), "records kept raw because they would not parse or store"),
    PUSHES_RECEIVED: ("counter", ("kind", "outcome"), "push requests the receiver answered"),
    VENDOR_ERRORS: ("counter", ("code", "operation"), "vendor replies carrying an error code"),
    REQUEST_DURATION: ("timer", ("operation",), "each HTTP attempt to the vendor, answered or not"),
    BALANCE: ("gauge", ("currency",), "the account balance a balance check read"),
}


@functools.cache
def _stats() -> Any:
    """Airflow's ``Stats`` where this Airflow keeps it (the task SDK's since 3.1, core's before)."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow 3.0
        from airflow.stats import Stats as CoreStats

        return CoreStats
    return Stats


def tags(vendor: str, conn_id: str, **more: str) -> dict[str, str]:
    """The tags of every metric: the vendor and the Airflow connection, then the metric's own."""
    return {"vendor": vendor, "conn_id": conn_id, **more}


def operation_tag(operation: str) -> str:
    """An operation as a tag: every send request is ``send`` (its description, "send request #12", would
    make a tag value per request), the others as named, with spaces as underscores."""
    return "send" if _SEND_REQUEST.fullmatch(operation) else tag_value(operation)


def tag_value(text: str) -> str:
    """An operation name as a tag value: spaces and separators would break InfluxDB-style StatsD lines."""
    return text.replace(" ", "_").replace(",", "_").replace("=", "_")


def incr(name: str, count: int, tag_set: Mapping[str, str]) -> None:
    """Add ``count`` to a counter; a zero count sends nothing."""
    if count:
        _stats().incr(name, count, tags=tag_set)


def timing(name: str, seconds: float, tag_set: Mapping[str, str]) -> None:
    """Record a duration; StatsD and OpenTelemetry both report it in milliseconds."""
    _stats().timing(name, timedelta(seconds=seconds), tags=tag_set)


def gauge(name: str, value: float, tag_set: Mapping[str, str]) -> None:
    _stats().gauge(name, value, tags=tag_set)
