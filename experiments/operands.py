"""Operand types of targeting rules: decimal numbers, semantic versions and ISO 8601 instants.

Pure Python (no Django): ``experiments.services`` validates rule values with it and
``assignment.targeting`` evaluates rules with it, so both read a value the same way. The rules
are specified in docs/assignment.md section 5 for SDKs in other languages.
"""
from __future__ import annotations

import math
import re
from typing import Any

DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

# semver.org 2.0.0: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], no leading zeros in numbers.
_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)

# ISO 8601 subset: a calendar date, or a date and time with an explicit offset.
INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2}))?"
)


def as_number(value: Any) -> float | None:
    """A finite float for numbers and decimal strings; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str) and DECIMAL.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


SemverKey = tuple[tuple[int, str], ...]


def _numeric_key(digits: str) -> tuple[int, str]:
    """Digit strings without leading zeros order by length, then lexically: no big-int needed."""
    return (len(digits), digits)


def semver_key(value: Any) -> tuple | None:
    """A sort key with semver.org precedence for a version string; None if it is not one.

    Build metadata is ignored. A version without a pre-release ranks above any with one.
    Pre-release identifiers compare left to right: numeric ones numerically and below
    alphanumeric ones, alphanumeric ones by ASCII; a longer list wins when all before are equal.
    """
    if not isinstance(value, str):
        return None
    match = SEMVER.fullmatch(value)
    if match is None:
        return None
    core = tuple(_numeric_key(part) for part in match.group(1, 2, 3))
    pre = match.group(4)
    if pre is None:
        return (core, (1,))
    ids = tuple((0, *_numeric_key(i)) if i.isdigit() else (1, 0, i) for i in pre.split("."))
    return (core, (0, ids))


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28
    return 30 if month in (4, 6, 9, 11) else 31


def instant_key(value: Any) -> tuple[int, int] | None:
    """(seconds since the epoch, nanoseconds) for an ISO 8601 date or timestamp; None otherwise.

    A date alone is midnight UTC of that day; a timestamp needs ``Z`` or a ``+HH:MM`` offset.
    """
    if not isinstance(value, str):
        return None
    match = INSTANT.fullmatch(value)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.group(1, 2, 3))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    hour, minute, second = (int(g or 0) for g in match.group(4, 5, 6))
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    zone = match.group(8)
    if zone and zone != "Z":
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (1 if zone[0] == "+" else -1)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    nanos = int((match.group(7) or "").ljust(9, "0"))
    return (seconds, nanos)
