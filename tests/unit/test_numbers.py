"""Number normalisation, batch splitting and part counting: the rules every hook and the simulator share."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_sms.numbers import (
    MULTI_PART_CHARS,
    SINGLE_PART_CHARS,
    china_mobile_forms,
    chunk_mobiles,
    international_mobile,
    mask_matches,
    message_parts,
    normalize_domestic,
    normalize_international,
    normalize_mobiles,
    split_mobiles,
)

# ---------------------------------------------------------------------------- domestic numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("138-0013-8000", "13800138000"),
        ("(138) 0013.8000", "13800138000"),
        ("+8613800138000", "13800138000"),
        ("+86 138 0013 8000", "13800138000"),
        ("+86-138-0013-8000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("0086 138 0013 8000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("86 138 0013 8000", "13800138000"),
        ("19912345678", "19912345678"),
    ],
)
def test_normalize_domestic_accepts_common_spellings(raw: str, expected: str) -> None:
    assert normalize_domestic(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "1380013800",  # 10 digits
        "138001380001",  # 12 digits
        "12800138000",  # second digit 2 is no mobile range
        "10800138000",
        "23800138000",  # does not start with 1
        "1380013800a",
        "+85213800138000",  # Hong Kong prefix is not mainland
        "+1 415 555 0100",
        "86138001380001",  # 14 digits starting with 86
        "+86",
        "abcdefghijk",
    ],
)
def test_normalize_domestic_rejects_invalid_numbers(raw: str) -> None:
    assert normalize_domestic(raw) is None


def test_86_prefix_is_stripped_only_from_13_digit_numbers() -> None:
    # An 11-digit number that happens to start with 86 is not a country prefix (and not a mobile).
    assert normalize_domestic("86138001380") is None
    assert normalize_domestic("8613800138000") == "13800138000"


@pytest.mark.parametrize(
    ("normalize", "raw"),
    [
        (normalize_domestic, "13８00138000"),
        (normalize_domestic, "138٠٠١٣٨٠٠٠"),
        (normalize_international, "+86 13８00138000"),
    ],
)
def test_non_ascii_digits_are_rejected(normalize: Any, raw: str) -> None:
    assert normalize(raw) is None


# ---------------------------------------------------------------------------- international numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+8613800138000", "8613800138000"),
        ("8613800138000", "8613800138000"),
        ("008613800138000", "8613800138000"),
        ("+1 (415) 555-0100", "14155550100"),
        ("+44 20 7946 0958", "442079460958"),
        ("+65 6123 4567", "6561234567"),
        ("1234567", "1234567"),  # 7 digits: the shortest accepted
        ("123456789012345", "123456789012345"),  # 15 digits: the longest E.164 number
    ],
)
def test_normalize_international_keeps_country_code_without_plus(raw: str, expected: str) -> None:
    assert normalize_international(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "+",
        "123456",  # too short
        "1234567890123456",  # 16 digits: longer than E.164
        "+0123456789",  # country codes never start with 0
        "0123456789",
        "+86 138 0013 800x",
        "++8613800138000",
    ],
)
def test_normalize_international_rejects_invalid_numbers(raw: str) -> None:
    assert normalize_international(raw) is None


# ---------------------------------------------------------------------------- lists


def test_split_mobiles_accepts_every_documented_separator() -> None:
    text = "13800138000,13800138001;13800138002\n13800138003，13800138004"
    assert split_mobiles(text) == [f"1380013800{i}" for i in range(5)]


def test_split_mobiles_drops_empty_items_but_keeps_iterables_as_given() -> None:
    assert split_mobiles(",, 13800138000 ;\n\n") == [" 13800138000 "]
    assert split_mobiles(["13800138000", 13800138001]) == ["13800138000", "13800138001"]  # type: ignore[list-item]
    assert split_mobiles(iter(("13800138000",))) == ["13800138000"]


def test_normalize_mobiles_deduplicates_keeping_first_occurrence_order() -> None:
    valid, invalid = normalize_mobiles(
        ["13800138002", "+86 138 0013 8000", "13800138001", "13800138000", "008613800138002"],
        international=False,
    )
    assert valid == ["13800138002", "13800138000", "13800138001"]
    assert invalid == []


def test_normalize_mobiles_reports_invalid_numbers_in_input_order() -> None:
    valid, invalid = normalize_mobiles("123, 13800138000 ,bad;12800138000,13800138000", international=False)
    assert valid == ["13800138000"]
    assert invalid == ["123", "bad", "12800138000"]


def test_normalize_mobiles_international_mode_uses_international_rules() -> None:
    valid, invalid = normalize_mobiles("+8613800138000\n+1 415 555 0100\n13800138000\n12", international=True)
    # A bare domestic number is read as digits with a country code, as intl reads it: +1 380 013 8000 is
    # no number of the US or Canada (tests/unit/test_international_numbers.py has the rules).
    assert valid == ["8613800138000", "14155550100"]
    assert invalid == ["13800138000", "12"]
    valid, invalid = normalize_mobiles("+1 415 555 0100", international=False)
    assert (valid, invalid) == ([], ["+1 415 555 0100"])


def test_normalize_mobiles_of_chinese_comma_string() -> None:
    valid, invalid = normalize_mobiles("13800138000，13900139000，13800138000", international=False)
    assert valid == ["13800138000", "13900139000"]
    assert invalid == []


def _one_by_one(numbers: list[str], *, international: bool) -> tuple[list[str], list[str]]:
    """The rule spelled out a number at a time: what the whole-list fast path must agree with."""
    valid: dict[str, None] = {}
    invalid = []
    for raw in numbers:
        number = international_mobile(raw) if international else normalize_domestic(raw.strip())
        if number is None or getattr(number, "reason", None):
            invalid.append(raw.strip())
        else:
            valid.setdefault(number)
    return list(valid), invalid


@pytest.mark.parametrize("international", [False, True])
@pytest.mark.parametrize(
    "numbers",
    [
        ["13800138000", "13900139000", "13800138000"],  # plain: the fast path, de-duplicated
        ["8613800138000", "447911123456", "8613800138000"],
        ["13800138000", "12800138000"],  # one invalid domestic number among plain ones
        ["13800138000", "+8613900139000"],  # one needing normalisation
        ["13800138000\n13900139000", "13700137000"],  # a newline inside one item: not two numbers
        ["13800138000", "13900139000\n"],
        ["13800138000", ""],
        ["0013800138000", "123456"],
    ],
)
def test_whole_list_fast_path_agrees_with_the_number_by_number_rule(numbers: list[str], international: bool) -> None:
    assert normalize_mobiles(numbers, international=international) == _one_by_one(numbers, international=international)


def test_whole_list_check_sees_every_slice_of_a_long_list() -> None:
    numbers = [f"138{i:08d}" for i in range(5000)]
    assert normalize_mobiles(numbers, international=False) == (numbers, [])
    assert normalize_mobiles([*numbers, numbers[0]], international=False) == (numbers, [])
    late_invalid = [*numbers[:4500], "12800138000", *numbers[4500:]]
    assert normalize_mobiles(late_invalid, international=False) == (numbers, ["12800138000"])


def test_a_newline_inside_an_item_is_reported_invalid_not_split() -> None:
    valid, invalid = normalize_mobiles(["13800138000\n13900139000", "13700137000"], international=False)
    assert valid == ["13700137000"]
    assert invalid == ["13800138000\n13900139000"]


# ---------------------------------------------------------------------------- chunking


def _numbers(count: int) -> list[str]:
    return [f"1380000{i:04d}" for i in range(count)]


def test_chunk_by_count_exact_boundaries() -> None:
    numbers = _numbers(2500)
    chunks = list(chunk_mobiles(numbers, max_count=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert [m for c in chunks for m in c] == numbers  # order kept, nothing lost or duplicated
    assert [len(c) for c in chunk_mobiles(_numbers(1000), max_count=1000)] == [1000]
    assert [len(c) for c in chunk_mobiles(_numbers(1001), max_count=1000)] == [1000, 1]


def test_chunk_of_nothing_is_no_chunk() -> None:
    assert list(chunk_mobiles([], max_count=10)) == []


def test_chunk_by_characters_allows_exactly_max_chars() -> None:
    numbers = _numbers(10)
    # n numbers of 11 digits joined by commas take 12 * n - 1 characters.
    exact = 12 * 3 - 1
    chunks = list(chunk_mobiles(numbers, max_count=1000, max_chars=exact))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert all(len(",".join(c)) <= exact for c in chunks)
    assert len(",".join(chunks[0])) == exact


def test_chunk_by_characters_one_char_less_splits_earlier() -> None:
    numbers = _numbers(10)
    chunks = list(chunk_mobiles(numbers, max_count=1000, max_chars=12 * 3 - 2))
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 2]
    assert [m for c in chunks for m in c] == numbers


def test_chunk_by_characters_paasw_v1_caps() -> None:
    # 1500 characters of 11-digit numbers: 125 numbers take 1499 characters, a 126th would need 1511.
    numbers = _numbers(300)
    chunks = list(chunk_mobiles(numbers, max_count=1000, max_chars=1500))
    assert [len(c) for c in chunks] == [125, 125, 50]
    assert max(len(",".join(c)) for c in chunks) == 1499


def test_chunk_respects_both_caps_whichever_is_tighter() -> None:
    numbers = _numbers(10)
    assert [len(c) for c in chunk_mobiles(numbers, max_count=2, max_chars=1000)] == [2, 2, 2, 2, 2]
    assert [len(c) for c in chunk_mobiles(numbers, max_count=4, max_chars=12 * 3 - 1)] == [3, 3, 3, 1]


def test_chunk_by_characters_with_mixed_lengths() -> None:
    numbers = ["1234567", "12345678901", "123456789012345", "1234567"]
    chunks = list(chunk_mobiles(numbers, max_count=100, max_chars=20))
    # 7 + 1 + 11 = 19 fits; adding ",123456789012345" does not; then 15 + 1 + 7 = 23 does not fit either.
    assert chunks == [["1234567", "12345678901"], ["123456789012345"], ["1234567"]]


def _chunk_one_by_one(numbers: list[str], max_count: int, max_chars: int | None) -> list[list[str]]:
    chunks: list[list[str]] = []
    for mobile in numbers:
        last = chunks[-1] if chunks else None
        if (
            last is not None
            and len(last) < max_count
            and (max_chars is None or len(",".join([*last, mobile])) <= max_chars)
        ):
            last.append(mobile)
        else:
            chunks.append([mobile])
    return chunks


@pytest.mark.parametrize("max_chars", [None, 1, 11, 12, 23, 24, 35, 1500, 10_000])
@pytest.mark.parametrize("max_count", [1, 3, 125, 1000])
@pytest.mark.parametrize("width", ["same", "mixed"])
def test_chunking_agrees_with_filling_one_number_at_a_time(max_count: int, max_chars: int | None, width: str) -> None:
    numbers = _numbers(400) if width == "same" else [n[: 7 + i % 6] for i, n in enumerate(_numbers(400))]
    assert list(chunk_mobiles(numbers, max_count=max_count, max_chars=max_chars)) == _chunk_one_by_one(
        numbers, max_count, max_chars
    )


# ---------------------------------------------------------------------------- message parts


@pytest.mark.parametrize(
    ("length", "parts"),
    [(0, 1), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_message_parts_boundaries(length: int, parts: int) -> None:
    assert message_parts("短" * length) == parts


def test_message_part_constants_are_the_documented_ones() -> None:
    assert (SINGLE_PART_CHARS, MULTI_PART_CHARS) == (70, 67)


def test_message_parts_counts_the_signature() -> None:
    body = "x" * 67
    assert message_parts(body) == 1
    assert message_parts("【签名】" + body) == 2  # 4 + 67 = 71: the signature tips it over
    assert message_parts("【签名】" + body[:-1]) == 1


# ---------------------------------------------------------------------------- masks


@pytest.mark.parametrize(
    ("mask", "mobile", "matches"),
    [
        ("135****9831", "13512349831", True),
        ("135****9831", "13500009831", True),
        ("13512349831", "13512349831", True),
        ("135****9831", "13612349831", False),  # head differs
        ("135****9831", "13512349832", False),  # tail differs
        ("135****9831", "135123498310", False),  # length differs
        ("135***9831", "13512349831", False),  # a mask hides as many digits as it has stars
        ("13512349831", "13512349832", False),
        ("135xxxx9831", "13512349831", False),  # not a star mask
        ("***", "135", False),
    ],
)
def test_mask_matches(mask: str, mobile: str, matches: bool) -> None:
    assert mask_matches(mask, mobile) is matches


@pytest.mark.parametrize(
    ("number", "forms"),
    [
        ("13800138000", ("13800138000", "8613800138000")),
        ("8613800138000", ("8613800138000", "13800138000")),
        ("8612800138000", ("8612800138000",)),  # 86 and not a mainland mobile
        ("447911123456", ("447911123456",)),
        ("12800138000", ("12800138000",)),
    ],
)
def test_china_mobile_forms(number: str, forms: tuple[str, ...]) -> None:
    assert china_mobile_forms(number) == forms


# ---------------------------------------------------------------------------- lists as templates render them


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13800138000, 13900139000", "13800138000, 13900139000"),
        ('["13800138000", "13900139000"]', ["13800138000", "13900139000"]),
        ("['13800138000', 13900139000]", ["13800138000", "13900139000"]),
        (("13800138000", 13900139000), ["13800138000", "13900139000"]),
    ],
)
def test_parse_mobiles_reads_back_a_rendered_list(value: Any, expected: Any) -> None:
    from airflow_provider_sms.numbers import parse_mobiles

    assert parse_mobiles(value) == expected


def test_parse_mobiles_names_what_it_cannot_read() -> None:
    from airflow_provider_sms.numbers import parse_mobiles

    with pytest.raises(TypeError, match="got int"):
        parse_mobiles(13800138000)
