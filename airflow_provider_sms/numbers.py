"""Mobile number normalisation, batch splitting and message-part counting.

Pure functions with no I/O, shared by the hooks, the operators and the simulator, so that all of
them agree on what a valid number is and how a list is cut into requests. International numbers
other than mainland mobiles are checked with ``phonenumbers``, imported on the first such number
(never by importing this module: a DAG file's parse does not pay for it). The simulator checks only
their form (``normalize_international``), as the vendor's gateway is an implementation of its own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

_SEPARATORS = re.compile(r"[\s\-().]")
_CHINA_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_E164_DIGITS = re.compile(r"[1-9]\d{6,14}", re.ASCII)
_MASKED = re.compile(r"(\d+)\*+(\d+)", re.ASCII)
# A list already in normal form, joined by newlines, is checked by a regex scan in C instead of a
# Python call per number: 100,000 numbers cost ~4 ms this way, ~0.1 s the other. The quantifiers are
# possessive: no number can end or start anywhere else, so nothing is given back, and the engine keeps
# no backtracking state per number (a plain ``*`` held ~13 MB for a scan of 100,000).
_ALL_DOMESTIC = re.compile(r"1[3-9]\d{9}(?:\n1[3-9]\d{9})*+", re.ASCII)
# intl: a list of mainland mobiles with their country code (8613800138000) is the fast path; any other
# international number goes through phonenumbers, a number at a time (~7-16 µs each)
_CHINA_MOBILE_INTERNATIONAL = re.compile(r"861[3-9]\d{9}", re.ASCII)
_ALL_CHINA_INTERNATIONAL = re.compile(r"861[3-9]\d{9}+(?:\n861[3-9]\d{9}+)*+", re.ASCII)
_PARSE_ERROR_CODE = re.compile(r"^\(\d+\) ")  # "(1) The string supplied did not seem to be a phone number."
_PLAIN_CHECK_SLICE = 20_000  # numbers joined per scan: the joined copy stays small (~0.3 MB)

SINGLE_PART_CHARS = 70
MULTI_PART_CHARS = 67


def split_mobiles(mobiles: str | Iterable[str]) -> list[str]:
    """Accept a comma/semicolon/newline separated string or any iterable of numbers.

    Anything else (``None``, a single int) is a ``TypeError`` naming the argument, raised here because
    every send path splits its numbers here before anything goes out.
    """
    if isinstance(mobiles, str):
        return [m for m in re.split(r"[,;\n，]", mobiles) if m.strip()]
    if not isinstance(mobiles, Iterable):
        raise TypeError(f"mobiles must be a list of numbers or a comma-separated string, got {type(mobiles).__name__}")
    return as_strings(mobiles)


def as_strings(items: Iterable[object]) -> list[str]:
    """The items as a new list of ``str``, each as ``str()`` makes it.

    The usual list holds plain ``str`` already: checking their types costs half of calling ``str()``
    on each (100,000 numbers: ~2 ms against ~4 ms). Any other item, a ``str`` subclass included (its
    ``__str__`` may differ), has every item converted as before.
    """
    listed = list(items)
    if set(map(type, listed)) <= {str}:
        return cast("list[str]", listed)
    return list(map(str, listed))


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


class InvalidNumber(str):
    """A number that cannot be sent, as given (stripped), with ``reason`` saying why.

    Still equal to the ``str`` it was given as; ``SmsInvalidNumbersError`` puts the reason after it.
    """

    reason: str

    def __new__(cls, number: str, reason: str) -> InvalidNumber:
        self = super().__new__(cls, number)
        self.reason = reason
        return self

    def __reduce__(self) -> tuple[type[InvalidNumber], tuple[str, str]]:
        return (InvalidNumber, (str(self), self.reason))


def international_mobile(raw: str) -> str | InvalidNumber:
    """A mobile as intl's wire takes it, country code and number in digits without ``+``
    (``447400123456``), or an ``InvalidNumber`` saying why it is not one.

    Every number is read as its country code and number, ``+`` and ``00`` optional, as the vendor reads
    it: ``15012345678`` is +1 501-234-5678. A mainland China mobile (``86``, then ``1[3-9]`` and nine
    digits) is taken by that rule alone, as the domestic vendors take it, without ``phonenumbers``. Any
    other number must be, by ``phonenumbers``, a valid number of its country (length and prefix) of a
    type that receives SMS: mobile, or fixed-line-or-mobile where the numbering plan does not tell them
    apart (the US and Canada); fixed lines, toll-free, premium-rate, VoIP numbers, pagers... are refused.
    A valid number is returned in E.164 digits: ``+44 (0)7400 123456`` becomes ``447400123456``.
    """
    given = raw.strip()
    number = normalize_international(given)
    if number is None:
        return InvalidNumber(
            given, "is not a phone number in international form (the country code and number: 7 to 15 digits)"
        )
    if _CHINA_MOBILE_INTERNATIONAL.fullmatch(number):
        return number
    return _checked_by_phonenumbers(given, number)


def _checked_by_phonenumbers(given: str, digits: str) -> str | InvalidNumber:
    import phonenumbers  # here, not at the top: importing the provider and mainland-only lists never load it

    sms_kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    # The usual case, a mobile in E.164 digits, without parse() (a third of the cost). number_type() is
    # MOBILE or FIXED_LINE_OR_MOBILE only for a number that is_valid_number() accepts: the same region
    # lookup and the same test of its patterns (UNKNOWN is what makes a number invalid), so that would
    # run them twice for nothing; numbers that are not both go on to parse() and is_valid_number().
    literal = _as_written(digits)
    if literal is not None and phonenumbers.number_type(literal) in sms_kinds:
        return digits
    try:  # parse() also reads what a person writes: a trunk prefix after the code (+44 (0)7400...), Italy's 0
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return InvalidNumber(given, f"does not start with a country calling code (+{digits[:3]}… is none)")
        return InvalidNumber(given, f"is not a phone number ({_PARSE_ERROR_CODE.sub('', str(exc))})")
    if phonenumbers.is_valid_number(parsed):
        kind = phonenumbers.number_type(parsed)
        if kind in sms_kinds:
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
        what = _NUMBER_KINDS.get(phonenumbers.PhoneNumberType.to_string(kind), "number of a kind that is not a mobile")
        return InvalidNumber(
            given, f"is not a valid mobile number for {_place(parsed)}: it is a {what}, which cannot receive SMS"
        )
    return InvalidNumber(given, f"is not a valid mobile number for {_place(parsed)}: {_problem(parsed, digits)}")


def _as_written(digits: str) -> Any:
    """The ``PhoneNumber`` that E.164 digits spell, as the vendor reads them: the country code, then the
    national number. None for a code no country has, or a national number starting with 0 (for parse())."""
    import phonenumbers

    codes = _calling_codes()
    for width in (1, 2, 3):  # calling codes are prefix-free: at most one of the three is one
        code = int(digits[:width])
        if code in codes:
            national = digits[width:]
            if national[:1] in ("", "0"):
                return None
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None


@functools.cache
def _calling_codes() -> frozenset[int]:
    import phonenumbers

    return frozenset(phonenumbers.supported_calling_codes())


#: what each ``phonenumbers.PhoneNumberType`` that cannot take an SMS is called in an error
_NUMBER_KINDS = {
    "FIXED_LINE": "fixed-line number",
    "TOLL_FREE": "toll-free number",
    "PREMIUM_RATE": "premium-rate number",
    "SHARED_COST": "shared-cost number",
    "VOIP": "VoIP number",
    "PERSONAL_NUMBER": "personal (forwarding) number",
    "PAGER": "pager number",
    "UAN": "company number (UAN)",
    "VOICEMAIL": "voicemail access number",
}


def _place(parsed: Any) -> str:
    """The country a number belongs to, ``United Kingdom (GB)``; for a code several countries share
    (+1, +7, +44) and a number of none of them, the main one and how many share it."""
    import phonenumbers

    region = phonenumbers.region_code_for_number(parsed)
    regions = [region] if region else list(phonenumbers.region_codes_for_country_code(parsed.country_code))
    if regions == ["001"]:  # a code of no country: satellite, international networks...
        return f"the non-geographic code +{parsed.country_code}"
    main = f"{_country_name(regions[0])} ({regions[0]})"
    return main if len(regions) == 1 else f"{main} or another of the {len(regions)} countries of +{parsed.country_code}"


def _country_name(region: str) -> str:
    try:
        from phonenumbers.geocoder import _region_display_name
    except ImportError:  # pragma: no cover - a phonenumbers without its English names: the code says it
        return region
    return _region_display_name(region, "en") or region


def _problem(parsed: Any, digits: str) -> str:
    """Why a number of a known country code is not valid there: its length, or else its prefix."""
    import phonenumbers

    result = phonenumbers.is_possible_number_for_type_with_reason(parsed, phonenumbers.PhoneNumberType.MOBILE)
    national = len(digits) - len(str(parsed.country_code))
    expected = _mobile_lengths(parsed)
    wanted = f"; mobile numbers there have {expected}" if expected else ""
    reasons = phonenumbers.ValidationResult
    if result == reasons.TOO_SHORT:
        problem = f"too short ({national} digits after +{parsed.country_code}{wanted})"
    elif result == reasons.TOO_LONG:
        problem = f"too long ({national} digits after +{parsed.country_code}{wanted})"
    elif result == reasons.INVALID_LENGTH:
        problem = f"the wrong length ({national} digits after +{parsed.country_code}{wanted})"
    else:
        problem = "the length fits, but no number there begins that way (its prefix is not in use)"
    if len(digits) == 11 and _CHINA_MOBILE.fullmatch(digits):
        problem += f"; if it is a mainland China mobile, write it with its country code: 86{digits}"
    return problem


def _mobile_lengths(parsed: Any) -> str:
    """``10`` or ``9 or 10``: how many digits a mobile of that country has after its code, when known."""
    import phonenumbers

    region = phonenumbers.region_code_for_country_code(parsed.country_code)
    if region == "001":
        metadata = phonenumbers.PhoneMetadata.metadata_for_nongeo_region(parsed.country_code)
    else:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return ""
    lengths = [n for n in (metadata.mobile.possible_length if metadata.mobile else ()) or () if n > 0]
    if not lengths and metadata.general_desc is not None:
        lengths = [n for n in metadata.general_desc.possible_length or () if n > 0]
    shown = [str(n) for n in sorted(set(lengths))]
    return " or ".join([", ".join(shown[:-1]), shown[-1]]) if len(shown) > 1 else "".join(shown)


def normalize_mobiles(mobiles: str | Iterable[str], *, international: bool) -> tuple[list[str], list[str]]:
    """Normalise and de-duplicate (first occurrence wins); returns (valid, invalid) in input order."""
    numbers = split_mobiles(mobiles)
    if _all_in_normal_form(numbers, international=international):
        if len(set(numbers)) == len(numbers):  # a set, not dict.fromkeys: less peak memory
            return numbers, []
        return list(dict.fromkeys(numbers)), []  # rare: repeats, dropped keeping first occurrences
    valid: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    for raw in numbers:
        number = international_mobile(raw) if international else normalize_domestic(raw.strip())
        if number is None or isinstance(number, InvalidNumber):
            invalid.append(raw.strip() if number is None else number)
        elif number not in seen:
            seen.add(number)
            valid.append(number)
    return valid, invalid


def _all_in_normal_form(numbers: list[str], *, international: bool) -> bool:
    """Whether every number is already normal, checked a slice at a time by one regex scan in C.

    Slices, so that a million numbers are never joined into one string.
    """
    plain = _ALL_CHINA_INTERNATIONAL if international else _ALL_DOMESTIC
    for start in range(0, len(numbers), _PLAIN_CHECK_SLICE):
        part = numbers[start : start + _PLAIN_CHECK_SLICE]
        joined = "\n".join(part)
        if joined.count("\n") != len(part) - 1 or plain.fullmatch(joined) is None:  # a newline inside a number
            return False
    return bool(numbers)


def chunk_mobiles(mobiles: Sequence[str], *, max_count: int, max_chars: int | None = None) -> Iterator[list[str]]:
    """Cut a list into as few comma-joined requests as both caps allow, keeping order."""
    if max_chars is None:  # a count cap only: plain slices, without measuring every number
        for start in range(0, len(mobiles), max_count):
            yield list(mobiles[start : start + max_count])
        return
    widths = set(map(len, mobiles))
    if len(widths) <= 1:  # the usual list, numbers all one length: plain slices
        width = widths.pop() if widths else 1
        size = max(1, min(max_count, (max_chars + 1) // (width + 1)))
        for start in range(0, len(mobiles), size):
            yield list(mobiles[start : start + size])
        return
    chunk: list[str] = []
    chars = 0
    for mobile in mobiles:
        added = len(mobile) + (1 if chunk else 0)
        if chunk and (len(chunk) >= max_count or chars + added > max_chars):
            yield chunk
            chunk, chars, added = [], 0, len(mobile)
        chunk.append(mobile)
        chars += added
    if chunk:
        yield chunk


def message_parts(text: str) -> int:
    """How many SMS parts a text costs: 70 characters fit one, longer texts are billed per 67.

    Characters are counted as the network does, in UTF-16 units: one outside the BMP (an emoji, a rare
    CJK ideograph) counts as two.
    """
    length = len(text) + sum(1 for char in text if char > "\uffff")
    if length <= SINGLE_PART_CHARS:
        return 1
    return -(-length // MULTI_PART_CHARS)


def china_mobile_forms(number: str) -> tuple[str, ...]:
    """The ways one mainland mobile is written by the vendors: 11 digits, or 86 and 11 digits (intl).

    An opt-out received as ``13800138000`` must also stop a send to ``8613800138000``.
    """
    if len(number) == 11 and _CHINA_MOBILE.fullmatch(number):
        return (number, "86" + number)
    if len(number) == 13 and number.startswith("86") and _CHINA_MOBILE.fullmatch(number, 2):
        return (number, number[2:])
    return (number,)


def mask_matches(mask: str, mobile: str) -> bool:
    """Whether a masked number such as ``135****9831`` can be ``mobile``."""
    if mask == mobile:
        return True
    match = _MASKED.fullmatch(mask)
    if not match or len(mask) != len(mobile):
        return False
    head, tail = match.groups()
    return mobile.startswith(head) and mobile.endswith(tail)


def parse_mobiles(value: object) -> str | list[str]:
    """Numbers as a list or comma string; a rendered list (``"['138…', …]"`` or JSON) is parsed back.

    Templated fields render an XCom list to its text, so the operator, the notifier and the sensor (for
    batch ids) all read their lists back through here.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            import ast
            import json

            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = ast.literal_eval(text)
            return [str(m) for m in parsed]
        return text
    if isinstance(value, Iterable):
        return as_strings(value)
    raise TypeError(f"mobiles must be a list of numbers or a comma-separated string, got {type(value).__name__}")
