"""The simulated gateways' shared state: accounts, accepted messages, report and inbound queues, faults.

Vendor protocol modules (one per vendor, beside this file) translate their wire format to calls on
``Gateway``; nothing here knows a vendor's field names.

Push: four vendors can POST reports and inbound messages to a customer's URL instead of queueing
them for pulls. ``Gateway.configure_push(vendor, kind, url)`` turns that on for one vendor and kind
(``"reports"`` or ``"inbound"``); from then on what falls due waits in a push queue, which pulls do
not see, until ``Gateway.push_due()`` POSTs it over real HTTP in the vendor's push format (built by
the protocol module) and retries as the vendor's document says.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from airflow_provider_sms.numbers import message_parts

VENDOR_ZONE = ZoneInfo("Asia/Shanghai")
PUSH_KINDS = ("reports", "inbound")
#: seconds a push waits for the customer's answer
PUSH_TIMEOUT = 10.0
#: pushes kept in ``Gateway.push_log``
PUSH_LOG_SIZE = 1000


class BadRequest(Exception):
    """A request the simulated vendor cannot parse; protocols turn it into their own error reply."""


class Refusal(Exception):
    """A request the simulated vendor turns down with ``response``, its own error reply: raised by a route's
    checks or its endpoint, answered by the route (``VendorProtocol.route``)."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response)
        self.response = response


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
        return cls(status, json_bytes(payload))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain;charset=utf-8") -> SimResponse:
        return cls(status, text.encode("utf-8"), content_type)


def json_bytes(payload: Any) -> bytes:
    """JSON in UTF-8 as the vendors send it; text UTF-8 cannot carry (a lone surrogate) goes as a ``\\u`` escape."""
    try:
        return json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, ensure_ascii=True, default=_json_default).encode("ascii")


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


