"""Where things live: the project's folders, the portfolio's dataset specs and the registry's connection string.

Everything can be overridden by environment variables, so the same code location serves the bundled
Elec2 demo, the synthetic benchmark in tests, or a team's own datasets:

- MLOPS_SPECS:         a folder of dataset specs (every *.toml in it is one model), or a list of spec files
                       separated by commas (default data/specs/)
- MLOPS_DATA_DIR:      root for models/<model>/{archive,quarantine,warehouse,ledger,deployment}/ and registry/
                       (default data/)
- MLOPS_LANDING_DIR:   where daily files arrive, one folder per model (default $MLOPS_DATA_DIR/landing)
- MLOPS_LANDING_S3:    s3://bucket/prefix — read the landing zone from S3 instead (prefix/<model>/)
- MLOPS_REGISTRY_URL:  duckdb:///path/registry.duckdb (default) or postgresql://user@host:port/db; one
                       registry holds every model of the portfolio
- MLOPS_EXECUTOR:      unset (Dagster's default: steps in the run's own processes) or `celery` (steps on Celery
                       workers; broker MLOPS_CELERY_BROKER, result backend MLOPS_CELERY_BACKEND)
- MLOPS_STORAGE_URL:   where the state lives (warehouse, archive, quarantine, ledger, deployment, monitoring
                       under models/<model>/, artifacts under registry/artifacts): unset = $MLOPS_DATA_DIR as
                       before, file:///folder, or s3://bucket/prefix (then the landing zone defaults to
                       s3://bucket/prefix/landing/<model>/; endpoint and credentials from the standard AWS
                       variables: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). The registry's
                       database stays where MLOPS_REGISTRY_URL says.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mlops_assets.core.io.objects import (LocalObjectStore, ObjectStore, StorageUrlError, open_object_store,
                                          parse_storage_url)

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_SPECS = PROJECT_DIR / "data" / "specs"
# A model's name prefixes its asset keys and names its jobs, sensors and folders.
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
EXECUTORS = ("", "celery")
DEFAULT_CELERY_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"


class SettingsError(ValueError):
    """The environment names something that cannot work (a missing spec folder, a retired variable)."""


@dataclass(frozen=True)
class ModelPaths:
    """One model's folders inside the project's data folder."""

    model: str
    root: Path
    landing_dir: Path

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def warehouse_dir(self) -> Path:
        return self.root / "warehouse"

    @property
    def ledger_dir(self) -> Path:
        """The prediction ledger: every served score, which model gave it and whether it was acted on."""
        return self.root / "ledger"

    @property
    def deployment_dir(self) -> Path:
        """The running canary's frozen plan and state."""
        return self.root / "deployment"


@dataclass(frozen=True)
class Settings:
    spec_paths: tuple[Path, ...]
    data_dir: Path
    landing_dir: Path
    landing_s3: str = ""
    registry_url: str = ""
    storage_url: str = ""  # "" = data_dir; else file:///folder or s3://bucket/prefix (see the module docstring)
    executor: str = ""  # "" keeps Dagster's default executor; "celery" runs steps on Celery workers
    celery_broker: str = DEFAULT_CELERY_BROKER
    celery_backend: str = DEFAULT_CELERY_BACKEND

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise SettingsError(f"MLOPS_EXECUTOR={self.executor!r} is not an executor this code location knows: "
                                "leave it unset for Dagster's default, or set it to 'celery'")
        if self.storage_url:
            try:
                parse_storage_url(self.storage_url)
            except StorageUrlError as exc:
                raise SettingsError(f"MLOPS_STORAGE_URL: {exc}") from None

    @property
    def storage_is_s3(self) -> bool:
        return self.storage_url.startswith("s3://")

    def model_paths(self, model: str) -> ModelPaths:
        if not MODEL_NAME.fullmatch(model):
            raise SettingsError(f"invalid model name {model!r}: use lower-case letters, digits and _")
        return ModelPaths(model, self.data_dir / "models" / model, self.landing_dir / model)

    def landing_s3_for(self, model: str) -> str:
        base = self.landing_s3 or (f"{self.storage_url.rstrip('/')}/landing" if self.storage_is_s3 else "")
        return f"{base.rstrip('/')}/{model}" if base else ""

    def storage_root(self, endpoint_url: str = "") -> ObjectStore:
        """The object store every piece of state goes through (models/<model>/..., registry/artifacts)."""
        return open_object_store(self.storage_url, endpoint_url=endpoint_url) if self.storage_url \
            else LocalObjectStore(self.data_dir)

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "registry" / "artifacts"

    @property
    def registry(self) -> str:
        return self.registry_url or f"duckdb:///{self.data_dir / 'registry' / 'registry.duckdb'}"

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        if env.get("MLOPS_SPEC"):
            raise SettingsError("MLOPS_SPEC is no longer read: set MLOPS_SPECS to a folder of specs or to a "
                                "comma-separated list of spec files")
        data_dir = Path(env.get("MLOPS_DATA_DIR") or PROJECT_DIR / "data").resolve()
        return cls(
            spec_paths=spec_paths_from(env.get("MLOPS_SPECS") or str(DEFAULT_SPECS)),
            data_dir=data_dir,
            landing_dir=Path(env.get("MLOPS_LANDING_DIR") or data_dir / "landing").resolve(),
            landing_s3=env.get("MLOPS_LANDING_S3", ""),
            registry_url=env.get("MLOPS_REGISTRY_URL", ""),
            executor=env.get("MLOPS_EXECUTOR", "").strip().lower(),
            celery_broker=env.get("MLOPS_CELERY_BROKER") or DEFAULT_CELERY_BROKER,
            celery_backend=env.get("MLOPS_CELERY_BACKEND") or DEFAULT_CELERY_BACKEND,
            storage_url=env.get("MLOPS_STORAGE_URL", "").strip(),
        )

    @classmethod
    def for_data_dir(cls, data_dir: Path, *spec_paths: Path, **overrides) -> "Settings":
        """Settings rooted in one folder (tests, replays): landing, warehouse and registry all inside it."""
        data_dir = Path(data_dir).resolve()
        paths = tuple(p for s in spec_paths for p in spec_paths_from(str(s)))
        base = cls(spec_paths=paths, data_dir=data_dir, landing_dir=data_dir / "landing")
        return replace(base, **overrides)


def spec_paths_from(value: str) -> tuple[Path, ...]:
    """A folder (its *.toml files, sorted) or a comma-separated list of files."""
    paths: list[Path] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        path = Path(part).expanduser().resolve()
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise SettingsError(f"no dataset specs (*.toml) in {path}")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise SettingsError(f"dataset spec {path} does not exist")
    if not paths:
        raise SettingsError("no dataset specs given")
    return tuple(dict.fromkeys(paths))
