"""The value classes that found issue 10, injected into every request body the schema documents.

schemathesis generates each operation's body from the OpenAPI schema; a ``flatmap_body`` hook
then puts one hostile value at one place of it (any member or element, at any depth), written as
raw JSON text so that literals Python cannot produce go out as they are:

* numbers beyond a double (``1e400``, ``-1e400``, a 400-digit integer, ``1e309``);
* the non-JSON literals ``NaN``, ``Infinity``, ``-Infinity``;
* nesting past the limit (33 levels) and far past the stack (5,000 levels);
* text with quotes, backslashes and astral Unicode (ids included), which is valid input.

Properties: never a 5xx; a hostile number, literal or nesting is refused with a 4xx (the events
endpoint may instead list the event under ``rejected``) and nothing is stored; valid text is
answered with a 2xx or 4xx. The budget is ``FUZZ_MAX_EXAMPLES`` per operation with a body
(12 operations), positive generation and the fuzzing phase only: about 300 requests in CI.
"""
from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from .conftest import APP, FUZZ_MAX_EXAMPLES, FUZZ_SEED
from .test_openapi import _authenticate, _point_at_real_rows

MARK = "__HOSTILE_VALUE__"
#: Examples per operation that takes a body (12 of them): FUZZ_MAX_EXAMPLES, as for the main pass.
HOSTILE_EXAMPLES = FUZZ_MAX_EXAMPLES

REFUSED = [
    "1e400", "-1e400", "1" + "0" * 400, "1e309", "NaN", "Infinity", "-Infinity",
    "[" * 33 + "]" * 33, "[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000,
]
VALID_TEXT = [json.dumps(s) for s in ("o'brien@example.com", 'say "hi" \\ o\'brien', "ü-ñï-😀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u202eRTL")]

hostile = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP).include(method=["POST", "PATCH"])
hostile.config.seed = FUZZ_SEED
hostile.config.cache.enabled = False
# Generated (positive) bodies, then one hostile value each: the coverage and negative passes of
# test_openapi.py already explore malformed shapes.
hostile.config.phases.update(phases=["fuzzing"])
hostile.config.generation.update(modes=[GenerationMode.POSITIVE], max_examples=HOSTILE_EXAMPLES)


def _places(body) -> list[tuple]:
    """Every member and element of ``body`` as a path of keys/indices (the root is ``()``)."""
    places: list[tuple] = [()]
    stack = [((), body)]
    while stack and len(places) < 200:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            places.append((*path, key))
            stack.append(((*path, key), child))
    return places


def _inject(body, place: tuple, literal: str) -> bytes:
    """``body`` as JSON text with ``literal`` (raw JSON text) at ``place``."""
    if not place:
        return literal.encode()
    copy = json.loads(json.dumps(body))
    node = copy
    for key in place[:-1]:
        node = node[key]
    node[place[-1]] = MARK
    return json.dumps(copy).replace(json.dumps(MARK), literal, 1).encode()


@hostile.hook
def flatmap_body(context, body):
    if isinstance(body, bytes | str) or body is None:
        body = {}
    return st.tuples(st.sampled_from(_places(body)), st.sampled_from(REFUSED + VALID_TEXT)).map(
        lambda choice: _inject(body, *choice))


def _stored() -> dict[str, int]:
    from analysis.models import Event
    from assignment import exposures
    from assignment.models import Exposure
    from experiments.models import Experiment, Layer, Metric, TargetingRule, Variant

    counts = {m.__name__: m.objects.count() for m in (Event, Exposure, Experiment, Layer, Metric, TargetingRule, Variant)}
    counts["buffered exposures"] = len(exposures.local_buffer)
    return counts


@hostile.parametrize()
@settings(
    max_examples=HOSTILE_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_hostile_values_in_any_body(case, admin_auth):
    _authenticate(case)
    _point_at_real_rows(case, admin_auth)
    sent = case.body if isinstance(case.body, bytes) else b""
    refused = bool(sent) and not any(t.encode() in sent for t in VALID_TEXT)
    before = _stored()
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:300], sent[:200])
    if not refused:
        return
    after = _stored()
    try:
        body = response.json()
    except ValueError:
        body = None
    if 200 <= response.status_code < 300:
        # Only a batch may answer 2xx: with the hostile event listed as rejected.
        assert isinstance(body, dict) and body.get("rejected"), (response.status_code, body, sent[:200])
        assert after["Event"] - before["Event"] == body["accepted"]
    else:
        assert 400 <= response.status_code < 500 and isinstance(body, dict) and body
        assert after == before, (case.operation.path, sent[:200])
