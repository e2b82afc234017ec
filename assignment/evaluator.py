"""Assign units from the configuration document alone, exactly as the server does.

This module is the reference SDK: it needs nothing but the JSON that ``GET /api/v1/config``
returns (see docs/assignment.md) and the standard library. The server runs this same code on
the same document, so a local evaluation and an API answer can never disagree.

Order of decisions for one (experiment, unit):

1. completed/archived with a shipped variant -> that variant, ``shipped``
2. override for the unit (draft, running, paused) -> forced variant, ``override``
2a. ``enabled: false`` (switched off in this document's environment) -> control,
   ``disabled_in_environment``
3. status other than running -> control, ``not_running``
4. a targeting rule fails, or the unit is not in one of its ``audiences`` -> control, ``targeting``
5. layer bucket in the layer's holdout -> control, ``layer_holdout``
6. layer bucket outside the experiment's layer range -> control, ``layer_other_experiment``
7. experiment bucket outside every variant's (allocation-scaled) range -> control,
   ``traffic_allocation``
8. otherwise -> the variant whose range holds the bucket, ``assigned``
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .audiences import Audiences
from .clientdoc import override_hash
from .flags import FlagEvaluator, FlagResult
from .hashing import (
    BUCKETS,
    EXPERIMENT_NAMESPACE,
    LAYER_NAMESPACE,
    percent_to_units,
    prefix_bucketer,
)
from .targeting import compile_rules

SCHEMA_VERSION = 1

ASSIGNED = "assigned"
OVERRIDE = "override"
NOT_RUNNING = "not_running"
TARGETING = "targeting"
LAYER_HOLDOUT = "layer_holdout"
LAYER_OTHER_EXPERIMENT = "layer_other_experiment"
TRAFFIC_ALLOCATION = "traffic_allocation"
SHIPPED = "shipped"
DISABLED_IN_ENVIRONMENT = "disabled_in_environment"
REASONS = (
    ASSIGNED, OVERRIDE, NOT_RUNNING, TARGETING, LAYER_HOLDOUT, LAYER_OTHER_EXPERIMENT,
    TRAFFIC_ALLOCATION, SHIPPED, DISABLED_IN_ENVIRONMENT,
)
OVERRIDABLE = frozenset({"draft", "running", "paused"})
SHIPPABLE = frozenset({"completed", "archived"})


class Assignment:
    """One answer. ``payload`` is shared with the evaluator: treat it as read-only."""

    __slots__ = ("experiment", "variant", "in_experiment", "reason", "detail", "payload")

    def __init__(self, experiment, variant, in_experiment, reason, detail, payload):
        self.experiment: str = experiment
        self.variant: str | None = variant
        self.in_experiment: bool = in_experiment
        self.reason: str = reason
        self.detail: str = detail
        self.payload: dict = payload

    @property
    def records_exposure(self) -> bool:
        """Only hashed enrolments count for analysis (overrides would pollute it)."""
        return self.reason == ASSIGNED

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "variant": self.variant,
            "in_experiment": self.in_experiment,
            "reason": self.reason,
            "detail": self.detail,
            "payload": self.payload,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Assignment({self.as_dict()!r})"


class DocumentError(ValueError):
    """The configuration document is malformed."""


class UnknownExperiment(KeyError):
    pass


def variant_ranges(weights: list[float], traffic_allocation: float) -> list[tuple[int, int]]:
    """``[start, end)`` experiment buckets of each variant, as the spec defines them.

    Weights become integer hundredths of a percent ``w_i``; variant ``i`` owns the slice
    ``[B_i, B_{i+1})`` with ``B_i = floor(BUCKETS * sum(w_<i) / sum(w))``, and only its first
    ``floor((B_{i+1} - B_i) * A / BUCKETS)`` buckets enrol, ``A`` being the allocation in
    hundredths of a percent. Raising ``A`` only lengthens each enrolled run, so units already
    in keep their variant (ramp-up stability); all arithmetic is integer.
    """
    units = [percent_to_units(w) for w in weights]
    total = sum(units)
    allocation = percent_to_units(traffic_allocation)
    if total <= 0:
        return [(0, 0) for _ in units]
    bounds, running = [0], 0
    for u in units:
        running += u
        bounds.append(BUCKETS * running // total)
    return [
        (bounds[i], bounds[i] + (bounds[i + 1] - bounds[i]) * allocation // BUCKETS)
        for i in range(len(units))
    ]


class _Layer:
    __slots__ = ("key", "bucketer", "holdout_end")

    def __init__(self, key: str, spec: Mapping[str, Any]):
        self.key = key
        self.bucketer = prefix_bucketer(LAYER_NAMESPACE, str(spec.get("salt") or key))
        self.holdout_end = percent_to_units(spec.get("holdout_percent") or 0)


class _Experiment:
    __slots__ = (
        "key", "status", "running", "bucketer", "ranges", "control", "variants", "checks",
        "layer", "layer_start", "layer_end", "overrides", "fixed", "spec",
        "override_salt", "hashed_overrides",
    )

    def __init__(
        self, spec: Mapping[str, Any], layers: Mapping[str, _Layer], audiences: Audiences | None = None
    ):
        try:
            self.key = str(spec["key"])
            self.status = str(spec["status"])
            variants = list(spec.get("variants") or [])
        except (KeyError, TypeError) as exc:
            raise DocumentError(f"experiment entry is malformed: {exc}") from exc
        self.spec = spec
        self.running = self.status == "running"
        self.bucketer = prefix_bucketer(EXPERIMENT_NAMESPACE, str(spec.get("salt") or self.key))
        self.variants = {str(v["key"]): v for v in variants}
        control = next((v for v in variants if v.get("is_control")), variants[0] if variants else None)
        self.control = (str(control["key"]), control.get("payload") or {}) if control else (None, {})
        bounds = variant_ranges(
            [v.get("weight", 0) for v in variants], spec.get("traffic_allocation", 100)
        )
        self.ranges = tuple(
            (start, end, str(v["key"]), v.get("payload") or {})
            for (start, end), v in zip(bounds, variants, strict=True)
            if end > start
        )
        self.checks = compile_rules(list(spec.get("targeting") or []))
        if spec.get("audiences"):  # every listed audience must admit the unit, like targeting
            self.checks += (audiences or Audiences(None)).checks(spec["audiences"])
        layer_key = spec.get("layer")
        self.layer = None
        self.layer_start = self.layer_end = 0
        if layer_key is not None:
            if layer_key not in layers:
                raise DocumentError(f"experiment {self.key!r} names unknown layer {layer_key!r}")
            self.layer = layers[layer_key]
            layer_range = spec.get("layer_range")
            if layer_range:
                self.layer_start, self.layer_end = int(layer_range[0]), int(layer_range[1])
        self.overrides = {
            str(unit): str(variant)
            for unit, variant in (spec.get("overrides") or {}).items()
            if str(variant) in self.variants
        }
        # The client-safe document names QA units by hash (assignment.clientdoc, section 7a).
        self.override_salt = str(spec.get("override_salt") or "")
        self.hashed_overrides = {
            str(h): str(variant)
            for h, variant in (spec.get("hashed_overrides") or {}).items()
            if str(variant) in self.variants
        }
        # Answers that do not depend on the unit are built once.
        self.fixed = None
        shipped = spec.get("shipped_variant")
        if shipped is not None and self.status in SHIPPABLE and str(shipped) in self.variants:
            payload = self.variants[str(shipped)].get("payload") or {}
            self.fixed = Assignment(
                self.key, str(shipped), False, SHIPPED,
                f"experiment is {self.status}; variant {shipped!r} was shipped", payload,
            )
        elif spec.get("enabled", True) is False:
            self.fixed = Assignment(
                self.key, self.control[0], False, DISABLED_IN_ENVIRONMENT,
                "experiment is switched off in this environment", self.control[1],
            )
        elif not self.running:
            self.fixed = Assignment(
                self.key, self.control[0], False, NOT_RUNNING,
                f"experiment is {self.status}", self.control[1],
            )

    def _fallback(self, reason: str, detail: str) -> Assignment:
        return Assignment(self.key, self.control[0], False, reason, detail, self.control[1])

    def evaluate(
        self, unit_id: str, attributes: Mapping[str, Any], layer_buckets: dict | None = None
    ) -> Assignment:
        fixed = self.fixed
        if fixed is not None and (
            self.status not in OVERRIDABLE or not (self.overrides or self.hashed_overrides)
        ):
            return fixed
        if self.overrides or self.hashed_overrides:
            forced = self.overrides.get(unit_id)
            if forced is None and self.hashed_overrides:
                forced = self.hashed_overrides.get(override_hash(self.override_salt, unit_id))
            if forced is not None:
                return Assignment(
                    self.key, forced, self.running, OVERRIDE,
                    f"unit is forced into {forced!r}",
                    self.variants[forced].get("payload") or {},
                )
            if fixed is not None:
                return fixed
        for check in self.checks:
            failure = check(attributes)
            if failure is not None:
                return self._fallback(TARGETING, failure)
        layer = self.layer
        if layer is not None:
            if layer_buckets is None:
                slot = layer.bucketer(unit_id)
            else:
                slot = layer_buckets.get(layer.key)
                if slot is None:
                    slot = layer_buckets[layer.key] = layer.bucketer(unit_id)
            if slot < layer.holdout_end:
                return self._fallback(LAYER_HOLDOUT, f"unit is in the holdout of layer {layer.key!r}")
            if not self.layer_start <= slot < self.layer_end:
                return self._fallback(
                    LAYER_OTHER_EXPERIMENT,
                    f"unit belongs to another experiment of layer {layer.key!r}",
                )
        b = self.bucketer(unit_id)
        for start, end, variant, payload in self.ranges:
            if start <= b < end:
                return Assignment(self.key, variant, True, ASSIGNED, "unit hashed into variant", payload)
        return self._fallback(TRAFFIC_ALLOCATION, "unit is outside the traffic allocation")


class Evaluator:
    """Compiled form of one configuration document."""

    def __init__(self, document: Mapping[str, Any]):
        if not isinstance(document, Mapping):
            raise DocumentError("the document must be a JSON object")
        if document.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise DocumentError(f"unsupported schema_version {document.get('schema_version')!r}")
        hashing = document.get("hash") or {}
        if hashing.get("algorithm", "sha256") != "sha256" or hashing.get("buckets", BUCKETS) != BUCKETS:
            raise DocumentError("unsupported hash settings")
        self.document = document
        self.version = document.get("version")
        layers = {str(k): _Layer(str(k), v) for k, v in (document.get("layers") or {}).items()}
        audiences = Audiences(document.get("audiences"))
        self._experiments = {}
        for spec in document.get("experiments") or []:
            compiled = _Experiment(spec, layers, audiences)
            self._experiments[compiled.key] = compiled
        self.running_keys = tuple(k for k, e in self._experiments.items() if e.running)
        try:
            #: The document's feature flags (assignment.flags), sharing the compiled experiments.
            self.flags = FlagEvaluator(document.get("flags"), self._experiments, audiences)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DocumentError(f"flag entry is malformed: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Evaluator:
        return cls(json.loads(text))

    def __contains__(self, key: object) -> bool:
        return key in self._experiments

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._experiments)

    def experiment(self, key: str) -> Mapping[str, Any]:
        """The document's entry for ``key`` (raises UnknownExperiment)."""
        try:
            return self._experiments[key].spec
        except KeyError:
            raise UnknownExperiment(key) from None

    def evaluate(
        self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        try:
            experiment = self._experiments[key]
        except KeyError:
            raise UnknownExperiment(key) from None
        return experiment.evaluate(unit_id, attributes or {})

    def evaluate_flag(
        self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> FlagResult:
        """One flag's value (``unknown_flag`` with value None for a key the document lacks)."""
        return self.flags.evaluate(key, unit_id, attributes)

    def evaluate_many(
        self,
        unit_id: str,
        attributes: Mapping[str, Any] | None = None,
        keys: Iterable[str] | None = None,
    ) -> list[Assignment]:
        """Answers for ``keys`` (default: every running experiment), one layer hash per layer."""
        attributes = attributes or {}
        experiments = self._experiments
        layer_buckets: dict[str, int] = {}
        out = []
        for key in self.running_keys if keys is None else keys:
            try:
                experiment = experiments[key]
            except KeyError:
                raise UnknownExperiment(key) from None
            out.append(experiment.evaluate(unit_id, attributes, layer_buckets))
        return out
