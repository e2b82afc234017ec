"""The client-safe configuration document: what a browser or app may see, and nothing more.

A client key's ``GET /api/v1/config`` is shipped to every visitor's browser, so it keeps only
what evaluation needs (docs/assignment.md, section 7a):

* running and paused experiments, complete (salt, weights, allocation, layer range, targeting,
  payloads), so every answer of the full document is reproduced;
* completed/archived experiments *with* a shipped variant, reduced to that variant (its
  payload is what is served); drafts and unshipped completed/archived experiments are left out
  (an SDK answers ``unknown_experiment`` for them and serves its default);
* QA overrides without raw unit ids: ``overrides`` is empty and ``hashed_overrides`` maps
  ``hex(SHA-256("override:" + override_salt + ":" + unit_id))`` to the variant, with a
  per-experiment ``override_salt`` (from the server's secret, so it cannot be precomputed
  across installations);
* only the layers those experiments use, and only the audiences they or the flags use;
* every flag, with ``units`` rules hashed like QA overrides: ``units`` is empty and
  ``hashed_units`` maps ``hex(SHA-256("override:" + unit_salt + ":" + unit_id))`` to the value,
  ``unit_salt`` being the override salt of ``"flag:" + key`` (section 6a).

Pure Python, no Django import (the salt function is passed in), so the vectors can use it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

LIVE = frozenset({"running", "paused"})
SHIPPABLE = frozenset({"completed", "archived"})


def override_hash(override_salt: str, unit_id: str) -> str:
    """How the client document names a QA unit: hex SHA-256 of ``override:<salt>:<unit id>``."""
    return hashlib.sha256(f"override:{override_salt}:{unit_id}".encode()).hexdigest()


def secret_override_salt(secret: str) -> Callable[[str], str]:
    """Per-experiment override salts derived from ``secret`` (HMAC-SHA256, 32 hex digits):
    stable across processes and restarts, different for every experiment and installation."""
    key = secret.encode()

    def salt(experiment_key: str) -> str:
        return hmac.new(key, f"override-salt:{experiment_key}".encode(), hashlib.sha256).hexdigest()[:32]

    return salt


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _client_flag(spec: Mapping[str, Any], override_salt: Callable[[str], str]) -> dict[str, Any]:
    """A flag with its listed unit ids replaced by hashes (salted per flag, like overrides)."""
    salt = override_salt(f"flag:{spec['key']}")
    rules = []
    for rule in spec.get("rules") or []:
        if rule.get("type") == "units":
            hashed = dict(rule.get("hashed_units") or {})
            hashed.update(
                (override_hash(salt, str(unit)), value)
                for unit, value in sorted((rule.get("units") or {}).items())
            )
            rule = {**rule, "units": {}, "hashed_units": hashed}
        rules.append(rule)
    return {**spec, "unit_salt": salt, "rules": rules}


def client_document(document: Mapping[str, Any], override_salt: Callable[[str], str]) -> dict[str, Any]:
    """The client-safe document derived from the full one (its own ``version``)."""
    experiments = []
    for spec in document.get("experiments") or []:
        status = spec.get("status")
        if status in LIVE:
            salt = override_salt(str(spec["key"]))
            entry = {k: v for k, v in spec.items() if k != "overrides"}
            entry["overrides"] = {}
            entry["override_salt"] = salt
            entry["hashed_overrides"] = {
                override_hash(salt, str(unit)): variant
                for unit, variant in sorted((spec.get("overrides") or {}).items())
            }
            experiments.append(entry)
        elif status in SHIPPABLE and spec.get("shipped_variant") is not None:
            shipped = spec["shipped_variant"]
            variants = [v for v in spec.get("variants") or [] if v.get("key") == shipped]
            if not variants:
                continue
            entry = {
                k: spec[k] for k in ("key", "status", "phase", "salt") if k in spec
            }
            entry.update({
                "traffic_allocation": spec.get("traffic_allocation", 100.0), "layer": None,
                "layer_range": None, "variants": variants, "targeting": [], "overrides": {},
                "shipped_variant": shipped,
            })
            if "audiences" in spec:  # a shipped variant is served whatever the audiences
                entry["audiences"] = []
            if "enabled" in spec:
                entry["enabled"] = spec["enabled"]
            experiments.append(entry)
    used = {e["layer"] for e in experiments if e.get("layer") is not None}
    body = {
        "schema_version": document.get("schema_version"),
        "hash": document.get("hash"),
        "layers": {k: v for k, v in (document.get("layers") or {}).items() if k in used},
        "experiments": experiments,
        "scope": "client",
    }
    if "environment" in document:
        body["environment"] = document["environment"]
    if "flags" in document or "audiences" in document:
        flags = [_client_flag(spec, override_salt) for spec in document.get("flags") or []]
        referenced = {a for e in experiments for a in e.get("audiences") or []}
        referenced.update(a for f in flags for r in f.get("rules") or [] for a in r.get("audiences") or [])
        body["audiences"] = {
            k: v for k, v in (document.get("audiences") or {}).items() if k in referenced
        }
        body["flags"] = flags
    version = hashlib.sha256(_canonical(body)).hexdigest()[:20]
    out = {"schema_version": body["schema_version"], "version": version}
    if "generated_at" in document:
        out["generated_at"] = document["generated_at"]
    out.update((k, v) for k, v in body.items() if k != "schema_version")
    return out
