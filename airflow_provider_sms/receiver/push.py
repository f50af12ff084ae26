"""Pushed bodies decoded: media type, charset, JSON (or a form), nesting; then the records, by the vendor's format.

Pure functions, no HTTP framework: the FastAPI app in ``app.py`` calls them. Each vendor's format (its
envelope, its answers, its own authentication) is its hook's ``push`` (``hooks/push.py`` and the vendor
modules), and the records are parsed by the hooks' ``report_from_record`` / ``inbound_from_record``, the
same code that reads pulled records. Each format also takes the shapes its neighbours use (a bare
list, one object, a ``{data: [...]}`` envelope), since the documents' samples and prose disagree in places.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from airflow_provider_sms.hooks.push import INBOUND, KINDS, REPORTS, Answer, PushRejected, VendorPush

#: media types read as JSON (the documents say JSON; some senders label it text/plain or not at all)
JSON_TYPES: Final = frozenset({"", "application/json", "text/json", "text/plain"})
FORM_TYPE: Final = "application/x-www-form-urlencoded"
#: deepest nesting of objects and lists a pushed body may have; vendor records are flat (an envelope,
#: a list, a record: 3 levels), and a deeper body is hostile or broken, not a push
MAX_JSON_DEPTH: Final = 32


def push_format(conn_type: str | None) -> VendorPush | None:
    """The push format of an ``sms_*`` connection type (its hook's ``push``); None for other types and
    vendors that push nothing. Imports that vendor's hook module: call it where blocking is fine."""
    from airflow_provider_sms.hooks import HOOK_BY_CONN_TYPE, hook_class_for_conn_type

    if conn_type not in HOOK_BY_CONN_TYPE:
        return None
    return hook_class_for_conn_type(conn_type).push


# ---------------------------------------------------------------------- body decoding


@functools.lru_cache(maxsize=64)
def media_type(content_type: str | None) -> tuple[str, str]:
    """``(media type, charset)`` of a Content-Type header, lower case; the charset defaults to utf-8.

    Kept for the few headers a receiver sees: each push asks for it three times (the media type check
    before the body is read, then the decoding), and vendors send the same header on every push."""
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
    "REPORTS",
    "Answer",
    "PushRejected",
    "VendorPush",
    "check_media_type",
    "decode_body",
    "media_type",
    "push_format",
    "push_items",
]
