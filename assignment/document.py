"""Build the configuration document (``GET /api/v1/config``) from the experiment definitions.

The document is everything an SDK needs to assign locally; ``assignment.evaluator`` consumes
it. Alongside it we keep the database ids of experiments and variants, which only the server
needs (to write exposures) and which therefore stay out of the public document.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .evaluator import SCHEMA_VERSION
from .hashing import ALGORITHM, BUCKETS


@dataclass(frozen=True)
class Ids:
    """``experiment key -> (experiment id, {variant key -> variant id})``."""

    experiments: dict[str, tuple[int, dict[str, int]]]
    #: ``experiment key -> current phase number`` (recorded with each exposure).
    phases: dict[str, int] = field(default_factory=dict)


def _number(value) -> float:
    return float(value) if value is not None else 0.0


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_document(environment: str = "production") -> tuple[dict[str, Any], Ids]:
    """Read every layer, experiment, audience and flag (a handful of queries) into the document
    of ``environment`` and its ids. Definitions are shared; flag rules and the flag and
    experiment on/off state are the environment's own."""
    from experiments.flags import flags_document
    from experiments.models import Audience, Experiment, Layer

    layers = {
        layer.key: {"salt": layer.salt or layer.key, "holdout_percent": _number(layer.holdout_percent)}
        for layer in Layer.objects.order_by("key")
    }
    experiments = []
    ids: dict[str, tuple[int, dict[str, int]]] = {}
    phases: dict[str, int] = {}
    queryset = (
        Experiment.objects.order_by("key")
        .select_related("layer")
        .prefetch_related("variants", "targeting_rules", "overrides__variant", "audience_links__audience",
                          "environment_states__environment")
    )
    for exp in queryset:
        variants = sorted(exp.variants.all(), key=lambda v: (v.position, v.pk))
        by_id = {v.pk: v.key for v in variants}
        rules = sorted(exp.targeting_rules.all(), key=lambda r: (r.position, r.pk))
        layer_range = None
        if exp.layer_id is not None and exp.layer_bucket_start is not None and exp.layer_bucket_end is not None:
            layer_range = [exp.layer_bucket_start, exp.layer_bucket_end]
        experiments.append({
            "key": exp.key,
            "status": exp.status,
            "phase": exp.current_phase,
            "salt": exp.salt or exp.key,
            "traffic_allocation": _number(exp.traffic_allocation),
            "layer": exp.layer.key if exp.layer_id is not None else None,
            "layer_range": layer_range,
            "variants": [
                {
                    "key": v.key, "weight": _number(v.weight), "is_control": bool(v.is_control),
                    "payload": v.payload if v.payload is not None else {},
                }
                for v in variants
            ],
            "targeting": [
                {
                    "attribute": r.attribute, "operator": r.operator,
                    "values": list(r.values) if isinstance(r.values, list) else [r.values],
                }
                for r in rules
            ],
            "overrides": {
                o.unit_id: o.variant.key
                for o in sorted(exp.overrides.all(), key=lambda o: o.unit_id)
                if o.variant.experiment_id == exp.pk
            },
            "shipped_variant": by_id.get(exp.shipped_variant_id),
            "audiences": [
                link.audience.key for link in sorted(exp.audience_links.all(), key=lambda a: (a.position, a.pk))
            ],
            "enabled": next(
                (s.enabled for s in exp.environment_states.all() if s.environment.key == environment), True
            ),
        })
        ids[exp.key] = (exp.pk, {v.key: v.pk for v in variants})
        phases[exp.key] = exp.current_phase
    body = {
        "schema_version": SCHEMA_VERSION,
        "hash": {"algorithm": ALGORITHM, "buckets": BUCKETS},
        "layers": layers,
        "experiments": experiments,
        "environment": environment,
        "audiences": {
            a.key: {"match": a.match, "conditions": [
                {"attribute": c.get("attribute"), "operator": c.get("operator"), "values": list(c.get("values") or [])}
                for c in a.conditions or []
            ]}
            for a in Audience.objects.order_by("key")
        },
        "flags": flags_document(environment),
    }
    version = hashlib.sha256(canonical_json(body)).hexdigest()[:20]
    document = {
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "generated_at": timezone.now().isoformat().replace("+00:00", "Z"),
        **{k: v for k, v in body.items() if k != "schema_version"},
    }
    return document, Ids(ids, phases)
