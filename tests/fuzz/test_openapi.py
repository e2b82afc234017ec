"""Every operation of the OpenAPI schema, fuzzed with valid and invalid data (schemathesis).

Properties, for every generated request: no response is a 500 (a 503 only for a database
outage, never here); every status code is documented for the operation; every JSON body matches
the documented schema; invalid data is refused with a 4xx; and authentication is enforced (the
``ignored_auth`` check replays successful requests without a key and with a bogus one).

Requests carry a valid admin key so they reach the deepest code paths; path parameters name
real experiments, metrics and layers half of the time instead of random strings.
"""
from __future__ import annotations

import hashlib

import jsonschema
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import max_response_time
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from .conftest import APP, CURRENT, FUZZ_MAX_EXAMPLES, FUZZ_SEED

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP)
schema.config.seed = FUZZ_SEED
schema.config.cache.enabled = False  # no crash replay files in the tree; runs stay reproducible

# Schema-valid data may still break a business rule that JSON Schema cannot state (weights
# summing to 100, a status transition), so "valid data is accepted" is not a property here.
EXCLUDED = [positive_data_acceptance, max_response_time]


def _reports_rejections(response) -> bool:
    """Batch endpoints (POST /events) validate each item on its own: a 2xx that lists the
    invalid items under ``rejected`` (and stores none of them) is how they refuse bad data."""
    if not 200 <= response.status_code < 300:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("rejected"))


def _inline(node, components: dict, depth: int = 0):
    """The request body schema as plain JSON Schema: references inlined, OpenAPI's
    ``nullable`` turned into a ``null`` alternative."""
    if depth > 30:
        return {}
    if isinstance(node, list):
        return [_inline(item, components, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(components[node["$ref"].rsplit("/", 1)[1]], components, depth + 1)
    out = {k: _inline(v, components, depth + 1) for k, v in node.items()}
    if out.pop("nullable", False):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _coerced_number(error) -> bool:
    """A violation DRF tolerates on purpose: a number where text is documented (its CharField
    stores the number's text; booleans and everything else it refuses)."""
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return "string" in expected and isinstance(error.instance, (int, float)) and not isinstance(error.instance, bool)
    if error.validator in ("anyOf", "oneOf"):
        branches: dict = {}
        for sub in error.context or ():
            branches.setdefault(sub.schema_path[0], []).append(sub)
        return any(all(_coerced_number(e) for e in subs) for subs in branches.values())
    return False


def _only_coerced_numbers(case) -> bool:
    """Whether the body breaks the schema only by giving numbers where text is documented,
    which DRF accepts on purpose (see docs/operations.md); every other violation must be
    refused."""
    if not isinstance(case.body, (dict, list)):
        return False
    raw = case.operation.schema.raw_schema
    operation = raw["paths"][case.operation.path][case.operation.method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return False
    body_schema = _inline(content["schema"], raw.get("components", {}).get("schemas", {}))
    errors = list(jsonschema.Draft4Validator(body_schema).iter_errors(case.body))
    return bool(errors) and all(_coerced_number(e) for e in errors)


def _collection(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    return parts[2] if len(parts) > 2 else ""


def _point_at_real_rows(case, world) -> None:
    """Half of the cases (chosen from their own content, so runs repeat) name a real row."""
    if not case.path_parameters:
        return
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
        return  # a deliberately invalid path parameter (e.g. a non-integer id) must stay invalid
    digest = hashlib.sha256(repr(sorted(case.path_parameters.items())).encode("utf-8", "replace")).digest()
    if digest[0] % 2:
        return
    candidates = world.keys.get(_collection(case.operation.path)) or world.keys["experiments"]
    for name in list(case.path_parameters):
        case.path_parameters[name] = candidates[digest[1] % len(candidates)]


@schema.auth(refresh_interval=None)
class AdminKey:
    """A valid admin key on every request (schemathesis knows it is explicit auth, so its
    ``ignored_auth`` check replays successes without it and with a bogus one)."""

    def get(self, case, context):
        return CURRENT["key"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Api-Key {data}"}


def _authenticate(case) -> None:
    """Coverage-phase cases are built at collection time, before the key exists: give them the
    key now, unless the case deliberately goes without credentials (those must get a 401)."""
    if case.operation.schema.is_security_param_negated(case):
        return
    if not (case.headers or {}).get("Authorization", "").startswith("Api-Key "):
        schema.auth.set(case, schemathesis.AuthContext(operation=case.operation, app=APP))


@schema.parametrize()
@settings(
    max_examples=FUZZ_MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_api_fuzz(case, admin_auth):
    _authenticate(case)
    _point_at_real_rows(case, admin_auth)
    response = case.call()
    excluded = list(EXCLUDED)
    if _reports_rejections(response) or (200 <= response.status_code < 300 and _only_coerced_numbers(case)):
        excluded.append(negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)
