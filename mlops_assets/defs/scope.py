"""What every stage's definitions are built from: one model of the portfolio, its spec and its partitions.

Asset keys are prefixed by the model's name (`elec2/raw_batch`) and jobs, sensors and schedules carry it
(`elec2_train_candidate_job`), so several models live side by side in one code location, grouped by stage."""

from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from ..core.config.spec import DatasetSpec

OWNERS = ["team:ml-platform"]


@dataclass(frozen=True)
class ModelScope:
    spec: DatasetSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def daily(self) -> dg.DailyPartitionsDefinition:
        """The daily partitions, from the spec's first (and optional last) day."""
        return dg.DailyPartitionsDefinition(
            start_date=self.spec.start_date.isoformat(),
            end_date=self.spec.end_date.isoformat() if self.spec.end_date else None,
        )

    @property
    def key_prefix(self) -> list[str]:
        return [self.name]

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def check_key(self, asset: str, check: str) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.key(asset), check)

    def named(self, base: str) -> str:
        """A job, sensor or schedule name of this model."""
        return f"{self.name}_{base}"

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags every run of this model's jobs carries, however launched (sensor, schedule, UI, CLI): the
        production profile's run queue allows one run per model on `mlops/model`."""
        return {"mlops/model": self.name}

    def stages(self, *groups: str) -> dg.AssetSelection:
        """This model's assets in the given stage groups, with their checks but the loop-health ones."""
        stage_assets = dg.AssetSelection.groups(*groups) & dg.AssetSelection.key_prefixes(self.key_prefix)
        return self.without_loop_health(stage_assets)

    def without_loop_health(self, selection: dg.AssetSelection) -> dg.AssetSelection:
        """`selection` without the loop-health SLO checks: only the loop-health job evaluates them (as of its
        tick), so a partitioned run neither waits on them nor leaves them planned for its partition."""
        from .monitoring.slo_checks import check_keys  # the monitoring folder imports this module

        return selection - dg.AssetSelection.checks(*check_keys(self))
