"""What the five vendor hooks share: connection settings, transport, retries, tokens and the send pipeline.

A vendor module only says how its requests and replies look (``_submit``, ``_pull_records`` or, for
query vendors, ``_fetch_reports``, the record parsers, ``_get_balance``, ``_check_connection``);
everything that decides whether a request may be retried, how a list of numbers becomes requests,
and how secrets stay out of logs lives here, once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from airflow.sdk import BaseHook
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from airflow_provider_sms import metrics, redaction
from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsError,
    SmsInsufficientBalanceError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsPartialResponseError,
    SmsResponseError,
    SmsTransportError,
    SmsVendorError,
    body_preview,
)

# Feature names a hook can support (callers ask ``hook.supports(FEATURE)`` before calling) and report modes
from airflow_provider_sms.features import BALANCE, INBOUND, QUERY, QUEUE, REPORTS, SEND, SEND_TEMPLATE
from airflow_provider_sms.hooks.push import VendorPush
from airflow_provider_sms.numbers import chunk_mobiles, message_parts, normalize_mobiles
from airflow_provider_sms.records import DELIVERED, FAILED, Balance, DeliveryReport, InboundMessage, SendReceipt

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


#: the operation named in errors about a pull of each queue
PULL_OPERATIONS: Final = {REPORTS: "delivery report pull", INBOUND: "inbound pull"}

FEATURE_LABELS: Final = {
    SEND: "sending messages",
    SEND_TEMPLATE: "template messages",
    REPORTS: "delivery reports",
    INBOUND: "inbound (MO) messages",
    BALANCE: "balance queries",
}

# Message kinds by name; vendors take the digit (paasw productId / kind).
MESSAGE_KINDS: Final = {"verification": "1", "notification": "2", "marketing": "3"}

SEND_OPTIONS: Final = frozenset({"signature", "ext_no", "scheduled_at", "kind", "client_ref", "sender_id"})

#: characters that print nothing: a text of only these (and whitespace) reaches the phone as an empty SMS
INVISIBLE_CHARS: Final = "\u200b\u200c\u200d\u2060\ufeff"
_DROP_INVISIBLE: Final = str.maketrans("", "", INVISIBLE_CHARS)
#: how far in the past ``scheduled_at`` may lie (clock skew between this host and the vendor) before it is refused
SCHEDULE_SKEW: Final = timedelta(seconds=60)
#: a balance given as text: plain ASCII decimal notation only (``Decimal`` would also take ``1_000``, ``NaN``
#: or non-ASCII digits)
_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

DEFAULT_TIMEZONE: Final = "Asia/Shanghai"
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 30.0
#: the connection extra that paces an account's requests (requests per second, every process that shares the store)
RATE_EXTRA: Final = "max_requests_per_second"
DEFAULT_RETRIES: Final = 3
#: the most SMS parts one message may cost unless the connection or the send says otherwise (670 characters)
DEFAULT_MAX_PARTS: Final = 10
DEFAULT_RETRY_WAIT: Final = 1.0
#: hours after a send with no final report before its numbers become "expired" (the receipt window
#: vendors document); the connection extra ``report_deadline_hours`` sets it
DEFAULT_REPORT_DEADLINE_HOURS: Final = 72.0


@dataclass(frozen=True)
class SendOptions:
    """Per-send options; each vendor hook says which of them it can honour."""

    signature: str | None = None
    ext_no: str | None = None
    scheduled_at: datetime | None = None
    kind: str | None = None
    client_ref: str | None = None
    sender_id: str | None = None

    def given(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) not in (None, "")}


@dataclass(frozen=True)
class SendRequest:
    """One vendor request planned by ``plan_send``: no I/O has happened yet.

    Planning is deterministic for the same input, so an operator can key each request for
    idempotency and skip, on a retry, the ones the vendor already accepted.
    """

    index: int
    mobiles: tuple[str, ...]
    content: str | None
    options: SendOptions
    template_id: str | None = None
    params: Any = None
    client_ref: str | None = None
    #: the same client reference may have gone out before (a caller's own reference, or a resend of a
    #: request whose outcome was unknown): only then can a vendor's "reference already used" mean accepted
    may_repeat: bool = False

    @property
    def description(self) -> str:
        kind = f"template {self.template_id} request" if self.template_id else "send request"
        return f"{kind} #{self.index + 1}"


@dataclass(frozen=True, repr=False)
class ConnectionConfig:
    """The parts of an Airflow connection a hook uses; ``repr`` never shows the password."""

    conn_id: str
    base_url: str
    login: str
    password: str
    extras: Mapping[str, Any]
    timezone: ZoneInfo
    connect_timeout: float
    read_timeout: float

    def __repr__(self) -> str:
        return f"ConnectionConfig(conn_id={self.conn_id!r}, base_url={self.base_url!r}, login={self.login!r})"

    def extra(self, name: str, default: Any = None) -> Any:
        value = self.extras.get(name)
        return default if value in (None, "") else value

    def extra_bool(self, name: str, default: bool) -> bool:
        value = self.extras.get(name)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")


class _RetryableStatus(Exception):
    """An HTTP 5xx or 429 reply, or an unreadable reply to a read; raised inside a retry loop only."""

    def __init__(self, response: requests.Response, problem: str = "") -> None:
        self.problem = problem or f"HTTP {response.status_code}"
        super().__init__(self.problem)
        self.response = response


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: where ``reply_is_readable`` leaves a reply it parsed, for ``parse_json`` to take
_PARSED: Final = "_sms_parsed_json"
_UNPARSED: Final = object()


def loads_exact(data: bytes | str) -> Any:
    """JSON with exact decimals and integers of any width; NaN and Infinity are refused, as JSON does."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


class _RetryAfterOrBackoff:
    """Exponential backoff with jitter, but never shorter than a 429/503 reply's ``Retry-After`` (capped)."""

    MAX_WAIT = 30.0

    def __init__(self, first_wait: float) -> None:
        self._backoff = wait_exponential_jitter(
            multiplier=first_wait, max=max(first_wait, self.MAX_WAIT), jitter=first_wait
        )

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._backoff(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus):
            wait = max(wait, retry_after_seconds(exc.response.headers.get("Retry-After"), self.MAX_WAIT))
        return wait


def retry_after_seconds(value: str | None, cap: float) -> float:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds to wait, capped; 0 when absent or unreadable."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), cap)


class _TokenCache:
    """Process-wide cache of access tokens, keyed by connection identity (never by the secret itself)."""

    REFRESH_MARGIN_SECONDS = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
        if entry and entry[1] - self.REFRESH_MARGIN_SECONDS > time.monotonic():
            return entry[0]
        return None

    def put(self, key: tuple[str, ...], token: str, expires_in: float) -> None:
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + expires_in)

    def invalidate(self, key: tuple[str, ...], token: str) -> None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry and entry[0] == token:
                del self._tokens[key]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


class Slots(Protocol):
    """Where paced calls book their slots: this process (the default), or a store every process shares."""

    def reserve_slot(self, key: str, interval: float) -> float:
        """Book the next call of ``key``; returns how long the caller must wait before making it."""
        ...

    def slot_finished(self, key: str, interval: float) -> None:
        """The call came back: the next may go ``interval`` s from now at the earliest."""
        ...


