"""What the serving benchmark serves and how: the model, a throwaway registry, MLflow's environment and the
two servers as processes.

The model is the one the project trains for a spec: Elec2's (a ColumnTransformer and HistGradientBoosting)
on its first 8-week window from the bundled data, or, when that file is absent, the synthetic spec's columns
from the seeded generator with the same estimator. A second version (the next window) is registered too, for
the promotion and rollback made under load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn

from mlops_assets.core.config.settings import PROJECT_DIR
from mlops_assets.core.config.spec import DatasetSpec, load_spec
from mlops_assets.core.features import engineering as features
from mlops_assets.core.registry.artifacts import ArtifactStore
from mlops_assets.core.registry.model_registry import ModelRegistry
from mlops_assets.core.training import trainer

SPECS_DIR = PROJECT_DIR / "data" / "specs"
# The repository's copy of Elec2, else the shared copy beside the checkout (how the tests find it).
ELEC2_CSVS = (PROJECT_DIR / "data" / "elec2" / "elec2_timestamped.csv",
              PROJECT_DIR.parent / "shared" / "data" / "elec2" / "elec2_timestamped.csv")
MLFLOW_VERSION = "3.17.2"
DEFAULT_VENV = PROJECT_DIR / ".bench" / "mlflow-venv"


@dataclass
class BenchModel:
    spec: DatasetSpec
    spec_path: Path
    source: str  # where the rows came from, for the report
    champion: trainer.TrainedModel
    successor: trainer.TrainedModel
    requests: pd.DataFrame  # 100 raw feature rows of the day after the champion's window, as clients send them

    def model_inputs(self, rows: int) -> pd.DataFrame:
        """The first `rows` request rows as the pipeline takes them (what MLflow is sent)."""
        table = features.engineer(self.requests.head(rows), self.spec)
        return table[features.model_input_columns(self.spec)]


# ------------------------------------------------------------------------------------------------ the model


def _days_of_elec2(spec: DatasetSpec) -> tuple[dict[dt.date, pd.DataFrame], str] | None:
    from mlops_assets.demo.history import load_history

    for csv in ELEC2_CSVS:
        if csv.is_file():
            return load_history(csv, spec), f"Elec2 ({csv.name})"
    return None


def _days_of_synthetic(spec: DatasetSpec, days: int) -> tuple[dict[dt.date, pd.DataFrame], str]:
    from mlops_assets.demo.synthetic import ScenarioConfig, generate_days

    cfg = ScenarioConfig("stable", spec.start_date, days)
    out = {}
    for batch in generate_days(spec, cfg):
        out[batch.day] = batch.features.merge(batch.labels, on=spec.key_columns)
    return out, "synthetic generator (stable, seed 0)"


def _labeled(spec: DatasetSpec, days: list[pd.DataFrame]) -> pd.DataFrame:
    raw = pd.concat(days, ignore_index=True)
    table = features.engineer(raw, spec)
    table[spec.target] = raw[spec.target].to_numpy()
    return table


def prepare_model() -> BenchModel:
    """Train the champion (first window) and its successor (the window a week later) as the project does."""
    spec_path = SPECS_DIR / "elec2.toml"
    spec = load_spec(spec_path)
    found = _days_of_elec2(spec)
    if found is None:
        spec_path = SPECS_DIR / "synthetic.toml"
        base = load_spec(spec_path)
        spec = replace(base, training=replace(base.training, estimator="hist_gradient_boosting"))
        found = _days_of_synthetic(spec, spec.training.window_days + 8)
    history, source = found
    days = sorted(history)
    window = spec.training.window_days
    models = []
    for offset in (0, 7):
        frame = _labeled(spec, [history[d] for d in days[offset:offset + window]])
        models.append(trainer.train(spec, spec.training, frame, git_commit="benchmark"))
    requests = pd.concat([history[d] for d in days[window:window + 4]], ignore_index=True).head(100)
    return BenchModel(spec, spec_path, source, models[0], models[1],
                      requests[spec.batch_columns].reset_index(drop=True))


def request_records(model: BenchModel, rows: int) -> list[dict]:
    """Raw feature rows as JSON values: numbers for numeric features, strings for categories and times."""
    frame = model.requests.head(rows)
    out = []
    for record in frame.to_dict("records"):
        row = {}
        for name, value in record.items():
            feature = next((f for f in model.spec.features if f.name == name), None)
            row[name] = float(value) if feature is not None and feature.is_numeric else str(value)
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------- the registry


def register_versions(model: BenchModel, root: Path) -> tuple[str, Path, list[str]]:
    """A throwaway registry with the champion promoted and the successor registered as candidate:
    (registry URL, artifacts folder, [champion version, successor version])."""
    url, artifacts = f"duckdb:///{root / 'registry.duckdb'}", root / "artifacts"
    registry = ModelRegistry(url, ArtifactStore(artifacts)).for_model(model.spec.name)
    versions = []
    for trained in (model.champion, model.successor):
        artifact = registry.artifacts.save(trained.pipeline, model.spec.name)
        version = f"{model.spec.name}-bench-{artifact.sha256[:8]}"
        registry.register(version, dataset=model.spec.name, task=model.spec.task, lineage=trained.lineage.to_dict(),
                          metrics={}, gate_report={"passed": True, "results": []}, gates_passed=True,
                          artifact=artifact, run_id="bench-serving", actor="bench-serving")
        versions.append(version)
    registry.promote(versions[0], "champion", actor="bench-serving", reason="serving benchmark")
    return url, artifacts, versions


# ------------------------------------------------------------------------------------------------- MLflow

EXPORT_SCRIPT = """
import hashlib, json, pickle, sys
import mlflow.sklearn, pandas as pd, skops.io
pickle_path, sha256, out, example_path = sys.argv[1:5]
data = open(pickle_path, "rb").read()
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"{pickle_path}: sha256 differs from the one the benchmark wrote; not loading it")
pipeline = pickle.loads(data)
example = pd.DataFrame(json.load(open(example_path)))
try:
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    mlflow.sklearn.save_model(pipeline, out, serialization_format="skops", skops_trusted_types=trusted,
                              input_example=example, pyfunc_predict_fn="predict_proba")
    print(json.dumps({"format": "skops", "trusted_types": trusted}))
