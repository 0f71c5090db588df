"""A module-level job for the backfill test: multiprocess steps rebuild the code location from the
environment (MLOPS_SPECS, MLOPS_DATA_DIR), as a deployed code location would."""

from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions


def daily_ingestion_job():
    return build_definitions(Settings.from_env()).resolve_job_def("elec2_daily_ingestion_job")


def run_partition(dagster_home: str, partition: str):
    """One backfill run, in its own process, against the shared instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(dagster_home) as instance:
        # forkserver: step processes fork from a warm interpreter instead of importing everything anew
        config = {"execution": {"config": {"multiprocess": {"max_concurrent": 2, "start_method": {
            "forkserver": {"preload_modules": ["mlops_assets.defs", "backfill_location"]}}}}}}
        job = dg.reconstructable(daily_ingestion_job)
        with dg.execute_job(job, instance, run_config=config, tags={"dagster/partition": partition}) as result:
            return result.success, [e.message for e in result.all_events if e.is_failure]
