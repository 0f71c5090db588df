"""The one OK/WARN/ERROR rule, and the three monitoring figures that use it (drift share, performance drop, cost)."""

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest

from mlops_assets.core.config.spec import MonitoringPolicy
from mlops_assets.core.monitoring.drift import drift_status
from mlops_assets.core.monitoring.reference import CostBaseline
from mlops_assets.core.monitoring.reports import cost_day
from mlops_assets.core.monitoring.status import status_for


@pytest.mark.parametrize("value, expected", [(0.0, "OK"), (0.099, "OK"), (0.1, "WARN"), (0.29, "WARN"),
                                             (0.3, "ERROR"), (5.0, "ERROR"), (math.nan, "OK")])
def test_higher_is_worse_limits_are_inclusive(value, expected):
    assert status_for(value, warn_at=0.1, error_at=0.3) == expected


@pytest.mark.parametrize("value, expected", [(0.9, "OK"), (0.8, "WARN"), (0.75, "WARN"), (0.7, "ERROR"),
                                             (0.1, "ERROR"), (math.nan, "OK")])
def test_lower_is_worse_turns_the_comparison_round(value, expected):
    assert status_for(value, warn_at=0.8, error_at=0.7, higher_is_worse=False) == expected


def test_error_wins_when_the_limits_coincide():
    assert status_for(0.5, warn_at=0.5, error_at=0.5) == "ERROR"


def test_drift_share_makes_the_error_any_monitored_drift_warns_and_no_drift_is_never_an_alarm():
    policy = MonitoringPolicy(error_drift_share=0.3)
    assert [drift_status(s, policy) for s in (0.0, 0.1, 0.3)] == ["OK", "WARN", "ERROR"]
    assert drift_status(0.0, policy, any_drifted=True) == "WARN"  # drifting, but the model ignores it
    zero = replace(policy, error_drift_share=0.0)
    assert drift_status(0.0, zero) == "OK" and drift_status(0.01, zero) == "ERROR"
    assert drift_status(0.0, zero, any_drifted=True) == "WARN"  # weightless drift never requests a retrain


def test_cost_status_uses_the_rule_on_the_wall_time_ratio():
    policy = MonitoringPolicy(warn_cost_ratio=2.0, error_cost_ratio=5.0)
    reference = SimpleNamespace(cost=CostBaseline(latency_ms_per_1k=1.0, artifact_bytes=10))
    first = [{"rows": 1000, "cpu_seconds": 0.01, "wall_seconds": 0.01}]
    for wall, expected in ((0.019, "OK"), (0.02, "WARN"), (0.05, "ERROR")):
        today = {"rows": 1000, "cpu_seconds": 0.01, "wall_seconds": wall}
        assert cost_day(reference, today, first, 0, 0.0, policy)["status"] == expected