class _ProcessSlots:
    """Slots kept in this process only: what a hook uses until a task hands it a store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_allowed: dict[str, float] = {}

    def reserve_slot(self, key: str, interval: float) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_allowed.get(key, 0.0))
            self._next_allowed[key] = slot + interval
        return slot - now

    def slot_finished(self, key: str, interval: float) -> None:
        with self._lock:
            self._next_allowed[key] = max(self._next_allowed.get(key, 0.0), time.monotonic() + interval)

    def clear(self) -> None:
        with self._lock:
            self._next_allowed.clear()


TOKEN_CACHE: Final = _TokenCache()
PROCESS_SLOTS: Final = _ProcessSlots()


#: connection extras that are secrets (the forms' password fields); every other extra is plain settings
SECRET_EXTRAS: Final = ("callback_secret",)


def mask(secret: str | None) -> None:
    """Keep a secret, in every form it can take on the wire (raw, URL-encoded, MD5), out of task logs
    (Airflow's masker) and out of reply bodies quoted in errors (``redaction``)."""
    if not secret:
        return
    forms = redaction.remember(secret)
    try:
        from airflow.sdk.log import mask_secret

        with redaction.short_values_unreported():  # a short secret is named by ``read_connection`` instead
            for form in forms:
                mask_secret(form)
    except Exception:  # masking must never break a send
        pass


def read_connection(conn_id: str, get_connection: Callable[[str], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The connection and its extras, with only its secrets registered with Airflow's masker.

    Airflow hands every extra to its masker when a connection is read, and the masker warns "too
    short" about a signature such as ``Acme`` as if it were a secret it failed to hide; that warning is
    left out here. The password and ``SECRET_EXTRAS`` are masked in every form, and one too short for
    Airflow's masker (``[logging] min_length_masked_secret``) is reported by name, never by value.
    """
    if get_connection is None:
        from airflow.sdk import BaseHook

        get_connection = BaseHook.get_connection
    with redaction.short_values_unreported():
        conn = get_connection(conn_id)
        parsed = conn.extra_dejson
    extras: dict[str, Any] = dict(parsed) if isinstance(parsed, Mapping) else {}
    secrets = {"password": conn.password, **{name: extras.get(name) for name in SECRET_EXTRAS}}
    for name, value in secrets.items():
        if isinstance(value, str) and value:
            mask(value)
            if len(value) < _min_masked_length():
                log.warning(
                    "connection %r: its %s is shorter than %d characters, too short for Airflow to mask in logs",
                    conn_id,
                    name,
                    _min_masked_length(),
                )
    return conn, extras


@functools.cache
def _min_masked_length() -> int:
    """Airflow's ``[logging] min_length_masked_secret``: shorter secrets are not masked in logs."""
    try:
        from airflow.configuration import conf

        return conf.getint("logging", "min_length_masked_secret", fallback=5)
    except Exception:
        return 5


def parse_id(value: Any, *, field_name: str) -> str:
    """Vendor ids as strings; integers of any width are exact, floats would have lost digits."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field_name} is {value!r}, not an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"{field_name} {value!r} is not an integer or string id (a float would lose digits)")


class SmsHook(BaseHook):
    """Base of the five vendor hooks: one ``requests.Session`` per hook, retries, and one interface.

    :param sms_conn_id: the Airflow connection of the vendor account.
    :param timeout: read timeout in seconds (overrides the connection's ``timeout`` extra).
    :param retries: attempts after the first for calls that are safe to repeat.
    :param retry_wait: first backoff interval in seconds; doubles with jitter.
    """

    conn_name_attr = "sms_conn_id"
    default_conn_name = "sms_default"
    #: the vendor's name in ``provider_info.VENDORS``, where the three attributes below come from
    vendor: ClassVar[str] = ""
    conn_type: ClassVar[str] = ""
    hook_name: ClassVar[str] = ""
    default_host: ClassVar[str | None] = None
    default_scheme: ClassVar[str] = "http"
    max_numbers_per_request: ClassVar[int] = 1000
    max_mobiles_chars: ClassVar[int | None] = None
    international: ClassVar[bool] = False
    features: ClassVar[frozenset[str]] = frozenset()
    supported_options: ClassVar[frozenset[str]] = frozenset()
    #: QUEUE: each pull hands out pending reports once; QUERY: reports are asked for by (batch, mobile).
    report_mode: ClassVar[str] = QUEUE
    #: how many (batch_id, mobile) pairs one report query takes, for ``report_mode == QUERY``.
    report_query_limit: ClassVar[int] = 0
    #: how long the vendor answers report queries at all (intl: 30 days); caps the report deadline
    report_window: ClassVar[timedelta | None] = None
    #: the vendor refuses a repeated client reference instead of sending it again, so a request whose
    #: outcome is unknown can be resent safely under the same reference (``client_ref_for``)
    idempotent_client_ref: ClassVar[bool] = False
    #: the vendor's send-reply codes (as text) that mean the account's balance cannot pay for the request,
    #: from its document; a send stopped by one fails with ``SmsInsufficientBalanceError``
    insufficient_balance_codes: ClassVar[frozenset[str]] = frozenset()
    #: the vendor's send-reply codes that mean it surely did not accept the request for a reason of the
    #: account, not of the message (balance, account stopped, credentials): another account could send it
    not_accepted_codes: ClassVar[frozenset[str]] = frozenset()
    #: the balance query counts money (``check_balance`` needs ``price_per_part``); False: the document does
    #: not say, and the balance reads as money with ``price_per_part``, as SMS parts without it
    balance_is_money: ClassVar[bool] = False
    #: what the vendor pushes and how (``hooks/push.py``); None: it pushes nothing, or not to us
    push: ClassVar[VendorPush | None] = None
    #: how the retry loop waits; tests replace it to observe waits without spending them
    retry_sleep: ClassVar[staticmethod[[float], None]] = staticmethod(time.sleep)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A vendor hook takes its connection type, name and default host from its one declaration.

        A hook of a vendor this provider does not declare (a user's own subclass) keeps what it sets itself,
        and so does a subclass that sets one of these attributes in its own body.
        """
        super().__init_subclass__(**kwargs)
        if "vendor" in cls.__dict__:
            from airflow_provider_sms.provider_info import VENDORS

            declared = VENDORS.get(cls.vendor)
            if declared is None:
                return
            for name in ("conn_type", "hook_name", "default_host"):
                if name not in cls.__dict__:
                    setattr(cls, name, getattr(declared, name))

    def __init__(
        self,
        sms_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        retry_wait: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self._timeout_override = timeout
        self._retries_override = retries
        self._retry_wait_override = retry_wait
        self._send_state = threading.local()
        #: while a pull runs with ``keep``: (its operation, the callable that keeps each reply's bytes)
        self._reply_keeper: tuple[str, Callable[[bytes], object]] | None = None
        #: where paced calls book their slots (``pace_with``)
        self.slots: Slots = PROCESS_SLOTS
        self._paces_by_operation: dict[str, list[tuple[str, float, bool]]] = {}

    # ------------------------------------------------------------------ connection

    #: a connection already read (``get_sms_hook`` reads it to choose the class), used instead of reading it again
    _connection_read: tuple[Any, dict[str, Any]] | None = None

    def use_connection(self, conn: Any, extras: dict[str, Any]) -> None:
        """Take the connection and extras ``read_connection`` returned, so that ``config`` does not look it up again."""
        self._connection_read = (conn, extras)

    @cached_property
    def config(self) -> ConnectionConfig:
        conn, extras = self._connection_read or read_connection(self.sms_conn_id, self.get_connection)
        self._connection_read = None
        tz_name = str(extras.get("timezone") or DEFAULT_TIMEZONE)
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SmsConfigurationError(f"{self.sms_conn_id}: unknown timezone {tz_name!r} in extras") from exc
        read_timeout = self._timeout_override or _float_extra(extras, "timeout", DEFAULT_READ_TIMEOUT, self.sms_conn_id)
        return ConnectionConfig(
            conn_id=self.sms_conn_id,
            base_url=self._base_url(conn.host, conn.schema, conn.port),
            login=conn.login or "",
            password=conn.password or "",
            extras=extras,
            timezone=tz,
            connect_timeout=min(DEFAULT_CONNECT_TIMEOUT, read_timeout),
            read_timeout=read_timeout,
        )

    def _base_url(self, host: str | None, schema: str | None, port: int | None) -> str:
        host = (host or "").strip() or (self.default_host or "")
        if not host:
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r} ({self.conn_type}) has no host: "
                f"set it to the gateway's base URL, e.g. https://gateway.example.com:8443"
            )
        if "://" not in host:
            scheme = (schema or "").strip() or self.default_scheme
            host = f"{scheme}://{host}"
        parts = urlsplit(host)
        if port and parts.port and port != parts.port:
            # The form shows Port (Airflow's Test button needs one stored); a different port in the URL
            # used to win silently, sending elsewhere than the form says.
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r} ({self.conn_type}): port {port} differs from the port of its "
                f"base URL {host!r}; make them agree, or clear the port (0 or empty also means the URL's)"
            )
        if port and not parts.port:
            host = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
        return host.rstrip("/")

    def require_login_and_password(self, login_label: str, password_label: str) -> tuple[str, str]:
        missing = [
            label
            for label, value in ((login_label, self.config.login), (password_label, self.config.password))
            if not value
        ]
        if missing:
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r} ({self.conn_type}) is missing {' and '.join(missing)}"
            )
        return self.config.login, self.config.password

    @property
    def report_deadline(self) -> timedelta:
        """How long after a send a number may wait for its final report before it is ``expired``."""
        hours = _float_extra(
            self.config.extras, "report_deadline_hours", DEFAULT_REPORT_DEADLINE_HOURS, self.sms_conn_id
        )
        deadline = timedelta(hours=max(0.0, hours))
        return min(deadline, self.report_window) if self.report_window is not None else deadline

    @property
    def retries(self) -> int:
        if self._retries_override is not None:
            return self._retries_override
        return int(_float_extra(self.config.extras, "retries", DEFAULT_RETRIES, self.sms_conn_id))

    @property
    def retry_wait(self) -> float:
        if self._retry_wait_override is not None:
            return self._retry_wait_override
        return _float_extra(self.config.extras, "retry_wait", DEFAULT_RETRY_WAIT, self.sms_conn_id)

    @cached_property
    def requests_per_second(self) -> float:
        """The ``max_requests_per_second`` extra: the account's request rate, kept by every task that
        shares the store (vendors throttle above their QPS); 0 or unset: no limit."""
        rate = _float_extra(self.config.extras, RATE_EXTRA, 0.0, self.sms_conn_id)
        if not (rate >= 0 and math.isfinite(rate)):
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r}: extra {RATE_EXTRA!r} must be a positive number, got {rate!r}"
            )
        return rate

    @cached_property
    def price_per_part(self) -> Decimal | None:
        """The ``price_per_part`` extra, exact (``0.045`` is ``Decimal("0.045")``); None: not set."""
        from airflow_provider_sms.cost import parse_amount

        value = self.config.extra("price_per_part")
        if value is None:
            return None
        try:
            return parse_amount(value, "extra 'price_per_part'")
        except ValueError as exc:
            raise SmsConfigurationError(f"connection {self.sms_conn_id!r}: {exc}") from None

    @cached_property
    def currency(self) -> str:
        """The ``currency`` extra (``CNY``): what ``price_per_part`` is in; empty: not set."""
        return str(self.config.extra("currency", "")).strip().upper()

    def is_insufficient_balance(self, error: BaseException) -> bool:
        """Whether a send failed because the account's balance could not pay for it (the vendor's own code)."""
        return isinstance(error, SmsVendorError) and error.code in self.insufficient_balance_codes

    @cached_property
    def refusal_codes(self) -> frozenset[str]:
        """Send-reply codes that surely mean "not accepted, for a reason of the account": the vendor's documented
        ones (``not_accepted_codes``, ``insufficient_balance_codes``) and the connection's ``not_accepted_codes``
        extra, for codes an account's vendor uses but its document does not list."""
        extra = str(self.config.extra("not_accepted_codes", "") or "")
        listed = {code.strip() for code in extra.split(",") if code.strip()}
        return self.not_accepted_codes | self.insufficient_balance_codes | listed

    def surely_not_accepted(self, error: BaseException) -> bool:
        """Whether a send that failed with ``error`` surely was not accepted, so that another account may send
        it (``fallback_conn_ids``): no connection was made (refused, connect timeout, TLS), the vendor said
        429 after every retry, or it answered one of ``refusal_codes``. An unknown outcome never is; nor is a
        refusal of the message itself (another account would refuse it too)."""
        if isinstance(error, SmsOutcomeUnknownError):
            return False
        if isinstance(error, (SmsTransportError, SmsInsufficientBalanceError)):
            return True
        if isinstance(error, SmsResponseError):
            return error.status == 429
        return isinstance(error, SmsVendorError) and error.code in self.refusal_codes

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = "airflow-provider-sms"
        # The environment's proxies are read once, here: with trust_env requests walks os.environ twice
        # on every call, which costs more than building the request. No netrc: vendors get no
        # credentials but the connection's.
        session.proxies.update(requests.utils.get_environ_proxies(self.config.base_url))
        session.trust_env = False
        return session

    @cached_property
    def _environment_ca_bundle(self) -> str | None:
        """REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, which requests uses wherever verify is plain True."""
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None

    def get_conn(self) -> requests.Session:
        return self.session

    def for_thread(self) -> Self:
        """A copy of this hook for another thread: the same settings and parsed connection, its own session.

        A ``requests.Session`` is not documented as safe to share between threads (its cookie jar and, for
        some adapters, its connection handling are not), so concurrent sends give each thread its own
        copy. The connection is resolved once, here, rather than looked up again by every copy.
        """
        self.config  # noqa: B018  (resolve once, so that the copies share it)
        clone = copy.copy(self)
        clone.__dict__.pop("session", None)
        clone._send_state = threading.local()
        return clone

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # ------------------------------------------------------------------ capabilities

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def _require(self, feature: str) -> None:
        if feature not in self.features:
            raise SmsNotSupportedError(self.vendor, FEATURE_LABELS.get(feature, feature))

    # ------------------------------------------------------------------ the vendor-neutral interface

    def send(self, mobiles: str | Iterable[str], content: str, **options: Any) -> list[SendReceipt]:
        """Send one text to every number; one receipt per request the vendor accepted."""
        return list(self.iter_send(self.plan_send(mobiles, content, **options)))

    def send_template(
        self, mobiles: str | Iterable[str], template_id: str, params: Any = None, **options: Any
    ) -> list[SendReceipt]:
        """Send a vendor-approved template with its parameters."""
        return list(self.iter_send(self.plan_send(mobiles, None, template_id=template_id, params=params, **options)))

    def plan_send(
        self,
        mobiles: str | Iterable[str],
        content: str | None,
        *,
        template_id: str | None = None,
        params: Any = None,
        **options: Any,
    ) -> list[SendRequest]:
        """Validate everything that can be known before sending and cut the numbers into requests."""
        send_options = self.prepare_send(content, template_id=template_id, **options)
        valid, invalid = normalize_mobiles(mobiles, international=self.international)
        if invalid:
            raise SmsInvalidNumbersError(self.vendor, invalid, len(valid) + len(invalid))
        if not valid:
            raise SmsInvalidRequestError(f"{self.vendor}: no mobile numbers to send to")
        chunks = self.chunk(valid)
        ref = send_options.client_ref
        return [
            self.stored_request(
                index,
                chunk,
                content,
                send_options,
                template_id=template_id,
                params=params,
                client_ref=(ref if len(chunks) == 1 else f"{ref}-{index + 1}") if ref else None,
                may_repeat=bool(ref),
            )
            for index, chunk in enumerate(chunks)
        ]

    def chunk(self, valid: Sequence[str]) -> list[tuple[str, ...]]:
        """Valid numbers cut into as few requests as the vendor allows (count and character caps)."""
        # tuples straight away: holding the chunk lists as well would double the planner's memory
        return [
            tuple(chunk)
            for chunk in chunk_mobiles(valid, max_count=self.max_numbers_per_request, max_chars=self.max_mobiles_chars)
        ]

    def prepare_send(
        self,
        content: str | None,
        *,
        template_id: str | None = None,
        check_schedule: bool = True,
        max_parts: int | None = None,
        **options: Any,
    ) -> SendOptions:
        """The checks that do not depend on the numbers: types, feature, options, empty text or template id,
        a schedule already past.

        Every send path (``plan_send``, ``PlannedSend``, hence the operator and the notifier) comes
        through here before anything goes out. ``check_schedule=False`` leaves the schedule to
        ``check_schedule``: a stored plan being resumed was checked when it was made.
        """
        if content is not None and not isinstance(content, str):
            raise TypeError(f"{self.vendor}: content must be a str, got {type(content).__name__}")
        if template_id is not None and not str(template_id).strip():
            # "" is not "no template": it used to send a text holding only the signature, on any vendor
            raise SmsInvalidRequestError(
                f"{self.vendor}: template_id is empty; pass the vendor's template id, or content= for a text"
            )
        self._require(SEND_TEMPLATE if template_id is not None else SEND)
        send_options = self._parse_options(options)
        if template_id is None:
            self.check_text(content, "message content")
            self.check_parts(self.signed_content(str(content), send_options.signature), max_parts)
        if check_schedule:
            self.check_schedule(send_options)
        return send_options

    def check_text(self, text: object, what: str) -> None:
        """A text to send must be a str with something visible in it: whitespace and zero-width characters
        alone would reach the phone as an empty SMS (or one holding only the signature)."""
        if text is not None and not isinstance(text, str):
            raise TypeError(f"{self.vendor}: {what} must be a str, got {type(text).__name__}")
        if not text or not text.translate(_DROP_INVISIBLE).strip():
            raise SmsInvalidRequestError(
                f"{self.vendor}: {what} is empty (nothing but whitespace or invisible characters counts as empty)"
            )

    def check_parts(self, text: str, max_parts: int | None = None) -> int:
        """The SMS parts each number's message costs; more than ``max_parts`` (default: the connection's
        ``max_parts`` extra, else 10) is refused, so that a runaway string never goes out by mistake."""
        limit = self.max_parts if max_parts is None else max_parts
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SmsInvalidRequestError(
                f"{self.vendor}: max_parts must be a whole number of at least 1, got {limit!r}"
            )
        parts = message_parts(text)
        if parts > limit:
            raise SmsInvalidRequestError(
                f"{self.vendor}: the text is {len(text)} characters, {parts} SMS parts for each number; more than "
                f"max_parts={limit} (pass a higher max_parts, or set the connection's max_parts extra, to send it)"
            )
        return parts

    @cached_property
    def max_parts(self) -> int:
        """The connection's ``max_parts`` extra: the most SMS parts one message may cost (default 10)."""
        value = _float_extra(self.config.extras, "max_parts", DEFAULT_MAX_PARTS, self.sms_conn_id)
        if not math.isfinite(value) or value != int(value) or value < 1:
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r}: extra 'max_parts' must be a whole number of at least 1"
            )
        return int(value)

    @property
    def quiet_hours(self) -> str | None:
        """The connection's ``quiet_hours`` extra (``"21:00-08:00"``): ``SmsSendOperator``'s default window
        (``quiet_hours.py``); None when unset."""
        value = self.config.extra("quiet_hours")
        return None if value is None else str(value)

    def check_schedule(self, options: SendOptions) -> None:
        """A ``scheduled_at`` already past is refused: vendors either refuse it or send at once, unscheduled."""
        when = options.scheduled_at
        if when is not None and when < self.now() - SCHEDULE_SKEW:
            raise SmsInvalidRequestError(
                f"{self.vendor}: scheduled_at {when.isoformat()} is in the past "
                f"(allowing {SCHEDULE_SKEW.total_seconds():.0f} s for clock skew); nothing was sent"
            )

    def stored_request(
        self,
        index: int,
        mobiles: Sequence[str],
        content: str | None,
        options: SendOptions,
        *,
        template_id: str | None = None,
        params: Any = None,
        client_ref: str | None = None,
        may_repeat: bool = False,
    ) -> SendRequest:
        """One request, checked before anything is sent: a chunk being planned, or a stored plan's row."""
        request = SendRequest(
            index=index,
            mobiles=tuple(mobiles),
            content=content,
            options=options,
            template_id=template_id,
            params=params,
            client_ref=client_ref,
            may_repeat=may_repeat,
        )
        self._validate_request(request)
        return request

    def client_ref_for(self, request_key: str) -> str | None:
        """The client reference a planned request carries, derived from its key (vendors that dedupe on it)."""
        return request_key[:32] if self.idempotent_client_ref else None

    def iter_send(self, planned: Sequence[SendRequest]) -> Iterator[SendReceipt]:
        """Submit planned requests in order, yielding each receipt as soon as the vendor accepts it."""
        total_numbers = sum(len(r.mobiles) for r in planned)
        done = 0
        for request in planned:
            receipt = self.submit(request)
            done += len(request.mobiles)
            self.log.info(
                "%s: %s accepted as batch %s (%d/%d requests, %d/%d numbers)",
                self.vendor,
                request.description,
                receipt.batch_id,
                request.index + 1,
                len(planned),
                done,
                total_numbers,
            )
            yield receipt

    def submit(self, request: SendRequest) -> SendReceipt:
        """Make one planned request; the vendor module builds the payload.

        A reply that cannot be read (not JSON, a missing batch id) came after the request reached the
        vendor, so its outcome is unknown rather than failed: resending could send twice.
        """
        self._send_state.reached = False
        try:
            return self._submit(request)
        except SmsResponseError as exc:
            # a token call failing before the send went out, or an HTTP 4xx refusal, is a plain failure
            if not self._send_state.reached or (exc.status is not None and exc.status >= 400):
                raise
            raise SmsOutcomeUnknownError(self.vendor, request.description, request.mobiles, str(exc)) from None
        except SmsError:
            # unknown already; the vendor's own refusal; a transport error raised only when the request
            # surely never left; a configuration error before it could: none of these was accepted
            raise
        except Exception as exc:
            # anything else once the request may have reached the vendor (a reply nested too deep to parse,
            # a bug reading it) leaves the outcome unknown: a retry must resolve it, never resend it blindly
            if not getattr(self._send_state, "reached", False):
                raise
            cause = f"the reply could not be read ({type(exc).__name__})"
            raise SmsOutcomeUnknownError(self.vendor, request.description, request.mobiles, cause) from None

    def fetch_reports(self, pairs: Iterable[tuple[str, str]] | None = None) -> list[DeliveryReport]:
        """Queue vendors: whatever reports are pending (each handed out once). Query vendors: the given pairs."""
        self._require(REPORTS)
        if self.report_mode == QUERY:
            wanted = list(pairs or [])
            reports: list[DeliveryReport] = []
            rejected: list[tuple[object, str]] = []
            for good, bad in self.query_reports(wanted):
                reports.extend(good)
                rejected.extend(bad)
            if rejected:  # every query is made: one malformed record costs no other query's reports
                raise SmsPartialResponseError(
                    self.vendor, f"status query ({len(wanted)} messages)", "report", reports, rejected
                )
            return reports
        return self.parse_pulled(REPORTS, self.pull_records(REPORTS))

    def query_reports(
        self, pairs: Sequence[tuple[str, str]]
    ) -> Iterator[tuple[Sequence[Any], Sequence[tuple[object, str]]]]:
        """Query vendors: the reports of ``pairs``, asked for ``report_query_limit`` pairs a query.

        The one place pairs are cut into queries. Each query yields its page: the good reports and the
        malformed raw items with the reason, so that a caller stores page by page and keeps what would
        not parse (``pulling.pull_reports``).
        """
        self._require(REPORTS)
        if self.report_mode != QUERY:
            raise SmsNotSupportedError(self.vendor, "report queries (its reports are pulled from a queue)")
        for start in range(0, len(pairs), self.report_query_limit):
            try:
                yield self._fetch_reports(pairs[start : start + self.report_query_limit]), []
            except SmsPartialResponseError as exc:
                yield exc.records, exc.rejected

    def fetch_inbound(self) -> list[InboundMessage]:
        """Pending inbound (MO) messages; queue vendors hand each out once."""
        return self.parse_pulled(INBOUND, self.pull_records(INBOUND))

    def pull_records(self, kind: str, *, keep: Callable[[bytes], object] | None = None) -> list[Mapping[str, Any]]:
        """One pull of a queue (``"reports"`` or ``"inbound"``): the records as the vendor handed them out.

        The vendor hands each record out once. ``keep`` is called with every reply of this pull as the
        bytes that came, before anything decodes them (``pulling`` journals them), so that neither a crash
        nor a reply that will not decode loses a page; the records returned are those of the last reply
        kept. ``records_in_reply`` reads a kept reply again. Records are not parsed here either: a
        record that will not parse is kept by the caller (``parse_pulled`` says which).
        """
        self._require(kind)
        if kind == REPORTS and self.report_mode != QUEUE:
            raise SmsNotSupportedError(self.vendor, "a delivery report queue (its reports are queried by batch)")
        self._reply_keeper = (PULL_OPERATIONS[kind], keep) if keep is not None else None
        try:
            return self._pull_records(kind)
        finally:
            self._reply_keeper = None

    def records_in_reply(self, kind: str, body: bytes) -> list[Mapping[str, Any]]:
        """The records of a pulled reply kept as bytes; a vendor error reply raises ``SmsVendorError``."""
        response = requests.Response()
        response.status_code = 200
        response.encoding = "utf-8"
        response._content = body  # a reply as requests would hold it, read by the vendor's own code
        return self._records_in_reply(kind, response)

    def parse_pulled(self, kind: str, items: Iterable[Mapping[str, Any]], *, pushed: bool = False) -> list[Any]:
        """Records of one pull (or push) parsed; raises ``SmsPartialResponseError`` with the good and the rejected."""
        parse = self.report_from_record if kind == REPORTS else self.inbound_from_record
        what = "report" if kind == REPORTS else "inbound message"
        operation = f"{kind} push" if pushed else PULL_OPERATIONS[kind]
        return self.parse_records(items, functools.partial(parse, pushed=pushed), operation, what)

    def get_balance(self) -> Balance:
        self._require(BALANCE)
        return self._get_balance()

    def test_connection(self) -> tuple[bool, str]:
        try:
            return True, self._check_connection()
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ what a vendor module implements

    def _submit(self, request: SendRequest) -> SendReceipt:
        raise NotImplementedError

    def _fetch_reports(self, pairs: Sequence[tuple[str, str]] | None) -> list[DeliveryReport]:
        """Query vendors: the reports of these (batch_id, mobile) pairs."""
        raise NotImplementedError

    def _pull_records(self, kind: str) -> list[Mapping[str, Any]]:
        """Queue vendors: one pull of ``kind`` (each reply read with ``_records_in_reply``), records unparsed."""
        raise NotImplementedError

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        """Queue vendors: the records a pull's reply carries, or the vendor's error."""
        raise NotImplementedError

    def _get_balance(self) -> Balance:
        raise NotImplementedError

    def _check_connection(self) -> str:
        raise NotImplementedError

    def _validate_request(self, request: SendRequest) -> None:
        """Vendor-specific checks that can fail before anything is sent (lengths, required fields)."""

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One delivery report as the vendor hands it out (pulled or pushed): the record parser."""
        raise SmsNotSupportedError(self.vendor, FEATURE_LABELS[REPORTS])

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One inbound message as the vendor hands it out (pulled or pushed): the record parser."""
        raise SmsNotSupportedError(self.vendor, FEATURE_LABELS[INBOUND])

    def delivery_report(
        self,
        item: Mapping[str, Any],
        operation: str,
        *,
        batch: str,
        delivered: bool,
        code: str,
        failure: str,
        reported_at: Any,
        time_format: str,
        mobile: str = "mobile",
    ) -> DeliveryReport:
        """A queue vendor's report record read by its field names, once its status is known: ``delivered``
        or failed, described as ``failure``."""
        return DeliveryReport(
            vendor=self.vendor,
            batch_id=parse_id(self.field(item, batch, operation), field_name=batch),
            mobile=self.text_field(item, mobile, operation),
            status=DELIVERED if delivered else FAILED,
            code=code,
            description="delivered" if delivered else failure,
            reported_at=self.vendor_time(reported_at, [time_format]),
            raw=item,
        )

    def inbound_message(
        self,
        item: Mapping[str, Any],
        operation: str,
        *,
        time: str,
        time_format: str,
        mobile: str = "mobile",
        content: str = "content",
        ext_no: str | None = None,
    ) -> InboundMessage:
        """An inbound record read by its vendor's field names (every vendor's holds the same four things);
        ``ext_no`` names the extension's field where the vendor has one."""
        return InboundMessage(
            vendor=self.vendor,
            mobile=self.text_field(item, mobile, operation),
            content=self.text_field(item, content, operation),
            received_at=self.vendor_time(item.get(time), [time_format]),
            ext_no=self.ext_no_of(item, ext_no, operation) if ext_no else "",
            raw=item,
        )

    def ext_no_of(self, item: Mapping[str, Any], name: str, operation: str) -> str:
        """An inbound record's extension, as text (empty when absent)."""
        return self.text_field(item, name, operation, required=False)

    # ------------------------------------------------------------------ helpers for vendor modules

    def _parse_options(self, options: Mapping[str, Any]) -> SendOptions:
        unknown = set(options) - SEND_OPTIONS
        if unknown:
            raise SmsInvalidRequestError(
                f"{self.vendor}: unknown send option(s) {sorted(unknown)}; known: {sorted(SEND_OPTIONS)}"
            )
        parsed = SendOptions(**{k: v for k, v in options.items() if v not in (None, "")})
        unsupported = parsed.given() - self.supported_options
        if unsupported:
            raise SmsInvalidRequestError(
                f"{self.vendor} does not support the send option(s) {sorted(unsupported)}; "
                f"it supports {sorted(self.supported_options)}"
            )
        if parsed.scheduled_at is not None and (
            not isinstance(parsed.scheduled_at, datetime) or parsed.scheduled_at.tzinfo is None
        ):
            raise SmsInvalidRequestError(
                f"{self.vendor}: scheduled_at must be a timezone-aware datetime, got {parsed.scheduled_at!r}"
            )
        if parsed.ext_no is not None and not (str(parsed.ext_no).isascii() and str(parsed.ext_no).isdigit()):
            raise SmsInvalidRequestError(f"{self.vendor}: ext_no must be digits, got {parsed.ext_no!r}")
        if parsed.kind is not None:
            parsed = dataclasses.replace(parsed, kind=self.kind_code(parsed.kind))
        return parsed

    def kind_code(self, kind: str) -> str:
        """``verification``/``notification``/``marketing`` or the vendor digit ``1``/``2``/``3``."""
        code = MESSAGE_KINDS.get(str(kind).strip().lower(), str(kind).strip())
        if code not in MESSAGE_KINDS.values():
            raise SmsInvalidRequestError(
                f"{self.vendor}: unknown message kind {kind!r}; use one of {sorted(MESSAGE_KINDS)} or 1, 2, 3"
            )
        return code

    def signed_content(self, content: str, signature: str | None) -> str:
        """Content with the 【signature】 these vendors expect at its start, unless it already has one."""
        signature = signature or self.config.extra("sign")
        if not signature or content.startswith("【"):
            return content
        return f"【{signature.strip('【】')}】{content}"

    #: vendor times kept parsed per hook: the records of one pull share a handful of timestamps, and
    #: ``strptime`` costs more than all the rest of turning a record into a report
    VENDOR_TIME_CACHE_SIZE: ClassVar[int] = 4096

    def vendor_time(self, value: Any, formats: Sequence[str]) -> datetime | None:
        """A naive vendor timestamp in the connection's zone, as aware UTC; None when empty."""
        if value is None or value == "":
            return None
        text = str(value).strip()
        key = (text, *formats)
        cache: dict[tuple[str, ...], datetime] | None = self.__dict__.get("_vendor_times")
        if cache is None:
            cache = self.__dict__["_vendor_times"] = {}
        else:
            hit = cache.get(key)
            if hit is not None:
                return hit
        for fmt in formats:
            try:
                naive = datetime.strptime(text, fmt)
            except ValueError:
                continue
            parsed = naive.replace(tzinfo=self.config.timezone).astimezone(timezone.utc)
            if len(cache) >= self.VENDOR_TIME_CACHE_SIZE:
                cache.clear()
            cache[key] = parsed
            return parsed
        raise ValueError(f"time {text!r} matches none of the formats {list(formats)}")

    def format_vendor_time(self, value: datetime, fmt: str) -> str:
        return value.astimezone(self.config.timezone).strftime(fmt)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def new_client_ref(self) -> str:
        return uuid.uuid4().hex

    # ------------------------------------------------------------------ transport

    def url(self, path: str) -> str:
        return f"{self.config.base_url}{path}"

    def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        send: SendRequest | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP call with the retry policy that is safe for it.

        Reads are retried on connection errors, timeouts, 5xx and 429. A send (``send`` given) is
        retried only when the request surely never reached the vendor (connection refused, connect
        timeout) or the vendor said 429; any other failure raises ``SmsOutcomeUnknownError``.
        """
        kwargs.setdefault("timeout", (self.config.connect_timeout, self.config.read_timeout))
        # Explicit on every call: a connection's own CA bundle or verify=false stands whatever the
        # environment says; plain True means the environment's bundle if it names one, as in requests.
        verify = kwargs.get("verify", self.session.verify)
        kwargs["verify"] = (self._environment_ca_bundle or True) if verify is True else verify
        url = self.url(path)

        paces = self._paces(operation)
        timing_tags = self._timing_tags("send" if send is not None else operation)

        def attempt(operation: str) -> requests.Response:  # the operation is there for _log_retry to name
            if paces:  # every attempt keeps the account's pace, retries included
                self._wait_for_slots(operation, paces)
            if send is not None:
                self._send_state.reached = True
            started = time.perf_counter()
            try:
                response = self.session.request(method, url, **kwargs)
            finally:
                metrics.timing(metrics.REQUEST_DURATION, time.perf_counter() - started, timing_tags)
                for key, interval, from_reply in paces:
                    if from_reply:
                        self.slots.slot_finished(key, interval)
            keeper = self._reply_keeper
            if keeper is not None and keeper[0] == operation and response.status_code < 400:
                keeper[1](response.content)  # a queue's reply is kept before anything decodes it
            if response.status_code == 429 or (response.status_code >= 500 and send is None):
                raise _RetryableStatus(response)
            if send is None and response.status_code < 400 and not self.reply_is_readable(response):
                raise _RetryableStatus(response, "the reply is not JSON")
            return response

        retry_on = _send_retryable if send is not None else _read_retryable
        try:
            response = self._retrying(retry_on)(attempt, operation)
        except _RetryableStatus as exc:
            raise SmsResponseError(
                self.vendor,
                operation,
                f"failed after {self.retries + 1} attempts: {exc.problem}",
                exc.response.status_code,
                exc.response.text,
            ) from None
        except requests.RequestException as exc:
            if send is not None and not _surely_not_sent(exc):
                raise SmsOutcomeUnknownError(self.vendor, send.description, send.mobiles, _describe(exc)) from None
            attempts = f" after {self.retries + 1} attempts" if retry_on(exc) else ""
            raise SmsTransportError(f"{self.vendor} {operation}: {_describe(exc)}{attempts}") from None
        if send is not None and response.status_code >= 500:
            raise SmsOutcomeUnknownError(
                self.vendor,
                send.description,
                send.mobiles,
                f"HTTP {response.status_code}, body starts: {body_preview(response.text)!r}",
            )
        return response

    def _timing_tags(self, operation: str) -> Mapping[str, str]:
        """The request timer's tags for an operation, built once per hook (a send makes one call per request)."""
        cache: dict[str, Mapping[str, str]] = self.__dict__.setdefault("_timing_tags_by_operation", {})
        found = cache.get(operation)
        if found is None:
            found = cache[operation] = metrics.tags(
                self.vendor, self.sms_conn_id, operation=metrics.operation_tag(operation)
            )
        return found

    def _retrying(self, retry_on: Callable[[BaseException], bool]) -> Retrying:
        """The retry loop for sends or for reads, built once per hook.

        A new ``Retrying`` per call cost ~13 us and left a reference cycle (its per-thread state holds
        its own bound methods) for the garbage collector: a send of 800 requests ran ~25 collections the
        plain loop does not. Its state is per thread, so the copies ``for_thread`` makes share it.
        """
        loops: dict[Callable[[BaseException], bool], Retrying] = self.__dict__.setdefault("_retrying_loops", {})
        loop = loops.get(retry_on)
        if loop is None:
            loop = loops[retry_on] = Retrying(
                stop=stop_after_attempt(self.retries + 1),
                wait=_RetryAfterOrBackoff(self.retry_wait),
                retry=retry_if_exception(retry_on),
                before_sleep=self._log_retry,
                sleep=lambda seconds: type(self).retry_sleep(seconds),
                reraise=True,
            )
        return loop

    def _log_retry(self, state: RetryCallState) -> None:
        """Before a retry's wait: which attempt of which operation failed, why, and how long the wait is."""
        exc = state.outcome.exception() if state.outcome else None
        reason = str(exc) if isinstance(exc, _RetryableStatus) else _describe(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            "%s %s: attempt %d failed (%s); retrying in %.1fs",
            self.vendor,
            state.args[0],
            state.attempt_number,
            reason,
            wait,
        )

    def reply_is_readable(self, response: requests.Response) -> bool:
        """Whether a reply parses; reads whose reply does not are retried like a 5xx.

        The parsed reply is kept on the response for the ``parse_json`` that follows, so that a pull of
        a thousand records is not decoded twice.
        """
        try:
            response.__dict__[_PARSED] = loads_exact(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than the parser goes
            return False
        return True

    def parse_json(self, response: requests.Response, operation: str) -> Any:
        """The reply as JSON (decimals exact, integers of any width), or a clear error with the body's start."""
        if response.status_code >= 400:
            raise SmsResponseError(
                self.vendor, operation, "the vendor answered with an HTTP error", response.status_code, response.text
            )
        parsed = response.__dict__.pop(_PARSED, _UNPARSED)  # handed out once: callers may change it
        if parsed is not _UNPARSED:
            return parsed
        try:
            return loads_exact(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than the parser goes
            raise SmsResponseError(
                self.vendor, operation, "the reply is not JSON", response.status_code, response.text
            ) from None

    def field(self, data: Any, name: str, operation: str, response: requests.Response | None = None) -> Any:
        """``data[name]``, or an error that names the missing field instead of a KeyError."""
        if type(data) is not dict and not isinstance(data, Mapping):  # the exact type first: runs per field
            raise self.bad_reply(
                operation, f"expected a JSON object holding {name!r}, got {type(data).__name__}", response
            )
        if name not in data or data[name] is None:
            raise self.bad_reply(operation, f"the reply has no {name!r} field", response)
        return data[name]

    def text_field(self, data: Any, name: str, operation: str, *, required: bool = True) -> str:
        """``data[name]`` as text: a string, or an integer (vendors send some numbers and codes as JSON numbers).

        Any other value (an object, a list, a bool, a float) raises: stored with ``str(...)`` it would be
        its Python repr (``"{'a': 1}"``, ``"True"``), not anything the vendor meant. An optional field that
        is missing or empty (null, ``""``, 0) is ``""``, as the parsers' ``str(x or "")`` always read it.
        """
        if type(data) is dict:  # the usual record: a plain string needs no more checking (runs per field)
            value = data.get(name)
            if type(value) is str:
                return value
        if required:
            value = self.field(data, name, operation)
        else:
            value = data.get(name) if isinstance(data, Mapping) else None
            if value is None or value == "" or (type(value) is int and value == 0):
                return ""
        if type(value) is str:  # the exact type first: runs per field of every record
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            return str(value)
        raise self.bad_reply(operation, f"{name!r} should be a string or an integer, got {_json_type(value)}")

    def data_list(self, data: Any, operation: str, name: str = "data") -> list[Mapping[str, Any]]:
        """The list of records a pull returned; ``None`` means nothing is pending."""
        if data is None:
            return []
        if not isinstance(data, list) or not all(type(item) is dict or isinstance(item, Mapping) for item in data):
            raise self.bad_reply(operation, f"{name!r} should be a list of objects, got {type(data).__name__}")
        return data

    def parse_records(
        self,
        items: Iterable[Mapping[str, Any]],
        parse: Callable[[Mapping[str, Any]], R],
        operation: str,
        what: str = "record",
    ) -> list[R]:
        """Parse every record of a pull; one malformed record does not cost the good ones.

        Raises ``SmsPartialResponseError`` carrying the good records and the rejected raw items,
        so that the caller can store the former and log the latter before failing.
        """
        records: list[R] = []
        rejected: list[tuple[object, str]] = []
        for item in items:
            try:
                records.append(parse(item))
            except SmsResponseError as exc:
                rejected.append((item, exc.problem))
            except (ValueError, TypeError, ArithmeticError) as exc:
                rejected.append((item, str(exc)))
        if rejected:
            raise SmsPartialResponseError(self.vendor, operation, what, records, rejected)
        return records

    def balance_amount(self, amount: Any, operation: str = "balance query") -> Decimal:
        """A vendor's balance as an exact, finite ``Decimal``; anything else is ``SmsResponseError``.

        One parser for every vendor: NaN or Infinity (as text), a boolean, a float (its digits already
        rounded), text that is not plain decimal notation, or a value too large for a float would
        otherwise reach ``min_balance`` as a bare ``decimal.InvalidOperation`` or a nonsense reading.
        """
        shown = repr(amount) if len(repr(amount)) <= 60 else repr(amount)[:57] + "..."
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal, str)):
            raise self.bad_reply(operation, f"balance {shown} is not a number ({type(amount).__name__})")
        if isinstance(amount, str) and not _DECIMAL_TEXT.fullmatch(amount.strip()):
            raise self.bad_reply(operation, f"balance {shown} is not a number")
        value = Decimal(amount.strip() if isinstance(amount, str) else amount)
        if not value.is_finite():
            raise self.bad_reply(operation, f"balance {shown} is not a finite number")
        if math.isinf(float(value)):
            raise self.bad_reply(operation, f"balance {shown} overflows: no account holds that much")
        return value

    def bad_reply(self, operation: str, problem: str, response: requests.Response | None = None) -> SmsResponseError:
        return SmsResponseError(
            self.vendor,
            operation,
            problem,
            response.status_code if response is not None else None,
            response.text if response is not None else "",
        )

    # ------------------------------------------------------------------ tokens and pull limits

    def with_token(self, call: Callable[[str], T], *, is_token_error: Callable[[SmsVendorError], bool]) -> T:
        """Run ``call`` with a cached token; on a vendor error that may mean a dead token, refresh once and retry.

        An error reply means the vendor did not act, so repeating is safe even for sends.
        """
        key = self._token_key()
        token = TOKEN_CACHE.get(key)
        from_cache = token is not None
        if token is None:
            token = self._new_token(key)
        try:
            return call(token)
        except SmsVendorError as exc:
            if not from_cache or not is_token_error(exc):
                raise
            self.log.info(
                "%s: call failed with code %s on a cached token; fetching a new token once", self.vendor, exc.code
            )
            TOKEN_CACHE.invalidate(key, token)
            return call(self._new_token(key))

    def _new_token(self, key: tuple[str, ...]) -> str:
        token, expires_in = self._fetch_token()
        mask(token)
        TOKEN_CACHE.put(key, token, expires_in)
        return token

    def _token_key(self) -> tuple[str, ...]:
        # a digest of the secret, so that two connections to one appId with different secrets share nothing
        secret_digest = hashlib.sha256(self.config.password.encode("utf-8")).hexdigest()[:16]
        return (self.vendor, self.config.base_url, self.config.login, secret_digest)

    def _fetch_token(self) -> tuple[str, float]:
        raise NotImplementedError

    def pace_with(self, slots: Slots) -> None:
        """Book paced calls (``pull_interval_for``, the ``max_requests_per_second`` extra) in ``slots``: a
        store shared by every process and machine that uses the account, so that they keep the pace
        together (tasks do this with their store)."""
        self.slots = slots

    def pull_interval_for(self, operation: str) -> float:
        """The vendor's minimum interval between calls of ``operation`` for one account (0: none)."""
        return 0.0

    def _paces(self, operation: str) -> list[tuple[str, float, bool]]:
        """(slot key, interval, counted from the reply too) of each pace a call of ``operation`` keeps."""
        paces = self._paces_by_operation.get(operation)
        if paces is None:
            account = f"{self.vendor}|{self.config.base_url}|{self.config.login}"
            paces = []
            interval = self.pull_interval_for(operation)
            if interval > 0:
                paces.append((f"{account}|{operation}", interval, True))
            if self.requests_per_second > 0:
                paces.append((f"{account}|requests", 1.0 / self.requests_per_second, False))
            self._paces_by_operation[operation] = paces
        return paces

    def _wait_for_slots(self, operation: str, paces: Sequence[tuple[str, float, bool]]) -> None:
        for key, interval, _ in paces:
            delay = self.slots.reserve_slot(key, interval)
            if delay > 0:
                level = logging.INFO if delay >= 1 else logging.DEBUG
                self.log.log(level, "%s: waiting %.1fs before %s (the account's pace)", self.vendor, delay, operation)
                time.sleep(delay)

    def vendor_error(self, code: Any, message: Any, meanings: Mapping[str, str], operation: str) -> SmsVendorError:
        """The error for a vendor's error reply, counted under ``sms.vendor_errors`` by code as it is read."""
        code_text = str(code)
        code_tag = metrics.tag_value(code_text[:32])  # the vendor's text: bounded, since tags are indexed
        metrics.incr(
            metrics.VENDOR_ERRORS,
            1,
            metrics.tags(self.vendor, self.sms_conn_id, code=code_tag, operation=metrics.operation_tag(operation)),
        )
        return SmsVendorError(self.vendor, code_text, str(message or ""), meanings.get(code_text, ""), operation)


