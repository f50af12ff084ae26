"""SMS sensors."""

from airflow_provider_sms.sensors.delivery import SmsDeliverySensor

__all__ = ["SmsDeliverySensor"]
