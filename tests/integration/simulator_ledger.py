"""What the simulated vendor did, read over its admin API: how tests count at the vendor's side."""

from __future__ import annotations

import requests

from airflow_provider_sms.simulator import GatewaySimulator


def ledger_counts(sim: GatewaySimulator, vendor: str) -> dict[str, int]:
    """Per number, how many times the vendor accepted it (``GET /_sim/ledger``)."""
    reply = requests.get(f"{sim.http_url}/_sim/ledger", params={"vendor": vendor, "numbers": "1"}, timeout=10)
    reply.raise_for_status()
    return {k: int(v) for k, v in reply.json()[vendor]["accepted"]["counts"].items()}


def set_balance(sim: GatewaySimulator, vendor: str, amount: str) -> None:
    """The account's balance (``POST /_sim/balance``)."""
    reply = requests.post(f"{sim.http_url}/_sim/balance", json={"vendor": vendor, "amount": amount}, timeout=10)
    reply.raise_for_status()
