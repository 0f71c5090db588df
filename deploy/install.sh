#!/bin/sh
# Installs the code location into a fresh virtual environment: the one install step of deploy/Dockerfile, kept
# in a script so `make deploy-check` runs exactly what the image runs (in a throwaway venv on the host).
# Usage: deploy/install.sh VENV SOURCE   (SOURCE: the folder holding pyproject.toml)
set -eu
venv=$1
source_dir=$2
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --no-cache-dir --quiet --upgrade pip
# Not editable: the image must not depend on the build context. The `production` extra brings the instance on
# PostgreSQL (dagster-postgres), Celery steps (dagster-celery) and S3 state (s3fs); the pins in pyproject.toml
# are exact, so the image gets the library versions a model's lineage records.
"$venv/bin/python" -m pip install --no-cache-dir --quiet "$source_dir[production]"
"$venv/bin/python" -m pip check
