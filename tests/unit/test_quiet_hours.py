"""Quiet hours arithmetic: parsing, windows that wrap midnight, DST and DST-free zones, numbers of several
zones, the duration estimate, and the gate's decisions on a plan's requests (no sockets, a fixed clock).

The end-to-end behaviour against the simulator is in ``tests/integration/test_quiet_hours.py``.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_sms.errors import SmsConfigurationError, SmsInvalidRequestError
from airflow_provider_sms.numbers import chunk_mobiles
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.quiet_hours import (
    ASSUMED_SECONDS_PER_REQUEST,
    SEND_MARGIN,
    QuietHours,
    QuietHoursGate,
    SmsQuietHoursError,
    SmsScheduledInQuietHoursError,
    earliest_start,
    gate_for,
    merge_spans,
    number_zones,
    parse_quiet_hours,
    send_duration,
)
from airflow_provider_sms.records import PLANNED, PlanRequest

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours.parse("21:00-08:00")
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "start", "end", "wraps"),
    [
        ("21:00-08:00", time(21), time(8), True),
        ("  22:30 - 7:15 ", time(22, 30), time(7, 15), True),
        ("12:00-14:00", time(12), time(14), False),
        ("00:00-06:00", time(0), time(6), False),
        ("18:00-00:00", time(18), time(0), True),
    ],
)
def test_a_window_parses_and_knows_whether_it_wraps_midnight(text: str, start: time, end: time, wraps: bool) -> None:
    window = QuietHours.parse(text)
    assert (window.start, window.end, window.wraps) == (start, end, wraps)
    assert QuietHours.parse(str(window)) == window


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("08:00-08:00", "starts and ends at the same time"),
        ("21:00", "must look like '21:00-08:00'"),
        ("21-08", "must look like '21:00-08:00'"),
        ("9pm-8am", "must look like '21:00-08:00'"),
        ("21:00-08:00-09:00", "must look like '21:00-08:00'"),
        ("24:00-08:00", "24:00 is no time of day"),
        ("21:60-08:00", "21:60 is no time of day"),
        (2100, "must be a string"),
    ],
)
def test_bad_windows_get_clear_errors(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuietHours.parse(value)


@pytest.mark.parametrize("value", ["08:00-08:00", "21-08", "25:00-08:00"])
def test_the_operator_refuses_a_bad_window_at_dag_parse_time(value: str) -> None:
    with pytest.raises(ValueError, match="quiet_hours"):
        SmsSendOperator(task_id="t", sms_conn_id="sms_x", mobiles="13800138000", content="hi", quiet_hours=value)


def test_the_operator_takes_a_window_none_or_empty() -> None:
    for value in ("21:00-08:00", None, ""):
        op = SmsSendOperator(task_id="t", sms_conn_id="sms_x", mobiles="13800138000", content="hi", quiet_hours=value)
        assert op.quiet_hours == value
    assert parse_quiet_hours(None) is None and parse_quiet_hours("") is None and parse_quiet_hours("  ") is None


# ------------------------------------------------------------------------------------ windows in a zone


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        ((20, 59), False),
        ((21, 0), True),  # the start is inside
        ((23, 59), True),
        ((0, 0), True),  # past midnight: still the window that started yesterday
        ((7, 59), True),
        ((8, 0), False),  # the end is outside
        ((12, 0), False),
    ],
)
def test_a_window_that_wraps_midnight_in_a_zone_without_dst(local: tuple[int, int], quiet: bool) -> None:
    when = datetime(2026, 6, 15, *local, tzinfo=SHANGHAI)
    assert NIGHT.is_quiet(when.astimezone(UTC), SHANGHAI) is quiet


def test_asia_shanghai_opens_at_eight_local_all_year() -> None:
    for month in (1, 4, 7, 10):
        now = datetime(2026, month, 10, 22, 0, tzinfo=SHANGHAI)
        assert NIGHT.opens_at([SHANGHAI], now, MINUTE) == datetime(2026, month, 11, 8, 0, tzinfo=SHANGHAI)
        after_midnight = datetime(2026, month, 11, 3, 0, tzinfo=SHANGHAI)
        assert NIGHT.opens_at([SHANGHAI], after_midnight, MINUTE) == datetime(2026, month, 11, 8, 0, tzinfo=SHANGHAI)


def test_a_send_that_would_run_into_the_window_waits_for_the_next_opening() -> None:
    now = datetime(2026, 6, 15, 20, 58, tzinfo=SHANGHAI)
    assert NIGHT.opens_at(["Asia/Shanghai"], now, timedelta(minutes=2)) == now  # ends at 21:00 sharp: fine
    tomorrow_eight = datetime(2026, 6, 16, 8, 0, tzinfo=SHANGHAI)
    assert NIGHT.opens_at(["Asia/Shanghai"], now, timedelta(minutes=2, seconds=1)) == tomorrow_eight
    longer_than_the_day = timedelta(hours=13, minutes=1)  # open 08:00-21:00: 13 hours
    assert NIGHT.opens_at(["Asia/Shanghai"], now, longer_than_the_day) is None


def test_a_window_inside_one_day() -> None:
    lunch = QuietHours.parse("12:00-14:00")
    assert not lunch.wraps
    now = datetime(2026, 6, 15, 11, 30, tzinfo=SHANGHAI)
    assert lunch.opens_at([SHANGHAI], now, timedelta(minutes=30)) == now
    assert lunch.opens_at([SHANGHAI], now, timedelta(minutes=31)) == datetime(2026, 6, 15, 14, 0, tzinfo=SHANGHAI)
    assert lunch.is_quiet(datetime(2026, 6, 15, 13, 59, tzinfo=SHANGHAI), SHANGHAI)
    assert not lunch.is_quiet(datetime(2026, 6, 15, 0, 30, tzinfo=SHANGHAI), SHANGHAI)


def test_a_dst_zone_keeps_the_window_on_the_local_clock() -> None:
    # New York: 08:00 local is 13:00 UTC in winter (EST) and 12:00 UTC in summer (EDT)
    assert NIGHT.opens_at([NEW_YORK], utc(2026, 1, 15, 6), MINUTE) == utc(2026, 1, 15, 13)
    assert NIGHT.opens_at([NEW_YORK], utc(2026, 7, 15, 6), MINUTE) == utc(2026, 7, 15, 12)
    # the night the clocks go forward (2026-03-08, 02:00 EST -> 03:00 EDT): still 08:00 local
    assert NIGHT.opens_at([NEW_YORK], utc(2026, 3, 8, 3), MINUTE) == datetime(2026, 3, 8, 8, tzinfo=NEW_YORK)
    # and the night they go back (2026-11-01)
    assert NIGHT.opens_at([NEW_YORK], utc(2026, 11, 1, 3), MINUTE) == datetime(2026, 11, 1, 8, tzinfo=NEW_YORK)


def test_a_window_edge_that_a_dst_change_skips_or_repeats_is_read_conservatively() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: the window ends at its later reading, 03:30 EDT
    ends_in_gap = QuietHours.parse("00:00-02:30")
    assert ends_in_gap.opens_at([NEW_YORK], utc(2026, 3, 8, 5), MINUTE) == utc(2026, 3, 8, 7, 30)
    # 01:30 happens twice on 2026-11-01: the window starts at its first reading (05:30 UTC, EDT)
    starts_in_overlap = QuietHours.parse("01:30-05:00")
    assert starts_in_overlap.is_quiet(utc(2026, 11, 1, 5, 45), NEW_YORK)
    assert not starts_in_overlap.is_quiet(utc(2026, 11, 1, 5, 29), NEW_YORK)


def test_the_window_must_hold_in_every_zone_of_a_send() -> None:
    # Shanghai is open 00:00-13:00 UTC, New York (winter) 13:00-02:00 UTC: together 00:00-02:00 UTC
    now = utc(2026, 1, 15, 12, 58, 30)
    assert NIGHT.opens_at([SHANGHAI], now, MINUTE) == now
    assert NIGHT.opens_at([SHANGHAI, NEW_YORK], now, MINUTE) == utc(2026, 1, 16, 0)
    assert NIGHT.opens_at([SHANGHAI, NEW_YORK], now, timedelta(hours=2)) == utc(2026, 1, 16, 0)
    assert NIGHT.opens_at([SHANGHAI, NEW_YORK], now, timedelta(hours=2, minutes=1)) is None


def test_numbers_of_a_country_with_several_zones_keep_the_window_in_each() -> None:
    russian_mobile = number_zones("79161234567")
    assert {"Europe/Moscow", "Asia/Kamchatka", "Europe/Bucharest"} <= set(russian_mobile)
    opens = NIGHT.opens_at(russian_mobile, utc(2026, 12, 1, 0), MINUTE)
    assert opens is not None
    for zone in russian_mobile:
        assert not NIGHT.is_quiet(opens, ZoneInfo(zone)), zone
    assert any(NIGHT.is_quiet(opens - MINUTE, ZoneInfo(z)) for z in russian_mobile)
    assert number_zones("8613800138000") == ("Asia/Shanghai",)
    assert number_zones("12025550123") == ("America/New_York",)
    assert number_zones("97312345678") == ()  # unknown: the gate falls back to the connection's zone


def test_mainland_mobiles_are_asia_shanghai_without_asking_phonenumbers_as_it_would_answer() -> None:
    import phonenumbers
    from phonenumbers import timezone as phone_zones

    for prefix in range(130, 200):
        number = f"86{prefix}12345678"
        assert number_zones(number) == ("Asia/Shanghai",)
        parsed = phonenumbers.parse("+" + number)
        if phonenumbers.is_valid_number(parsed):
            assert phone_zones.time_zones_for_number(parsed) == ("Asia/Shanghai",), number


def test_quiet_hours_on_mainland_mobiles_do_not_load_phonenumbers() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow_provider_sms.quiet_hours import number_zones\n"
        "assert number_zones('8613800138000') == ('Asia/Shanghai',)\n"
        "print('phonenumbers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def _brute_force_open(window: QuietHours, zones: list[ZoneInfo], start: datetime, duration: timedelta) -> bool:
    """Whether no minute of ``[start, start + duration]`` is quiet on any zone's wall clock."""
    moment = start
    while moment <= start + duration:
        for zone in zones:
            local = moment.astimezone(zone).time()
            quiet = (
                (local >= window.start or local < window.end) if window.wraps else (window.start <= local < window.end)
            )
            if quiet:
                return False
        moment += MINUTE
    return True


