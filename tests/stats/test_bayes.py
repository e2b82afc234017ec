"""Bayesian summaries checked by Monte Carlo (fixed seeds) and for determinism."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import analyze_experiment
from analysis.stats.bayes import beta_binomial, normal_model

from .helpers import assert_json_safe, conv, metric, suff, treatment

DRAWS = 2_000_000


@pytest.mark.parametrize(
    ("c1", "n1", "c0", "n0"),
    [
        (3, 10, 1, 10),  # 10 units
        (564, 4988, 506, 5012),
        (1_000_900, 10_000_000, 1_000_000, 10_000_000),  # 10 million units
        (2, 10, 1_000_000, 10_000_000),  # one-sided huge imbalance
        (9_999_990, 10_000_000, 9, 10),
        (0, 50, 5, 50),  # zero conversions in one arm (the model itself copes)
    ],
)
@pytest.mark.parametrize("increase", [True, False])
def test_beta_binomial_against_monte_carlo(c1, n1, c0, n0, increase):
    rng = np.random.default_rng(2024)
    p1 = rng.beta(1 + c1, 1 + n1 - c1, DRAWS)
    p0 = rng.beta(1 + c0, 1 + n0 - c0, DRAWS)
    res = beta_binomial(c1, n1, c0, n0, increase=increase, alpha=0.05)
    better = p1 > p0 if increase else p1 < p0
    mc_chance = better.mean()
    assert res.chance_to_beat == pytest.approx(
        mc_chance, abs=4 * np.sqrt(mc_chance * (1 - mc_chance) / DRAWS) + 1e-6
    )
    shortfall = np.maximum(p0 - p1, 0) if increase else np.maximum(p1 - p0, 0)
    assert res.expected_loss == pytest.approx(
        shortfall.mean(), rel=0.02, abs=4 * shortfall.std() / np.sqrt(DRAWS) + 1e-12
    )
    q = np.quantile(p1 / p0 - 1, [0.025, 0.975])
    spread = q[1] - q[0]
    assert res.ci_relative[0] == pytest.approx(q[0], abs=0.01 * spread)
    assert res.ci_relative[1] == pytest.approx(q[1], abs=0.01 * spread)


@pytest.mark.parametrize(
    ("m1", "v1", "m0", "v0"),
    [(10.3, 0.04, 10.0, 0.04), (5.0, 1.0, 5.5, 0.2), (1.0, 1e-8, 1.0, 1e-4)],
)
@pytest.mark.parametrize("increase", [True, False])
def test_normal_model_against_monte_carlo(m1, v1, m0, v0, increase):
    rng = np.random.default_rng(99)
    a = rng.normal(m1, np.sqrt(v1), DRAWS)
    b = rng.normal(m0, np.sqrt(v0), DRAWS)
    res = normal_model(m1, v1, m0, v0, increase=increase, alpha=0.05)
    better = a > b if increase else a < b
    assert res.chance_to_beat == pytest.approx(better.mean(), abs=0.002)
    loss = np.maximum(b - a, 0) if increase else np.maximum(a - b, 0)
    assert res.expected_loss == pytest.approx(loss.mean(), rel=0.02, abs=1e-6)
    q = np.quantile(a / b - 1, [0.025, 0.975])
    assert res.ci_relative == pytest.approx(q, abs=0.01 * (q[1] - q[0]))


def test_chance_to_beat_is_deterministic_and_in_report():
    m = metric("c", "conversion", {"control": conv(5012, 506), "t": conv(4988, 564)})
    kw = {
        "experiment": "e",
        "control": "control",
        "weights": {"control": 1, "t": 1},
        "metrics": [m],
    }
    a, b = analyze_experiment(**kw), analyze_experiment(**kw)
    assert a == b
    v = treatment(a, "c", "t")
    assert 0.97 < v["chance_to_beat_control"] < 0.98
    assert v["bayesian"]["prior"] == "Beta(1, 1)"
    assert (
        v["credible_interval_relative"][0]
        < v["lift"]["relative"]
        < v["credible_interval_relative"][1]
    )


def test_means_use_normal_model_and_direction():
    rng = np.random.default_rng(4)
    y0, y1 = rng.normal(10, 2, 500), rng.normal(9.7, 2, 500)
    m = metric("t", "sum", {"control": suff(y0), "t": suff(y1)}, direction="decrease")
    body = analyze_experiment(
        experiment="e", control="control", weights={"control": 1, "t": 1}, metrics=[m]
    )
    assert_json_safe(body)
    v = treatment(body, "t", "t")
    assert v["bayesian"]["model"] == "normal"
    assert v["chance_to_beat_control"] > 0.9  # lower is better here
    assert v["expected_loss"] >= 0
