"""What a send costs, exactly: SMS parts times the connection's ``price_per_part``, in ``Decimal``.

Plain arithmetic, no I/O, so that a dry run, the cost limit and the balance guard agree to the last
digit. Amounts are ``Decimal`` throughout (a float would turn 0.045 × 3 into 0.13499999…) and reach XCom
as text (``"1350.000"``), since XCom's JSON has no exact decimal type.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext
from typing import Final

#: an amount as text: plain ASCII decimal notation (``Decimal`` would also take ``1_000``, ``NaN``, ``١``)
_AMOUNT_TEXT: Final = re.compile(r"\+?(?:\d+\.?\d*|\.\d+)", re.ASCII)
#: digits kept in a product: a million numbers × 10 parts × a price with 8 decimals needs about 20
_PRECISION: Final = 60


def parse_amount(value: object, what: str) -> Decimal:
    """A non-negative, finite amount from an int, a ``Decimal``, a float (by its shortest repr: ``0.045`` is
    ``Decimal("0.045")``, never its binary expansion) or plain decimal text; anything else is ``ValueError``
    naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number, got {value!r}")
        value = repr(value)
    if isinstance(value, str):
        text = value.strip()
        if not _AMOUNT_TEXT.fullmatch(text):
            raise ValueError(f"{what} must be a non-negative decimal number such as 0.045, got {value!r}")
        amount = Decimal(text)
    elif isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    else:
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{what} must be a finite, non-negative number, got {value!r}")
    return amount


def total_parts(numbers: int, parts_per_number: int) -> int:
    """SMS parts a send costs: every number gets the same message."""
    return numbers * parts_per_number


def estimate(parts: int, price_per_part: Decimal) -> Decimal:
    """``parts × price_per_part``, exact (no rounding at any size a send can have)."""
    with localcontext() as context:
        context.prec = _PRECISION
        return Decimal(parts) * price_per_part


def render(amount: Decimal) -> str:
    """An amount as XCom and messages show it: plain notation, never an exponent (``Decimal("1E+3")`` is
    ``"1000"``), the price's decimal places kept (``"1350.000"``)."""
    return f"{amount:f}"


__all__ = ["estimate", "parse_amount", "render", "total_parts"]
