"""Monitoring: data drift, prediction drift, performance and cost, each with a check whose description is
its runbook, and the sensor that brings realised performance when labels land."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .sensors import build_label_arrival_sensor


def build(scope: ModelScope) -> dg.Definitions:
    return dg.Definitions(assets=build_assets(scope), sensors=[build_label_arrival_sensor(scope)])
