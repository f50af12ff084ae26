"""Pytest fixtures for DAG authors and for this provider's own tests (registered as a pytest plugin).

``sms_simulator`` gives a running ``GatewaySimulator`` with fresh state for each test, and
``sms_connections`` points ``AIRFLOW_CONN_SMS_<VENDOR>`` at it, so hooks and operators talk to it
over real sockets exactly as they would to a vendor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_sms.provider_info import VENDORS as _DECLARED

if TYPE_CHECKING:
    from airflow_provider_sms.simulator import GatewaySimulator

#: the vendors the simulator serves and ``sms_connections`` connects: all of the provider's
VENDORS = tuple(_DECLARED)


@pytest.fixture(scope="session")
def sms_simulator_server() -> Iterator[GatewaySimulator]:
    from airflow_provider_sms.simulator import GatewaySimulator

    simulator = GatewaySimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sms_simulator(sms_simulator_server: GatewaySimulator) -> Iterator[GatewaySimulator]:
    """The simulator with fresh state, fast reports, and this process's token cache and pull limits cleared."""
    from airflow_provider_sms.hooks.base import PROCESS_SLOTS, TOKEN_CACHE
    from airflow_provider_sms.simulator import SimConfig

    sms_simulator_server.gateway.config = SimConfig(pull_interval=0.0)
    sms_simulator_server.gateway.reset()
    TOKEN_CACHE.clear()
    PROCESS_SLOTS.clear()
    yield sms_simulator_server
    TOKEN_CACHE.clear()
    PROCESS_SLOTS.clear()


@pytest.fixture
def sms_connections(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``AIRFLOW_CONN_SMS_<VENDOR>`` for all five simulated accounts; returns vendor -> conn_id."""
    conn_ids = {}
    for vendor in VENDORS:
        conn_id = f"sms_{vendor}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sms_simulator.connection_json(vendor, retry_wait=0.01))
        conn_ids[vendor] = conn_id
    return conn_ids


@dataclass
class FakeTaskInstance:
    """The attributes SMS operators, sensors and notifiers read from ``context["ti"]``.

    Lets a test call ``operator.execute(task_context(...))`` without an Airflow metadata database.
    """

    dag_id: str = "dag"
    run_id: str = "run-1"
    task_id: str = "send"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_pull(self, task_ids: str | None = None, **_: Any) -> Any:
        return self.xcoms.get(task_ids or "")


def task_context(ti: FakeTaskInstance | None = None, **extra: Any) -> dict[str, Any]:
    """A minimal task context around ``ti``."""
    ti = ti or FakeTaskInstance()
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, **extra}
