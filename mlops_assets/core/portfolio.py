"""The portfolio: every model the code location runs, one per dataset spec, each with its own folders and a
view of the one shared registry. The Dagster shell, the CLI and the replay all reach a model through here, so
the specs are loaded once and a model's name means the same thing everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from mlops_assets.core.config.settings import MODEL_NAME, ModelPaths, Settings
from mlops_assets.core.config.spec import DatasetSpec, SpecError, load_spec
from mlops_assets.core.ingestion.landing import Archive, LocalLanding, Quarantine, S3Landing, parse_s3_url
from mlops_assets.core.io.objects import ObjectFile, ObjectStore
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.core.registry.model_registry import ModelRegistry, open_registry
from mlops_assets.core.serving.ledger import PredictionLedger


class UnknownModel(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this is read by people
        return str(self.args[0])


@dataclass
class ModelWorkspace:
    """One model: its spec, its folders, its landing zone and its view of the registry."""

    spec: DatasetSpec
    paths: ModelPaths
    settings: Settings
    shared_registry: Callable[[], ModelRegistry] = field(repr=False)
    s3_endpoint_url: str = ""
    shared_storage: Callable[[], ObjectStore] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def objects(self) -> ObjectStore:
        """The model's state: `models/<model>/` of the settings' storage (a local folder by default, or S3)."""
        root = self.shared_storage() if self.shared_storage else self.settings.storage_root(self.s3_endpoint_url)
        return root.child(f"models/{self.name}")

    @cached_property
    def store(self) -> PartitionStore:
        return PartitionStore(self.objects.child("warehouse"))

    @cached_property
    def quarantine(self) -> Quarantine:
        return Quarantine(self.objects.child("quarantine"))

    @cached_property
    def archive(self) -> Archive:
        """Every accepted landed file, by content (`archive/<day>/<sha256>_<file>`)."""
        return Archive(self.objects.child("archive"))

    @cached_property
    def ledger(self) -> PredictionLedger:
        return PredictionLedger(self.objects.child("ledger"))

    def deployment_file(self, name: str) -> ObjectFile:
        """A document of the model's deployment state (`deployment/<name>`: the running canary's plan and state)."""
        return ObjectFile(self.objects, f"deployment/{name}")

    def monitoring_file(self, name: str) -> ObjectFile:
        """A document kept by monitoring (`monitoring/<name>`: the cost summary)."""
        return ObjectFile(self.objects, f"monitoring/{name}")

    @cached_property
    def registry(self) -> ModelRegistry:
        return self.shared_registry().for_model(self.name)

    @cached_property
    def landing(self):
        s3_url = self.settings.landing_s3_for(self.name)
        if s3_url:
            import boto3  # installed with dagster-aws; only the S3 landing zone needs it

            bucket, prefix = parse_s3_url(s3_url)
            shared = getattr(self.objects, "client", None)  # the storage's client when it is S3: one request count
            client = shared or boto3.client("s3", endpoint_url=self.s3_endpoint_url or None)  # the AWS variables
            return S3Landing(client, bucket, prefix)
        return LocalLanding(self.paths.landing_dir)


class Portfolio:
    """The models of `settings.spec_paths`, by name. Two specs with one name, or a name that cannot prefix
    asset keys, are refused with every such problem listed."""

    def __init__(self, settings: Settings, s3_endpoint_url: str = ""):
        self.settings = settings
        self.s3_endpoint_url = s3_endpoint_url
        specs = [load_spec(path) for path in settings.spec_paths]
        problems = [f"{s.source}: dataset.name {s.name!r} must match {MODEL_NAME.pattern} (it prefixes asset "
                    "keys and names jobs)" for s in specs if not MODEL_NAME.fullmatch(s.name)]
        seen: dict[str, Path] = {}
        for spec, path in zip(specs, settings.spec_paths):
            if spec.name in seen:
                problems.append(f"{path}: dataset.name {spec.name!r} is already used by {seen[spec.name]}")
            seen.setdefault(spec.name, path)
        if problems:
            raise SpecError("the portfolio's specs", problems)
        self.models: dict[str, ModelWorkspace] = {
            s.name: ModelWorkspace(s, settings.model_paths(s.name), settings, lambda: self.registry,
                                   s3_endpoint_url=s3_endpoint_url, shared_storage=lambda: self.storage)
            for s in specs
        }

    @cached_property
    def storage(self) -> ObjectStore:
        """The settings' object store, opened once (one S3 client, one request counter for every model)."""
        return self.settings.storage_root(self.s3_endpoint_url)

    @cached_property
    def registry(self) -> ModelRegistry:
        """The one registry every model shares, unscoped (opened on first use); its artifacts in the storage
        (registry/artifacts) when MLOPS_STORAGE_URL is set."""
        artifacts = self.storage.child("registry/artifacts") if self.settings.storage_url else None
        return open_registry(self.settings, artifacts_dir=artifacts)

    def model(self, name: str) -> ModelWorkspace:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModel(f"no model named {name!r}: this portfolio has {', '.join(self.names)}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self.models)
