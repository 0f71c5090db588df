"""Deployment: what happens to a candidate that passed its gates, and the promote / rollback jobs."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .jobs import build_jobs


def build(scope: ModelScope) -> dg.Definitions:
    return dg.Definitions(assets=build_assets(scope), jobs=build_jobs(scope))
