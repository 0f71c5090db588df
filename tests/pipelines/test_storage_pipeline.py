"""The same loop with its state in a local folder and on S3 (MLOPS_STORAGE_URL on a moto server): files landed
in S3 are ingested, a model is trained and registered, a day is scored, and both runs end with the same
partitions, row counts, archived files, artifact checksum and ledger rows."""

import datetime as dt

from conftest import SPECS
from harness import START, CodeLocation, synthetic_history
from mlops_assets.core.config.spec import load_spec
from mlops_assets.demo.history import deliveries

LOADED_DAYS = 21  # labeled history written straight to the warehouse; the next days arrive as files
DAYS = 23


def _run(tmp_path, storage_url, history):
    loc = CodeLocation(tmp_path, SPECS / "synthetic.toml", storage_url=storage_url)
    loc.load_history({d: history[d] for d in sorted(history)[:LOADED_DAYS]})
    assert loc.train(LOADED_DAYS - 1).success
    first, last = START + dt.timedelta(days=LOADED_DAYS), START + dt.timedelta(days=DAYS - 1)
    for delivery in deliveries(history, loc.project.spec, first, last):
        for name, content in delivery.files.items():
            loc.project.landing.deliver(name, content)
        loc.tick()
    assert not loc.log.failed_runs
    assert loc.run_job("score_and_monitor_job", first.isoformat()).success
    return loc


def _state(loc):
    project = loc.project
    store, ledger = project.store, project.ledger
    assets = project.objects.list_folders("warehouse")
    partitions = {a: store.partitions(a) for a in assets}
    rows = {(a, p): len(store.read(a, p)) for a in ("raw_batch", "feature_table", "labeled_examples")
            for p in partitions.get(a, [])}
    champion = loc.registry.get(loc.registry.version_for("champion"))
    ledger_rows = {d: ledger.day(d).drop(columns=["scored_at", "latency_ms_per_1k"]) for d in ledger.days()}
    archived = {(k, p): project.archive.current(k, p).sha256 for k in ("features", "labels")
                for p in partitions.get("raw_batch", []) if project.archive.current(k, p)}
    return partitions, rows, champion.artifact.sha256, ledger_rows, archived


def test_the_loop_on_s3_ends_in_the_same_state_as_on_a_local_folder(tmp_path, s3_url):
    history = synthetic_history(load_spec(SPECS / "synthetic.toml"), DAYS)
    local = _state(_run(tmp_path / "local", "", history))
    on_s3 = _state(_run(tmp_path / "s3", s3_url, history))
    partitions, rows, sha, ledger_rows, archived = on_s3
    assert partitions == local[0] and rows == local[1] and sha == local[2] and archived == local[4]
    assert partitions["raw_batch"] and archived and ledger_rows  # the S3 run ingested, archived and scored
    assert ledger_rows.keys() == local[3].keys()
    for day, frame in ledger_rows.items():
        assert frame.equals(local[3][day]), day
    assert not (tmp_path / "s3" / "data" / "models").exists()  # no model state on the local disk