#: the simulated vendors (each served by ``simulator/<vendor>.py``) and their accounts
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
    """``kind``: ``status`` (HTTP error), ``garbage`` (200, not JSON), ``html`` (502 page), ``delay`` (slow reply),
    ``mangled`` (the real reply with a proxy's trailer appended: no longer JSON), ``nested`` (the real reply
    wrapped in 5,000 levels of arrays, deeper than a JSON parser goes).

    ``delay``, ``mangled`` and ``nested`` still process the request: the vendor acted (sent, or handed a
    queue's records out) whatever the client makes of the reply.
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
class PushPayload:
    """One POST a vendor makes to a push URL: the body as the vendor encodes it, and its headers."""

    body: bytes
    headers: dict[str, str]
    records: int


@dataclass
class PushOutcome:
    """What became of one push payload: how often it was POSTed and whether the customer acknowledged it.

    ``target`` is the push URL without its query string (which may carry the customer's secret).
    """

    vendor: str
    kind: str
    target: str
    records: int
    attempts: int = 0
    status: int | None = None
    acknowledged: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "kind": self.kind,
            "target": self.target,
            "records": self.records,
            "attempts": self.attempts,
            "status": self.status,
            "acknowledged": self.acknowledged,
            "error": self.error,
        }


@dataclass
class SimConfig:
    report_delay: float = 0.0
    failure_rate: float = 0.0
    #: text fragment -> failure share: a message whose text contains the fragment fails at that share instead
    #: of ``failure_rate`` (the first fragment found wins). A template's text names it (paasw_v2 ``【模板ID】``,
    #: cloud_mas ``模板ID:``), so one template can fail while others deliver: a carrier blocking a template.
    content_failure_rates: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    seed: str = "sim"
    #: cloud_mas: minimum seconds between two report (or inbound) pulls of one account
    pull_interval: float = 5.0
    #: auto-reply inbound messages generated for a share of delivered numbers (0 = none)
    reply_rate: float = 0.0
    reply_text: str = "收到"


class Ledger:
    """What the vendors did, counted on their side, so any run can be audited against it.

    Per vendor: how many times each number was accepted for sending (a number accepted twice got the
    message twice), how many times each delivery report (batch, number) and each inbound message was
    handed out by a pull or a push (queue vendors hand each out once). Guarded by the gateway's lock.
    """

    def __init__(self) -> None:
        self.accepted: dict[str, Counter[str]] = defaultdict(Counter)
        self.reports: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        self.inbound: dict[str, Counter[int]] = defaultdict(Counter)

    def handed_out_reports(self, vendor: str, messages: Iterable[Message]) -> None:
        counts = self.reports[vendor]
        for message in messages:
            counts[(message.batch_id, message.mobile)] += 1

    def handed_out_inbound(self, vendor: str, messages: Iterable[Inbound]) -> None:
        counts = self.inbound[vendor]
        for message in messages:
            counts[message.sequence_id] += 1

    def summary(self, vendor: str | None = None, *, numbers: bool = False) -> dict[str, Any]:
        """Per vendor: totals, what was repeated (up to 100 examples), and with ``numbers`` every count."""
        vendors = sorted(set(self.accepted) | set(self.reports) | set(self.inbound))
        out: dict[str, Any] = {}
        for name in vendors if vendor is None else [vendor]:
            accepted, reports, inbound = self.accepted[name], self.reports[name], self.inbound[name]
            twice = {mobile: n for mobile, n in accepted.items() if n > 1}
            out[name] = {
                "accepted": {
                    "numbers": len(accepted),
                    "acceptances": sum(accepted.values()),
                    "numbers_accepted_more_than_once": len(twice),
                    "examples": dict(itertools.islice(twice.items(), 100)),
                },
                "reports": {
                    "handed_out": sum(reports.values()),
                    "distinct": len(reports),
                    "handed_out_more_than_once": sum(1 for n in reports.values() if n > 1),
                },
                "inbound": {
                    "handed_out": sum(inbound.values()),
                    "distinct": len(inbound),
                    "handed_out_more_than_once": sum(1 for n in inbound.values() if n > 1),
                },
            }
            if numbers:
                out[name]["accepted"]["counts"] = dict(accepted)
        return out


class Gateway:
    """Thread-safe state of all simulated vendors, as one process of truth for a test or a DAG run."""

    BATCH_ID_BASE: ClassVar[int] = 39036632588910887018  # wider than 64 bits, as the paasw documents show

    def __init__(self, config: SimConfig | None = None, accounts: Mapping[str, Account] | None = None) -> None:
        self.config = config or SimConfig()
        self.accounts: dict[str, Account] = dict(accounts or DEFAULT_ACCOUNTS)
        self.lock = threading.RLock()
        self._counter = itertools.count(1)  # never reset: batch ids stay unique across resets
        #: vendor -> its protocol; each VendorProtocol registers itself here, for pushes in its format
        self.protocols: dict[str, VendorProtocol] = {}
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
            self._arrivals: dict[str, list[float]] = defaultdict(list)
            self.accepted_requests: dict[str, int] = defaultdict(int)
            self.throttle_violations: dict[str, int] = defaultdict(int)
            self.client_refs: dict[str, set[str]] = defaultdict(set)
            self._last_pull: dict[tuple[str, str], float] = {}
            self.push_urls: dict[tuple[str, str], str] = {}
            self._push_reports: dict[str, deque[Message]] = defaultdict(deque)
            self._push_inbound: dict[str, deque[Inbound]] = defaultdict(deque)
            self.push_log: deque[PushOutcome] = deque(maxlen=PUSH_LOG_SIZE)
            self.ledger = Ledger()

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
            accepted = self.ledger.accepted[vendor]
            for mobile, content in messages:
                accepted[mobile] += 1
                delivered = self._delivered(batch_id, mobile, content)
                parts = message_parts(content)
                message = Message(vendor, batch_id, mobile, content, ext_no, submitted, due_at, delivered, parts)
                store[(batch_id, mobile)] = message
                self.balances[vendor] -= parts
                heapq.heappush(self._due[vendor], (due_at, next(self._counter), message))

    def _delivered(self, batch_id: str, mobile: str, content: str = "") -> bool:
        rate = self.failure_rate_for(content)
        if rate <= 0:
            return True
        digest = hashlib.blake2b(f"{self.config.seed}:{batch_id}:{mobile}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 >= rate

    def failure_rate_for(self, content: str) -> float:
        """The failure share of a message with this text: its fragment's in ``content_failure_rates``, else the
        general one."""
        for fragment, rate in self.config.content_failure_rates.items():
            if fragment and fragment in content:
                return float(rate)
        return self.config.failure_rate

    def _release_due(self, vendor: str) -> None:
        now = time.monotonic()
        due = self._due[vendor]
        ready = self._ready[vendor]
        pushed = (vendor, "reports") in self.push_urls
        while due and due[0][0] <= now:
            message = heapq.heappop(due)[2]
            message.report_at = datetime.now(timezone.utc)
            (self._push_reports[vendor] if pushed else ready).append(message)
            if message.delivered and self.config.reply_rate > 0 and self._replies(message):
                self._queue_inbound(
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
            self.ledger.handed_out_reports(vendor, taken)
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
            self._queue_inbound(message)
            return message

    def _queue_inbound(self, message: Inbound) -> None:
        """Into the push queue when inbound push is on for the vendor, else the pull queue."""
        if (message.vendor, "inbound") in self.push_urls:
            self._push_inbound[message.vendor].append(message)
        else:
            self.inbound[message.vendor].append(message)

    def take_inbound(self, vendor: str, limit: int | None = None) -> list[Inbound]:
        with self.lock:
            self._release_due(vendor)
            queue = self.inbound[vendor]
            count = len(queue) if limit is None else min(limit, len(queue))
            taken = [queue.popleft() for _ in range(count)]
            self.ledger.handed_out_inbound(vendor, taken)
            return taken

    # ---------------------------------------------------------------- push

    def configure_push(self, vendor: str, kind: str, url: str | None) -> None:
        """Push ``kind`` of ``vendor`` to ``url`` from now on; ``None`` or ``""`` goes back to pull queues.

        Raises ValueError for an unknown vendor or kind, a vendor whose document has no such push,
        or a URL that is not http(s).
        """
        if vendor not in self.accounts:
            raise ValueError(f"unknown vendor {vendor!r}")
        if kind not in PUSH_KINDS:
            raise ValueError(f"push kind must be one of {list(PUSH_KINDS)}, got {kind!r}")
        protocol = self.protocols.get(vendor)
        if protocol is None or kind not in protocol.push_kinds:
            raise ValueError(f"{vendor} has no {kind} push")
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("push url must start with http:// or https://")
        with self.lock:
            if url:
                self.push_urls[(vendor, kind)] = url
                return
            self.push_urls.pop((vendor, kind), None)
            # what waited for a push can be pulled again, oldest first
            if kind == "reports":
                waiting = self._push_reports.pop(vendor, deque())
                self._ready[vendor].extendleft(reversed(waiting))
            else:
                waiting_inbound = self._push_inbound.pop(vendor, deque())
                self.inbound[vendor].extendleft(reversed(waiting_inbound))

    def take_push(self, vendor: str, kind: str) -> list[Any]:
        """Everything waiting to be pushed for ``vendor`` and ``kind`` (reports: those now due), taken once."""
        with self.lock:
            self._release_due(vendor)
            queue: deque[Any] = self._push_reports[vendor] if kind == "reports" else self._push_inbound[vendor]
            taken = list(queue)
            queue.clear()
            if kind == "reports":
                self.ledger.handed_out_reports(vendor, taken)
            else:
                self.ledger.handed_out_inbound(vendor, taken)
            for item in taken:
                if isinstance(item, Message):
                    item.reported = True
            return taken

    def push_due(self, vendor: str | None = None) -> list[PushOutcome]:
        """POST what is due to every configured push URL (of ``vendor`` only, if given); one outcome per POST.

        The HTTP calls happen outside the gateway lock, so a slow customer blocks no simulated API.
        """
        with self.lock:
            targets = [(key, url) for key, url in self.push_urls.items() if vendor in (None, key[0])]
        outcomes: list[PushOutcome] = []
        for (push_vendor, kind), url in targets:
            items = self.take_push(push_vendor, kind)
            if not items:
                continue
            protocol = self.protocols[push_vendor]
            payloads = protocol.push_reports(items) if kind == "reports" else protocol.push_inbound(items)
            for payload in payloads:
                outcomes.append(self._post_push(protocol, kind, url, payload))
        return outcomes

    def _post_push(self, protocol: VendorProtocol, kind: str, url: str, payload: PushPayload) -> PushOutcome:
        """POST one payload, again up to ``protocol.push_retries`` times while it is not acknowledged."""
        import requests

        outcome = PushOutcome(protocol.vendor, kind, url.split("?", 1)[0], payload.records)
        for _ in range(1 + protocol.push_retries):
            outcome.attempts += 1
            try:
                response = requests.post(url, data=payload.body, headers=payload.headers, timeout=PUSH_TIMEOUT)
            except requests.RequestException as exc:
                outcome.status, outcome.error = None, type(exc).__name__
                continue
            outcome.status = response.status_code
            outcome.acknowledged = protocol.push_acknowledged(response.status_code, response.content)
            outcome.error = "" if outcome.acknowledged else f"not acknowledged: {response.text[:120]!r}"
            if outcome.acknowledged:
                break
        with self.lock:
            self.push_log.append(outcome)
        return outcome

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
            self._arrivals[vendor].append(time.monotonic())

    def busiest_second(self, vendor: str) -> int:
        """The most requests of ``vendor`` that arrived within any one second: what a QPS limit sees."""
        with self.lock:
            arrivals = list(self._arrivals[vendor])
        most, first = 0, 0
        for last, arrived in enumerate(arrivals):
            while arrived - arrivals[first] >= 1.0:
                first += 1
            most = max(most, last - first + 1)
        return most

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
                "push_urls": sorted(f"{v} {k}" for v, k in self.push_urls),
                "push_waiting": {
                    **{f"{v} reports": len(q) for v, q in self._push_reports.items() if q},
                    **{f"{v} inbound": len(q) for v, q in self._push_inbound.items() if q},
                },
                "pushes": [outcome.to_dict() for outcome in self.push_log],
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
#: reads a request's body (or query) as an endpoint takes it; ``BadRequest`` when it cannot
BodyReader = Callable[[SimRequest], Any]
#: a check of a request before its body is read; raises ``Refusal``
Check = Callable[[SimRequest], None]


def json_object(request: SimRequest) -> Any:
    """The body as a JSON object."""
    body = request.json()
    if not isinstance(body, Mapping):
        raise BadRequest("body must be a JSON object")
    return body


def form_fields(request: SimRequest) -> dict[str, str]:
    return request.form()


def query_fields(request: SimRequest) -> dict[str, str]:
    return request.query


def no_body(request: SimRequest) -> None:
    return None


def checked_mobiles(
    text: str,
    most: int,
    normalize: Callable[[str], str | None],
    too_many: Callable[[int], SimResponse],
    malformed: Callable[[str], SimResponse],
) -> list[str]:
    """A send's comma-separated numbers; more than ``most``, or any the vendor does not take as it is
    (the first five named), is refused with the vendor's own reply (``Refusal``)."""
    mobiles = text.split(",")
    if len(mobiles) > most:
        raise Refusal(too_many(len(mobiles)))
    bad = [m for m in mobiles if normalize(m) != m]
    if bad:
        raise Refusal(malformed(",".join(bad[:5])))
    return mobiles


def media_type_check(expected: str | frozenset[str], refusal: Callable[[str], SimResponse]) -> Check:
    """A check that the request's media type is ``expected`` (or one of them); ``refusal`` gets the one it has."""
    accepted = frozenset({expected}) if isinstance(expected, str) else expected

    def check(request: SimRequest) -> None:
        if request.content_type not in accepted:
            raise Refusal(refusal(request.content_type))

    return check


class VendorProtocol:
    """One vendor's wire protocol on top of ``Gateway``: a table of routes and their handlers."""

    vendor: ClassVar[str] = ""
    #: whether the vendor is served over HTTPS (cloud_mas) rather than plain HTTP
    https: ClassVar[bool] = False
    #: what the vendor's document says it can push: a subset of ``PUSH_KINDS`` (most push both)
    push_kinds: ClassVar[frozenset[str]] = frozenset(PUSH_KINDS)
    #: how many times the vendor POSTs a push again that the customer did not acknowledge
    push_retries: ClassVar[int] = 0
    #: paths the vendor serves at most once per ``SimConfig.pull_interval`` per account (cloud_mas pulls),
    #: checked on every request as it arrives, a faulted one included
    paced_paths: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        gateway.protocols[self.vendor] = self

    @property
    def account(self) -> Account:
        return self.gateway.account(self.vendor)

    def routes(self) -> dict[tuple[str, str], Handler]:
        """(METHOD, path) -> handler."""
        raise NotImplementedError

    @staticmethod
    def route(
        endpoint: Callable[[Any], SimResponse],
        read: BodyReader,
        malformed: Callable[[str], SimResponse],
        *checks: Check,
    ) -> Handler:
        """One route as the vendor serves it: its checks of the request in order (each may refuse it), the
        body read as the endpoint takes it (one that cannot be read is answered ``malformed(problem)``),
        then the endpoint, which may refuse it too (``Refusal``)."""

        def handler(request: SimRequest) -> SimResponse:
            try:
                for check in checks:
                    check(request)
                body = read(request)
            except BadRequest as exc:
                return malformed(str(exc))
            except Refusal as exc:
                return exc.response
            try:
                return endpoint(body)
            except Refusal as exc:
                return exc.response

        return handler

    def too_fast(self, path: str) -> SimResponse:
        """The answer to a paced path called again within the interval: 429 with ``Retry-After``."""
        wait = max(1, math.ceil(self.gateway.config.pull_interval))
        return SimResponse(
            429,
            f"too many requests: one {path} call per {wait} seconds".encode(),
            "text/plain;charset=utf-8",
            {"Retry-After": str(wait)},
        )

    def plain_http_routes(self) -> dict[tuple[str, str], Handler]:
        """Routes an HTTPS vendor also serves on the plain HTTP port (Cloud MAS's HTTP accounts)."""
        return {}

    def garbage_reply(self) -> SimResponse:
        return SimResponse.text("<<not json>> upstream said: ok?", 200)

    # ---------------------------------------------------------------- push (vendors with a push API)

    def push_reports(self, messages: Sequence[Message]) -> list[PushPayload]:
        """The POSTs that carry these due reports, in the vendor's push format."""
        raise NotImplementedError(f"{self.vendor} has no report push")

    def push_inbound(self, messages: Sequence[Inbound]) -> list[PushPayload]:
        """The POSTs that carry these inbound messages, in the vendor's push format."""
        raise NotImplementedError(f"{self.vendor} has no inbound push")

    def push_acknowledged(self, status: int, body: bytes) -> bool:
        """Whether the customer's answer counts as received; by default any HTTP 200."""
        return status == 200


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into runs of at most ``size``, for vendors that push lists."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def json_push(payload: Any, records: int, headers: Mapping[str, str] | None = None) -> PushPayload:
    """A JSON push body in UTF-8, as the vendors push."""
    body = json_bytes(payload)
    return PushPayload(body, {"Content-Type": "application/json;charset=utf-8", **(headers or {})}, records)


def json_reply_code(body: bytes) -> Any:
    """The ``code`` of a JSON object answer, or None when the answer is not one."""
    try:
        reply = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return reply.get("code") if isinstance(reply, dict) else None
