"""Monitoring: data drift, prediction drift, performance and cost, each with a check whose description is
its runbook, and the sensor that brings realised performance when labels land; and the loop-health SLOs,
checks on the assets of each part of the loop, evaluated by their own daily schedule."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .sensors import build_label_arrival_sensor
from .slo_checks import build_freshness_checks, build_loop_health_job, build_loop_health_schedule, build_slo_checks


def build(scope: ModelScope) -> dg.Definitions:
    return dg.Definitions(assets=build_assets(scope), sensors=[build_label_arrival_sensor(scope)],
                          asset_checks=[build_slo_checks(scope), *build_freshness_checks(scope)],
                          jobs=[build_loop_health_job(scope)], schedules=[build_loop_health_schedule(scope)])
