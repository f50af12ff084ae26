"""The simulated gateways' shared state: accounts, accepted messages, report and inbound queues, faults.

Vendor protocol modules (one per vendor, beside this file) translate their wire format to calls on
``Gateway``; nothing here knows a vendor's field names.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from airflow_provider_sms.numbers import message_parts

VENDOR_ZONE = ZoneInfo("Asia/Shanghai")


class BadRequest(Exception):
    """A request the simulated vendor cannot parse; protocols turn it into their own error reply."""


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    client: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not JSON: {exc}") from None

    def form(self) -> dict[str, str]:
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(self.body)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not a form: {exc}") from None

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> SimResponse:
        return cls(status, json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8"))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain;charset=utf-8") -> SimResponse:
        return cls(status, text.encode("utf-8"), content_type)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A JSON number, as the vendors send it: float() keeps two-decimal money exact enough to print.
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


@dataclass(frozen=True)
class Account:
    """One vendor account: ``login`` is the appId/appKey/account/apId, ``secret`` the password/secret."""

    vendor: str
    login: str
    secret: str
    extra: Mapping[str, str] = field(default_factory=dict)
    balance: Decimal = Decimal("100000.00")


DEFAULT_ACCOUNTS: dict[str, Account] = {
    "paasw_v2": Account("paasw_v2", "0189457543", "gw7ewiz4eJ5646grg"),
    "paasw_v1": Account("paasw_v1", "0189457544", "23f757bad208226ec301e117e4", {"sign": "模拟签名"}),
    "intl": Account("intl", "10002", "abc123"),
    "account_md5": Account("account_md5", "simaccount", "sim-password"),
    "cloud_mas": Account("cloud_mas", "simap", "sim-mas-secret", {"ec_name": "SimCorp", "sign": "SIGN001"}),
}


@dataclass
class Message:
    """One accepted (batch, mobile) with the report it will get once due."""

    vendor: str
    batch_id: str
    mobile: str
    content: str
    ext_no: str
    submitted_at: datetime
    due_at: float
    delivered: bool
    parts: int
    report_at: datetime | None = None
    reported: bool = False


@dataclass
class Inbound:
    vendor: str
    mobile: str
    content: str
    ext_no: str
    received_at: datetime
    sign: str = ""
    sequence_id: int = 0


@dataclass
class Fault:
    """``kind``: ``status`` (HTTP error), ``garbage`` (200, not JSON), ``html`` (502 page), ``delay`` (slow reply).

    ``delay`` still processes the request: a client that times out does not know that the vendor acted.
    """

    kind: str
    remaining: int
    vendor: str | None = None
    path: str | None = None
    status: int = 503
    seconds: float = 0.0

    def matches(self, vendor: str, path: str) -> bool:
        return (self.vendor in (None, vendor)) and (self.path in (None, path))


@dataclass
class SimConfig:
    report_delay: float = 0.0
    failure_rate: float = 0.0
    latency: float = 0.0
    seed: str = "sim"
    #: cloud_mas: minimum seconds between two report (or inbound) pulls of one account
    pull_interval: float = 5.0
    #: auto-reply inbound messages generated for a share of delivered numbers (0 = none)
    reply_rate: float = 0.0
    reply_text: str = "收到"


class Gateway:
    """Thread-safe state of all simulated vendors, as one process of truth for a test or a DAG run."""

    BATCH_ID_BASE: ClassVar[int] = 39036632588910887018  # wider than 64 bits, as the paasw documents show

    def __init__(self, config: SimConfig | None = None, accounts: Mapping[str, Account] | None = None) -> None:
        self.config = config or SimConfig()
        self.accounts: dict[str, Account] = dict(accounts or DEFAULT_ACCOUNTS)
        self.lock = threading.RLock()
        self._counter = itertools.count(1)  # never reset: batch ids stay unique across resets
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.balances: dict[str, Decimal] = {v: a.balance for v, a in self.accounts.items()}
            self.messages: dict[str, dict[tuple[str, str], Message]] = defaultdict(dict)
            self._due: dict[str, list[tuple[float, int, Message]]] = defaultdict(list)
            self._ready: dict[str, deque[Message]] = defaultdict(deque)
            self.inbound: dict[str, deque[Inbound]] = defaultdict(deque)
            self.faults: list[Fault] = []
            self.tokens: dict[str, tuple[str, float]] = {}
            self.requests: dict[str, int] = defaultdict(int)
            self.accepted_requests: dict[str, int] = defaultdict(int)
            self.throttle_violations: dict[str, int] = defaultdict(int)
            self.client_refs: dict[str, set[str]] = defaultdict(set)
            self._last_pull: dict[tuple[str, str], float] = {}
            self.push_urls: dict[tuple[str, str], str] = {}

    # ---------------------------------------------------------------- accounts and tokens

    def account(self, vendor: str) -> Account:
        return self.accounts[vendor]

    def issue_token(self, vendor: str, ttl: float = 7200.0) -> tuple[str, int]:
        """Same token while valid, as the paasw documents say."""
        with self.lock:
            current = self.tokens.get(vendor)
            now = time.monotonic()
            if current and current[1] > now:
                return current[0], int(current[1] - now)
            token = hashlib.sha256(f"{vendor}:{next(self._counter)}:{now}".encode()).hexdigest()
            self.tokens[vendor] = (token, now + ttl)
            return token, int(ttl)

    def token_valid(self, vendor: str, token: str | None) -> bool:
        with self.lock:
            current = self.tokens.get(vendor)
            return bool(token) and current is not None and current[0] == token and current[1] > time.monotonic()

    def revoke_tokens(self, vendor: str | None = None) -> None:
        """What a secret reset does at the vendor: every issued token dies at once."""
        with self.lock:
            for key in [k for k in self.tokens if vendor in (None, k)]:
                del self.tokens[key]

    # ---------------------------------------------------------------- sending

    def next_batch_id(self) -> str:
        return str(self.BATCH_ID_BASE + next(self._counter))

    def accept(
        self,
        vendor: str,
        batch_id: str,
        messages: Iterable[tuple[str, str]],
        ext_no: str = "",
        client_ref: str | None = None,
    ) -> None:
        """Record accepted (mobile, content) pairs, charge the balance per part, and schedule their reports."""
        now = time.monotonic()
        submitted = datetime.now(timezone.utc)
        due_at = now + self.config.report_delay
        with self.lock:
            self.accepted_requests[vendor] += 1
            if client_ref:
                self.client_refs[vendor].add(client_ref)
            store = self.messages[vendor]
            for mobile, content in messages:
                delivered = self._delivered(batch_id, mobile)
                parts = message_parts(content)
                message = Message(vendor, batch_id, mobile, content, ext_no, submitted, due_at, delivered, parts)
                store[(batch_id, mobile)] = message
                self.balances[vendor] -= parts
                heapq.heappush(self._due[vendor], (due_at, next(self._counter), message))

    def _delivered(self, batch_id: str, mobile: str) -> bool:
        if self.config.failure_rate <= 0:
            return True
        digest = hashlib.blake2b(f"{self.config.seed}:{batch_id}:{mobile}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 >= self.config.failure_rate

    def _release_due(self, vendor: str) -> None:
        now = time.monotonic()
        due = self._due[vendor]
        ready = self._ready[vendor]
        while due and due[0][0] <= now:
            message = heapq.heappop(due)[2]
            message.report_at = datetime.now(timezone.utc)
            ready.append(message)
            if message.delivered and self.config.reply_rate > 0 and self._replies(message):
                self.inbound[vendor].append(
                    Inbound(vendor, message.mobile, self.config.reply_text, message.ext_no, message.report_at)
                )

    def _replies(self, message: Message) -> bool:
        digest = hashlib.blake2b(f"reply:{message.batch_id}:{message.mobile}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.config.reply_rate

    def take_reports(self, vendor: str, limit: int | None = None) -> list[Message]:
        """Queue semantics: each due report is handed out exactly once."""
        with self.lock:
            self._release_due(vendor)
            ready = self._ready[vendor]
            count = len(ready) if limit is None else min(limit, len(ready))
            taken = [ready.popleft() for _ in range(count)]
            for message in taken:
                message.reported = True
            return taken

    def query_report(self, vendor: str, batch_id: str, mobile: str) -> Message | None:
        """Query semantics (intl): the message, whose report may not be due yet; None when unknown."""
        with self.lock:
            self._release_due(vendor)
            self._ready[vendor].clear()  # a query vendor keeps no queue
            return self.messages[vendor].get((batch_id, mobile))

    def report_ready(self, message: Message) -> bool:
        return message.due_at <= time.monotonic()

    # ---------------------------------------------------------------- inbound

    def add_inbound(self, vendor: str, mobile: str, content: str, ext_no: str = "", sign: str = "") -> Inbound:
        with self.lock:
            message = Inbound(vendor, mobile, content, ext_no, datetime.now(timezone.utc), sign, next(self._counter))
            self.inbound[vendor].append(message)
            return message

    def take_inbound(self, vendor: str, limit: int | None = None) -> list[Inbound]:
        with self.lock:
            self._release_due(vendor)
            queue = self.inbound[vendor]
            count = len(queue) if limit is None else min(limit, len(queue))
            return [queue.popleft() for _ in range(count)]

    # ---------------------------------------------------------------- limits, faults, stats

    def pull_allowed(self, vendor: str, endpoint: str) -> bool:
        """cloud_mas: one pull per endpoint and account per ``pull_interval`` seconds."""
        with self.lock:
            now = time.monotonic()
            last = self._last_pull.get((vendor, endpoint))
            if last is not None and now - last < self.config.pull_interval:
                self.throttle_violations[vendor] += 1
                return False
            self._last_pull[(vendor, endpoint)] = now
            return True

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, vendor: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.matches(vendor, path):
                    fault.remaining -= 1
                    return fault
            return None

    def count_request(self, vendor: str, path: str) -> None:
        with self.lock:
            self.requests[f"{vendor} {path}"] += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "accepted_requests": dict(self.accepted_requests),
                "accepted_messages": {v: len(m) for v, m in self.messages.items()},
                "pending_reports": {v: len(d) + len(self._ready[v]) for v, d in self._due.items()},
                "inbound_queued": {v: len(q) for v, q in self.inbound.items()},
                "balances": {v: str(b) for v, b in self.balances.items()},
                "throttle_violations": dict(self.throttle_violations),
            }


def vendor_now(fmt: str) -> str:
    return datetime.now(VENDOR_ZONE).strftime(fmt)


def vendor_time(value: datetime | None, fmt: str) -> str:
    return (value or datetime.now(timezone.utc)).astimezone(VENDOR_ZONE).strftime(fmt)


def parse_vendor_time(text: str, fmt: str) -> datetime:
    return datetime.strptime(text, fmt).replace(tzinfo=VENDOR_ZONE)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def future_time(text: str, fmt: str, *, max_days: int = 30) -> bool:
    """A scheduled-send time must parse, and lie ahead but not too far."""
    try:
        when = parse_vendor_time(text, fmt)
    except ValueError:
        return False
    now = datetime.now(VENDOR_ZONE)
    return now - timedelta(minutes=1) <= when <= now + timedelta(days=max_days)


Handler = Callable[[SimRequest], SimResponse]


class VendorProtocol:
    """One vendor's wire protocol on top of ``Gateway``: a table of routes and their handlers."""

    vendor: ClassVar[str] = ""
    #: whether the vendor is served over HTTPS (cloud_mas) rather than plain HTTP
    https: ClassVar[bool] = False

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def account(self) -> Account:
        return self.gateway.account(self.vendor)

    def routes(self) -> dict[tuple[str, str], Handler]:
        """(METHOD, path) -> handler."""
        raise NotImplementedError

    def garbage_reply(self) -> SimResponse:
        return SimResponse.text("<<not json>> upstream said: ok?", 200)
