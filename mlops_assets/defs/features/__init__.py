"""Features: the model inputs shared by training and serving, and the labeled examples training reads."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets


def build(scope: ModelScope) -> dg.Definitions:
    return dg.Definitions(assets=build_assets(scope))
