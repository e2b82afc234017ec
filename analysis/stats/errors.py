"""The one exception the statistics engine raises on purpose."""

from __future__ import annotations


class StatsInputError(ValueError):
    """Invalid input (a programming or request error, not a data edge case).

    ``field`` names the offending input so an API can answer 400 naming it.
    Data edge cases (no conversions, zero variance, ...) never raise: they give an
    ``insufficient_data`` result instead.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
