"""analyze_experiment: the results contract, the decision rules and purity (no Django)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.stats import analyze_experiment

from .helpers import assert_json_safe, conv, metric, suff, treatment

STATS_DIR = Path(__file__).resolve().parents[2] / "analysis" / "stats"
W = {"control": 1, "green": 1}


def _rev(rng, n, mean, pre_corr=True):
    pre = rng.gamma(2.0, mean / 2, n)
    y = 0.6 * pre + rng.gamma(2.0, mean * 0.2, n)
    return suff(y, pre=pre) if pre_corr else suff(y)


def _experiment(
    purchase_t=620, guard_t=2000, seq=False, primary_dir="increase", planned=10_000, margin=0.10
):
    rng = np.random.default_rng(42)
    metrics = [
        metric(
            "purchase",
            "conversion",
            {"control": conv(5012, 506), "green": conv(4988, purchase_t)},
            name="Purchase rate",
            direction=primary_dir,
        ),
        metric(
            "revenue",
            "sum",
            {"control": _rev(rng, 5012, 10), "green": _rev(rng, 4988, 10)},
            role="secondary",
            name="Revenue per user",
        ),
        metric(
            "errors",
            "conversion",
            {"control": conv(5012, 2000), "green": conv(4988, guard_t)},
            role="guardrail",
            direction="decrease",
            name="Error rate",
            margin=margin,
        ),
    ]
    return analyze_experiment(
        experiment="checkout-button",
        control="control",
        weights=W,
        metrics=metrics,
        sequential=seq,
        planned_sample_size=planned,
        daily_units=1000,
    )


def test_contract_shape():
    body = _experiment(seq=True)
    assert_json_safe(body)
    json.dumps(body, allow_nan=False)
    assert {
        "experiment",
        "alpha",
        "correction",
        "sequential",
        "srm",
        "metrics",
        "power",
        "decision",
    } <= set(body)
    assert (
        body["experiment"] == "checkout-button"
        and body["alpha"] == 0.05
        and body["correction"] == "holm"
    )
    assert {"p_value", "passed", "counts", "expected", "message"} <= set(body["srm"])
    assert body["srm"]["counts"] == {"control": 5012, "green": 4988}
    for m in body["metrics"]:
        assert {"metric", "name", "kind", "role", "direction", "status", "variants"} <= set(m)
        ctrl, green = m["variants"]
        assert ctrl["is_control"] is True and ctrl["variant"] == "control"
        assert {"units", "mean", "sd"} <= set(ctrl)
        assert green["is_control"] is False
        assert {
            "units",
            "mean",
            "lift",
            "p_value",
            "p_value_adjusted",
            "significant",
            "chance_to_beat_control",
            "expected_loss",
            "credible_interval_relative",
            "sequential",
            "status",
            "guardrail_alert",
        } <= set(green)
        assert {"absolute", "relative", "ci_absolute", "ci_relative"} <= set(green["lift"])
        assert {"p_value", "ci_absolute", "ci_relative"} <= set(green["sequential"])
    rev = treatment(body, "revenue", "green")
    assert {"variance_reduction", "ci_absolute", "ci_relative"} <= set(rev["cuped"])
    assert {
        "planned_sample_size",
        "units_so_far",
        "progress",
        "mde_reached_relative",
        "power_reached",
        "days_left",
    } <= set(body["power"])
    assert {"recommendation", "headline", "reasons"} <= set(body["decision"])
    assert all(isinstance(r, str) and r for r in body["decision"]["reasons"])


def test_ship_when_primary_wins_and_guardrails_hold():
    body = _experiment()
    d = body["decision"]
    assert d["recommendation"] == "ship" and d["variant"] == "green"
    assert "Ship green" in d["headline"] and "Purchase rate" in d["headline"]
    assert any("Guardrail 'Error rate' for green: holds" in r for r in d["reasons"]) or any(
        "Guardrail 'Error rate' holds: worst case" in r for r in d["reasons"]
    )


def test_do_not_ship_on_guardrail_alert():
    body = _experiment(guard_t=2300)
    g = treatment(body, "errors", "green")
    assert g["guardrail_alert"] is True
    d = body["decision"]
    assert d["recommendation"] == "do_not_ship" and "Error rate" in d["headline"]
    assert any("guardrail" in r for r in d["reasons"])


def test_do_not_ship_when_primary_significantly_worse():
    body = _experiment(purchase_t=400)
    assert treatment(body, "purchase", "green")["verdict"] == "worse"
    assert body["decision"]["recommendation"] == "do_not_ship"
    # the same change is good news when lower is better
    body = _experiment(purchase_t=400, primary_dir="decrease")
    assert body["decision"]["recommendation"] == "ship"


def test_keep_running_mentions_power_and_days_left():
    body = _experiment(purchase_t=520, planned=20_000)
    d = body["decision"]
    assert d["recommendation"] == "keep_running"
    text = " ".join(d["reasons"])
    assert "can reliably detect" in text and "more day(s)" in text


def test_invalid_srm_beats_everything():
    m = metric("purchase", "conversion", {"control": conv(5400, 500), "green": conv(4600, 700)})
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights=W,
        metrics=[m],
        exposure_counts={"control": 5400, "green": 4600},
    )
    assert body["decision"]["recommendation"] == "invalid_srm"
    assert body["decision"]["headline"].startswith("Results can't be trusted")


def test_multi_variant_ship_picks_winner_and_sequential_keeps_running():
    metrics = [
        metric(
            "p",
            "conversion",
            {"control": conv(20_000, 2000), "a": conv(20_000, 2300), "b": conv(20_000, 2010)},
        )
    ]
    w = {"control": 1, "a": 1, "b": 1}
    body = analyze_experiment(
        experiment="e", control="control", weights=w, metrics=metrics, planned_sample_size=60_000
    )
    assert body["decision"]["recommendation"] == "ship" and body["decision"]["variant"] == "a"
    assert [v["variant"] for v in body["metrics"][0]["variants"]] == ["control", "a", "b"]


@pytest.mark.parametrize("path", sorted(STATS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_django_import_in_stats_package(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "django" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in ("django", "rest_framework")


def test_importing_stats_does_not_load_django():
    code = "import sys, analysis.stats; print('django' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=STATS_DIR.parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
