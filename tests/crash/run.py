"""Kill a real sending process at each point, retry it as Airflow would, and audit the simulator's ledger.

``python -m tests.crash.run`` (full: every vendor, SQLite and PostgreSQL, max_concurrency 1 and 4,
every crash point, three draws each) or ``--quick`` (what CI runs). Each scenario:

1. resets the simulator (its own process, so counts are the vendor's, not ours) and a fresh store;
2. runs ``SmsSendOperator.execute`` for one task instance in a forked child process that kills
   itself with SIGKILL at the chosen point of a randomly drawn request (or that this runner kills
   at a random moment), then runs the same task instance again, unharmed, until it ends, as
   Airflow's retries would;
3. reads the simulator's ledger: every number accepted more than once is a duplicate; every number
   never accepted is lost, unless the last try failed naming it as an unknown outcome the author
   chose to fail on (``on_unknown="fail"``).

Failover scenarios (``failover/...``) send through a paasw_v2 account whose balance pays for three of its
eight requests (its ``40004`` named as "not accepted" by the connection's ``not_accepted_codes`` extra),
with cloud_mas as ``fallback_conn_ids``; they add the points ``mid_hand_over`` (killed inside the commit
that moves the refused requests) and ``after_hand_over``, and audit both vendors' ledgers together: a
number accepted once by each is a duplicate too.

Crash points: ``before_request`` (the intent is stored, nothing sent), ``after_accept`` (the vendor
accepted, nothing recorded), ``mid_commit`` (killed while the record of an acceptance commits),
``after_commit`` (recorded, the next request not yet sent), ``random`` (killed from outside at a
random moment: once for sends, twice for pulls).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

VENDORS = ("paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas")
POINTS = ("before_request", "after_accept", "mid_commit", "after_commit", "random")
#: requests per scenario: enough for a crash to land in the middle of a send
REQUESTS_PER_SEND = 8
#: intl reports can only be asked for by the batch id a lost reply carried: without push there is no
#: evidence, so its scenarios fail on unknown outcomes (the error names them) instead of resending
POLICY = {"intl": "fail"}
#: failover scenarios: the primary's vendor, the fallback's, and the primary's balance in SMS parts
FAILOVER = ("paasw_v2", "cloud_mas")
FAILOVER_BALANCE = 3000
FAILOVER_POINTS = ("before_request", "after_accept", "mid_commit", "after_commit", "mid_hand_over", "after_hand_over")
GRACE_SECONDS = 1.5
MAX_ATTEMPTS = 8
EXIT_UNKNOWN = 3


@dataclass
class Scenario:
    vendor: str
    store: str
    concurrency: int
    point: str
    draw: int = 0
    kind: str = "send"

    @property
    def name(self) -> str:
        what = f"c{self.concurrency}" if self.kind != "pull" else "pull"
        vendor = "failover" if self.kind == "failover" else self.vendor
        return f"{vendor}/{self.store}/{what}/{self.point}#{self.draw}"


@dataclass
class Outcome:
    scenario: str
    numbers: int = 0
    attempts: int = 0
    kills: int = 0
    final: str = ""
    duplicates: int = 0
    never_sent: int = 0
    named_unknown: int = 0
    #: pulls killed after the reply arrived and before its journal commit: the page no client can keep
    lost_in_flight: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ----------------------------------------------------------------------------------------- the child


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _counter(nth: int) -> Callable[[], bool]:
    """True on the ``nth`` call (from any thread), False on every other."""
    lock = threading.Lock()
    seen = {"n": 0}

    def is_nth() -> bool:
        with lock:
            seen["n"] += 1
            return seen["n"] == nth

    return is_nth


def _kill_at(
    owner: type, name: str, when: str, is_nth: Callable[[], bool], counts: Callable[..., bool] | None = None
) -> None:
    """Patch ``owner.name`` so that its ``nth`` counted call SIGKILLs this process ``when``:
    ``before`` it runs, ``inside_commit`` (of the store it is a method of), or ``after`` it returned."""
    real = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (counts is not None and not counts(*args, **kwargs)) or not is_nth():
            return real(self, *args, **kwargs)
        if when == "before":
            _die()
        if when == "inside_commit":
            _kill_inside_commit(self)
            return real(self, *args, **kwargs)
        result = real(self, *args, **kwargs)
        _die()
        return result

    setattr(owner, name, wrapper)


def _install_crash(point: str, nth: int) -> None:
    """Patch the send path so that this process SIGKILLs itself at ``point`` of the ``nth`` request."""
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.store import SmsStore

    is_nth = _counter(nth)
    if point == "before_request":  # counted: the HTTP calls that carry a send
        _kill_at(SmsHook, "request", "before", is_nth, counts=lambda *a, send=None, **k: send is not None)
    elif point == "after_accept":
        _kill_at(SmsHook, "submit", "after", is_nth)
    elif point == "mid_commit":
        _kill_at(SmsStore, "record_accepted", "inside_commit", is_nth)
    elif point == "after_commit":
        _kill_at(SmsStore, "record_accepted", "after", is_nth)
    elif point == "mid_hand_over":
        _kill_at(SmsStore, "hand_over", "inside_commit", _counter(1))
    elif point == "after_hand_over":
        _kill_at(SmsStore, "hand_over", "after", _counter(1))


def _kill_inside_commit(store: Any) -> None:
    """Make the store's next commit SIGKILL this process while it runs (a timer of under a millisecond).

    A commit is ``commit()``, or on SQLite a write statement run outside a transaction, which commits
    itself (the usual acceptance is one such statement)."""
    connection = store.database.connection()

    def die_while(commit: Callable[[], Any]) -> Any:
        threading.Timer(random.uniform(0.0, 0.0008), _die).start()
        result = commit()
        time.sleep(0.05)  # the commit is done: the kill lands before anything else happens
        _die()
        return result

    class DyingCursor:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

        def execute(self, sql: str, params: Any = ()) -> Any:
            commits_itself = (
                isinstance(connection, sqlite3.Connection)
                and not connection.in_transaction
                and sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
            )
            if commits_itself:
                return die_while(lambda: self._cursor.execute(sql, params))
            return self._cursor.execute(sql, params)

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(connection, name)

        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            return DyingCursor(connection.cursor(*args, **kwargs))

        def commit(self) -> None:
            die_while(connection.commit)

    dying = Dying()
    store.database.connection = lambda: dying  # every later transaction commits through it


def _in_child(env: dict[str, str], out: Path, work: Callable[[], tuple[int, dict[str, Any]]]) -> None:
    """Run one try in this forked process: output to ``out``'s log, what happened to ``out``, then exit."""
    log = os.open(str(out.with_suffix(".log")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(env)
    code, result = 1, {}
    try:
        from airflow_provider_sms.hooks.cloud_mas import CloudMasHook

        CloudMasHook.pull_interval = 0.0  # the simulator process here allows pulls back to back
        code, result = work()
    except BaseException:
        result = {"error": traceback.format_exc()}
    out.write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(code)


def _child(
    scenario: Scenario, mobiles: list[str], env: dict[str, str], crash: tuple[str, int] | None, out: Path
) -> None:
    """One try of the task instance's send, in a forked process."""

    def send() -> tuple[int, dict[str, Any]]:
        from airflow_provider_sms.errors import SmsOutcomeUnknownError
        from airflow_provider_sms.operators import SmsSendOperator
        from airflow_provider_sms.testing import FakeTaskInstance, task_context

        if crash is not None:
            _install_crash(*crash)
        failover = scenario.kind == "failover"
        operator = SmsSendOperator(
            task_id="send",
            sms_conn_id=f"sms_{scenario.vendor}",
            fallback_conn_ids=[f"sms_{FAILOVER[1]}"] if failover else None,
            mobiles=mobiles,
            content="crash test",
            # failover: the primary's signature is its connection's sign extra (cloud_mas takes a code)
            signature="Crash" if scenario.vendor != "cloud_mas" and not failover else None,
            max_concurrency=scenario.concurrency,
            on_unknown=POLICY.get(scenario.vendor, "resend"),
            unknown_grace_period=GRACE_SECONDS,
            store_conn_id=env.get("CRASH_STORE_CONN_ID") or None,
            store_table_prefix=env.get("CRASH_TABLE_PREFIX", "sms_"),
        )
        ti = FakeTaskInstance(dag_id="crash", run_id=scenario.name, task_id="send")
        try:
            return 0, {"summary": operator.execute(task_context(ti))}
        except SmsOutcomeUnknownError as exc:
            return EXIT_UNKNOWN, {"unknown": list(exc.mobiles), "error": str(exc)}

    _in_child(env, out, send)


# ----------------------------------------------------------------------------------------- the runner


class Simulator:
    """``benchmarks.simproc``: the bundled simulator in its own process, reports due at once."""

    def __init__(self, workdir: Path) -> None:
        ready = workdir / "sim.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.simproc", "--ready-file", str(ready)],
            stdin=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulator process did not start")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())

    def reset(self) -> None:
        requests.post(f"{self.info['control_url']}/reset", timeout=30).raise_for_status()

    def accepted_counts(self, vendor: str) -> dict[str, int]:
        reply = requests.get(
            f"{self.info['http_url']}/_sim/ledger", params={"vendor": vendor, "numbers": "1"}, timeout=60
        )
        reply.raise_for_status()
        return {k: int(v) for k, v in reply.json()[vendor]["accepted"]["counts"].items()}

    def set_balance(self, vendor: str, amount: int) -> None:
        reply = requests.post(
            f"{self.info['http_url']}/_sim/balance", json={"vendor": vendor, "amount": amount}, timeout=60
        )
        reply.raise_for_status()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def numbers_for(vendor: str, count: int, seed: int) -> list[str]:
    """Distinct mobiles; intl takes the country code."""
    prefix = "86" if vendor == "intl" else ""
    return [f"{prefix}13{seed % 10}{i:08d}" for i in range(count)]


def size_for(vendor: str) -> int:
    from airflow_provider_sms.hooks import hook_class_for_conn_type

    hook = hook_class_for_conn_type(f"sms_{vendor}")
    per_request = hook.max_numbers_per_request
    if hook.max_mobiles_chars:
        per_request = min(per_request, hook.max_mobiles_chars // 12)
    return REQUESTS_PER_SEND * per_request


#: seconds an unharmed send of each vendor took: random kills land inside that window
TYPICAL_SECONDS: dict[str, float] = {}


def _environment(scenario: Scenario, sim: Simulator, home: Path, postgres_uri: str | None) -> dict[str, str]:
    """The child's environment: its own AIRFLOW_HOME (embedded store) or PostgreSQL tables, and the connections."""
    env = {"AIRFLOW_HOME": str(home)}
    for vendor in VENDORS:
        connection = json.loads(sim.info["connections"][vendor])
        connection["extra"] = {**connection.get("extra", {}), "retry_wait": 0.05}
        if scenario.kind == "failover" and vendor == FAILOVER[0]:
            # the simulated paasw_v2's "balance insufficient" (its document lists no codes)
            connection["extra"].update(not_accepted_codes="40004", sign="Crash")
        env[f"AIRFLOW_CONN_SMS_{vendor.upper()}"] = json.dumps(connection)
    if scenario.store == "postgres":
        assert postgres_uri
        env.update(
            {
                "AIRFLOW_CONN_SMS_CRASH_STORE": postgres_uri,
                "CRASH_STORE_CONN_ID": "sms_crash_store",
                "CRASH_TABLE_PREFIX": f"crash{uuid.uuid4().hex[:10]}_",
            }
        )
    return env


def run_scenario(scenario: Scenario, sim: Simulator, workdir: Path, postgres_uri: str | None, seed: int) -> Outcome:
    """Kill, retry until the task instance ends, then audit the ledger."""
    rng = random.Random(f"{seed}:{scenario.name}")
    outcome = Outcome(scenario.name)
    sim.reset()
    failover = scenario.kind == "failover"
    if failover:
        sim.set_balance(FAILOVER[0], FAILOVER_BALANCE)
    timing = "failover" if failover else scenario.vendor
    home = workdir / scenario.name.replace("/", "_").replace("#", "_")
    home.mkdir(parents=True)
    env = _environment(scenario, sim, home, postgres_uri)
    mobiles = numbers_for(scenario.vendor, size_for(scenario.vendor), rng.randrange(10))
    outcome.numbers = len(mobiles)
    named: set[str] = set()
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome.attempts = attempt
            crash = None
            outside_kill = None
            if attempt == 1 and scenario.point != "random":
                # failover: the primary's four send requests (the fourth refused), then the fallback's one
                crash = (scenario.point, rng.randint(1, 5 if failover else REQUESTS_PER_SEND))
            elif scenario.point == "random" and attempt == 1:
                # One kill: a second one could land in the retry's pull of reports before that page is
                # journaled, losing the very reports that are the evidence, after which on_unknown="resend"
                # sends again (the README's window no client can close); the pull scenarios cover that window.
                outside_kill = rng.uniform(0.05, 0.95) * TYPICAL_SECONDS.get(timing, 0.3)
            result_file = home / f"try{attempt}.json"
            started = time.monotonic()
            code = _fork_and_wait(scenario, mobiles, env, crash, result_file, outside_kill)
            if code == -signal.SIGKILL:
                outcome.kills += 1
                continue
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
            if code == 0:
                outcome.final = "sent"
                if attempt == 1:
                    TYPICAL_SECONDS[timing] = time.monotonic() - started
                break
            if code == EXIT_UNKNOWN and "no evidence of acceptance" in result.get("error", ""):
                named = set(result["unknown"])
                outcome.final = "failed on unknown outcomes (named)"
                break
            outcome.final = f"try {attempt} failed: {result.get('error', code)!s:.300}"
        else:
            outcome.problems.append(f"still not done after {MAX_ATTEMPTS} tries: {outcome.final}")
    finally:
        if "CRASH_TABLE_PREFIX" in env:
            _drop_tables(postgres_uri or "", env["CRASH_TABLE_PREFIX"])
    counts = sim.accepted_counts(scenario.vendor)
    if failover:  # a number each account accepted once is sent twice all the same
        for mobile, times in sim.accepted_counts(FAILOVER[1]).items():
            counts[mobile] = counts.get(mobile, 0) + times
    _audit(outcome, counts, mobiles, named)
    return outcome


def _audit(outcome: Outcome, counts: dict[str, int], mobiles: list[str], named: set[str]) -> None:
    """Duplicates and losses, counted at the vendor's side."""
    outcome.duplicates = sum(1 for n in counts.values() if n > 1)
    outcome.named_unknown = len(named)
    outcome.never_sent = sum(1 for m in mobiles if m not in counts and m not in named)
    strays = set(counts) - set(mobiles)
    if outcome.duplicates:
        outcome.problems.append(f"{outcome.duplicates} numbers accepted more than once")
    if outcome.never_sent:
        outcome.problems.append(f"{outcome.never_sent} numbers never sent and not named")
    if strays:
        outcome.problems.append(f"{len(strays)} numbers the task never had were sent")


def _fork_and_wait(
    scenario: Scenario,
    mobiles: list[str],
    env: dict[str, str],
    crash: tuple[str, int] | None,
    out: Path,
    outside_kill: float | None,
) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(scenario, mobiles, env, crash, out)
    return _wait(pid, outside_kill)


def _drop_tables(uri: str, prefix: str) -> None:
    import psycopg

    from airflow_provider_sms.store import drop_statements

    with psycopg.connect(uri, autocommit=True) as conn:
        for statement in drop_statements(prefix):
            conn.execute(statement)


# ----------------------------------------------------------------------------------------- pulls

QUEUE_VENDORS = ("paasw_v2", "paasw_v1", "account_md5", "cloud_mas")
#: after_reply: the reply's bytes are in memory, not yet journaled: the page is lost (the window only
#: push closes: a reply lost on the network before it arrives is the same loss).
#: Every later point must lose nothing: after_journal, mid_save (inside the commit that stores the page),
#: after_commit (stored, before the next pull), random.
PULL_POINTS = ("after_reply", "after_journal", "mid_save", "after_commit", "random")
REPORTS_QUEUED = 5000
PULL_PAGE = 1000


def _install_pull_crash(point: str, nth: int) -> None:
    """Patch the pull path so that this process SIGKILLs itself at ``point`` of the ``nth`` page."""
    from airflow_provider_sms.store import SmsStore

    is_nth = _counter(nth)
    if point == "after_reply":
        _kill_at(SmsStore, "journal_reply", "before", is_nth)
    elif point == "after_journal":
        _kill_at(SmsStore, "journal_reply", "after", is_nth)
    elif point == "mid_save":
        _kill_at(SmsStore, "save_reports", "inside_commit", is_nth)
    elif point == "after_commit":
        _kill_at(SmsStore, "save_reports", "after", is_nth)


def _pull_child(vendor: str, env: dict[str, str], crash: tuple[str, int] | None, out: Path) -> None:
    """One pull of the vendor's report queue until it is empty, in a forked process."""

    def pull() -> tuple[int, dict[str, Any]]:
        from airflow_provider_sms.hooks import get_sms_hook
        from airflow_provider_sms.pulling import pull_reports
        from airflow_provider_sms.store import SmsStore

        if crash is not None:
            _install_pull_crash(*crash)
        hook = get_sms_hook(f"sms_{vendor}")
        with SmsStore(env.get("CRASH_STORE_CONN_ID") or None, table_prefix=env.get("CRASH_TABLE_PREFIX", "sms_")) as st:
            return 0, {"pulled": pull_reports(hook, st).to_dict()}

    _in_child(env, out, pull)


def _stored_reports(env: dict[str, str], vendor: str) -> int:
    from airflow_provider_sms.store import SmsStore

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with SmsStore(env.get("CRASH_STORE_CONN_ID") or None, table_prefix=env.get("CRASH_TABLE_PREFIX", "sms_")) as st:
            return sum(len(page) for page in st.iter_reports(vendor=vendor))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_pull_scenario(
    scenario: Scenario, sim: Simulator, workdir: Path, postgres_uri: str | None, seed: int
) -> Outcome:
    """Queue reports at the vendor, kill the pulling process, pull again until the queue is empty, audit."""
    rng = random.Random(f"{seed}:{scenario.name}")
    outcome = Outcome(scenario.name)
    sim.reset()
    requests.post(
        f"{sim.info['control_url']}/fill",
        json={"vendor": scenario.vendor, "count": REPORTS_QUEUED, "per_batch": 1000, "first_batch": 1},
        timeout=60,
    ).raise_for_status()
    home = workdir / ("pull_" + scenario.name.replace("/", "_").replace("#", "_"))
    home.mkdir(parents=True)
    env = _environment(scenario, sim, home, postgres_uri)
    outcome.numbers = REPORTS_QUEUED
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome.attempts = attempt
            crash, outside_kill = None, None
            if attempt == 1 and scenario.point != "random":
                crash = (scenario.point, rng.randint(1, REPORTS_QUEUED // PULL_PAGE))
            elif scenario.point == "random" and attempt <= 2:
                outside_kill = rng.uniform(0.05, 0.95) * TYPICAL_SECONDS.get(f"pull {scenario.vendor}", 0.5)
            result_file = home / f"try{attempt}.json"
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _pull_child(scenario.vendor, env, crash, result_file)
            code = _wait(pid, outside_kill)
            if code == -signal.SIGKILL:
                outcome.kills += 1
                continue
            if code == 0:
                outcome.final = "queue drained"
                if attempt == 1:
                    TYPICAL_SECONDS[f"pull {scenario.vendor}"] = time.monotonic() - started
                break
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
            outcome.final = f"try {attempt} failed: {result.get('error', code)!s:.300}"
        else:
            outcome.problems.append(f"still not done after {MAX_ATTEMPTS} tries: {outcome.final}")
        stored = _stored_reports(env, scenario.vendor)
    finally:
        if "CRASH_TABLE_PREFIX" in env:
            _drop_tables(postgres_uri or "", env["CRASH_TABLE_PREFIX"])
    _audit_pull(outcome, sim, scenario, stored)
    return outcome


def _audit_pull(outcome: Outcome, sim: Simulator, scenario: Scenario, stored: int) -> None:
    """Reports the vendor handed out against reports in the store.

    A kill after the reply arrived and before its journal commit loses that page: the window no client
    can close (README). ``after_reply`` lands there by design, a random kill may; every other point
    must lose nothing.
    """
    ledger = requests.get(f"{sim.info['http_url']}/_sim/ledger", params={"vendor": scenario.vendor}, timeout=60)
    handed = ledger.json()[scenario.vendor]["reports"]
    outcome.duplicates = handed["handed_out_more_than_once"]
    lost = handed["distinct"] - stored
    in_flight_allowed = {"after_reply": PULL_PAGE, "random": outcome.kills * PULL_PAGE}.get(scenario.point, 0)
    outcome.lost_in_flight = min(lost, in_flight_allowed)
    outcome.never_sent = lost - outcome.lost_in_flight
    if handed["distinct"] != REPORTS_QUEUED:
        outcome.problems.append(f"the vendor handed out {handed['distinct']} of {REPORTS_QUEUED} reports")
    if outcome.duplicates:
        outcome.problems.append(f"{outcome.duplicates} reports handed out twice")
    if outcome.never_sent:
        outcome.problems.append(f"{outcome.never_sent} reports handed out but not stored after a journal commit")
    if scenario.point == "after_reply" and lost != PULL_PAGE:
        outcome.problems.append(f"the page in flight should be lost ({PULL_PAGE}), {lost} were")


def _wait(pid: int, outside_kill: float | None) -> int:
    if outside_kill is not None:
        deadline = time.monotonic() + outside_kill
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def scenarios(
    vendors: list[str], stores: list[str], concurrencies: list[int], points: list[str], draws: int
) -> list[Scenario]:
    return [
        Scenario(vendor, store, concurrency, point, draw)
        for store in stores
        for vendor in vendors
        for concurrency in concurrencies
        for point in points
        for draw in range(draws)
    ]


def pull_scenarios(vendors: list[str], stores: list[str], points: list[str], draws: int) -> list[Scenario]:
    return [
        Scenario(vendor, store, 1, point, draw, kind="pull")
        for store in stores
        for vendor in vendors
        if vendor in QUEUE_VENDORS
        for point in points
        for draw in range(draws)
    ]


def failover_scenarios(stores: list[str], concurrency: list[int], points: list[str], draws: int) -> list[Scenario]:
    return [
        Scenario(FAILOVER[0], store, c, point, draw, kind="failover")
        for store in stores
        for c in concurrency
        for point in points
        for draw in range(draws)
    ]


def quick_scenarios(postgres: bool) -> list[Scenario]:
    """What CI runs: every vendor, point and concurrency on SQLite, each vendor's two hardest on PostgreSQL;
    every queue vendor's pull at every point on SQLite, two points on PostgreSQL."""
    chosen = scenarios(list(VENDORS), ["sqlite"], [1, 4], list(POINTS), 1)
    chosen += pull_scenarios(list(QUEUE_VENDORS), ["sqlite"], list(PULL_POINTS), 1)
    chosen += failover_scenarios(["sqlite"], [1], [*FAILOVER_POINTS, "random"], 1)
    if postgres:
        chosen += failover_scenarios(["postgres"], [4], ["mid_hand_over", "after_accept"], 1)
        chosen += scenarios(list(VENDORS), ["postgres"], [4], ["after_accept", "mid_commit"], 1)
        chosen += pull_scenarios(list(QUEUE_VENDORS), ["postgres"], ["after_journal", "mid_save"], 1)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI matrix (about 60 scenarios)")
    parser.add_argument("--vendors", default=",".join(VENDORS))
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--points", default=",".join(dict.fromkeys((*POINTS, *PULL_POINTS, *FAILOVER_POINTS))))
    parser.add_argument("--no-failover", action="store_true", help="leave out the failover scenarios")
    parser.add_argument("--draws", type=int, default=3, help="scenarios per combination (random request, moment)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--postgres", default=os.environ.get("SMS_TEST_POSTGRES_URI", ""))
    parser.add_argument("--out", help="write every outcome here as JSON")
    args = parser.parse_args(argv)
    postgres = args.postgres or None
    if args.quick:
        chosen = quick_scenarios(postgres is not None)
    else:
        stores = [s for s in args.stores.split(",") if s and (s != "postgres" or postgres)]
        vendors = [v for v in args.vendors.split(",") if v in VENDORS]  # none: only the failover scenarios
        chosen = scenarios(
            vendors,
            stores,
            [int(c) for c in args.concurrency.split(",")],
            [p for p in args.points.split(",") if p in POINTS],
            args.draws,
        )
        chosen += pull_scenarios(vendors, stores, [p for p in args.points.split(",") if p in PULL_POINTS], args.draws)
        if not args.no_failover:
            chosen += failover_scenarios(
                stores,
                [int(c) for c in args.concurrency.split(",")],
                [p for p in args.points.split(",") if p in (*FAILOVER_POINTS, "random")],
                args.draws,
            )
    # imported before forking, so that every child starts at once

    for vendor in VENDORS:
        importlib.import_module(f"airflow_provider_sms.hooks.{vendor}")
    print(f"crash test: {len(chosen)} scenarios, seed {args.seed}", flush=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="sms-crash-") as tmp:
        workdir = Path(tmp)
        sim = Simulator(workdir)
        try:
            for scenario in chosen:
                started = time.monotonic()
                run = run_pull_scenario if scenario.kind == "pull" else run_scenario
                outcome = run(scenario, sim, workdir, postgres, args.seed)
                outcomes.append(outcome)
                verdict = "ok  " if outcome.ok else "FAIL"
                print(
                    f"{verdict} {scenario.name:<40} {outcome.numbers:>6} numbers, {outcome.attempts} tries, "
                    f"{outcome.kills} killed, dup {outcome.duplicates}, lost {outcome.never_sent}, "
                    f"named unknown {outcome.named_unknown}, lost in flight {outcome.lost_in_flight}: "
                    f"{outcome.final} ({time.monotonic() - started:.1f}s)"
                    + (f" — {'; '.join(outcome.problems)}" if outcome.problems else ""),
                    flush=True,
                )
        finally:
            sim.stop()
    failed = [o for o in outcomes if not o.ok]
    kills = sum(o.kills for o in outcomes)
    print(
        f"crash test: {len(outcomes)} scenarios, {kills} processes killed, "
        f"{sum(o.duplicates for o in outcomes)} duplicated numbers, {sum(o.never_sent for o in outcomes)} lost, "
        f"{sum(o.named_unknown for o in outcomes)} named as unknown; {len(failed)} failed",
        flush=True,
    )
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(o) | {"ok": o.ok} for o in outcomes], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
