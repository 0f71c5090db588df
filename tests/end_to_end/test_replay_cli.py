"""The replay as a command-line tool, on a two-week synthetic span (52 runs: ingestion, a first model,
scoring, late labels, one loop-health run a morning): resumed in several calls it leaves exactly what one call leaves, whether the calls
were split by hand, by Ctrl-C or by the process being killed mid-run; Ctrl-C stops it after the run in
progress with exit code 130; a run failing for an unexpected reason is printed with its error and makes the
exit code 1, while a schema check stopping a day does not; a spec that cannot work is reported as the spec's
error before anything runs."""

import signal
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_support import SyntheticReplay, day  # noqa: E402

LAST = 13  # the span is day(0) .. day(13)


@pytest.fixture(scope="module")
def one_call(tmp_path_factory):
    """What one uninterrupted call over the span leaves behind."""
    replay = SyntheticReplay.create(tmp_path_factory.mktemp("one_call"))
    done = replay.run("--start", day(0), "--end", day(LAST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Done: 14 days, 52 runs" in done.stdout  # 38 of the loop, 14 of the loop-health schedule
    return replay.snapshot()


@pytest.mark.slow
def test_two_calls_leave_what_one_call_leaves(tmp_path, one_call):
    """Labels of a day land `label_delay_days` later: those of the first call's last days land in the second."""
    replay = SyntheticReplay.create(tmp_path)
    first = replay.run("--start", day(0), "--end", day(6))
    assert first.returncode == 0, first.stdout + first.stderr
    second = replay.run("--start", day(7), "--end", day(LAST))
    assert second.returncode == 0, second.stdout + second.stderr
    snapshot = replay.snapshot()
    labeled = sorted(k for k in snapshot if k.startswith("warehouse/labeled_examples/"))
    assert labeled == [f"warehouse/labeled_examples/{day(i)}.parquet" for i in range(LAST - 1)]
    assert snapshot == one_call


@pytest.mark.slow
def test_ctrl_c_stops_after_the_run_in_progress_and_resumes_to_the_same_state(tmp_path, one_call):
    replay = SyntheticReplay.create(tmp_path)
    # 1. Ctrl-C once a few days are done: the run in progress finishes, the state is saved, exit code 130.
    process = replay.popen("--start", day(0), "--end", day(LAST))
    deadline = time.time() + 300
    while (replay.state().get("last_day") or "") < day(2) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, out + err
    assert "Ctrl-C: stopping after the run in progress" in out
    stop_line = next(line for line in out.splitlines() if line.startswith("Ctrl-C: stopped "))
    assert "State saved in" in stop_line and "resume with `make demo ARGS=\"--model synthetic --history" in stop_line
    assert f"it goes on to {day(LAST)}" in stop_line
    assert "Traceback" not in err
    runs = replay.runs()
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)  # none cut short
    state = replay.state()
    assert state["end"] == day(LAST) and state["last_day"] < day(LAST)

    # 2. Resumed without --start, the replay is killed (SIGKILL) while writing day 9's feature table.
    killed = replay.run(fault=f"kill:feature_table:{day(9)}")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "Resuming synthetic" in killed.stdout
    assert [r.status for r in replay.runs()].count(dg.DagsterRunStatus.STARTED) == 1  # left behind

    # 3. Resumed again: the unfinished run is failed as crashed, its request re-executed, the span finished.
    resumed = replay.run()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 run(s) left unfinished by a replay that stopped were marked failed" in resumed.stdout
    assert "Done:" in resumed.stdout
    assert replay.state()["last_day"] == day(LAST) and replay.state()["end"] is None
    assert replay.snapshot() == one_call

    # 4. Nothing left to do: another call says so and launches nothing.
    again = replay.run()
    assert again.returncode == 0 and "Nothing to replay" in again.stdout and "Done: 0 days, 0 runs" in again.stdout


@pytest.mark.slow
def test_an_unexpected_failure_is_printed_and_exits_1_a_schema_stop_does_not(tmp_path):
    replay = SyntheticReplay.create(tmp_path, days=4)
    history = pd.read_csv(replay.history)
    row = history.index[history["event_time"].str.startswith(day(3))][0]
    history.loc[row, "tenure"] = 99.0  # out of the spec's range: the schema check stops day 3
    history.to_csv(replay.history, index=False)
    done = replay.run("--start", day(0), "--end", day(3), fault=f"raise:feature_table:{day(2)}")
    assert done.returncode == 1, done.stdout + done.stderr
    error = f"OSError: [Errno 28] No space left on device (injected while writing feature_table {day(2)})"
    [printed] = [line for line in done.stdout.splitlines() if line.startswith("  ! run failed:")]
    assert printed.startswith(f"  ! run failed: {day(2)} assets (features:{day(2)}:")
    # the step was retried by the assets' retry policy before the run failed; the last attempt's error is shown
    assert printed.endswith(f"synthetic__feature_table: {error} (Exceeded max_retries of 2, every attempt failed)")
    assert "(1 stopped by a gate or check, 1 failed)" in done.stdout
    assert "1 unexpected failure(s), not a gate or a schema check" in done.stderr and error in done.stderr
    assert day(3) not in done.stderr  # the schema stop is not an error
    snapshot = replay.snapshot()
    assert {k for k in snapshot if k.startswith("warehouse/feature_table/")} == {
        f"warehouse/feature_table/{day(i)}.parquet" for i in (0, 1)}  # the other days went on
    assert any(k.startswith(f"quarantine/{day(3)}/") for k in snapshot)

    # Without the injected error, a schema stop alone is the pipeline working: exit code 0.
    clean = SyntheticReplay.create(tmp_path / "clean", days=4)
    history.to_csv(clean.history, index=False)
    done = clean.run("--start", day(0), "--end", day(3))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(1 stopped by a gate or check, 0 failed)" in done.stdout and not done.stderr.strip()


def test_a_spec_that_cannot_train_is_reported_as_the_specs_error_before_anything_runs(tmp_path):
    """Not as a run failing on day 8, when the first model is trained."""
    replay = SyntheticReplay.create(tmp_path, days=9, edit=('estimator = "logistic_regression"', 'estimator = "ridge"'))
    done = replay.run("--start", day(0), "--end", day(8))
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"invalid dataset spec {replay.spec_path}:\n  - training.estimator 'ridge' cannot be used for task "
            "'binary_classification' (it is a regression estimator)") in done.stderr
    assert "stopped" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert replay.runs() == []
