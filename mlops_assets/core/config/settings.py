"""Where things live: the project's folders, the active dataset spec and the registry's connection string.

Everything can be overridden by environment variables, so the same code location serves the bundled
Elec2 demo, the synthetic benchmark in tests, or a team's own dataset:

- MLOPS_SPEC:          path to the dataset spec (default data/specs/elec2.toml)
- MLOPS_DATA_DIR:      root for landing/, quarantine/, warehouse/, registry/ (default data/)
- MLOPS_LANDING_DIR:   where daily files arrive (default $MLOPS_DATA_DIR/landing)
- MLOPS_LANDING_S3:    s3://bucket/prefix — read the landing zone from S3 instead of a folder
- MLOPS_REGISTRY_URL:  duckdb:///path/registry.duckdb (default) or postgresql://user@host:port/db
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Settings:
    spec_path: Path
    data_dir: Path
    landing_dir: Path
    landing_s3: str = ""
    registry_url: str = ""

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def ledger_dir(self) -> Path:
        """The prediction ledger: every served score, which model gave it and whether it was acted on."""
        return self.data_dir / "ledger"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "registry" / "artifacts"

    @property
    def registry(self) -> str:
        return self.registry_url or f"duckdb:///{self.data_dir / 'registry' / 'registry.duckdb'}"

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        data_dir = Path(env.get("MLOPS_DATA_DIR") or PROJECT_DIR / "data").resolve()
        return cls(
            spec_path=Path(env.get("MLOPS_SPEC") or PROJECT_DIR / "data" / "specs" / "elec2.toml").resolve(),
            data_dir=data_dir,
            landing_dir=Path(env.get("MLOPS_LANDING_DIR") or data_dir / "landing").resolve(),
            landing_s3=env.get("MLOPS_LANDING_S3", ""),
            registry_url=env.get("MLOPS_REGISTRY_URL", ""),
        )

    @classmethod
    def for_data_dir(cls, data_dir: Path, spec_path: Path, **overrides) -> "Settings":
        """Settings rooted in one folder (tests, replays): landing, warehouse and registry all inside it."""
        data_dir = Path(data_dir).resolve()
        base = cls(spec_path=Path(spec_path).resolve(), data_dir=data_dir, landing_dir=data_dir / "landing")
        return replace(base, **overrides)
