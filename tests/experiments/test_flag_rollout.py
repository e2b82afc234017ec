"""Rollout stickiness: ramping a rule's percent only adds units (same salt, namespace "flag").

The evaluator is ``assignment``'s; this checks the property the definitions guarantee: the salt
is fixed when the rule is created and the bucket check is ``bucket("flag", salt, unit) <
units(percent)``, so every unit in at 10 % is still in at 50 % and 100 %.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assignment.hashing import bucket, percent_to_units
from experiments import flags

NAMESPACE = "flag"


def in_rollout(salt: str, unit_id: str, percent: float) -> bool:
    return bucket(NAMESPACE, salt, unit_id) < percent_to_units(percent)


percents = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(salt=st.text(min_size=1, max_size=40), units=st.lists(st.text(min_size=1, max_size=30), max_size=40),
       ramp=st.lists(percents, min_size=2, max_size=5))
def test_ramping_up_keeps_every_earlier_unit(salt, units, ramp):
    ramp = sorted(ramp)
    for lower, higher in zip(ramp, ramp[1:], strict=False):
        for unit in units:
            if in_rollout(salt, unit, float(lower)):
                assert in_rollout(salt, unit, float(higher))


def test_ramp_10_50_100_share_and_superset():
    units = [f"user-{i}" for i in range(20_000)]
    sets = {p: {u for u in units if in_rollout("new-checkout", u, p)} for p in (10, 50, 100)}
    assert sets[10] <= sets[50] <= sets[100] == set(units)
    assert abs(len(sets[10]) / len(units) - 0.10) < 0.01
    assert abs(len(sets[50]) / len(units) - 0.50) < 0.015


@pytest.mark.django_db
def test_ramping_through_the_service_keeps_the_salt():
    flag = flags.create_flag({"key": "new-checkout", "name": "n"})
    flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": 10}])
    units = [f"user-{i}" for i in range(2_000)]

    def members():
        [rule] = flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))["environments"]["production"]["rules"]
        return rule, {u for u in units if in_rollout(rule["salt"], u, rule["percent"])}

    rule, at_10 = members()
    flags.set_environment(flag, "production", rules=[{**rule, "percent": 50}])
    rule, at_50 = members()
    flags.set_environment(flag, "production", rules=[{k: v for k, v in rule.items() if k != "salt"} | {"percent": 100}])
    rule, at_100 = members()
    assert at_10 <= at_50 <= at_100 == set(units) and len(at_10) < len(at_50)


def test_another_namespace_or_salt_gives_other_units():
    units = [f"user-{i}" for i in range(2_000)]
    flag_units = {u for u in units if in_rollout("new-checkout", u, 10)}
    exp_units = {u for u in units if bucket("exp", "new-checkout", u) < 1000}
    other_salt = {u for u in units if in_rollout("other", u, 10)}
    assert flag_units != exp_units and flag_units != other_salt
