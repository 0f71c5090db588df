"""The online serving service's HTTP layer (FastAPI): a thin shell over mlops_assets.core.serving, as defs/ is
the Dagster shell over the same core."""
