"""The scale benchmark (mlops_assets.benchmarks.scale) runs end to end on small sizes and prints its table."""

import re

import pytest

from mlops_assets.benchmarks import scale


def test_ingest_and_sensor_sections_print_their_figures_with_their_commands(capsys):
    assert scale.main(["--only", "ingest", "--rows", "20000", "--baseline", "read_csv"]) == 0
    assert scale.main(["--only", "sensor", "--archive", "0,50", "--new", "3"]) == 0
    out = capsys.readouterr().out
    assert "ingest: wall time, rows/s" in out and "accepted=True through the fast path" in out
    assert "baseline: pandas.read_csv(dtype=str) alone" in out
    assert "python -m mlops_assets.benchmarks.scale --only ingest --rows 20000 --baseline read_csv" in out
    assert "sensor tick, 50 archived days" in out and "3 new" in out


def test_the_daily_cycle_runs_the_job_on_history(tmp_path):
    found = scale.daily_cycle(30, tmp_path, measured=2)
    assert found["history"] == 30 and len(found["seconds"]) == 2 and found["median"] > 0


def test_memory_section_prints_each_step_peak_measured_in_a_fresh_process(capsys):
    assert scale.main(["--only", "memory", "--volumes", "48", "--steps", "features,ingest"]) == 0
    out = capsys.readouterr().out
    peaks = {step: int(re.search(rf"    {step} +peak ([\d,]+) MiB \(before the step ([\d,]+) MiB", out).group(1)
                       .replace(",", "")) for step in ("ingest", "features")}
    # a fresh interpreter with Dagster and the definitions loaded is far above this process's share of it
    assert all(100 < peak < 4000 for peak in peaks.values()), peaks
    assert "step failed" not in out
    assert "python -m mlops_assets.benchmarks.scale --only memory --volumes 48 --train-max-rows 100000 " \
           "--steps ingest,features" in out
    with pytest.raises(ValueError, match="unknown step kinds"):
        scale.main(["--only", "memory", "--volumes", "48", "--steps", "scoring,serve"])
