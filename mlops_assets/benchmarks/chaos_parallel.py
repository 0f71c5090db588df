"""Concurrency: promote/rollback from several processes on DuckDB and PostgreSQL; a 60-partition parallel
backfill of the daily ingestion job with exact row counts."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mlops_assets.benchmarks.chaos_common import SPECS, Result, registry_problems

POSTGRES_URL = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WRITERS, ROUNDS = 4, 4


def _fighter(url: str, artifacts: str, writer: int) -> list[str]:
    """One process: register its versions, promote each to champion, and roll back every other time."""
    from mlops_assets.core.registry.artifacts import ArtifactStore
    from mlops_assets.core.registry.model_registry import ModelRegistry, RegistryError
    from mlops_assets.core.evaluation.gates import GateReport, GateResult

    report = GateReport([GateResult("key_metric_vs_champion", True, 0.01, 0.0, 0.01, "chaos")]).to_dict()
    registry = ModelRegistry(url, ArtifactStore(artifacts))
    refused = []
    for i in range(ROUNDS):
        version = f"w{writer}-{i}"
        artifact = registry.artifacts.save({"model": version}, version)
        registry.register(version, dataset="synthetic", task="binary_classification", lineage={}, metrics={},
                          gate_report=report, gates_passed=True, artifact=artifact, run_id=version,
                          actor=f"w{writer}")
        try:
            registry.promote(version, "champion", actor=f"w{writer}", reason="chaos")
        except RegistryError as exc:  # e.g. superseded as candidate by another writer: a clear refusal
            refused.append(str(exc))
        if i % 2:
            try:
                registry.rollback(actor=f"w{writer}", reason="chaos")
            except RegistryError as exc:
                refused.append(str(exc))
    return refused


def _fight(case: str, url: str, artifacts: Path) -> Result:
    from mlops_assets.core.registry.artifacts import ArtifactStore
    from mlops_assets.core.registry.model_registry import ModelRegistry

    ModelRegistry(url, ArtifactStore(artifacts))  # creates the schema once
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WRITERS, mp_context=ctx) as pool:
        futures = [pool.submit(_fighter, url, str(artifacts), w) for w in range(WRITERS)]
        try:
            refusals = [r for f in futures for r in f.result(timeout=300)]
        except TimeoutError:
            return Result(case, "wedged", "a writer did not finish in 300 s")
        except Exception as exc:  # noqa: BLE001 - an unclear error from the registry under contention
            return Result(case, "inconsistent", f"a writer raised {type(exc).__name__}: {exc}"[:160])
    registry = ModelRegistry(url, ArtifactStore(artifacts))
    if problems := registry_problems(registry):
        return Result(case, "inconsistent", "; ".join(problems)[:160])
    versions = registry.list_versions()
    if len(versions) != WRITERS * ROUNDS:
        return Result(case, "lost", f"{len(versions)} of {WRITERS * ROUNDS} versions registered")
    log = registry.audit_log()
    return Result(case, "recovered", f"{WRITERS} processes: 1 champion ({registry.version_for('champion')}), "
                                     f"{len(log)} audit entries replay to the aliases, {len(refusals)} clear refusals")


def concurrent_registry(work: Path) -> list[Result]:
    out = [_fight("concurrent promote/rollback: DuckDB", f"duckdb:///{work / 'registry.duckdb'}",
                  work / "artifacts-duckdb")]
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        out.append(Result("concurrent promote/rollback: PostgreSQL", "rejected",
                          f"SKIPPED: not reachable at {POSTGRES_URL}: {str(exc).strip()[:80]}"))
        return out
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    try:
        out.append(_fight("concurrent promote/rollback: PostgreSQL", f"{POSTGRES_URL}?schema={schema}",
                          work / "artifacts-postgres"))
    finally:
        from psycopg2 import sql

        con = psycopg2.connect(POSTGRES_URL)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        con.close()
    return out


# ------------------------------------------------------------------------------------------- backfill

def _ingestion_job():
    from mlops_assets.core.config.settings import Settings
    from mlops_assets.defs import build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def("synthetic_daily_ingestion_job")


def _run_partition(dagster_home: str, partition: str):
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore")
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                  "execution": {"config": {"multiprocess": {"max_concurrent": 2, "start_method": {
                      "forkserver": {"preload_modules": ["mlops_assets.defs",
                                                         "mlops_assets.benchmarks.chaos_parallel"]}}}}}}
        job = dg.reconstructable(_ingestion_job)
        with dg.execute_job(job, instance, run_config=config, tags={"dagster/partition": partition}) as result:
            return result.success, [e.message for e in result.all_events if e.is_failure][:2]


def parallel_backfill(work: Path, days: int = 60) -> list[Result]:
    import dagster as dg

    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.ingestion.landing import LocalLanding
    from mlops_assets.core.ingestion.names import features_file_name
    from mlops_assets.core.io.storage import PartitionStore
    from mlops_assets.demo import corruptions, synthetic

    case = f"backfill: {days} partitions, 2 runs at a time, multiprocess executor"
    spec_path = SPECS / "synthetic.toml"
    spec = load_spec(spec_path)
    data = work / "data"
    batches = list(synthetic.generate_days(spec, synthetic.ScenarioConfig(
        "stable", dt.date(2025, 1, 1), days, rows_per_day=30, seed=6)))
    landing = LocalLanding(data / "landing" / "synthetic")
    expected = {}
    for b in batches:
        landing.deliver(features_file_name(b.day), corruptions.features_file_bytes(spec, b))
        expected[b.day.isoformat()] = len(b.features)
    home = work / "dagster_home"
    home.mkdir()
    saved = {k: os.environ.get(k) for k in ("MLOPS_SPECS", "MLOPS_DATA_DIR")}
    os.environ.update(MLOPS_SPECS=str(spec_path), MLOPS_DATA_DIR=str(data))
    try:
        with dg.instance_for_test(temp_dir=str(home)):
            with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
                outcomes = list(pool.map(_run_partition, [str(home)] * days, list(expected), timeout=1800))
    except TimeoutError:
        return [Result(case, "wedged", "the backfill did not finish in 30 min")]
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    failed = [(d, msgs) for d, (ok, msgs) in zip(expected, outcomes) if not ok]
    store = PartitionStore(data / "models" / "synthetic" / "warehouse")
    con = store.connect()
    got = dict(con.execute("SELECT partition, count(*) FROM feature_table GROUP BY partition").fetchall())
    raw = {d: len(store.read("raw_batch", d)) for d in expected if store.exists("raw_batch", d)}
    wrong = {d: (raw.get(d), got.get(d), n) for d, n in expected.items() if raw.get(d) != n or got.get(d) != n}
    if failed:
        return [Result(case, "lost", f"{len(failed)} runs failed, e.g. {failed[0]}"[:160])]
    if wrong:
        return [Result(case, "lost" if any(r is None for r, _, _ in wrong.values()) else "inconsistent",
                       f"{len(wrong)} partitions with wrong rows, e.g. {next(iter(wrong.items()))}")]
    return [Result(case, "recovered", f"{days} runs succeeded; raw and feature rows exact in every partition "
                                      f"({sum(expected.values())} rows)")]
