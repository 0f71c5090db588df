"""The one resource every asset, check, sensor and schedule uses: the portfolio of models, built from settings.

An asset calls `portfolio.model(NAME)` for its model's spec, folders, landing zone and registry view (a plain
`core.portfolio.ModelWorkspace`: nothing Dagster-specific happens below this line)."""

import os
from functools import cached_property
from pathlib import Path
from typing import Mapping

import dagster as dg

from ..core.config.settings import Settings
from ..core.portfolio import ModelWorkspace, Portfolio


class PortfolioResource(dg.ConfigurableResource):
    """The dataset specs and folders of this code location (see mlops_assets/core/config/settings.py)."""

    spec_paths: list[str]
    data_dir: str
    landing_dir: str
    landing_s3: str = ""
    s3_endpoint_url: str = ""
    registry_url: str = ""
    storage_url: str = ""  # MLOPS_STORAGE_URL: "" = data_dir, file:///folder or s3://bucket/prefix

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> "PortfolioResource":
        """The resource for `settings`. A location that came from the environment (MLOPS_STORAGE_URL,
        MLOPS_REGISTRY_URL, MLOPS_LANDING_S3) is passed as dg.EnvVar, so it is read when a run launches (and the
        UI shows the variable's name, not a URL that may carry a password)."""
        env = os.environ if env is None else env

        def from_env(name: str, value: str):
            return dg.EnvVar(name) if value and env.get(name, "").strip() == value else value

        return cls(
            spec_paths=[str(p) for p in settings.spec_paths], data_dir=str(settings.data_dir),
            landing_dir=str(settings.landing_dir), landing_s3=from_env("MLOPS_LANDING_S3", settings.landing_s3),
            registry_url=from_env("MLOPS_REGISTRY_URL", settings.registry_url),
            storage_url=from_env("MLOPS_STORAGE_URL", settings.storage_url),
        )

    @cached_property
    def settings(self) -> Settings:
        return Settings(spec_paths=tuple(Path(p) for p in self.spec_paths), data_dir=Path(self.data_dir),
                        landing_dir=Path(self.landing_dir), landing_s3=self.landing_s3,
                        registry_url=self.registry_url, storage_url=self.storage_url.strip())

    @cached_property
    def portfolio(self) -> Portfolio:
        return Portfolio(self.settings, s3_endpoint_url=self.s3_endpoint_url)

    def model(self, name: str) -> ModelWorkspace:
        return self.portfolio.model(name)