def test_opening_times_agree_with_a_minute_by_minute_reading_of_the_wall_clocks() -> None:
    rng = random.Random(15)
    zones = ["Asia/Shanghai", "Asia/Kolkata", "Europe/Berlin", "America/Sao_Paulo", "Australia/Sydney", "Africa/Lagos"]
    windows = ["21:00-08:00", "22:00-07:00", "12:00-14:00", "23:30-06:15"]
    for _ in range(60):
        window = QuietHours.parse(rng.choice(windows))
        chosen = [ZoneInfo(z) for z in rng.sample(zones, rng.randint(1, 2))]
        # mid-month, away from DST changes, whole minutes
        now = utc(2026, rng.choice([1, 6, 9]), rng.randint(10, 18), rng.randint(0, 23), rng.randint(0, 59))
        duration = timedelta(minutes=rng.randint(1, 180))
        opens = window.opens_at(chosen, now, duration)
        if opens is None:
            continue
        assert _brute_force_open(window, chosen, opens, duration), (window, chosen, now, duration, opens)
        if opens > now:
            assert not _brute_force_open(window, chosen, opens - MINUTE, duration), (window, chosen, now, opens)


def test_spans_merge_and_the_earliest_start_skips_them() -> None:
    a, b, c = utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)
    assert merge_spans([(b, c), (a, b)]) == [(a, c)]
    assert merge_spans([(a, c), (a, b)]) == [(a, c)]
    spans = [(a, b)]
    assert earliest_start(spans, a - MINUTE * 10, MINUTE * 10, c) == a - MINUTE * 10
    assert earliest_start(spans, a - MINUTE * 10, MINUTE * 11, c) == b
    assert earliest_start(spans, a, timedelta(hours=1), c) == b
    assert earliest_start(spans, a, timedelta(hours=1, minutes=1), c) is None


