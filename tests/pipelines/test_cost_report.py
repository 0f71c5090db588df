"""cost_report's cost per day does not grow with history, and its figures are the ones the full history
gives (the same champion's first served days as baseline, every candidate trained up to the day)."""

import datetime as dt
import os
import pathlib
import time

from conftest import SPECS
from harness import QUIET, START, Location
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.core.monitoring.served import cost_history


def day(i):
    return (START + dt.timedelta(days=i)).isoformat()


def expected_report(loc, version, today):
    """What cost_report says when it reads every scoring-stats and candidate document (as it used to)."""
    store = loc.store
    history = cost_history(version, today,
                           {d: store.read_json("scoring_stats", d) for d in store.documents("scoring_stats")},
                           {p: store.read_json("candidate_model", p) for p in store.documents("candidate_model")})
    cost = monitoring.cost_day(loc.registry.load_reference(version), store.read_json("scoring_stats", today),
                               history.scoring, retrains=history.retrains, retrain_seconds=history.retrain_seconds,
                               policy=loc.project.spec.monitoring)
    return {"model_version": version, **cost}


def age(path):
    """Written long before the report, as in the daily loop (a document changed within a clock tick of the
    summary's last write is read again, which would make the count depend on this test's speed)."""
    os.utime(path, ns=(time.time_ns() - 3_600_000_000_000,) * 2)


def json_reads(monkeypatch):
    """Count every JSON file read (documents, summaries, references) during a run."""
    reads = []
    for name in ("read_text", "read_bytes"):
        real = getattr(pathlib.Path, name)

        def counting(self, *args, _real=real, **kwargs):
            if self.suffix == ".json":
                reads.append(self.name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, name, counting)
    return reads


def test_cost_report_reads_a_constant_number_of_documents_and_keeps_its_figures(tmp_path, monkeypatch):
    loc = Location(tmp_path, SPECS / "synthetic.toml", history_days=24)
    assert loc.train(20).success
    champion = loc.registry.version_for("champion")
    assert loc.run_job("score_and_monitor_job", day(22)).success
    store = loc.store
    today = store.read_json("scoring_stats", day(22))
    job = loc.defs.resolve_implicit_global_asset_job_def()

    def cost_report():
        result = job.execute_in_process(instance=loc.instance, partition_key=day(22), resources=loc.defs.resources,
                                        asset_selection=[loc.key("cost_report")], raise_on_error=False,
                                        run_config=QUIET)
        assert result.success
        return store.read_json("cost_report", day(22))

    def served(i, version, wall):
        path = store.write_json("scoring_stats", day(i), {**today, "champion": version, "rows": 100 + i,
                                                          "wall_seconds": wall})
        age(path)

    for asset in ("scoring_stats", "candidate_model"):  # everything the loop wrote so far, long ago
        for key in store.documents(asset):
            age(store.path(asset, key, ".json"))
    cost_report()  # a first report may read everything once
    reads_per_report = []
    # history grows backwards and forwards, so the champion's first served days keep changing
    for i, version, wall in [(12, champion, 0.5), (13, "other", 0.1), (9, champion, 0.2), (15, champion, 0.9),
                             (4, champion, 0.3), (2, "other", 0.4), (7, champion, 0.05), (16, champion, 0.6),
                             (1, champion, 0.8), (17, "other", 0.7), (18, champion, 0.2), (19, champion, 0.3)]:
        served(i, version, wall)
        with monkeypatch.context() as patch:
            reads = json_reads(patch)
            report = cost_report()
        reads_per_report.append(len(reads))
        assert report == expected_report(loc, champion, day(22)), i
    assert report["baseline_days"] == 3 and report["rows"] == today["rows"]
    assert len(set(reads_per_report)) == 1, reads_per_report  # the same however long the history

    # documents rewritten, removed, or trained late for an earlier day change the figures as they should
    served(1, "other", 0.8)
    store.path("scoring_stats", day(4), ".json").unlink()
    store.write_json("candidate_model", day(3), {"train_seconds": 12.5})
    assert cost_report() == expected_report(loc, champion, day(22))
    assert cost_report()["retrains_to_date"] == 2
