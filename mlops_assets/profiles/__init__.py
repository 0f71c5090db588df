"""Deployment profiles: how the same code location runs somewhere else than in one local process.

The default (embedded) profile needs nothing but Python: SQLite instance, DuckDB registry, local folders, steps
in the run's process. `production/` puts the Dagster instance and the registry on PostgreSQL and the steps on
Celery workers, with state on an S3-compatible store."""