def _json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for a problem message."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (float, Decimal)):
        return f"the number {value}"
    return type(value).__name__


def _float_extra(extras: Mapping[str, Any], name: str, default: float, conn_id: str) -> float:
    value = extras.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SmsConfigurationError(f"connection {conn_id!r}: extra {name!r} must be a number, got {value!r}") from None


def _surely_not_sent(exc: BaseException) -> bool:
    """True only when the request cannot have reached the vendor: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, (NewConnectionError, NameResolutionError))
    return False


def _read_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_RetryableStatus, requests.ConnectionError, requests.Timeout)) and not isinstance(
        exc, requests.exceptions.SSLError
    )


def _send_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _RetryableStatus):
        return exc.response.status_code == 429
    return _surely_not_sent(exc) and not isinstance(exc, requests.exceptions.SSLError)


def _tls_reason(exc: BaseException) -> str:
    """The certificate or handshake error itself, found in the chain requests and urllib3 wrap it in."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {error.verify_message or error.reason}"
        if isinstance(error, ssl.SSLError):
            return str(error.reason or error.strerror or type(error).__name__)
        linked = (getattr(error, "reason", None), error.__cause__, error.__context__, *error.args)
        pending.extend(link for link in linked if isinstance(link, BaseException))
    return "the handshake failed"


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout: no reply in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS error: {_tls_reason(exc)} (set the connection's verify extra to a CA bundle that holds the "
            "vendor's certificate; false only for a vendor whose document says its certificate cannot be verified)"
        )
    if isinstance(exc, requests.ConnectionError):
        return _connection_failure(exc)
    return type(exc).__name__


def _connection_failure(exc: requests.ConnectionError) -> str:
    """What became of the connection: never made (refused, a name that does not resolve), or made and then
    dropped before the reply came, which is no refusal: the request may have reached the vendor."""
    if not _surely_not_sent(exc):
        return "the connection was dropped before a reply came"
    from urllib3.exceptions import NameResolutionError

    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # a MaxRetryError names the last attempt's error
    if isinstance(reason, NameResolutionError):
        return "could not connect: the host name does not resolve"
    if isinstance(getattr(reason, "__cause__", None), ConnectionRefusedError) or "refused" in str(reason).lower():
        return "could not connect: connection refused"
    return "could not connect"


__all__ = [
    "BALANCE",
    "INBOUND",
    "REPORTS",
    "SECRET_EXTRAS",
    "SEND",
    "SEND_TEMPLATE",
    "ConnectionConfig",
    "SendOptions",
    "SendRequest",
    "SmsError",
    "SmsHook",
    "mask",
    "parse_id",
    "read_connection",
]
