"""Simulations of the *decision* under repeated looks (issue 11), fixed seeds, a few seconds each.

Data: a mean metric with normal per-unit values, N(10, 10^2), observed in 20 equal daily looks
up to the planned sample size (sized for a +10 % effect at 80 % power). Each look's sufficient
statistics are drawn exactly: a day's sum is N(n mu, n sigma^2) and its centred sum of squares
sigma^2 chi2(n - 1), independently; looks accumulate the days.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import VariantStats, analyze_experiment, sample_size

from .helpers import metric, treatment

pytestmark = pytest.mark.slow

MU, SD, LOOKS = 10.0, 10.0, 20
PLAN = sample_size(baseline=MU, mde=0.10, sd=SD)  # +10 % at 80 % power, alpha 0.05
N_ARM = int(PLAN["per_variant"])
PLANNED = 2 * N_ARM


def _days(rng: np.random.Generator, mu: float, runs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-look cumulative (n, sum, m2) arrays of shape (runs, LOOKS) for one arm."""
    per_day = np.full(LOOKS, N_ARM // LOOKS)
    per_day[-1] += N_ARM - per_day.sum()
    sums = rng.normal(mu * per_day, SD * np.sqrt(per_day), (runs, LOOKS))
    within = SD**2 * rng.chisquare(per_day - 1, (runs, LOOKS))
    n = np.cumsum(per_day)
    s = np.cumsum(sums, axis=1)
    # pooled centred sum of squares: within-day parts plus the spread of the day means
    day_means = sums / per_day
    m2 = np.empty((runs, LOOKS))
    for k in range(LOOKS):
        mean = s[:, k] / n[k]
        m2[:, k] = within[:, : k + 1].sum(axis=1) + (
            per_day[: k + 1] * (day_means[:, : k + 1] - mean[:, None]) ** 2
        ).sum(axis=1)
    return np.broadcast_to(n, (runs, LOOKS)), s, m2


def _stats(n: int, s: float, m2: float) -> VariantStats:
    return VariantStats(n=int(n), sum=float(s), sum_sq=float(m2 + s * s / n), m2=float(m2))


def _look(c, t, run, k, *, sequential):
    body = analyze_experiment(
        experiment="sim",
        control="control",
        weights={"control": 1, "t": 1},
        metrics=[metric("rev", "sum", {
            "control": _stats(c[0][run, k], c[1][run, k], c[2][run, k]),
            "t": _stats(t[0][run, k], t[1][run, k], t[2][run, k]),
        })],
        sequential=sequential,
        planned_sample_size=PLANNED,
        cuped=False,
    )
    return body["decision"]["recommendation"], treatment(body, "rev", "t")


def _aa(seed: int, runs: int, sequential: bool) -> tuple[float, float]:
    """(share of runs where the decision said Ship at some look, same for the naive rule)."""
    rng = np.random.default_rng(seed)
    c, t = _days(rng, MU, runs), _days(rng, MU, runs)
    ship = naive = 0
    for run in range(runs):
        shipped = peeked = False
        for k in range(LOOKS):
            rec, v = _look(c, t, run, k, sequential=sequential)
            shipped |= rec == "ship"
            # today's rule (before issue 11): Ship when the fixed-horizon p < alpha, better direction
            fh = v["fixed_horizon"]
            peeked |= fh["p_value"] < 0.05 and fh["absolute"] > 0
        ship += shipped
        naive += peeked
    return ship / runs, naive / runs


def test_aa_twenty_looks_sequential_off_ships_at_most_five_percent():
    """A/A, 20 daily looks, sequential testing off: the decision says Ship in <= 5 % of runs.

    The old rule (Ship as soon as a fixed-horizon p < 0.05 points the right way, at any look)
    ships in about 10-13 % of these same runs: the peeking error the early-look rule removes."""
    ours, naive = _aa(seed=1101, runs=220, sequential=False)
    assert ours <= 0.05
    assert naive >= 0.08 and naive > 2.5 * max(ours, 0.01)


def test_aa_twenty_looks_sequential_on_ships_at_most_five_percent():
    ours, naive = _aa(seed=1102, runs=220, sequential=True)
    assert ours <= 0.05
    assert naive >= 0.08


def test_true_ten_percent_effect_ships_with_planned_power_at_planned_size():
    runs = 400
    rng = np.random.default_rng(1103)
    c, t = _days(rng, MU, runs), _days(rng, MU * 1.10, runs)
    final = LOOKS - 1
    ships = sum(_look(c, t, run, final, sequential=False)[0] == "ship" for run in range(runs))
    rate = ships / runs
    se = np.sqrt(0.8 * 0.2 / runs)  # ~0.02
    assert abs(rate - 0.80) < 3.5 * se, rate
    # and before the planned size it never ships (the early-look rule)
    assert all(_look(c, t, run, LOOKS // 2, sequential=False)[0] != "ship" for run in range(40))
