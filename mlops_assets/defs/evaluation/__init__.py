"""Evaluation: the candidate against the champion on a fixed benchmark, with the promotion gates as checks."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets


def build(scope: ModelScope) -> dg.Definitions:
    return dg.Definitions(assets=build_assets(scope))
