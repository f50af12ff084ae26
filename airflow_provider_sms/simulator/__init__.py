"""A local simulator of the five SMS gateways, strict about their documented wire formats.

``python -m airflow_provider_sms.simulator`` serves it; tests use the ``sms_simulator`` pytest fixture.
"""

from airflow_provider_sms.simulator.core import Account, Fault, Gateway, SimConfig
from airflow_provider_sms.simulator.server import GatewaySimulator

__all__ = ["Account", "Fault", "Gateway", "GatewaySimulator", "SimConfig"]
