"""Where a run's steps execute, chosen by the settings rather than the code: unset keeps Dagster's default
(the run's own processes); `celery` sends each step to the Celery workers listening on the broker."""

from __future__ import annotations

import dagster as dg

from ..core.config.settings import Settings


def celery_config(settings: Settings) -> dict:
    """The celery executor's config; the profile writes the same block into the workers' YAML, so that workers
    and runs meet on the same broker."""
    return {"broker": settings.celery_broker, "backend": settings.celery_backend}


def executor_for(settings: Settings) -> dg.ExecutorDefinition | None:
    if settings.executor != "celery":
        return None
    from dagster_celery import celery_executor  # the production extra; only this profile needs it

    return celery_executor.configured(celery_config(settings), name="celery")