# ------------------------------------------------------------------------------------ the duration estimate


def test_the_duration_estimate_takes_the_slower_of_the_assumption_and_the_accounts_pace() -> None:
    assert send_duration(10, requests_per_second=0, max_concurrency=1) == SEND_MARGIN + timedelta(
        seconds=10 * ASSUMED_SECONDS_PER_REQUEST
    )
    assert send_duration(10, requests_per_second=0, max_concurrency=4) == SEND_MARGIN + timedelta(
        seconds=10 * ASSUMED_SECONDS_PER_REQUEST / 4
    )
    assert send_duration(10, requests_per_second=0.2, max_concurrency=4) == SEND_MARGIN + timedelta(seconds=50)
    assert send_duration(10, requests_per_second=100, max_concurrency=1) == SEND_MARGIN + timedelta(seconds=10)


# ------------------------------------------------------------------------------------ the gate


class FakeHook(SimpleNamespace):
    """What the gate reads of a hook: its zone, whether it is intl, its pace and how it cuts a list."""

    def __init__(
        self, *, international: bool = False, zone: str = "Asia/Shanghai", rate: float = 0.0, extra: Any = None
    ) -> None:
        super().__init__(
            vendor="intl" if international else "paasw_v2",
            sms_conn_id="sms_test",
            international=international,
            config=SimpleNamespace(timezone=ZoneInfo(zone)),
            requests_per_second=rate,
            quiet_hours=extra,
        )

    def chunk(self, valid: list[str]) -> list[tuple[str, ...]]:
        return [tuple(c) for c in chunk_mobiles(valid, max_count=2, max_chars=None)]


