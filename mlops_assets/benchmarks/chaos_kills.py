"""SIGKILL at each stage: a fresh interpreter does the step and is killed at each of its file operations (or,
for DuckDB's own writes, at several delays into the step). Afterwards a reader sees the old state or the new
one, never a half; then the step is re-run unkilled and must complete."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.benchmarks.chaos_common import SPECS, Result, Wedged, registry_problems, run_killed

MAX_KILL_POINTS = 12
DELAYS = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2)


def _kill_everywhere(case: str, prepare, step: str, args_for, judge, delays=None) -> Result:
    """Kill the step at each file operation (or each delay), judge the state after each kill ("old", "new" or
    a problem), then re-run the last copy unkilled and judge it again (must be "new")."""
    seen, work = [], None
    points = [("delay", d) for d in delays] if delays else [("op", k) for k in range(MAX_KILL_POINTS)]
    try:
        for i, (how, at) in enumerate(points):
            work = prepare(i)
            kw = {"kill_after": at} if how == "delay" else {"kill_at": at}
            what = run_killed(step, args_for(work), **kw)
            state = judge(work)
            if state not in ("old", "new"):
                return Result(case, "inconsistent", f"after {what}: {state}")
            seen.append((what, state))
            if what == "done":
                break
            # the re-run completes what was killed
            if run_killed(step, args_for(work)) != "done" or (again := judge(work)) != "new":
                return Result(case, "lost", f"re-run after {what} did not complete: {again}")
    except Wedged as exc:
        return Result(case, "wedged", str(exc))
    killed = [state for what, state in seen if what != "done"]
    return Result(case, "recovered", f"{len(killed)} kills left {killed.count('old')} old, {killed.count('new')} "
                                     "new, 0 half states; each re-run completed")


# ---------------------------------------------------------------------------------------------- score: ledger

ENTITIES = ["c1", "c2", "c3", "c4"]
D1 = dt.date(2025, 3, 1)


def _ledger_rows(version, route, scores):
    n = len(ENTITIES)
    s = np.asarray(scores, dtype=float)
    return pd.DataFrame({
        "day": [D1] * n, "entity": ENTITIES, "timestamp": [pd.Timestamp(D1) + pd.Timedelta(hours=i + 1)
                                                           for i in range(n)],
        "score": s, "decision": (s >= 0.5).astype(float), "threshold": 0.5, "model_version": version,
        "route": route, "acted_on": route != "shadow", "scored_at": [pd.Timestamp("2025-03-02", tz="UTC")] * n})


LEDGER_STEP = """
import pandas as pd
from mlops_assets.core.serving.ledger import PredictionLedger
PredictionLedger(args["root"]).write(pd.read_pickle(args["rows"]), replace_days=True)
"""


def kill_score(work: Path) -> list[Result]:
    from mlops_assets.core.serving.ledger import PredictionLedger

    old = pd.concat([_ledger_rows("v1", "champion", [0.8, 0.3, 0.6, 0.1]),
                     _ledger_rows("v9", "shadow", [0.4, 0.2, 0.9, 0.7])], ignore_index=True)
    new = _ledger_rows("v2", "champion", [0.2, 0.7, 0.1, 0.9])
    new.to_pickle(work / "new.pkl")

    def story(frame):
        return sorted(zip(frame["entity"], frame["model_version"], frame["route"], frame["score"].round(6)))

    def prepare(i):
        root = work / f"ledger-{i}"
        PredictionLedger(root).write(old)
        return root

    def judge(root):
        rows = PredictionLedger(root).day(D1)
        acted = rows[rows["acted_on"]].groupby("entity")["model_version"].nunique()
        if set(rows["entity"]) != set(ENTITIES) or (acted != 1).any():
            return f"not one acted-on decision per entity: {acted.to_dict()}"
        return {repr(story(old)): "old", repr(story(new)): "new"}.get(repr(story(rows)), "a mix of old and new")

    return [_kill_everywhere("kill/score: ledger day write", prepare, LEDGER_STEP,
                             lambda root: {"root": str(root), "rows": str(work / "new.pkl")}, judge)]


# --------------------------------------------------------------------------- train and promote: the registry

REGISTRY_SETUP = """
from mlops_assets.core.registry.artifacts import ArtifactStore
from mlops_assets.core.registry.model_registry import ModelRegistry
from mlops_assets.core.evaluation.gates import GateReport, GateResult
REPORT = GateReport([GateResult("key_metric_vs_champion", True, 0.01, 0.0, 0.01, "chaos")]).to_dict()
registry = ModelRegistry(args["url"], ArtifactStore(args["artifacts"]))
def register(version):
    artifact = registry.artifacts.save({"model": version, "weights": list(range(1000))}, version)
    return registry.register(version, dataset="synthetic", task="binary_classification",
        lineage={"seed": 7}, metrics={"roc_auc": 0.8}, gate_report=REPORT, gates_passed=True,
        artifact=artifact, run_id="run-" + version, actor="chaos", key_metric="roc_auc")
