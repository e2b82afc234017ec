"""Last line of defence: make a result body strictly JSON-safe."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Plain dict/list/str/int/float/bool/None; numpy scalars unwrapped; non-finite -> None.

    The engine is written not to produce NaN or infinity; this only guarantees that
    ``json.dumps(..., allow_nan=False)`` can never fail on its output.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    return str(value)