def rows(chunks: list[tuple[str, ...]]) -> list[PlanRequest]:
    return [PlanRequest(key=f"k{i}", index=i, state=PLANNED, mobiles=c) for i, c in enumerate(chunks)]


CHINA = ["8613800000001", "8613800000002", "8613800000003"]
NIGERIA = ["2348031000001", "2348031000002"]


def gate(at: datetime, **hook: Any) -> QuietHoursGate:
    return QuietHoursGate(NIGHT, FakeHook(**hook), now=lambda: at)  # type: ignore[arg-type]


def test_a_domestic_send_inside_the_window_is_held_until_it_opens() -> None:
    g = gate(utc(2026, 6, 15, 14))  # 22:00 in Shanghai
    plan = rows(g.chunk(["13800000001", "13800000002", "13800000003"]))
    admission = g.admit(plan)
    assert admission.now == [] and admission.held == plan
    assert admission.opens_at == utc(2026, 6, 16, 0)  # 08:00 Shanghai
    error = admission.error("paasw_v2")
    assert isinstance(error, AirflowFailException)  # Airflow fails it without spending retries
    assert error.opens_at == admission.opens_at
    assert "2026-06-16T00:00+00:00 (2026-06-16 08:00 Asia/Shanghai)" in str(error)
    assert "nothing was sent" in str(error) and "deferrable=True" in str(error)


def test_the_connections_zone_is_the_domestic_recipients_clock() -> None:
    at = utc(2026, 1, 15, 14)  # 22:00 in Shanghai, 14:00 in London
    assert gate(at).admit(rows([("13800000001",)])).held
    assert not gate(at, zone="Europe/London").admit(rows([("13800000001",)])).held


def test_the_clock_is_read_once_per_part_so_its_decisions_agree() -> None:
    ticks = iter([utc(2026, 6, 15, 12, 58), utc(2026, 6, 15, 14)])
    g = QuietHoursGate(NIGHT, FakeHook(), now=lambda: next(ticks))  # type: ignore[arg-type]
    plan = rows([("13800000001",)])
    assert g.admit(plan).now == plan
    assert g.admit(plan).now == plan  # the same moment: the plan's intents and what goes out agree
    assert g.admit(plan, fresh=True).held == plan  # a later part of the try reads the clock again


def test_intl_numbers_are_planned_by_zone_and_each_group_goes_in_its_own_window() -> None:
    at = utc(2026, 12, 1, 3)  # 11:00 in Shanghai, 04:00 in Lagos
    g = gate(at, international=True)
    chunks = g.chunk([CHINA[0], NIGERIA[0], CHINA[1], NIGERIA[1], CHINA[2]])
    assert chunks == [tuple(NIGERIA), tuple(CHINA[:2]), (CHINA[2],)]  # no request mixes zones
    admission = g.admit(rows(chunks))
    assert [r.mobiles for r in admission.now] == [tuple(CHINA[:2]), (CHINA[2],)]
    assert [r.mobiles for r in admission.held] == [tuple(NIGERIA)]
    assert admission.opens_at == utc(2026, 12, 1, 7)  # 08:00 in Lagos
    later = gate(utc(2026, 12, 1, 7), international=True).admit(admission.held)
    assert later.now == admission.held and not later.held


