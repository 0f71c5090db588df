"""The code location that `workspace.yaml` loads. Which dataset and folders: see core/config/settings.py."""

import warnings

import dagster as dg

from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions

# Per-partition asset checks are a preview feature in Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

defs = build_definitions(Settings.from_env(), env_vars=True)