"""
TRAIN_STEP = REGISTRY_SETUP + """
print("ready", flush=True)
register("v2")
"""
PROMOTE_STEP = REGISTRY_SETUP + """
print("ready", flush=True)
registry.promote("v2", "champion", actor="chaos", reason="kill test")
"""


def _registry_at(root: Path, versions_promoted=("v1",), registered=()):
    from mlops_assets.core.registry.artifacts import ArtifactStore
    from mlops_assets.core.registry.model_registry import ModelRegistry

    exec_globals = {"args": {"url": f"duckdb:///{root / 'registry.duckdb'}", "artifacts": str(root / "artifacts")}}
    exec(REGISTRY_SETUP, exec_globals)  # the very helper the child uses
    for v in versions_promoted:
        exec_globals["register"](v)
        exec_globals["registry"].promote(v, "champion", actor="chaos")
    for v in registered:
        exec_globals["register"](v)
    del exec_globals
    return ModelRegistry(f"duckdb:///{root / 'registry.duckdb'}", ArtifactStore(root / "artifacts"))


def _registry_args(root: Path) -> dict:
    return {"url": f"duckdb:///{root / 'registry.duckdb'}", "artifacts": str(root / "artifacts")}


def _open(root: Path):
    from mlops_assets.core.registry.artifacts import ArtifactStore
    from mlops_assets.core.registry.model_registry import ModelRegistry

    return ModelRegistry(f"duckdb:///{root / 'registry.duckdb'}", ArtifactStore(root / "artifacts"))


def kill_train(work: Path) -> list[Result]:
    prepared = work / "train-prepared"
    _registry_at(prepared)

    def prepare(i):
        root = work / f"train-{i}"
        shutil.copytree(prepared, root)
        return root

    def judge(root):
        registry = _open(root)
        if problems := registry_problems(registry):
            return "; ".join(problems)
        names = [v.version for v in registry.list_versions()]
        if registry.version_for("champion") != "v1":
            return "the champion changed"
        if "v2" not in names:
            return "old"
        if registry.file_problems("v2") or registry.load_model("v2")["model"] != "v2":
            return f"v2 registered with a damaged artifact: {registry.file_problems('v2')}"
        return "new" if registry.version_for("candidate") == "v2" else "v2 registered but not candidate"

    out = [_kill_everywhere("kill/train: artifact save (file ops)", prepare, TRAIN_STEP, _registry_args, judge)]
    out.append(_kill_everywhere("kill/train: register (DuckDB, delays)", lambda i: prepare(f"d{i}"), TRAIN_STEP,
                                _registry_args, judge, delays=DELAYS))
    return out


def kill_promote(work: Path) -> list[Result]:
    prepared = work / "promote-prepared"
    _registry_at(prepared, registered=("v2",))

    def prepare(i):
        root = work / f"promote-{i}"
        shutil.copytree(prepared, root)
        return root

    def judge(root):
        registry = _open(root)
        if problems := registry_problems(registry):
            return "; ".join(problems)
        champion = registry.version_for("champion")
        if champion == "v1" and registry.aliases_of("v2") == ["candidate"]:
            return "old"
        if champion == "v2" and registry.aliases_of("v1") == ["archived"]:
            return "new"
        return f"champion {champion}, v1 {registry.aliases_of('v1')}, v2 {registry.aliases_of('v2')}"

    return [_kill_everywhere("kill/promote: champion swap (DuckDB, delays)", prepare, PROMOTE_STEP, _registry_args,
                             judge, delays=DELAYS)]


# ------------------------------------------------------------------------------- ingest: the Dagster job

INGEST_STEP = """
import warnings
warnings.filterwarnings("ignore")
import dagster as dg
from pathlib import Path
from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions
defs = build_definitions(Settings.for_data_dir(Path(args["data"]), Path(args["spec"])))
job = defs.resolve_job_def("synthetic_daily_ingestion_job")
with dg.instance_for_test(temp_dir=args["home"]) as instance:
    result = job.execute_in_process(instance=instance, partition_key=args["day"], resources=defs.resources,
        raise_on_error=False, run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
if not result.success:
    raise SystemExit("the ingestion run failed")
"""


def kill_ingest(work: Path) -> list[Result]:
    from mlops_assets.core.config.settings import Settings
    from mlops_assets.core.ingestion.names import features_file_name
    from mlops_assets.core.io.storage import PartitionStore
    from mlops_assets.demo import corruptions, synthetic

    spec_path = SPECS / "synthetic.toml"
    from mlops_assets.core.config.spec import load_spec

    spec = load_spec(spec_path)
    [batch] = synthetic.generate_days(spec, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                     rows_per_day=50, seed=4))
    content, day = corruptions.features_file_bytes(spec, batch), batch.day.isoformat()

    def prepare(i):
        data = work / f"ingest-{i}" / "data"
        landing = Settings.for_data_dir(data, spec_path).model_paths("synthetic").landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        (landing / features_file_name(day)).write_bytes(content)
        (work / f"ingest-{i}" / "home").mkdir()
        return work / f"ingest-{i}"

    def judge(root):
        store = PartitionStore(root / "data" / "models" / "synthetic" / "warehouse")
        states = []
        for asset in ("raw_batch", "feature_table"):
            if not store.exists(asset, day):
                states.append("old")
                continue
            try:
                rows = len(store.read(asset, day))
            except Exception as exc:  # noqa: BLE001 - a half-written file a reader would trip on
                return f"{asset} {day} unreadable: {exc}"
            if rows != len(batch.features):
                return f"{asset} {day} has {rows} of {len(batch.features)} rows"
            states.append("new")
        if states == ["old", "new"]:
            return "feature_table written without raw_batch"
        archived = list((root / "data").rglob(f"*_{features_file_name(day)}"))
        landed = (root / "data" / "landing" / "synthetic" / features_file_name(day)).exists()
        if not archived and not landed:
            return "the delivered file is neither in landing nor archived"
        return "new" if states == ["new", "new"] else "old"

    return [_kill_everywhere("kill/ingest: daily_ingestion_job (file ops)", prepare, INGEST_STEP,
                             lambda root: {"data": str(root / "data"), "spec": str(spec_path), "day": day,
                                           "home": str(root / "home")}, judge)]
