"""The five vendors, each declared once (``VENDORS``), and the provider metadata Airflow reads from them.

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour`` here,
without importing any hook, so this module is plain data. The hooks package (which class serves
which connection type), each hook class (its ``conn_type``, ``hook_name``, ``default_host``) and the
test fixtures take the vendors from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_sms import __version__

_STRING = {"type": ["string", "null"]}
_SECRET = {"type": ["string", "null"], "format": "password"}

# Airflow's form (FieldSelector in its UI) picks the input from the first non-null type; a schema with
# two non-null types becomes a multi-line JSON box, so each field has exactly one non-null type.
# Numbers: a one-line number input bounded by minimum/maximum. Enums: a select (null clears it).
# Strings with examples: a one-line input that suggests them. Defaults prefill the form and must
# equal the hooks' own defaults (tests/unit/test_provider_info.py keeps them in step).


def _number(default: float | None, minimum: float, *, integer: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["integer" if integer else "number", "null"], "minimum": minimum}
    if default is not None:
        schema["default"] = default
    return schema


def _choice(values: dict[str, str], default: str | None = None) -> dict[str, Any]:
    """A select of ``values`` (stored value -> shown label); null (the empty choice) means unset."""
    schema: dict[str, Any] = {"type": ["string", "null"], "enum": [*values, None], "values_display": dict(values)}
    if default is not None:
        schema["default"] = default
    return schema


_MESSAGE_KINDS = {"1": "1 verification", "2": "2 notification", "3": "3 marketing"}

_COMMON_FIELDS: dict[str, Any] = {
    "timezone": {
        "label": "Vendor time zone",
        "description": "Zone of the vendor's naive timestamps, and domestic recipients' clock for quiet hours (IANA).",
        "schema": {"type": ["string", "null"], "default": "Asia/Shanghai"},
    },
    "timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds to wait for a reply before giving up.",
        "schema": _number(30, 1),
    },
    "retries": {
        "label": "Retries",
        "description": "Attempts after the first, for calls safe to repeat (reads, sends that cannot have arrived).",
        "schema": _number(3, 0, integer=True),
    },
    "retry_wait": {
        "label": "Retry wait (s)",
        "description": "First backoff between retries, in seconds; it doubles, with jitter.",
        "schema": _number(1, 0),
    },
    "report_deadline_hours": {
        "label": "Report deadline (h)",
        "description": "A sent number with no final report this long after its send becomes expired (intl: ≤ 720).",
        "schema": _number(72, 0),
    },
    "max_requests_per_second": {
        "label": "Max requests per second",
        "description": "The account's request rate (vendor QPS), kept by all tasks sharing the store; empty: none.",
        "schema": _number(None, 0),
    },
    "max_parts": {
        "label": "Max SMS parts per message",
        "description": "A longer text is refused before sending, so one typo cannot cost many parts per number.",
        "schema": _number(10, 1, integer=True),
    },
    "price_per_part": {
        "label": "Price per SMS part",
        "description": "What the account pays for one SMS part (0.045): dry runs estimate the cost, max_cost and "
        "check_balance compare with it. Empty: unknown.",
        "schema": _number(None, 0),
    },
    "currency": {
        "label": "Currency",
        "description": "Currency of the price per part (CNY, USD); checked against a balance that names one (intl).",
        "schema": _STRING,
    },
    "not_accepted_codes": {
        "label": "Codes that mean not accepted",
        "description": "Comma list of this account's send-reply codes that surely mean the vendor did not accept a "
        "request (balance, account stopped), beyond those its document names: SmsSendOperator's fallback_conn_ids "
        "moves such requests to the next connection.",
        "schema": dict(_STRING),
    },
    "quiet_hours": {
        "label": "Quiet hours",
        "description": "HH:MM-HH:MM (e.g. 21:00-08:00) on the recipients' clock: SmsSendOperator sends nothing then "
        "(domestic: the time zone above; intl: each number's country). Empty: none.",
        "schema": dict(_STRING),
    },
}

# The port is shown on every form: Airflow 3.3's Test button posts port 0 for a connection stored
# without one, which its API refuses as "Bad Request"; a stored port (the Base URL's) avoids that.
_PORT_LABEL = "Port (the Base URL's; for the Test button)"


def _field(label: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": dict(schema or _STRING)}


_CALLBACK_FIELDS: dict[str, Any] = {
    "callback_secret": _field(
        "Push secret",
        "Enables the push receiver: the vendor calls /sms/callbacks/<conn_id>/reports?secret=<this> (and /inbound). "
        "Use 32+ random characters; fewer than 16 leave push disabled.",
        _SECRET,
    ),
    "callback_allow_ips": _field("Push allowed IPs", "Comma list of IPs/CIDRs allowed to push; empty: any address"),
    "callback_store_conn_id": _field(
        "Push store connection",
        "SQLite/PostgreSQL connection of the SMS store pushes go to (default: [sms] callback_store_conn_id, "
        "else the embedded store); use the sending tasks' store",
    ),
    "callback_store_table_prefix": _field("Push store table prefix", "Table prefix of that store (default sms_)"),
}
_INTL_CALLBACK_FIELDS: dict[str, Any] = {
    **_CALLBACK_FIELDS,
    "callback_secret": _field(
        "Push secret (optional)",
        "intl pushes are authenticated by their appKey/appSecret headers; "
        "if set, the push URL must also carry ?secret=<this>",
        _SECRET,
    ),
}


@dataclass(frozen=True)
class Vendor:
    """One gateway, declared once: the hooks package, the hook classes, the forms and ``testing`` read it here.

    Plain data, so that Airflow (which reads the forms) and DAG files (which import operators) never
    import a hook module, and with it ``requests``, to learn what the vendors are.
    """

    #: the name records, metrics and the store know it by; its hook lives in ``hooks/<name>.py``
    name: str
    hook_class: str
    #: the connection type's name in Airflow's list
    hook_name: str
    #: the form's labels of the login and password fields
    credentials: tuple[str, str]
    #: the host a connection without one uses; None: the host is required
    default_host: str | None
    #: the vendor's own form fields (push fields included where it pushes), shown before the common ones
    fields: dict[str, Any]
    #: the Base URL placeholder where there is no default host
    example_host: str = ""
    example_login: str | None = None

    @property
    def conn_type(self) -> str:
        return f"sms_{self.name}"

    def connection_type(self) -> dict[str, Any]:
        """The ``connection-types`` entry Airflow builds the form from."""
        host = self.default_host or self.example_host
        parts = urlsplit(host)
        placeholders = {"host": host, "port": str(parts.port or (443 if parts.scheme == "https" else 80))}
        if self.example_login is not None:
            placeholders["login"] = self.example_login
        login, password = self.credentials
        return {
            "connection-type": self.conn_type,
            "hook-class-name": f"airflow_provider_sms.hooks.{self.name}.{self.hook_class}",
            "hook-name": self.hook_name,
            "ui-field-behaviour": {
                "hidden-fields": ["schema"],
                "relabeling": {"port": _PORT_LABEL, "login": login, "password": password, "host": "Base URL"},
                "placeholders": placeholders,
            },
            "conn-fields": {**self.fields, **_COMMON_FIELDS},
        }


_PAASW_HOST = "http://openapi.gateway.paasw.com"
_TEXT_SIGNATURE = _field("Signature", "Put in 【】 at the start of the content when it has none")

#: the five vendors, in the order they are listed everywhere
VENDORS: dict[str, Vendor] = {
    vendor.name: vendor
    for vendor in (
        Vendor(
            "paasw_v2",
            "PaaswV2Hook",
            "SMS: PaaSW gateway v2",
            ("App ID", "Secret"),
            _PAASW_HOST,
            example_login="0189457543",
            fields={
                **_CALLBACK_FIELDS,
                "format": _field(
                    "Body format",
                    "json (/message/*) or form (/msg/*)",
                    _choice({"json": "json", "form": "form"}, "json"),
                ),
                "product_id": _field("Product ID", "Message kind the account sends", _choice(_MESSAGE_KINDS, "2")),
                "sign": _TEXT_SIGNATURE,
            },
        ),
        Vendor(
            "paasw_v1",
            "PaaswV1Hook",
            "SMS: PaaSW gateway v1",
            ("App ID", "Secret"),
            _PAASW_HOST,
            example_login="0189457543",
            fields={
                **_CALLBACK_FIELDS,
                "sign": _field("Signature", "Sent in the sign field, without 【】 (at most 20 characters)"),
                "kind": _field(
                    "Message kind", "Only for accounts with several kinds; empty: none sent", _choice(_MESSAGE_KINDS)
                ),
            },
        ),
        Vendor(
            "intl",
            "IntlSmsHook",
            "SMS: international (appKey)",
            ("App key", "App secret"),
            "http://39.107.123.194:9118",
            example_login="10002",
            fields={
                **_INTL_CALLBACK_FIELDS,
                "sender_id": _field("Sender ID", "Shown as the sender on the phone, where the route allows it"),
                "sign": _TEXT_SIGNATURE,
            },
        ),
        Vendor(
            "account_md5",
            "AccountMd5Hook",
            "SMS: account + MD5 password",
            ("Account", "Password"),
            None,
            example_host="https://sms.example.com",
            fields={
                **_CALLBACK_FIELDS,
                "sign": _TEXT_SIGNATURE,
                "pwd_case": _field(
                    "MD5 case",
                    "lower (default) or upper: case of the hex MD5 sent as pwd",
                    _choice({"lower": "lower", "upper": "upper"}, "lower"),
                ),
            },
        ),
        Vendor(
            "cloud_mas",
            "CloudMasHook",
            "SMS: China Mobile Cloud MAS (HTTPS)",
            ("apId", "secretKey"),
            None,
            example_host="https://mas.example.com:28888",
            example_login="apId",
            fields={
                "ec_name": _field("Enterprise name (ecName)", "As registered with Cloud MAS"),
                "sign": _field("Signature code", "Signature code from Cloud MAS interface management"),
                "add_serial": _field("Extension code (addSerial)", "Empty for exact-match service codes"),
                "verify": _field(
                    "Verify TLS",
                    "false (the vendor's instruction), true, or the path of a CA bundle file (HTTPS only)",
                    {"type": ["string", "null"], "default": "false", "examples": ["false", "true"]},
                ),
            },
        ),
    )
}

CONNECTION_TYPES: list[dict[str, Any]] = [vendor.connection_type() for vendor in VENDORS.values()]


PROVIDER_INFO: dict[str, Any] = {
    "package-name": "airflow-provider-sms",
    "name": "SMS",
    "description": "Send SMS through Chinese and international gateways and track every message.",
    "versions": [__version__],
    "connection-types": CONNECTION_TYPES,
    "notifications": ["airflow_provider_sms.notifications.sms.SmsNotifier"],
    "triggers": [
        {
            "integration-name": "SMS",
            "python-modules": ["airflow_provider_sms.triggers.delivery", "airflow_provider_sms.triggers.inbound"],
        }
    ],
}
