"""The one resource every asset, check, sensor and schedule uses: the portfolio of models, built from settings.

An asset calls `portfolio.model(NAME)` for its model's spec, folders, landing zone and registry view (a plain
`core.portfolio.ModelWorkspace`: nothing Dagster-specific happens below this line)."""

from functools import cached_property
from pathlib import Path

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

    @classmethod
    def from_settings(cls, settings: Settings) -> "PortfolioResource":
        return cls(
            spec_paths=[str(p) for p in settings.spec_paths], data_dir=str(settings.data_dir),
            landing_dir=str(settings.landing_dir), landing_s3=settings.landing_s3,
            registry_url=settings.registry_url,
        )

    @cached_property
    def settings(self) -> Settings:
        return Settings(tuple(Path(p) for p in self.spec_paths), Path(self.data_dir), Path(self.landing_dir),
                        self.landing_s3, self.registry_url)

    @cached_property
    def portfolio(self) -> Portfolio:
        return Portfolio(self.settings, s3_endpoint_url=self.s3_endpoint_url)

    def model(self, name: str) -> ModelWorkspace:
        return self.portfolio.model(name)
