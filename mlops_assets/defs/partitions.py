"""The daily partitions, from the spec's first (and optional last) day."""


import dagster as dg

from mlops_assets.core.config.spec import DatasetSpec


def daily_partitions(spec: DatasetSpec) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=spec.start_date.isoformat(),
        end_date=spec.end_date.isoformat() if spec.end_date else None,
    )
