"""What a JSON value must be before it is stored or evaluated: finite, shallow, bounded.

Python's ``json`` accepts what JSON does not: the literals ``NaN``, ``Infinity`` and
``-Infinity``, and ``1e400``, which it parses as ``inf``. Neither PostgreSQL (``jsonb``, ``float8``
columns of JSON origin) nor clients can take those back, and a value queued with an exposure
would jam the queue behind it. Deeply nested input makes the C parser (and every recursive
walk after it) raise ``RecursionError``, a 500. This module is the one place that says what is
acceptable; parsers, serializers, the admin's JSON fields and ``experiments.services`` use it.

The limits (docs/operations.md, "Input limits"):

* ``MAX_DEPTH`` -- a request body, and any stored JSON value, nests at most 32 arrays/objects.
* Numbers must be finite doubles: ``NaN``/``Infinity`` literals are refused at parse time,
  ``1e400`` and integers beyond ``MAX_NUMBER`` (~1.8e308) by :func:`problem`.
* ``MAX_ITEMS`` -- a stored JSON value (a variant payload, a rule's values) holds at most 10,000
  array elements and object members in all; the request body size bounds the rest.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 10_000
MAX_NUMBER = sys.float_info.max

NOT_FINITE = "Must be a finite number (NaN, Infinity and numbers beyond 1.8e308 are not JSON)."
TOO_DEEP = f"Nested deeper than {MAX_DEPTH} levels of arrays and objects."
TOO_MANY = f"More than {MAX_ITEMS} array elements and object members."


class JSONInputError(ValueError):
    """Raised by :func:`loads` for text that is not acceptable JSON; the message says why."""


def _reject_constant(name: str):
    raise JSONInputError(f"{name} is not valid JSON (numbers must be finite).")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def finite_number(value: Any) -> bool:
    """True for ints and floats a double can hold finitely (bools count as numbers here)."""
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, int):
        return -MAX_NUMBER <= value <= MAX_NUMBER
    return True


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects, checked level by level
    (iteratively: it cannot itself run out of stack, whatever the input)."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list = []
        keep = deeper.append
        for node in level:  # plain loops: about 1.3 ms for a batch of 1,000 events
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    keep(child)
        level = deeper
    return False


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses NaN/Infinity literals and nesting beyond ``max_depth``.

    Raises :class:`JSONInputError` (a ``ValueError``) instead of ``RecursionError`` for input
    deeper than the interpreter's stack allows; ``1e400`` still parses (as ``inf``) so that the
    validators can name the field that holds it.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = _decoder.decode(text)
    except RecursionError:
        raise JSONInputError(TOO_DEEP) from None
    # Cheap bound first: fewer brackets than the limit cannot nest deeper than it.
    if text.count("[") + text.count("{") > max_depth and depth_exceeds(value, max_depth):
        raise JSONInputError(TOO_DEEP)
    return value


def problem(value: Any, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> tuple[str, str] | None:
    """The first reason ``value`` may not be stored, as ``(path, message)``, or None.

    ``path`` locates the culprit inside ``value`` (``"a.b[2]"``, ``""`` for the value itself),
    so callers can name it: ``attributes.x``, ``variants[0].payload.a.b[2]``. Iterative, so any
    depth is safe to check.
    """
    # Entries are (value, depth, key, parent entry); the path is spelled out only for a culprit.
    stack: list[tuple] = [(value, 0, None, None)]
    items = 0
    while stack:
        entry = stack.pop()
        node, depth = entry[0], entry[1]
        kind = type(node)
        if kind is dict or kind is list:
            if depth >= max_depth:
                return _path(entry), TOO_DEEP
            items += len(node)
            if items > max_items:
                return _path(entry), TOO_MANY
            pairs = list(node.items()) if kind is dict else list(enumerate(node))
            stack.extend((child, depth + 1, key, entry) for key, child in reversed(pairs))
        elif (kind is float or kind is int) and not finite_number(node):
            return _path(entry), NOT_FINITE
    return None


def _path(entry: tuple) -> str:
    """``a.b[2]`` for an entry of :func:`problem` (names cut to 64 characters: they are echoed)."""
    parts = []
    while entry[3] is not None:
        key = entry[2]
        parts.append(f"[{key}]" if type(key) is int else f".{str(key)[:64]}")
        entry = entry[3]
    return "".join(reversed(parts)).removeprefix(".")


def non_finite_path(value: Any) -> str | None:
    """Where the first number that is not a finite double sits in ``value`` (``"a.b[2]"``,
    ``""`` for ``value`` itself), or None; any depth and size."""
    found = problem(value, max_depth=sys.maxsize, max_items=sys.maxsize)
    return found[0] if found is not None else None


def describe(value: Any, **limits: int) -> str | None:
    """:func:`problem` as one sentence (``"at a.b[2]: Must be a finite number ..."``), or None."""
    found = problem(value, **limits)
    if found is None:
        return None
    path, message = found
    return f"at {path}: {message}" if path else message
