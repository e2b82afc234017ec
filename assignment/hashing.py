"""Deterministic bucketing of units: the one function every SDK must reproduce bit for bit.

``bucket(namespace, salt, unit_id)`` is the first 8 bytes of
``SHA-256(UTF-8(namespace + ":" + salt + ":" + unit_id))`` read as an unsigned big-endian
64-bit integer, modulo ``BUCKETS`` (10,000). Nothing is stored: the same inputs give the same
bucket in any process, on any server, in any language. Pure Python, no Django import.

The namespace keeps the two hashes apart: ``"exp"`` picks a unit's variant inside an
experiment and ``"layer"`` picks its slot in a layer, so a layer whose salt equals an
experiment's salt still hashes independently of it. Because the unit id comes last, two
different salts can never produce the same input for the same unit.
"""
from __future__ import annotations

import hashlib

BUCKETS = 10_000
ALGORITHM = "sha256"
EXPERIMENT_NAMESPACE = "exp"
LAYER_NAMESPACE = "layer"

_sha256 = hashlib.sha256
_from_bytes = int.from_bytes


def hash_input(namespace: str, salt: str, unit_id: str) -> bytes:
    """The exact bytes that are hashed (exposed for documentation and test vectors)."""
    return f"{namespace}:{salt}:{unit_id}".encode()


def bucket(namespace: str, salt: str, unit_id: str) -> int:
    """Bucket in ``[0, BUCKETS)`` of ``unit_id`` under ``salt`` in ``namespace``."""
    digest = _sha256(hash_input(namespace, salt, unit_id)).digest()
    return _from_bytes(digest[:8], "big") % BUCKETS


def experiment_bucket(salt: str, unit_id: str) -> int:
    return bucket(EXPERIMENT_NAMESPACE, salt, unit_id)


def layer_bucket(salt: str, unit_id: str) -> int:
    return bucket(LAYER_NAMESPACE, salt, unit_id)


def prefix_bucketer(namespace: str, salt: str):
    """A fast ``unit_id -> bucket`` function for one salt (the evaluator's hot path)."""
    prefix = f"{namespace}:{salt}:".encode()

    def _bucket(unit_id: str) -> int:
        return _from_bytes(_sha256(prefix + unit_id.encode()).digest()[:8], "big") % BUCKETS

    return _bucket


def percent_to_units(percent: float | int | str) -> int:
    """Percent (at most 2 decimals) -> integer hundredths of a percent in [0, 10000].

    Rounds half up on the decimal value so every language gets the same integer: 33.33 -> 3333.
    """
    value = float(percent)
    units = int(value * 100 + 0.5 + 1e-9)
    return max(0, min(BUCKETS, units))
