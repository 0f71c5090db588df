"""What the daemon does with a code location's sensors and schedules, done in this process for the replay:
tick an instigator, run what it requests (run keys deduplicated, runs tagged as the daemon tags them), and
tell a run the pipeline stopped (a gate, a schema check, a dg.Failure) from a run that failed."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

SENSOR_TAG, SCHEDULE_TAG, RUN_KEY_TAG = "dagster/sensor_name", "dagster/schedule_name", "dagster/run_key"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
CODE_LOCATION_MODULE = "mlops_assets.definitions"  # what workspace.yaml loads


@dataclass(frozen=True)
class RunFailure:
    """A run that did not succeed: `expected` when the pipeline itself stopped it (a blocking check such as a
    gate or the schema check, or a dg.Failure such as an unreadable file), else an error to report."""

    partition: str | None
    run_key: str | None
    job: str
    run_id: str
    expected: bool
    error: str  # "step: ErrorClass: message", first failure only

    def describe(self) -> str:
        return f"{self.partition or '-'} {self.job} ({self.run_key or 'no run key'}), run {self.run_id}: {self.error}"


@dataclass
class ReplayLog:
    days: int = 0
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)  # "gate:<partition> <key>" or "<partition> <key>"
    failures: list[RunFailure] = field(default_factory=list)
    tick_errors: list[str] = field(default_factory=list)
    run_log: list = field(default_factory=list)
    sensor_state: dict[str, str | None] = field(default_factory=dict)

    @property
    def stopped(self) -> int:
        return sum(f.expected for f in self.failures)

    @property
    def errors(self) -> list[str]:
        return [f.describe() for f in self.failures if not f.expected] + self.tick_errors


def instigators(defs: dg.Definitions, model: str | None = None, schedules: bool = True) -> list:
    """The sensors, then the schedules, of one model if given, in the order the replay ticks them."""
    mine = (lambda d: d.name.startswith(f"{model}_")) if model else (lambda d: True)
    return [*filter(mine, defs.sensors), *(filter(mine, defs.schedules) if schedules else [])]


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, log: ReplayLog, origin,
         now: dt.datetime | None = None) -> list[dg.RunRequest]:
    """One evaluation of a sensor (its cursor kept in `log.sensor_state`) or of a schedule at `now`."""
    if isinstance(origin, dg.ScheduleDefinition):
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=now, resources=defs.resources)
        result = origin(ctx)
        return [result] if isinstance(result, dg.RunRequest) else []
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, cursor=log.sensor_state.get(origin.name),
                                  resources=defs.resources)
    result = origin(ctx)
    if result is None or isinstance(result, dg.SkipReason):
        return []
    if isinstance(result, dg.SensorResult):
        requests, cursor = result.run_requests or [], result.cursor
    else:
        requests, cursor = list(result), ctx.cursor
    log.sensor_state[origin.name] = cursor
    return list(requests)


def run_requests_once(defs: dg.Definitions, instance: dg.DagsterInstance, log: ReplayLog, echo=print,
                      now: dt.datetime | None = None, model: str | None = None) -> int:
    """Tick every sensor (and, given `now`, every schedule) once, of one model if given, and execute what they
    request, as the daemon would: run keys are deduplicated, runs carry the sensor's or schedule's tags."""
    launched = 0
    for origin in instigators(defs, model, schedules=now is not None):
        for request in tick(defs, instance, log, origin, now):
            launched += launch(defs, instance, log, echo, request, origin)
    return launched


def origin_tags(origin) -> dict[str, str]:
    tag = SCHEDULE_TAG if isinstance(origin, dg.ScheduleDefinition) else SENSOR_TAG
    return {tag: origin.name}


def launch(defs, instance, log: ReplayLog, echo, request: dg.RunRequest, origin, on_finished=None) -> int:
    """Execute `request` unless its run key is taken; 1 if a run was launched. `on_finished(result)` runs as
    soon as the run ends, before anything is recorded."""
    tags = {**(request.tags or {}), **origin_tags(origin)}
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
        if key_taken(instance, request.run_key, origin_tags(origin)):
            return 0
    outcome = execute_request(defs, instance, request, tags, origin)
    if on_finished is not None:
        on_finished(outcome)
    job = _target_job(origin) or "assets"
    log.runs += 1
    log.run_log.append((request.partition_key, job, outcome.success, tags))
    if not outcome.success:
        failure = classify_failure(outcome, request, job)
        log.failures.append(failure)
        log.failed_runs.append(f"{'gate:' if failure.expected else ''}{request.partition_key} {request.run_key or ''}"
                               .strip())
        if not failure.expected:
            echo(f"  ! run failed: {failure.describe()}")
    return 1


def key_taken(instance: dg.DagsterInstance, run_key: str, origin: dict[str, str]) -> bool:
    """As the daemon decides: a run key is taken by any run of the same sensor or schedule that carries it,
    except a run that crashed (FAILURE for a reason other than a step failing: its worker died, or the replay
    that ran it stopped before it finished). Those the instance's run retries would run again; so does the
    replay, when the request comes again."""
    for run in instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, **origin})):
        crashed = (run.status == dg.DagsterRunStatus.FAILURE
                   and run.tags.get("dagster/failure_reason") != "STEP_FAILURE")
        if not crashed:
            return True
    return False


def execute_request(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest, tags: dict,
                    origin=None):
    job_name = request.job_name or _target_job(origin)
    selection = request.asset_selection
    if job_name:
        job = defs.resolve_job_def(job_name)
    else:
        job = defs.resolve_implicit_global_asset_job_def()
        if selection is None and getattr(origin, "asset_selection", None) is not None:
            selection = list(origin.asset_selection.resolve(defs.resolve_asset_graph()))
    if defs.executor is not None:
        return execute_out_of_process(instance, job, selection, request.asset_check_keys, request.partition_key, tags)
    if request.asset_check_keys is not None:  # the request names its checks, as the daemon would honour
        job = job.get_subset(asset_selection=set(selection or job.asset_layer.executable_asset_keys),
                             asset_check_selection=set(request.asset_check_keys))
        selection = None
    return job.execute_in_process(
        instance=instance, partition_key=request.partition_key, asset_selection=selection,
        tags=tags, raise_on_error=False, resources=defs.resources, run_config=QUIET,
    )


def execute_out_of_process(instance: dg.DagsterInstance, job: dg.JobDefinition, selection, checks,
                           partition_key: str | None, tags: dict):
    """The run's steps go to the executor the settings chose (Celery workers), which rebuild the code location
    from `CODE_LOCATION_MODULE` in the same environment; this process orchestrates the run and waits for it."""
    recon = ReconstructableRepository.for_module(CODE_LOCATION_MODULE, "defs", working_directory=os.getcwd())
    recon_job = recon.get_reconstructable_job(job.name)
    if checks is not None:
        recon_job = recon_job.get_subset(asset_selection=set(selection or job.asset_layer.executable_asset_keys),
                                         asset_check_selection=set(checks))
        selection = None
    if partition_key:
        tags = {**tags, "dagster/partition": partition_key}
    with warnings.catch_warnings():
        # the celery executor registers its task anew for every run of this process, and celery says so
        warnings.filterwarnings("ignore", message="Task name .* is already registered")
        with dg.execute_job(recon_job, instance, run_config=QUIET, tags=tags, raise_on_error=False,
                            asset_selection=list(selection) if selection else None) as result:
            return result


def classify_failure(outcome, request: dg.RunRequest, job: str) -> RunFailure:
    """A run stopped by a blocking check (a gate, a schema check) or a dg.Failure did its job; anything else
    (an exception in a step, a run that could not start) is an error, reported with its message."""
    steps = [e for e in outcome.all_events if e.event_type_value == "STEP_FAILURE"]
    expected = bool(steps) and all(_is_expected(e.event_specific_data.error) for e in steps)
    if steps:
        first = next((e for e in steps if not _is_expected(e.event_specific_data.error)), steps[0])
        error = f"{first.step_key}: {_root_message(first.event_specific_data.error)}"
    else:
        run_failure = next((e for e in outcome.all_events if e.event_type_value == "PIPELINE_FAILURE"), None)
        data = run_failure.event_specific_data if run_failure is not None else None
        error = (_root_message(data.error) if data is not None and data.error is not None
                 else (run_failure.message if run_failure is not None else "the run failed"))
    return RunFailure(request.partition_key, request.run_key, job, outcome.run_id, expected, error)


def _is_expected(error) -> bool:
    return error is not None and ("blocking asset check" in error.message or error.cls_name == "Failure")


def _root_message(error) -> str:
    """The error a step raised, not Dagster's wrapper of it: 'ValueError: ...', on one line. A step that
    exhausted its retries reports the last attempt's error, with how many attempts failed."""
    retries = ""
    while error.cause is not None and error.cls_name and (error.cls_name.startswith("Dagster")
                                                          or error.cls_name == "RetryRequestedFromPolicy"):
        if error.cls_name == "RetryRequestedFromPolicy":
            retries = f" ({' '.join(error.message.split()).rstrip('.')}, every attempt failed)"
        error = error.cause
    message = " ".join(error.message.split()) + retries
    if error.cls_name and not message.startswith(error.cls_name):
        message = f"{error.cls_name}: {message}"
    return message[:500]


def _target_job(origin) -> str | None:
    try:
        return origin.job_name if origin is not None else None
    except dg.DagsterInvalidDefinitionError:  # a sensor that targets assets, not a job
        return None
