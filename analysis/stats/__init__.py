"""Statistics engine: pure Python (numpy/scipy/statsmodels) on sufficient statistics.

No Django here: the report pipeline aggregates per-variant sums in SQL and calls
:func:`analyze_experiment`; the API calls :func:`sample_size`. Methods and conventions are
documented in docs/statistics.md.
"""

from .errors import StatsInputError
from .inputs import MetricInput, VariantStats
from .power import sample_size
from .report import analyze_experiment
from .srm import srm_check

__all__ = [
    "MetricInput",
    "StatsInputError",
    "VariantStats",
    "analyze_experiment",
    "sample_size",
    "srm_check",
]
