"""The benchmark harness runs its quick mode end to end and writes the table (the numbers are not judged here).

The quick sizes are far too small for the targets to mean anything; this only proves that every
case, the simulator process, the baselines and the report still work together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CASE_WORDS = ("send", "vendor latency", "sync", "sensor check", "import", "peak memory", "receiver")


def test_quick_mode_writes_the_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--no-postgres", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| case | ours | baseline | ratio | target | pass |" in done.stdout

    report = json.loads((tmp_path / "latest.json").read_text())
    rows = report["rows"]
    for word in CASE_WORDS:
        assert any(word in row["case"] for row in rows), f"no row for {word!r}"
    for row in rows:
        assert {"case", "ours", "baseline", "ratio", "target", "passed", "verdict"} <= set(row)
        assert row["verdict"] in ("pass", "FAIL", "info")
    assert report["machine"]["cpus"] and report["machine"]["python"] and report["machine"]["airflow"]

    markdown = (tmp_path / "latest.md").read_text()
    assert "| case | ours | baseline | ratio | target | pass |" in markdown
    assert markdown.count("\n| ") == len(rows) + 1  # header and one line per row
    assert "cpu_model" in markdown


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_receiver_case_audits_the_acknowledged_pushes(tmp_path: Path, store: str) -> None:
    """The receiver case alone, in seconds: real servers took pushes, and the audit saw every acknowledged one."""
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--cases", "receiver", "--out", str(tmp_path)]
    if store == "postgresql":
        uri = os.environ.get("SMS_TEST_POSTGRES_URI", "")
        if not uri:
            if os.environ.get("SMS_REQUIRE_POSTGRES") == "1":
                pytest.fail("SMS_REQUIRE_POSTGRES=1 but SMS_TEST_POSTGRES_URI is not set", pytrace=False)
            pytest.skip("needs SMS_TEST_POSTGRES_URI")
        command += ["--postgres", uri]
    else:
        command += ["--no-postgres"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = json.loads((tmp_path / "latest.json").read_text())["rows"]
    label = "PostgreSQL" if store == "postgresql" else "SQLite"
    mine = [row for row in rows if row["case"].startswith("receiver:") and row["case"].endswith(label)]
    assert len(mine) == 3, [row["case"] for row in rows]
    throughput, latency, audit = mine
    assert throughput["target"] == "≥ 0.7×" and throughput["passed"] in (True, False)
    assert all(count > 0 for count in throughput["details"]["acknowledged"].values())
    assert latency["passed"] is None and latency["ours"].endswith(" ms")
    for variant in ("ours", "baseline"):
        counts = audit["details"]["audit"][variant]
        assert counts["acknowledged"] > 0
        assert counts["lost"] == counts["duplicated"] == counts["never_sent"] == 0, counts
    assert audit["passed"] is True, audit
