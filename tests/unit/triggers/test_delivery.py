"""The delivery trigger logs progress when it changes and at a slow heartbeat, not on every check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_sms.triggers.delivery import SmsDeliveryTrigger


def progress(delivered: int, pulled: int = 0, total: int = 10) -> dict[str, int]:
    return {"total": total, "delivered": delivered, "failed": 0, "pending": total - delivered, "pulled": pulled}


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.times: list[float] = []
        self.clock: Any = None

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)
        self.times.append(self.clock())


class ScriptedTrigger(SmsDeliveryTrigger):
    """Checks and clock readings from a script instead of a vendor and a clock."""

    def __init__(self, checks: list[tuple[float, dict[str, int]]], lines: _Lines) -> None:
        super().__init__("sms_x", ["b1"], poll_interval=0)
        self._script: Iterator[tuple[float, dict[str, int]]] = iter(checks)
        self._now = 0.0
        lines.clock = self.now

    def _check(self) -> dict[str, int]:
        self._now, result = next(self._script)
        return result

    def now(self) -> float:
        return self._now


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> _Lines:
    recorder = _Lines()
    monkeypatch.setattr(ScriptedTrigger, "log", property(lambda self: recorder))
    return recorder


def test_progress_is_logged_on_change_and_at_the_heartbeat(lines: _Lines) -> None:
    unchanged = [(2.0 * i, progress(3)) for i in range(1, 400)]  # a check every 2 s for 13 minutes
    checks = [(0.0, progress(0)), *unchanged, (800.0, progress(3, pulled=5)), (802.0, progress(10))]
    trigger = ScriptedTrigger(checks, lines)
    trigger.clock = staticmethod(trigger.now)  # type: ignore[assignment]

    async def first_event() -> Any:
        return await anext(trigger.run())

    assert asyncio.run(first_event()).payload["status"] == "done"
    # the first check, the change at 2 s, heartbeats at 302 s and 602 s (not the 2 s checks between, nor
    # the check at 800 s that pulled other batches' reports), and the change at 802 s that ends the wait
    assert lines.times == [0.0, 2.0, 302.0, 602.0, 802.0], lines.times
    assert lines.lines[-1] == f"delivery progress of 1 batches: {progress(10)}"


def test_a_slow_check_does_not_hold_up_other_triggers() -> None:
    """Each check runs in a thread of its own (``thread_sensitive=False``): with asgiref's default every
    trigger's check would queue behind one shared thread, so one slow vendor would stall them all."""
    import threading
    import time

    other_done = threading.Event()
    finished: list[str] = []

    class Slow(SmsDeliveryTrigger):
        def _check(self) -> dict[str, int]:
            other_done.wait(timeout=3)  # a vendor that answers slowly (here: until the other trigger is done)
            finished.append("slow")
            return progress(10)

    class Quick(SmsDeliveryTrigger):
        def _check(self) -> dict[str, int]:
            time.sleep(0.05)  # the slow check is in flight by now
            finished.append("quick")
            other_done.set()
            return progress(10)

    async def both() -> None:
        await asyncio.gather(anext(Slow("a", ["b1"]).run()), anext(Quick("b", ["b2"]).run()))

    started = time.monotonic()
    asyncio.run(both())
    assert finished == ["quick", "slow"]
    assert time.monotonic() - started < 2.5
