"""Python SDK flags through the client: values, defaults, and exposures logged exactly when an
experiment rule decides with an ``assigned`` answer (docs/assignment.md section 6a)."""
from __future__ import annotations

import copy
import json

from abplatform_sdk import Evaluator, FlagResult

from .conftest import VECTORS
from .test_python_client import fake, make  # noqa: F401 (the fixture)

DATA = json.loads(VECTORS.read_text(encoding="utf-8"))


def _document() -> dict:
    """The vector document plus a flag whose experiment rule comes after a force rule."""
    document = copy.deepcopy(DATA["document"])
    document["flags"].append({
        "key": "gated", "type": "number", "default": -1, "enabled": True, "unit_salt": "",
        "rules": [
            {"id": "g1", "type": "force", "audiences": ["eu"], "value": 1},
            # reshuffled: running, 100 % allocation, no targeting: every unit is "assigned"
            {"id": "g2", "type": "experiment", "experiment": "reshuffled",
             "values": {"control": 10, "treatment": 20}},
        ],
    })
    return document


def test_experiment_rule_logs_an_exposure_only_when_it_decides(fake):  # noqa: F811
    body = json.dumps(_document()).encode()
    fake.config = lambda headers: (200, body)
    with make(fake.url) as client:
        forced = client.get_flag("gated", "u-1", {"country": "DE"})
        assert (forced.value, forced.reason, forced.rule_id) == (1, "force", "g1")
        assert client.queue_size == 0  # the experiment would have assigned u-1, but did not decide
        decided = client.get_flag("gated", "u-1", {"country": "US"})
        assert decided.reason == "experiment" and decided.experiment == "reshuffled"
        assert decided.value == {"control": 10, "treatment": 20}[decided.variant]
        assert client.queue_size == 1
        queued = client._queue[0]
        assert queued[:3] == ("reshuffled", decided.variant, "u-1") and queued[-1] == 2  # phase 2
        client.get_flag("gated", "u-1", {"country": "US"})
        assert client.queue_size == 1  # deduplicated like assign
        # An override that decides an experiment rule is never an exposure.
        override = client.get_flag("layout", "qa-user-1", {})
        assert (override.reason, override.rule_id, override.variant) == ("experiment", "r11", "treatment")
        assert client.queue_size == 1


def test_defaults_unknown_flags_and_evaluate_all(fake):  # noqa: F811
    with make(fake.url) as client:
        assert client.get_flag("no-such", "u-1", default="fallback") == FlagResult("no-such", "fallback", "unknown_flag")
        results = client.get_flags("u-1", {"country": "DE", "age": 30})
        assert set(results) == {f["key"] for f in DATA["document"]["flags"]}
        assert results["kill-switch"].reason == "disabled" and results["new-checkout"].value is True
        assert client.get_flags("u-1", keys=["empty", "nope"])["nope"].reason == "unknown_flag"


def test_without_configuration_the_default_is_served():
    client = make("http://127.0.0.1:9", timeout=0.2)
    try:
        assert client.get_flag("new-checkout", "u-1", default=True) == FlagResult("new-checkout", True, "no_config")
        assert client.get_flags("u-1", keys=["a"])["a"].reason == "no_config"
    finally:
        client.close()


def test_malformed_flags_are_ignored_not_fatal():
    document = {**DATA["document"], "flags": [None, {"key": "x", "rules": [None, {"type": "bogus"}]}, 3]}
    assert Evaluator(document).flags.evaluate("x", "u").reason == "default"


def test_unusable_flag_numbers_refuse_the_document():
    import pytest
    from abplatform_sdk import DocumentError

    for percent in ("abc", float("inf")):
        document = {**DATA["document"], "flags": [{"key": "f", "rules": [
            {"id": "r", "type": "rollout", "audiences": [], "value": True, "percent": percent}]}]}
        with pytest.raises(DocumentError):
            Evaluator(document)
