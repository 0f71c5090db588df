"""The replay command on a short synthetic span, for the end-to-end tests: a spec with a one-week training
window (a first model, scoring and late labels within two weeks), its history as a CSV, the command run as a
subprocess on its own DAGSTER_HOME and data folder, and a snapshot of everything the replay leaves behind."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import duckdb
import pandas as pd

from conftest import REPO, SPECS
from harness import START, synthetic_history
from mlops_assets.core.config.spec import SpecError, load_spec

REPLAY = [sys.executable, "-m", "mlops_assets.demo.replay"]
FAULTS = Path(__file__).resolve().parent / "replay_faults.py"
# Columns that record when or how fast, not what: they differ between any two runs of the same day.
VOLATILE = {"scored_at", "latency_ms_per_1k"}
TIMED_DOCUMENTS = {"cost_report"}  # its status follows the scoring time measured, which the machine's load moves


@dataclass
class SyntheticReplay:
    """One replay setting: its spec, history CSV, DAGSTER_HOME and data folder."""

    root: Path
    spec_text: str

    def __post_init__(self):
        self.home, self.data = self.root / "home", self.root / "data"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "mlops_assets" / "dagster.yaml", self.home / "dagster.yaml")
        self.spec_path = self.root / "synthetic.toml"
        self.spec_path.write_text(self.spec_text)
        try:
            self.spec = load_spec(self.spec_path)
        except SpecError:  # a test of how the replay reports a broken spec: the data still comes from a good one
            self.spec = None
        self.history = self.root / "history.csv"
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "MLOPS_DATA_DIR": str(self.data),
                    "MLOPS_SPECS": str(self.spec_path)}
        self.model_dir = self.data / "models" / "synthetic"

    @classmethod
    def create(cls, root: Path, days: int = 14, rows_per_day: int = 200, edit: tuple[str, str] | None = None):
        """A one-week window (train 3 days, validate 2, benchmark 2): the first model is requested on day 8.
        `edit` replaces one more piece of the spec's text."""
        text = (SPECS / "synthetic.toml").read_text()
        for old, new in [("window_days = 21\nvalidation_days = 3\nbenchmark_days = 3",
                          "window_days = 7\nvalidation_days = 2\nbenchmark_days = 2"), *([edit] if edit else [])]:
            assert old in text
            text = text.replace(old, new)
        replay = cls(root, text)
        frames = synthetic_history(replay.spec or load_spec(SPECS / "synthetic.toml"), days, rows_per_day=rows_per_day)
        pd.concat([frames[d] for d in sorted(frames)]).to_csv(replay.history, index=False)
        return replay

    def args(self, *extra: str) -> list[str]:
        return ["--model", "synthetic", "--history", str(self.history), *extra]

    def run(self, *extra: str, fault: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """The command to its end; `fault` ("raise|kill:<table>:<partition>") runs it with that fault injected."""
        return subprocess.run(self.command(*extra, fault=fault), cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def command(self, *extra: str, fault: str | None = None) -> list[str]:
        if fault:
            return [sys.executable, str(FAULTS), fault, *self.args(*extra)]
        return [*REPLAY, *self.args(*extra)]

    def popen(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*extra), cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def runs(self) -> list:
        """The instance's runs (its event log lives in $DAGSTER_HOME, so open it with that set)."""
        import dagster as dg

        with mock.patch.dict(os.environ, {"DAGSTER_HOME": str(self.home)}):
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                return list(instance.get_runs())

    def state(self) -> dict:
        path = self.model_dir / "replay_state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def snapshot(self) -> dict:
        """Everything the replay leaves in the data folder, by what it holds: every Parquet table's rows (without
        the timing columns), every JSON document's status, the landing zone and quarantine, the registry's
        versions, aliases and audit trail (without times and run ids)."""
        out: dict[str, object] = {}
        for path in sorted(self.model_dir.rglob("*")):
            rel = str(path.relative_to(self.model_dir))
            if not path.is_file() or path.name.startswith(".") or path.name in ("replay_state.json", "replay.lock"):
                continue
            if path.suffix == ".parquet":
                frame = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()
                frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
                out[rel] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
            elif path.suffix == ".json":
                document = json.loads(path.read_text())
                timed = path.parent.name in TIMED_DOCUMENTS or not isinstance(document, dict)
                out[rel] = "present" if timed else document.get("status", "present")
            elif "landing" in path.parts or "quarantine" in path.parts:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "present"
        for path in sorted((self.data / "landing").rglob("*.csv")):
            out[f"landing/{path.relative_to(self.data / 'landing')}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        registry = self.registry()
        out["registry.versions"] = [(v.version, v.gates_passed, sorted(v.aliases)) for v in registry.list_versions()]
        out["registry.audit"] = [(e.action, e.version, e.from_alias, e.to_alias) for e in registry.audit_log()]
        return out

    def registry(self):
        from mlops_assets.core.config.settings import Settings
        from mlops_assets.core.portfolio import Portfolio

        return Portfolio(Settings.for_data_dir(self.data, self.spec_path)).model("synthetic").registry


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()
