"""A 30-day backfill with the multiprocess executor: no lock errors, exactly the expected rows."""

import datetime as dt
import sys
from pathlib import Path
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import dagster as dg

from conftest import SPECS
from mlops_assets.core.ingestion.landing import LocalLanding
from mlops_assets.demo.history import deliveries
from mlops_assets.core.io.storage import PartitionStore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # backfill_location, for the spawned processes
from backfill_location import run_partition  # noqa: E402


def test_thirty_day_backfill_multiprocess(tmp_path, monkeypatch, elec2_spec, elec2_history):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLOPS_SPECS", str(SPECS / "elec2.toml"))
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data_dir))
    days = [dt.date(1996, 6, 1) + dt.timedelta(days=i) for i in range(30)]
    landing = LocalLanding(data_dir / "landing" / "elec2")
    for delivery in deliveries(elec2_history, elec2_spec, days[0], days[-1]):
        for name, content in delivery.files.items():
            if name.startswith("features_"):
                landing.deliver(name, content)
    expected_rows = sum(len(elec2_history[d]) for d in days)

    (tmp_path / "dagster_home").mkdir()
    home = tmp_path / "dagster_home"
    with dg.instance_for_test(temp_dir=str(home)):
        # Runs of a backfill execute side by side, each stepping through the multiprocess executor.
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcomes = list(pool.map(run_partition, [str(home)] * len(days), [d.isoformat() for d in days]))
    failures = [(d, msgs) for d, (ok, msgs) in zip(days, outcomes) if not ok]
    assert not failures, failures

    store = PartitionStore(data_dir / "models" / "elec2" / "warehouse")
    con = store.connect()
    [(rows, partitions)] = con.execute("SELECT count(*), count(DISTINCT partition) FROM feature_table").fetchall()
    assert (rows, partitions) == (expected_rows, 30)
    [(dupes,)] = con.execute(
        f"SELECT count(*) - count(DISTINCT {elec2_spec.timestamp}) FROM feature_table").fetchall()
    assert dupes == 0
