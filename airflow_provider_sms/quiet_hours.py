"""Quiet hours: no message reaches a phone between, say, 21:00 and 08:00 on the recipient's own clock.

``SmsSendOperator(quiet_hours="21:00-08:00")`` (or the connection's ``quiet_hours`` extra) hands
``PlannedSend`` a ``QuietHoursGate``. The gate decides, for each request of the stored send plan,
whether it may go out now:

* **Whose clock.** A domestic vendor's recipients live in the connection's ``timezone`` (default
  ``Asia/Shanghai``); an intl number's zones come from its country and prefix (``phonenumbers``). A
  number whose country spans several zones (a ``+7`` mobile, a ``+1 800`` number) keeps quiet hours
  in every one of them: its window is the stretch open in all its zones at once.
* **Start and finish.** A request may go only when the whole send it belongs to can start *and end*
  outside the window: the send's duration is estimated conservatively (``send_duration``).
* **One plan, several windows.** Intl numbers are planned in requests of one zone group each
  (``chunk``), so each group goes out in its own window; the groups open now go, the others are
  held (they stay ``planned`` in the store) until their window opens. Every part of the send executes
  the same stored plan, so nothing goes out twice across the wait.

Window arithmetic is done in UTC on quiet *spans*: for each local day the window's start and end,
each turned into UTC; a wall-clock time that a DST change skips or repeats is taken at its earlier
UTC instant for a start and its later one for an end, so that the span never comes out shorter than
the window.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_sms.errors import SmsConfigurationError, SmsError, SmsInvalidRequestError

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.records import PlanRequest

log = logging.getLogger(__name__)

#: the connection extra that gives ``SmsSendOperator`` its default quiet hours
QUIET_HOURS_EXTRA: Final = "quiet_hours"
#: without a slower ``max_requests_per_second``, what one request is assumed to take per place in
#: flight: a vendor's round trip (usually 0.05-0.5 s) and the store's commit, with room to spare
ASSUMED_SECONDS_PER_REQUEST: Final = 1.0
#: added to every send's estimate: planning, the store, clocks a little apart
SEND_MARGIN: Final = timedelta(seconds=60)
#: how far ahead a window is looked for: a week and a day, past any DST change
HORIZON: Final = timedelta(days=8)
#: what ``phonenumbers`` answers for a number it knows no zone of
UNKNOWN_ZONE: Final = "Etc/Unknown"

_MAINLAND_MOBILE = re.compile(r"861[3-9]\d{9}", re.ASCII)
_CHINA_ZONE: Final = ("Asia/Shanghai",)
_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", re.ASCII)
_DAY = timedelta(days=1)

Span = tuple[datetime, datetime]


def utcnow() -> datetime:
    """The clock quiet hours are judged by; tests replace it (``monkeypatch.setattr(quiet_hours, "utcnow", ...)``)."""
    return datetime.now(timezone.utc)


class SmsQuietHoursError(SmsError, AirflowFailException):
    """A send falls inside quiet hours. It fails the task **without retries**: a retry a few minutes
    later would meet the same window and fail again, spending the retries before the window opens.

    :ivar opens_at: when the held numbers may go out (UTC), or None when they never can.
    """

    def __init__(self, message: str, opens_at: datetime | None = None) -> None:
        super().__init__(message)
        self.opens_at = opens_at


class SmsScheduledInQuietHoursError(SmsQuietHoursError, SmsInvalidRequestError):
    """A ``scheduled_at`` that falls inside quiet hours for some of the numbers; refused before sending."""


# ------------------------------------------------------------------------------------ the window


@dataclass(frozen=True)
class QuietHours:
    """A daily window of local wall-clock time, ``start`` inclusive, ``end`` exclusive; it may wrap midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: object) -> QuietHours:
        """``"21:00-08:00"``; a ``ValueError`` that says what is wrong otherwise."""
        if not isinstance(text, str):
            raise ValueError(f"quiet_hours must be a string like '21:00-08:00', got {type(text).__name__}")
        match = _WINDOW.fullmatch(text)
        if match is None:
            raise ValueError(f"quiet_hours must look like '21:00-08:00' (HH:MM-HH:MM, 24-hour clock), got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hour, minute in ((h1, m1), (h2, m2)):
            if hour > 23 or minute > 59:
                raise ValueError(
                    f"quiet_hours {text!r}: {hour:02d}:{minute:02d} is no time of day "
                    "(00:00 to 23:59; midnight is 00:00)"
                )
        if (h1, m1) == (h2, m2):
            raise ValueError(
                f"quiet_hours {text!r} starts and ends at the same time: that is no window (or a whole day without "
                "sending); give two different times, such as '21:00-08:00'"
            )
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def wraps(self) -> bool:
        """Whether the window runs past midnight (``21:00-08:00``)."""
        return self.end < self.start

    def spans(self, zone: ZoneInfo, since: datetime, until: datetime) -> list[Span]:
        """The window's UTC spans in ``zone`` that touch ``[since, until]``, in order."""
        first = since.astimezone(zone).date() - _DAY
        last = until.astimezone(zone).date() + _DAY
        spans = []
        day = first
        while day <= last:
            end_day = day + _DAY if self.wraps else day
            start = _earliest(day, self.start, zone)
            end = _latest(end_day, self.end, zone)
            if end > since and start < until:
                spans.append((start, end))
            day += _DAY
        return spans

    def is_quiet(self, when: datetime, zone: ZoneInfo) -> bool:
        return any(start <= when < end for start, end in self.spans(zone, when - _DAY, when + _DAY))

    def opens_at(self, zones: Iterable[str | ZoneInfo], now: datetime, duration: timedelta) -> datetime | None:
        """The earliest moment from ``now`` at which a send lasting ``duration`` starts and ends outside the
        window in every one of ``zones``; None when there is none within ``HORIZON``."""
        until = now + HORIZON
        spans = merge_spans(s for zone in zones for s in self.spans(_zone(zone), now - _DAY, until))
        return earliest_start(spans, now, duration, until)


def _utc(day: date, at: time, zone: ZoneInfo, fold: int) -> datetime:
    return datetime.combine(day, at).replace(tzinfo=zone, fold=fold).astimezone(timezone.utc)


def _earliest(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time as UTC; skipped or repeated by a DST change: its earlier reading."""
    return min(_utc(day, at, zone, 0), _utc(day, at, zone, 1))


def _latest(day: date, at: time, zone: ZoneInfo) -> datetime:
    return max(_utc(day, at, zone, 0), _utc(day, at, zone, 1))


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Spans sorted, the overlapping and touching ones joined."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def earliest_start(spans: Sequence[Span], now: datetime, duration: timedelta, until: datetime) -> datetime | None:
    """The earliest ``t >= now`` with ``[t, t + duration]`` clear of every (sorted, merged) quiet span, ending
    by ``until``; spans are half open: a send may start the moment one ends and must end by the next's start."""
    moment = now
    for start, end in spans:
        if end <= moment:
            continue
        if moment + duration <= start:
            return moment
        moment = max(moment, end)
    return moment if moment + duration <= until else None


def send_duration(requests: int, *, requests_per_second: float, max_concurrency: int) -> timedelta:
    """A conservative estimate of how long ``requests`` requests take to send: ``ASSUMED_SECONDS_PER_REQUEST``
    per place in flight, or the connection's ``max_requests_per_second`` pace where that is slower, plus
    ``SEND_MARGIN``."""
    per_request = ASSUMED_SECONDS_PER_REQUEST / max(1, max_concurrency)
    if requests_per_second > 0:
        per_request = max(per_request, 1.0 / requests_per_second)
    return SEND_MARGIN + timedelta(seconds=requests * per_request)


# ------------------------------------------------------------------------------------ whose clock


def number_zones(number: str) -> tuple[str, ...]:
    """The IANA zones of an intl number (country code and number, digits only); () when none is known.

    A mainland China mobile is ``Asia/Shanghai`` without asking ``phonenumbers`` (as its answer is), so that a
    list of them neither loads it nor pays ~30 µs a number.
    """
    if _MAINLAND_MOBILE.fullmatch(number):
        return _CHINA_ZONE
    import phonenumbers
    from phonenumbers import timezone as phone_zones

    try:
        parsed = phonenumbers.parse("+" + number.lstrip("+"), None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(sorted(z for z in phone_zones.time_zones_for_number(parsed) if z != UNKNOWN_ZONE))


def parse_quiet_hours(value: object) -> QuietHours | None:
    """The operator's ``quiet_hours`` argument, checked at DAG parse time: None (the connection's extra
    decides) and ``""`` (none, whatever the connection says; blanks alike) give None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return QuietHours.parse(value)


def gate_for(
    hook: SmsHook,
    quiet_hours: str | None,
    *,
    max_concurrency: int = 1,
    now: Callable[[], datetime] | None = None,
    logger: Any = None,
) -> QuietHoursGate | None:
    """The gate of a send: ``quiet_hours`` as given, or (None) the connection's ``quiet_hours`` extra;
    None when neither sets a window (``""`` turns the connection's off)."""
    if quiet_hours is None:
        text = hook.quiet_hours
        if not text or not text.strip():  # a form field left blank
            return None
        try:
            window = QuietHours.parse(text)
        except ValueError as exc:
            raise SmsConfigurationError(f"connection {hook.sms_conn_id!r}: extra {QUIET_HOURS_EXTRA!r}: {exc}") from exc
    else:
        parsed = parse_quiet_hours(quiet_hours)
        if parsed is None:
            return None
        window = parsed
    return QuietHoursGate(window, hook, max_concurrency=max_concurrency, now=now, logger=logger)


# ------------------------------------------------------------------------------------ the gate


@dataclass
class Admission:
    """What of a plan's pending requests may go out now, what is held, and until when."""

    now: list[PlanRequest]
    held: list[PlanRequest]
    #: when the first held request may go (UTC); None when nothing is held
    opens_at: datetime | None
    window: QuietHours | None = None
    #: zone groups of the held requests, the first to open first
    held_zones: list[tuple[str, ...]] = field(default_factory=list)

    def joined(self, other: Admission) -> Admission:
        """This admission and a later one of the same send (the resend of unknown requests)."""
        if not other.held:
            return Admission([*self.now, *other.now], self.held, self.opens_at, self.window, self.held_zones)
        earlier = other.opens_at is not None and self.opens_at is not None and other.opens_at < self.opens_at
        if not self.held or earlier:
            first, second = other, self
        else:
            first, second = self, other
        return Admission(
            [*self.now, *other.now],
            [*first.held, *second.held],
            first.opens_at,
            self.window or other.window,
            [*first.held_zones, *second.held_zones],
        )

    def error(self, vendor: str) -> SmsQuietHoursError:
        """The fail-fast error of a send that may not wait (``deferrable=False``)."""
        numbers = sum(len(r.mobiles) for r in self.held)
        assert self.opens_at is not None
        first = self.held_zones[0] if self.held_zones else ()
        local = (
            f" ({self.opens_at.astimezone(ZoneInfo(first[0])):%Y-%m-%d %H:%M} {first[0]})" if len(first) == 1 else ""
        )
        went = (
            f"{sum(len(r.mobiles) for r in self.now)} numbers whose window is open went out; "
            if self.now
            else "nothing was sent; "
        )
        return SmsQuietHoursError(
            f"{vendor}: quiet hours {self.window} on the recipients' clock: {numbers} numbers in {len(self.held)} "
            f"requests ({describe_zones(self.held_zones)}) may not be sent now, nor run into the window; {went}"
            f"they may go out from {self.opens_at.astimezone(timezone.utc).isoformat(timespec='minutes')}{local}. "
            "Run the task again then (its stored plan sends only what is left), or set deferrable=True to wait "
            "for the window in the triggerer.",
            self.opens_at,
        )


def describe_zones(groups: Sequence[tuple[str, ...]], shown: int = 3) -> str:
    zones = list(dict.fromkeys(z for group in groups for z in group))
    more = f" and {len(zones) - shown} more" if len(zones) > shown else ""
    return ", ".join(zones[:shown]) + more


class QuietHoursGate:
    """Keeps a send's requests out of quiet hours (see the module docstring).

    The moment it judges by is read once, on first use, so that every decision of one part of a send
    (the plan's first intents, then what goes out) agrees.

    :param window: the quiet hours; ``hook``: the connection's vendor hook (its zone, its pace).
    :param max_concurrency: requests in flight at once, for the duration estimate.
    :param now: the clock (default ``utcnow``).
    """

    def __init__(
        self,
        window: QuietHours,
        hook: SmsHook,
        *,
        max_concurrency: int = 1,
        now: Callable[[], datetime] | None = None,
        logger: Any = None,
    ) -> None:
        self.window = window
        self.hook = hook
        self.max_concurrency = max_concurrency
        self._clock = now
        self._at: datetime | None = None
        self.log = logger or log
        self._zones_by_chunk: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._spans: dict[str, list[Span]] = {}

    @property
    def at(self) -> datetime:
        """The moment this gate decides for."""
        if self._at is None:
            self._at = (self._clock or utcnow)()
        return self._at

    def home_zone(self) -> tuple[str, ...]:
        """The connection's zone: a domestic vendor's recipients', and intl's fallback."""
        return (str(self.hook.config.timezone),)

    def zones_of(self, number: str) -> tuple[str, ...]:
        if not self.hook.international:
            return self.home_zone()
        zones = tuple(z for z in number_zones(number) if _loadable(z))
        return zones or self.home_zone()

    def chunk(self, valid: Sequence[str]) -> list[tuple[str, ...]]:
        """The numbers cut into requests of one zone group each (groups in order of their zones), so that
        each group can go out in its own window."""
        if not self.hook.international:
            chunks = self.hook.chunk(valid)
            for c in chunks:
                self._zones_by_chunk[c] = self.home_zone()
            return chunks
        groups: dict[tuple[str, ...], list[str]] = {}
        unknown = 0
        for number in valid:
            zones = tuple(z for z in number_zones(number) if _loadable(z))
            if not zones:
                unknown += 1
                zones = self.home_zone()
            groups.setdefault(zones, []).append(number)
        if unknown:
            self.log.warning(
                "%s: quiet hours: no time zone is known for %d numbers (not a valid number of any country's plan, "
                "or a non-geographic one); they keep quiet hours on the connection's clock, %s",
                self.hook.vendor,
                unknown,
                self.home_zone()[0],
            )
        chunks = []
        for zones in sorted(groups):
            for c in self.hook.chunk(groups[zones]):
                self._zones_by_chunk[c] = zones
                chunks.append(c)
        if len(groups) > 1:
            self.log.info(
                "%s: quiet hours %s: %d numbers in %d zone groups, each planned in requests of its own",
                self.hook.vendor,
                self.window,
                len(valid),
                len(groups),
            )
        return chunks

    def request_zones(self, mobiles: tuple[str, ...]) -> tuple[str, ...]:
        """A request's zones: all its numbers' (a plan made without quiet hours may mix groups)."""
        zones = self._zones_by_chunk.get(mobiles)
        if zones is None:
            zones = tuple(sorted({z for m in mobiles for z in self.zones_of(m)}))
            self._zones_by_chunk[mobiles] = zones
        return zones

    def open_now(self, mobiles: tuple[str, ...]) -> bool:
        """Whether a request admitted earlier may still start: the clock read again, for a vendor slower
        than the estimate that admitted it (each request looks before it goes)."""
        now = (self._clock or utcnow)()
        return not any(self.window.is_quiet(now, ZoneInfo(zone)) for zone in self.request_zones(mobiles))

    def duration(self, requests: int) -> timedelta:
        return send_duration(
            requests, requests_per_second=self.hook.requests_per_second, max_concurrency=self.max_concurrency
        )

    def _opens_at(self, zones: Iterable[str], start: datetime, duration: timedelta) -> datetime | None:
        until = self.at + HORIZON
        if start + duration > until:
            return None
        spans: list[Span] = []
        for zone in zones:
            if zone not in self._spans:
                self._spans[zone] = self.window.spans(ZoneInfo(zone), self.at - _DAY, until + _DAY)
            spans.extend(self._spans[zone])
        return earliest_start(merge_spans(spans), start, duration, until)

    def check_schedule(self, valid: Sequence[str], when: datetime) -> None:
        """A ``scheduled_at`` inside quiet hours for any of the numbers is refused before sending."""
        zones = sorted({z for m in valid for z in self.zones_of(m)}) if self.hook.international else self.home_zone()
        quiet = [z for z in zones if self.window.is_quiet(when, ZoneInfo(z))]
        if quiet:
            shown = ", ".join(f"{when.astimezone(ZoneInfo(z)):%H:%M} {z}" for z in quiet[:3])
            raise SmsScheduledInQuietHoursError(
                f"{self.hook.vendor}: scheduled_at {when.isoformat()} falls inside quiet hours {self.window} "
                f"on the recipients' clock ({shown}{' and more' if len(quiet) > 3 else ''}); nothing was sent. "
                "Schedule it outside the window, or pass quiet_hours='' to send at that time anyway"
            )

    def admit(self, rows: Sequence[PlanRequest], *, fresh: bool = False) -> Admission:
        """Which of ``rows`` go out now (in their order) and which wait, judged at ``at`` (``fresh``: the
        clock is read again first, for a later part of the same try).

        Zone groups whose window is open now join this part while the whole part, estimated from its
        requests, still starts and ends outside the window in every zone taken so far. A group whose
        window never opens long enough fails the send before anything goes out.
        """
        if fresh:
            self._at = None
            self._spans.clear()
        at = self.at
        groups: dict[tuple[str, ...], list[PlanRequest]] = {}
        for row in rows:
            groups.setdefault(self.request_zones(row.mobiles), []).append(row)
        taken: set[tuple[str, ...]] = set()
        taken_zones: set[str] = set()
        taken_requests = 0
        waiting: list[tuple[tuple[str, ...], list[PlanRequest]]] = []
        for zones, group in groups.items():
            opens = self._opens_at(zones, at, self.duration(len(group)))
            if opens is None:
                raise self._never(zones, group)
            together = taken_requests + len(group)
            if opens == at and self._opens_at(taken_zones | set(zones), at, self.duration(together)) == at:
                taken.add(zones)
                taken_zones |= set(zones)
                taken_requests = together
            else:
                waiting.append((zones, group))
        if not waiting:
            return Admission(list(rows), [], None, self.window)
        # the held groups go after this part has gone out
        after = at + self.duration(taken_requests) if taken_requests else at
        opening = []
        for zones, group in waiting:
            duration = self.duration(len(group))
            opens = self._opens_at(zones, after, duration) or self._opens_at(zones, at, duration)
            assert opens is not None
            opening.append((opens, zones, group))
        opening.sort(key=lambda item: item[0])
        for opens, zones, group in opening:
            self.log.info(
                "%s: quiet hours %s: %d requests (%d numbers) in %s held until %s",
                self.hook.vendor,
                self.window,
                len(group),
                sum(len(r.mobiles) for r in group),
                describe_zones([zones]),
                opens.isoformat(timespec="seconds"),
            )
        now_rows = [r for r in rows if self.request_zones(r.mobiles) in taken]
        held = [r for _, _, group in opening for r in group]
        return Admission(now_rows, held, opening[0][0], self.window, [zones for _, zones, _ in opening])

    def _never(self, zones: tuple[str, ...], group: list[PlanRequest]) -> SmsQuietHoursError:
        numbers = sum(len(r.mobiles) for r in group)
        return SmsQuietHoursError(
            f"{self.hook.vendor}: quiet hours {self.window} on the recipients' clock: {numbers} "
            f"numbers in {len(group)} requests ({describe_zones([zones])}) can never be sent: the hours open in all "
            f"their zones at once are too short for their estimated {self.duration(len(group))} "
            f"({ASSUMED_SECONDS_PER_REQUEST:g} s per request in flight, or the connection's max_requests_per_second, "
            f"plus {SEND_MARGIN.total_seconds():.0f} s); nothing was sent. Send them in smaller tasks, raise "
            "max_concurrency, or narrow the quiet hours"
        )


@functools.cache
def _loadable(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("quiet hours: time zone %r (from phonenumbers) is unknown to this system's tz database", zone)
        return False
    return True


__all__ = [
    "ASSUMED_SECONDS_PER_REQUEST",
    "QUIET_HOURS_EXTRA",
    "SEND_MARGIN",
    "Admission",
    "QuietHours",
    "QuietHoursGate",
    "SmsQuietHoursError",
    "SmsScheduledInQuietHoursError",
    "earliest_start",
    "gate_for",
    "merge_spans",
    "number_zones",
    "parse_quiet_hours",
    "send_duration",
]