except Exception as exc:
    import shutil; shutil.rmtree(out, ignore_errors=True)
    mlflow.sklearn.save_model(pipeline, out, serialization_format="pickle", input_example=example,
                              pyfunc_predict_fn="predict_proba")
    print(json.dumps({"format": "pickle", "skops_error": repr(exc)[:300]}))
"""


def mlflow_requirements() -> list[str]:
    """MLflow, and the very library versions that fitted the model, so MLflow loads the same pipeline."""
    return [f"mlflow=={MLFLOW_VERSION}", f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}", "skops"]


def ensure_mlflow_venv(venv: Path, log) -> Path:
    """The benchmark's own virtual environment for MLflow (built from the package registry once, then reused)."""
    marker = venv / "bench-requirements.txt"
    wanted = "\n".join(mlflow_requirements()) + "\n"
    python = venv / "bin" / "python"
    if marker.is_file() and marker.read_text() == wanted and python.exists():
        return python
    log(f"building MLflow's environment in {venv} (once; a few minutes): {' '.join(mlflow_requirements())}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with open(venv / "pip-install.log", "wb") as pip_log:
        done = subprocess.run([str(python), "-m", "pip", "install", *mlflow_requirements()], stdout=pip_log,
                              stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install MLflow's environment; see {venv / 'pip-install.log'}")
    marker.write_text(wanted)
    return python


def export_to_mlflow(model: BenchModel, venv_python: Path, folder: Path) -> tuple[Path, dict]:
    """The champion's fitted pipeline saved in MLflow's sklearn format by MLflow itself: (model dir, how)."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps(model.champion.pipeline)
    (folder / "pipeline.pkl").write_bytes(blob)
    example = model.model_inputs(5)
    (folder / "example.json").write_text(json.dumps(json.loads(example.to_json(orient="records"))))
    (folder / "export.py").write_text(EXPORT_SCRIPT)
    out = folder / "mlflow-model"
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([str(venv_python), str(folder / "export.py"), str(folder / "pipeline.pkl"),
                           hashlib.sha256(blob).hexdigest(), str(out), str(folder / "example.json")],
                          capture_output=True, text=True, env=_quiet_env())
    if done.returncode != 0:
        raise RuntimeError(f"MLflow export failed: {done.stderr[-2000:]}")
    return out, json.loads(done.stdout.strip().splitlines()[-1])


def _quiet_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"MLFLOW_TRACKING_URI": "", "PYTHONWARNINGS": "ignore", **extra})
    return {k: v for k, v in env.items() if v != ""}


# ------------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # its own process group: uvicorn's workers too
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(name: str, argv: list[str], env: dict, log_path: Path, port: int, ready_path: str,
                 timeout: float = 120.0) -> Server:
    log = open(log_path, "wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; its log: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(server.base_url + ready_path, timeout=2) as reply:
                if reply.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{name} was not ready at {server.base_url}{ready_path} after {timeout:.0f} s; "
                       f"its log: {log_path.read_text(errors='replace')[-2000:]}")


def start_mlflow(venv_python: Path, model_dir: Path, log_path: Path) -> Server:
    """`mlflow models serve` with its defaults (one worker), from the benchmark's environment."""
    port = free_port()
    mlflow = venv_python.parent / "mlflow"
    argv = [str(mlflow), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port)]
    env = _quiet_env(PATH=f"{venv_python.parent}:{os.environ.get('PATH', '')}")
    return start_server("mlflow", argv, env, log_path, port, "/ping")


def start_project(model: BenchModel, registry_url: str, artifacts: Path, data_dir: Path, log_path: Path) -> Server:
    """`mlops serve` on the throwaway registry."""
    port = free_port()
    env = dict(os.environ, MLOPS_REGISTRY_URL=registry_url, MLOPS_DATA_DIR=str(data_dir),
               MLOPS_SPECS=str(model.spec_path), PYTHONPATH=str(PROJECT_DIR))
    argv = [sys.executable, "-m", "mlops_assets.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--model", model.spec.name]
    return start_server("project", argv, env, log_path, port, "/readyz")
