"""One delivery-sensor check with many pairs pending and nothing new at the vendor.

``SmsDeliverySensor.poke`` (which runs ``airflow_provider_sms.delivery_check.check_delivery``: one pull that
comes back empty, then the batches' counters) against a store holding 100 sent batches, at two sizes
of pending pairs. The check must cost the same at both: it reads one counter row per batch.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Simulator, median, run_child, seconds

VENDOR = "paasw_v2"


def child_sensor(params: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_sms.records import SendReceipt
    from airflow_provider_sms.sensors import SmsDeliverySensor
    from airflow_provider_sms.store import SmsStore, TaskIdentity
    from benchmarks.cases._child import FakeTaskInstance, fresh_home, reset_simulator, use_simulator

    sim, batches, checks = params["sim"], int(params["batches"]), int(params["checks"])
    vendor = params.get("vendor", VENDOR)
    prefix = "86" if vendor == "intl" else ""
    use_simulator(sim)
    results: dict[str, Any] = {}
    for pending in params["pending"]:
        per_batch = int(pending) // batches
        with fresh_home():
            reset_simulator(sim)
            task = TaskIdentity("benchmarks", "sensor", "send", -1)
            batch_ids = [str(770_000_000_000 + k) for k in range(batches)]
            with SmsStore() as store:
                for k, batch_id in enumerate(batch_ids):
                    mobiles = tuple(f"{prefix}139{k:04d}{i:04d}" for i in range(per_batch))
                    receipt = SendReceipt(vendor, batch_id, mobiles, datetime.now(timezone.utc))
                    store.record_accepted(f"sensor-{batch_id}", receipt, conn_id=f"sms_{vendor}", task=task)
            sensor = SmsDeliverySensor(task_id="wait", sms_conn_id=f"sms_{vendor}", send_task_id="send")
            ti = FakeTaskInstance(task_id="wait")
            ti.xcoms["send"] = {"batch_ids": batch_ids}
            context = {"ti": ti}
            timings = []
            for _ in range(checks + 1):
                started = time.perf_counter()
                done = sensor.poke(context)  # type: ignore[arg-type]
                timings.append(time.perf_counter() - started)
                if done is not False:
                    raise AssertionError(f"the sensor finished with {pending} pairs pending and no reports")
        results[str(pending)] = {"first": timings[0], "checks": timings[1:], "median": median(timings[1:])}
    return results


def run_sensor(
    sim: Simulator, workdir: Path, *, pending: tuple[int, int], checks: int, query_vendor: bool = True
) -> list[Row]:
    small, large = pending
    result = run_child(
        "benchmarks.cases.sensor:child_sensor",
        {"sim": sim.info, "batches": 100, "pending": [small, large], "checks": checks},
        workdir,
    )
    t_small, t_large = result[str(small)]["median"], result[str(large)]["median"]
    growth = t_large / t_small
    rows = [
        Row(
            case=f"delivery-sensor check, {large:,} pairs pending in 100 batches, nothing new",
            ours=seconds(t_large),
            baseline="—",
            ratio="—",
            target="≤ 100 ms",
            passed=t_large <= 0.1,
            note=f"median of {checks} checks after the first ({seconds(result[str(large)]['first'])}: token, imports)",
            details=result,
        ),
        Row(
            case=f"delivery-sensor check: {large:,} vs {small:,} pairs pending",
            ours=seconds(t_large),
            baseline=seconds(t_small),
            ratio=f"{growth:.2f}×",
            target="flat (≤ 1.5×)",
            passed=growth <= 1.5,
            note="10× the pending pairs, same 100 batches",
        ),
    ]
    if query_vendor:
        # intl keeps no queue: a check must ask about pending pairs, 500 a call, up to max_pulls_per_check calls
        intl = run_child(
            "benchmarks.cases.sensor:child_sensor",
            {"sim": sim.info, "vendor": "intl", "batches": 100, "pending": [small, large], "checks": checks},
            workdir,
        )
        i_small, i_large = intl[str(small)]["median"], intl[str(large)]["median"]
        rows.append(
            Row(
                case=f"delivery-sensor check — intl (query-only vendor), {large:,} vs {small:,} pairs pending",
                ours=seconds(i_large),
                baseline=seconds(i_small),
                ratio=f"{i_large / i_small:.2f}×",
                target="≤ 100 ms",
                passed=i_large <= 0.1,
                note=(
                    "intl has no report queue, only a status query per (batch, number), 500 a call: a check asks "
                    "about up to max_pulls_per_check × 500 = 10,000 pending pairs, so it grows up to that cap"
                ),
                details=intl,
            )
        )
    return rows