def test_a_request_mixing_zones_waits_for_the_window_of_all_of_them() -> None:
    """A plan stored by a try without quiet hours may mix zones in one request: all of them count."""
    g = gate(utc(2026, 12, 1, 3), international=True)
    admission = g.admit(rows([(CHINA[0], NIGERIA[0])]))
    assert admission.held and admission.opens_at == utc(2026, 12, 1, 7)


def test_groups_join_the_part_going_now_only_while_the_whole_part_fits() -> None:
    # 12:55 UTC: Shanghai (20:55) has 5 minutes left, Lagos (13:55) hours; each group alone fits
    at = utc(2026, 12, 1, 12, 55)
    g = gate(at, international=True, rate=1 / 60)  # one request a minute
    lagos = [f"23480310000{i:02d}" for i in range(8)]  # four requests: 1 + 4 minutes
    admission = g.admit(rows(g.chunk([*lagos, CHINA[0]])))
    assert [r.mobiles[0][:3] for r in admission.now] == ["234"] * 4
    # Shanghai's request alone would fit now (1 + 1 minutes), but not after Lagos's four (1 + 5 minutes):
    # it waits for Shanghai's morning
    assert [r.mobiles for r in admission.held] == [(CHINA[0],)]
    assert admission.opens_at == utc(2026, 12, 2, 0)


def test_a_group_whose_window_never_holds_the_send_fails_before_anything_goes() -> None:
    g = gate(utc(2026, 12, 1, 3), international=True, rate=1 / 3600)  # one request an hour
    plan = rows(g.chunk([f"86138000000{i:02d}" for i in range(40)]))  # 20 requests: 20 hours
    with pytest.raises(SmsQuietHoursError, match="can never be sent") as error:
        g.admit(plan)
    assert isinstance(error.value, AirflowFailException)


def test_an_unknown_zone_falls_back_to_the_connections() -> None:
    g = gate(utc(2026, 6, 15, 14), international=True, zone="Europe/London")  # 22:00 Shanghai, 15:00 London
    assert g.zones_of("97312345678") == ("Europe/London",)
    assert not g.admit(rows([("97312345678",)])).held


def test_a_schedule_inside_the_window_is_refused_for_any_zone_of_the_send() -> None:
    g = gate(utc(2026, 12, 1, 3), international=True)
    g.check_schedule(CHINA, utc(2026, 12, 1, 5))  # 13:00 in Shanghai
    with pytest.raises(SmsScheduledInQuietHoursError, match=r"05:00 Africa/Lagos") as error:
        g.check_schedule([*CHINA, *NIGERIA], utc(2026, 12, 1, 4))
    assert isinstance(error.value, SmsInvalidRequestError) and isinstance(error.value, AirflowFailException)
    with pytest.raises(SmsScheduledInQuietHoursError, match="inside quiet hours 21:00-08:00"):
        gate(utc(2026, 12, 1, 3)).check_schedule(["13800000001"], utc(2026, 12, 1, 14))


def test_the_connection_extra_is_the_default_and_an_empty_argument_turns_it_off() -> None:
    hook: Any = FakeHook(extra="22:00-07:00")
    from_extra = gate_for(hook, None)
    assert from_extra is not None and str(from_extra.window) == "22:00-07:00"
    given = gate_for(hook, "21:00-08:00")
    assert given is not None and str(given.window) == "21:00-08:00"
    assert gate_for(hook, "") is None
    assert gate_for(FakeHook(), None) is None  # type: ignore[arg-type]
    assert gate_for(FakeHook(extra=" "), None) is None  # type: ignore[arg-type]
    with pytest.raises(SmsConfigurationError, match=r"extra 'quiet_hours'.*same time"):
        gate_for(FakeHook(extra="08:00-08:00"), None)  # type: ignore[arg-type]
