"""Vendor-neutral records that every hook returns.

They are small frozen dataclasses so that they can be compared, hashed and passed through XCom
(``to_dict()`` gives plain JSON types; ``from_dict()`` reverses it). Times are timezone-aware UTC,
ids are strings (some vendors hand out ids wider than 64 bits), money is a ``Decimal``.
``raw`` keeps the vendor's own record for debugging; it never holds a credential.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final, Literal, NamedTuple, TypeVar

DeliveryStatus = Literal["delivered", "failed", "pending", "expired"]
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
PENDING: Final = "pending"
#: no final report came within the connection's report deadline: final, so waits end, and counted apart;
#: a real report that still comes replaces it
EXPIRED: Final = "expired"
FINAL_STATUSES: Final = frozenset({DELIVERED, FAILED, EXPIRED})

_R = TypeVar("_R", bound="_Record")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} in a record: convert vendor times to UTC first")
    return value.astimezone(timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _plain_json(value: Any) -> Any:
    """Vendor replies are parsed with exact Decimals; XCom wants plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


class _Record:
    """Shared (de)serialisation for the frozen record dataclasses."""

    _time_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self._time_fields:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _to_utc(value))

    def to_dict(self, *, include_raw: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "raw":
                if include_raw:
                    out["raw"] = _plain_json(self.raw)  # type: ignore[attr-defined]
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {sorted(unknown)}")
        kwargs = dict(data)
        for name in cls._time_fields:
            if name in kwargs:
                kwargs[name] = _parse_time(kwargs[name])
        return cls(**kwargs)


@dataclass(frozen=True)
class SendReceipt(_Record):
    """One request the vendor accepted: its batch id and the numbers it covered."""

    vendor: str
    batch_id: str
    mobiles: tuple[str, ...]
    submitted_at: datetime
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    #: the vendor refused this request as a repeat of one it had already accepted (same client reference):
    #: the earlier request stands, and ``batch_id`` is its batch
    already_accepted: bool = field(default=False, compare=False)

    _time_fields: ClassVar[tuple[str, ...]] = ("submitted_at",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mobiles", tuple(self.mobiles))
        super().__post_init__()


@dataclass(frozen=True)
class DeliveryReport(_Record):
    """What the vendor said became of one message to one number.

    ``mobile`` is as the vendor reports it: ``account_md5`` masks the middle digits
    (``135****9831``); the store matches such reports to the sent number by batch and mask.
    """

    vendor: str
    batch_id: str
    mobile: str
    status: DeliveryStatus
    code: str
    description: str
    reported_at: datetime | None
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    _time_fields: ClassVar[tuple[str, ...]] = ("reported_at",)

    def __post_init__(self) -> None:
        if self.status not in (DELIVERED, FAILED, PENDING, EXPIRED):
            raise ValueError(f"unknown delivery status {self.status!r}")
        super().__post_init__()

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class InboundMessage(_Record):
    """A reply (MO message) sent by a phone to the account."""

    vendor: str
    mobile: str
    content: str
    received_at: datetime | None
    ext_no: str = ""
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    _time_fields: ClassVar[tuple[str, ...]] = ("received_at",)


@dataclass(frozen=True)
class Balance(_Record):
    """Account balance as the vendor states it; ``currency`` is empty where the vendor does not say."""

    vendor: str
    amount: Decimal
    currency: str = ""
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            object.__setattr__(self, "amount", Decimal(str(self.amount)))
        super().__post_init__()


# States of a request row. A plan's rows start ``planned``; ``sending`` is the intent, durable before the
# request's bytes leave; the vendor's answer makes it ``accepted`` (or ``unknown`` when no clear answer came).
PLANNED: Final = "planned"
SENDING: Final = "sending"
ACCEPTED: Final = "accepted"
UNKNOWN: Final = "unknown"
SKIPPED: Final = "skipped"  # every number of a not-yet-sent request opted out
CANCELLED: Final = "cancelled"  # a not-yet-sent request of a plan that a new plan replaced
MOVED: Final = "moved"  # a request its connection surely did not accept, handed to the next (fallback_conn_ids)


@dataclass(frozen=True)
class PlanRequest:
    """One request of a stored send plan: its key, place, numbers and how far it got."""

    key: str
    index: int
    state: str
    mobiles: tuple[str, ...]
    batch_id: str | None = None
    sending_at: datetime | None = None
    reason: str | None = None
    #: ``sending_at`` exactly as the store holds it ("" for none): what a claim on the row compares
    sending_mark: str = ""


class IntentClaim(NamedTuple):
    """A request a try means to send, as that try last read its row. Its intent is stored only if no other
    try changed the row since (state and intent time both as read), so that a try Airflow took for dead and
    its retry never both send one request."""

    key: str
    state: str
    sending_at: str

    @classmethod
    def of(cls, request: PlanRequest) -> IntentClaim:
        return cls(request.key, request.state, request.sending_mark)


@dataclass(frozen=True)
class StoredPlan:
    """The requests a task instance's first try planned; every retry executes these, not a new cut.

    ``task_key`` names the task instance, ``plan_key`` this plan of it (``generation`` counts plans
    started anew on purpose), ``inputs`` the digests of what it was planned from, ``report_seq`` the
    delivery-report sequence when it was stored: reports after it can be evidence for unknown outcomes.
    """

    task_key: str
    plan_key: str
    generation: int
    inputs: Mapping[str, Any]
    numbers: int
    opted_out: int
    requests: tuple[PlanRequest, ...]
    report_seq: int = 0


@dataclass(frozen=True)
class SaveResult:
    """What storing a batch of records did, per input record: newly stored, changed a stored row, or
    left it as it was."""

    inserted: int
    updated: int
    unchanged: int
    #: reports only: how many stored reports took each status (inserted or changed), for the metrics;
    #: not part of equality, which compares what became of the input records
    statuses: Mapping[str, int] = field(default_factory=dict, compare=False)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged
