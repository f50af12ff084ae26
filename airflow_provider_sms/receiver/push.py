"""The four vendors' push formats: how a pushed body becomes records, and what each vendor wants back.

Pure functions and small classes, no HTTP framework: the FastAPI app in ``app.py`` calls them, and
the records they return are parsed by the vendor hooks' ``report_from_record`` /
``inbound_from_record``, the same code that reads pulled records.

==============  ==========================================  =====================================
vendor          body (one POST)                             answer once stored
==============  ==========================================  =====================================
``paasw_v2``    ``{count, data: [...]}`` (pull formats)     HTTP 200 ``{"code": 0, ...}``
``paasw_v1``    a JSON list of records                      HTTP 200 ``{"code": "10000", ...}``
``intl``        one report object, appKey/appSecret headers HTTP 200 ``{"code": 0, "msg": "ok"}``
``account_md5`` one object (JSON, or a form post)           HTTP 200
==============  ==========================================  =====================================

Each vendor's parser also takes the shapes its neighbours use (a bare list, one object, a
``{data: [...]}`` envelope), since the documents' samples and prose disagree in places.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl

REPORTS: Final = "reports"
INBOUND: Final = "inbound"
KINDS: Final = (REPORTS, INBOUND)

#: media types read as JSON (the documents say JSON; some senders label it text/plain or not at all)
JSON_TYPES: Final = frozenset({"", "application/json", "text/json", "text/plain"})
FORM_TYPE: Final = "application/x-www-form-urlencoded"
#: deepest nesting of objects and lists a pushed body may have; vendor records are flat (an envelope,
#: a list, a record: 3 levels), and a deeper body is hostile or broken, not a push
MAX_JSON_DEPTH: Final = 32


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


class VendorPush:
    """One vendor's push: which kinds it pushes, how its body is laid out, and its answers."""

    vendor: ClassVar[str] = ""
    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    #: the vendor authenticates itself with the account's appKey/appSecret headers (intl)
    header_auth: ClassVar[bool] = False
    #: the vendor may post form fields instead of JSON (account_md5, whose whole API is forms)
    accepts_form: ClassVar[bool] = False
    #: the key that holds the record list in an envelope object (``{count, data: [...]}``)
    envelope_key: ClassVar[str] = "data"

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
        count = _count(payload.get("count"))
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


class PaaswV2Push(VendorPush):
    """``{count, data: [...]}`` (§11, §12). The document specifies no answer: the gateway's own shape is used."""

    vendor = "paasw_v2"


class PaaswV1Push(VendorPush):
    """A JSON list of records; the answer is ``{"code": "10000", "msg": ...}`` as the inbound push shows."""

    vendor = "paasw_v1"

    def ok(self) -> Answer:
        return Answer(200, {"code": "10000", "msg": "请求成功"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": str(status), "msg": problem})

    def not_stored(self) -> Answer:
        return Answer(503, {"code": "503", "msg": "not stored; push again later"})


#: intl's own result codes (chapter 6) for the refusals the receiver makes
_INTL_CODES: Final = {400: 1001, 413: 1001, 415: 1001, 401: 1003, 403: 1004}
INTL_NOT_STORED_CODE: Final = 9999


class IntlPush(VendorPush):
    """One report object per POST (chapter 5), authenticated by the account's appKey/appSecret headers.

    The answer is ``{"code": 0, "msg": "ok"}``; any other code makes the vendor push twice more (§5.6).
    A store failure is answered with HTTP 200 and code 9999: the document keys the re-push on the
    code, and an HTTP client that throws on a 5xx might never read it.
    """

    vendor = "intl"
    kinds = frozenset({REPORTS})
    header_auth = True

    def ok(self) -> Answer:
        return Answer(200, {"code": 0, "msg": "ok"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": _INTL_CODES.get(status, INTL_NOT_STORED_CODE), "msg": problem})

    def not_stored(self) -> Answer:
        return Answer(200, {"code": INTL_NOT_STORED_CODE, "msg": "not stored; push again"})


class AccountMd5Push(VendorPush):
    """One object per POST, pushed once only: HTTP 200 is answered only once it is stored."""

    vendor = "account_md5"
    accepts_form = True

    def ok(self) -> Answer:
        return Answer(200, {"code": "00", "message": "成功"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": str(status), "message": problem})

    def not_stored(self) -> Answer:
        return Answer(503, {"code": "503", "message": "not stored"})


PUSH_FORMATS: Final[Mapping[str, VendorPush]] = {
    push.vendor: push for push in (PaaswV2Push(), PaaswV1Push(), IntlPush(), AccountMd5Push())
}


def push_format(conn_type: str | None) -> VendorPush | None:
    """The push format of an ``sms_<vendor>`` connection type; None for other types and ``sms_cloud_mas``."""
    if not conn_type or not conn_type.startswith("sms_"):
        return None
    return PUSH_FORMATS.get(conn_type[len("sms_") :])


def _count(value: Any) -> int | None:
    """An envelope's ``count``: None when absent, else a non-negative integer (a digit string too)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise PushRejected(400, f"'count' should be a non-negative integer, got {value!r}"[:200])


# ---------------------------------------------------------------------- body decoding


def media_type(content_type: str | None) -> tuple[str, str]:
    """``(media type, charset)`` of a Content-Type header, lower case; the charset defaults to utf-8."""
    media, _, params = (content_type or "").partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    return media.strip().lower(), charset


def check_media_type(push: VendorPush, content_type: str | None) -> None:
    """Refuse (415) a media type the vendor never sends, before the body is read."""
    media, charset = media_type(content_type)
    if not (media in JSON_TYPES or media.endswith("+json") or (push.accepts_form and media == FORM_TYPE)):
        accepted = "JSON" + (" or a form" if push.accepts_form else "")
        raise PushRejected(415, f"{push.vendor} pushes are {accepted}, not {media!r}")
    try:
        codecs.lookup(charset)
    except LookupError:
        raise PushRejected(415, f"unknown charset {charset!r}") from None


def decode_body(push: VendorPush, body: bytes, content_type: str | None) -> Any:
    """The body as JSON (exact decimals, wide integers) or, where the vendor may post forms, form fields."""
    from airflow_provider_sms.hooks.base import loads_exact

    check_media_type(push, content_type)
    media, charset = media_type(content_type)
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise PushRejected(400, f"the body is not valid {charset}") from None
    if media == FORM_TYPE:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise PushRejected(400, "the body is not a valid form") from None
        return dict(pairs)
    if not text.strip():
        raise PushRejected(400, "the body is empty")
    try:
        payload = loads_exact(text.lstrip("\ufeff"))
    except ValueError as exc:
        raise PushRejected(400, f"the body is not JSON: {exc}") from None
    except RecursionError:  # nesting deeper than the parser goes
        raise PushRejected(400, f"the body nests more than {MAX_JSON_DEPTH} levels deep") from None
    if _nested_deeper_than(payload, MAX_JSON_DEPTH):
        raise PushRejected(400, f"the body nests more than {MAX_JSON_DEPTH} levels deep")
    return payload


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and lists nest more than ``limit`` levels; iterative, so any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def push_items(push: VendorPush, kind: str, body: bytes, content_type: str | None) -> list[Mapping[str, Any]]:
    """Decode a pushed body and return its records (still in the vendor's field names)."""
    return push.items(decode_body(push, body, content_type), kind)


__all__ = [
    "INBOUND",
    "KINDS",
    "PUSH_FORMATS",
    "REPORTS",
    "AccountMd5Push",
    "Answer",
    "IntlPush",
    "PaaswV1Push",
    "PaaswV2Push",
    "PushRejected",
    "VendorPush",
    "check_media_type",
    "decode_body",
    "media_type",
    "push_format",
    "push_items",
]
