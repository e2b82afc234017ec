"""A DRF JSON field for values that are stored: ``access.jsonsafety`` names what is wrong."""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from . import jsonsafety


class SafeJSONField(serializers.JSONField):
    """Any JSON, but finite, at most 32 levels deep and 10,000 items; the error says where
    (``"at a.b[2]: Must be a finite number ..."``), where DRF's own says only "not valid JSON"."""

    def to_internal_value(self, data: Any) -> Any:
        problem = jsonsafety.describe(data)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)
