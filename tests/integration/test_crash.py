"""The crash runner's CI matrix: real processes SIGKILLed at every point, retried, audited at the simulator.

Sends: every vendor, every crash point, max_concurrency 1 and 4 on SQLite, each vendor's two hardest
points on PostgreSQL. Pulls: every queue vendor at every point on SQLite, two on PostgreSQL (when a
server is there). ``tests/crash/run.py``; the full matrix is ``python -m tests.crash.run``. The verdict
is read from the runner's per-scenario JSON, which counts duplicates and losses from the simulator's
ledger, not from our own summaries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def test_nothing_is_sent_twice_or_lost_when_a_worker_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    env = {**os.environ}
    if not env.get("SMS_TEST_POSTGRES_URI") and env.get("SMS_REQUIRE_POSTGRES") == "1":
        pytest.fail("SMS_REQUIRE_POSTGRES=1 but SMS_TEST_POSTGRES_URI is not set", pytrace=False)
    done = subprocess.run(
        [sys.executable, "-m", "tests.crash.run", "--quick", "--seed", "7", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    outcomes = json.loads(out.read_text()) if out.exists() else []
    assert outcomes, done.stdout[-3000:] + done.stderr[-3000:]
    failed = [o for o in outcomes if not o["ok"]]
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert done.returncode == 0, done.stdout[-3000:]
    assert sum(o["kills"] for o in outcomes) >= len(outcomes) - 10  # the kills did happen
    assert all(o["duplicates"] == 0 and o["never_sent"] == 0 for o in outcomes)
    # pulls: a page is lost only when the kill came before its journal commit
    pulls = [o for o in outcomes if "/pull/" in o["scenario"]]
    assert {o["scenario"].split("/")[0] for o in pulls} == {"paasw_v2", "paasw_v1", "account_md5", "cloud_mas"}
    assert all(
        o["lost_in_flight"] == 0
        for o in pulls
        if o["scenario"].split("/")[3].split("#")[0] != "random" and "after_reply" not in o["scenario"]
    )
    vendors = {o["scenario"].split("/")[0] for o in outcomes}
    assert vendors == {"paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas", "failover"}
    # failover: killed at each send point and inside and after the commit that moves requests on
    points = {o["scenario"].split("/")[3].split("#")[0] for o in outcomes if o["scenario"].startswith("failover/")}
    assert {"mid_hand_over", "after_hand_over", "after_accept", "mid_commit"} <= points
    if env.get("SMS_TEST_POSTGRES_URI"):
        assert any("/postgres/" in o["scenario"] for o in outcomes)
