"""The project resource: one handle on the spec, the landing zone, the quarantine and the table store."""


from functools import cached_property
from pathlib import Path

import dagster as dg

from mlops_assets.core.ingestion.landing import LocalLanding, Quarantine, S3Landing, parse_s3_url
from mlops_assets.core.config.settings import Settings
from mlops_assets.core.config.spec import DatasetSpec, load_spec
from mlops_assets.core.io.storage import PartitionStore


class ProjectResource(dg.ConfigurableResource):
    """Folders and the dataset spec of this code location (see mlops_assets/core/config/settings.py)."""

    spec_path: str
    data_dir: str
    landing_dir: str
    landing_s3: str = ""
    s3_endpoint_url: str = ""
    registry_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProjectResource":
        return cls(
            spec_path=str(settings.spec_path), data_dir=str(settings.data_dir),
            landing_dir=str(settings.landing_dir), landing_s3=settings.landing_s3,
            registry_url=settings.registry_url,
        )

    @cached_property
    def settings(self) -> Settings:
        return Settings(Path(self.spec_path), Path(self.data_dir), Path(self.landing_dir), self.landing_s3,
                        self.registry_url)

    @cached_property
    def spec(self) -> DatasetSpec:
        return load_spec(self.spec_path)

    @cached_property
    def store(self) -> PartitionStore:
        return PartitionStore(self.settings.warehouse_dir)

    @cached_property
    def quarantine(self) -> Quarantine:
        return Quarantine(self.settings.quarantine_dir)

    @cached_property
    def registry(self):
        from mlops_assets.core.registry.model_registry import open_registry

        return open_registry(self.settings)

    @cached_property
    def landing(self):
        if self.landing_s3:
            from dagster_aws.s3 import S3Resource

            bucket, prefix = parse_s3_url(self.landing_s3)
            client = S3Resource(endpoint_url=self.s3_endpoint_url or None).get_client()
            return S3Landing(client, bucket, prefix)
        return LocalLanding(Path(self.landing_dir))
