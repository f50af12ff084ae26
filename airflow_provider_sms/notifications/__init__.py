"""SMS notifiers for DAG and task callbacks."""

from airflow_provider_sms.notifications.sms import SmsNotifier, send_sms_notification

__all__ = ["SmsNotifier", "send_sms_notification"]
