"""What a vendor's push is, apart from HTTP: which kinds it pushes, how a body holds its records, what the
vendor wants back, and how it proves who it is.

Each vendor hook carries its own (``SmsHook.push``, beside the vendor's pull formats in its module); the
receiver (``receiver/``) knows no vendor by name. Plain code: importing it loads neither the hook base
nor ``requests``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from airflow_provider_sms.features import INBOUND, REPORTS

KINDS: Final = (REPORTS, INBOUND)

#: reads a request header by name (any case), None when absent
HeaderReader = Callable[[str], "str | None"]


class PushRejected(Exception):
    """A pushed body that cannot be taken: ``status`` is the HTTP status to answer (400, 413, 415)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class Answer:
    """An HTTP status and a JSON body, in the vendor's own shape."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison (in the length of ``expected``) of a credential."""
    return hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8"))


class VendorPush:
    """One vendor's push; the defaults are paasw_v2's (``{count, data: [...]}``, ``{"code": 0}`` answers)."""

    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    #: the vendor authenticates itself (``credentials_ok``), so a ``callback_secret`` is optional
    header_auth: ClassVar[bool] = False
    #: the vendor may post form fields instead of JSON (account_md5, whose whole API is forms)
    accepts_form: ClassVar[bool] = False
    #: the vendor pushes a record again when it was not acknowledged; if not, a lost one exists only in the log
    repushes: ClassVar[bool] = True
    #: the key that holds the record list in an envelope object (``{count, data: [...]}``)
    envelope_key: ClassVar[str] = "data"

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor

    def credentials_ok(self, login: str, password: str, header: HeaderReader) -> bool:
        """Whether the request carries the account's own credentials; vendors without such a rule: True."""
        return True

    def items(self, payload: Any, kind: str) -> list[Mapping[str, Any]]:
        """The records of a decoded body: an envelope's list, a bare list, or one record.

        An object with ``data`` or ``count`` is an envelope (no vendor's record has either field);
        any other object is one record, whose fields the hook then checks.
        """
        if isinstance(payload, list):
            items: Any = payload
        elif isinstance(payload, Mapping):
            items = self._envelope(payload) if self.envelope_key in payload or "count" in payload else [payload]
        else:
            raise PushRejected(400, f"the body should be a JSON object or list, got {type(payload).__name__}")
        bad = [i for i, item in enumerate(items) if not isinstance(item, Mapping)]
        if bad:
            raise PushRejected(400, f"record #{bad[0] + 1} of {len(items)} is not a JSON object")
        return list(items)

    def _envelope(self, payload: Mapping[str, Any]) -> list[Any]:
        """The envelope's records; a ``count`` (paasw_v2's ``{count, data}``) must match them.

        A count that disagrees with the records is a truncated or forged body: acknowledging it would
        tell the vendor that records were stored which never arrived.
        """
        data = payload.get(self.envelope_key)
        try:
            count = announced_count(payload.get("count"))
        except ValueError as exc:
            raise PushRejected(400, str(exc)[:200]) from None
        if data is None:
            if count:
                raise PushRejected(400, f"the body announces {count} records but carries no {self.envelope_key!r}")
            return []
        if isinstance(data, Mapping):
            records: list[Any] = [data]
        elif isinstance(data, list):
            records = data
        else:
            raise PushRejected(400, f"{self.envelope_key!r} should be a list, got {type(data).__name__}")
        if count is not None and count != len(records):
            raise PushRejected(
                400, f"the body announces {count} records but {self.envelope_key!r} carries {len(records)}"
            )
        return records

    # ------------------------------------------------------------------ answers

    def ok(self) -> Answer:
        return Answer(200, {"code": 0, "message": "ok"})

    def refused(self, status: int, problem: str) -> Answer:
        """A 4xx: retrying the same request cannot help."""
        return Answer(status, {"code": status, "message": problem})

    def not_stored(self) -> Answer:
        """The records were not stored (store or configuration failure): the vendor should push again."""
        return Answer(503, {"code": 503, "message": "not stored; push again later"})


def announced_count(value: Any) -> int | None:
    """An envelope's ``count`` (pushed or pulled): None when absent, else a non-negative integer (a digit
    string too); anything else is a ValueError."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"'count' should be a non-negative integer, got {value!r}")


__all__ = ["INBOUND", "KINDS", "REPORTS", "Answer", "PushRejected", "VendorPush", "announced_count", "same_secret"]
