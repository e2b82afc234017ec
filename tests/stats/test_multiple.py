"""Holm and Benjamini-Hochberg vs statsmodels.multipletests; family assignment."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.stats import StatsInputError, analyze_experiment
from analysis.stats.multiple import adjust, benjamini_hochberg, holm

from .helpers import conv, metric


@pytest.mark.parametrize("seed", range(20))
def test_holm_and_bh_match_statsmodels(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 30))
    p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
    if m > 3:
        p[1] = p[2]  # ties
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)
    assert benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], rel=1e-12)


def test_adjust_names_and_empty():
    assert adjust([], "holm") == []
    assert adjust([0.01, 0.04], "fdr_bh") == pytest.approx([0.02, 0.04])
    assert adjust([0.01, 0.04], "none") == [0.01, 0.04]
    with pytest.raises(StatsInputError) as e:
        adjust([0.1], "bonferroni-ish")
    assert e.value.field == "correction"


def _body(correction):
    ctrl = conv(10_000, 1000)
    metrics = [
        metric(
            "p1", "conversion", {"control": ctrl, "a": conv(10_000, 1090), "b": conv(10_000, 1010)}
        ),
        metric(
            "s1",
            "conversion",
            {"control": ctrl, "a": conv(10_000, 1085), "b": conv(10_000, 1000)},
            role="secondary",
        ),
        metric(
            "g1",
            "conversion",
            {"control": ctrl, "a": conv(10_000, 1150), "b": conv(10_000, 1030)},
            role="guardrail",
            direction="decrease",
        ),
        metric(
            "g2",
            "conversion",
            {"control": ctrl, "a": conv(10_000, 1001), "b": conv(10_000, 990)},
            role="guardrail",
            direction="decrease",
        ),
    ]
    return analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "a": 1, "b": 1},
        metrics=metrics,
        correction=correction,
    )


@pytest.mark.parametrize(("correction", "sm"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_families_primary_secondary_together_guardrails_apart(correction, sm):
    body = _body(correction)
    assert body["correction"] == correction
    fam = {"primary_secondary": [], "guardrail": []}
    for m in body["metrics"]:
        for v in m["variants"]:
            if not v["is_control"]:
                fam[m["family"]].append((v["p_value"], v["p_value_adjusted"]))
    assert len(fam["primary_secondary"]) == 4 and len(fam["guardrail"]) == 4
    for pairs in fam.values():
        raw = [p for p, _ in pairs]
        assert [a for _, a in pairs] == pytest.approx(multipletests(raw, method=sm)[1], rel=1e-12)
    assert body["multiple_comparisons"]["families"]["guardrail"]["tests"] == 4


def test_significance_uses_adjusted_p_and_guardrail_alert():
    body = _body("holm")
    for m in body["metrics"]:
        for v in m["variants"]:
            if not v["is_control"]:
                assert v["significant"] == (v["p_value_adjusted"] < 0.05)
                assert v["p_value_adjusted"] >= v["p_value"]
    g = next(m for m in body["metrics"] if m["metric"] == "g1")
    a = next(v for v in g["variants"] if v["variant"] == "a")
    assert a["significant"] and a["guardrail_alert"] and a["verdict"] == "worse"
    assert body["decision"]["recommendation"] == "do_not_ship"
