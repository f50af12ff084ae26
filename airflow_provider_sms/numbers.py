"""Mobile number normalisation, batch splitting and message-part counting.

Pure functions with no I/O, shared by the hooks, the operators and the simulator, so that all of
them agree on what a valid number is and how a list is cut into requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

_SEPARATORS = re.compile(r"[\s\-().]")
_CHINA_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_E164_DIGITS = re.compile(r"[1-9]\d{6,14}", re.ASCII)
_MASKED = re.compile(r"(\d+)\*+(\d+)", re.ASCII)

SINGLE_PART_CHARS = 70
MULTI_PART_CHARS = 67


def split_mobiles(mobiles: str | Iterable[str]) -> list[str]:
    """Accept a comma/semicolon/newline separated string or any iterable of numbers."""
    if isinstance(mobiles, str):
        return [m for m in re.split(r"[,;\n，]", mobiles) if m.strip()]
    return [str(m) for m in mobiles]


def normalize_domestic(raw: str) -> str | None:
    """A mainland China mobile as 11 digits, or None when it is not one."""
    number = _SEPARATORS.sub("", raw)
    if number.startswith("+86"):
        number = number[3:]
    elif number.startswith("0086"):
        number = number[4:]
    elif len(number) == 13 and number.startswith("86"):
        number = number[2:]
    return number if _CHINA_MOBILE.fullmatch(number) else None


def normalize_international(raw: str) -> str | None:
    """Country code and number, digits only, no ``+`` (``8613800138000``), or None."""
    number = _SEPARATORS.sub("", raw)
    if number.startswith("+"):
        number = number[1:]
    elif number.startswith("00"):
        number = number[2:]
    return number if _E164_DIGITS.fullmatch(number) else None


def normalize_mobiles(mobiles: str | Iterable[str], *, international: bool) -> tuple[list[str], list[str]]:
    """Normalise and de-duplicate (first occurrence wins); returns (valid, invalid) in input order."""
    normalize = normalize_international if international else normalize_domestic
    valid: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    for raw in split_mobiles(mobiles):
        number = normalize(raw.strip())
        if number is None:
            invalid.append(raw.strip())
        elif number not in seen:
            seen.add(number)
            valid.append(number)
    return valid, invalid


def chunk_mobiles(mobiles: Sequence[str], *, max_count: int, max_chars: int | None = None) -> Iterator[list[str]]:
    """Cut a list into as few comma-joined requests as both caps allow, keeping order."""
    chunk: list[str] = []
    chars = 0
    for mobile in mobiles:
        added = len(mobile) + (1 if chunk else 0)
        if chunk and (len(chunk) >= max_count or (max_chars is not None and chars + added > max_chars)):
            yield chunk
            chunk, chars, added = [], 0, len(mobile)
        chunk.append(mobile)
        chars += added
    if chunk:
        yield chunk


def message_parts(text: str) -> int:
    """How many SMS parts a text costs: 70 characters fit one, longer texts are billed per 67."""
    length = len(text)
    if length <= SINGLE_PART_CHARS:
        return 1
    return -(-length // MULTI_PART_CHARS)


def mask_matches(mask: str, mobile: str) -> bool:
    """Whether a masked number such as ``135****9831`` can be ``mobile``."""
    if mask == mobile:
        return True
    match = _MASKED.fullmatch(mask)
    if not match or len(mask) != len(mobile):
        return False
    head, tail = match.groups()
    return mobile.startswith(head) and mobile.endswith(tail)
