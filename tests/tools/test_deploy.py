"""deploy/ checked offline: every YAML parses, the settings it hands the pods are variables something in the image
reads, the Dockerfile copies what exists and runs a module that loads, and the chart values agree with the image
(port, module, user) and with the run tags the project sets. `make deploy-check` goes further (install + serve)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SITE = Path(yaml.__file__).resolve().parents[1]  # the venv's site-packages

# Variables that the project itself does not read but a library in the image does: name -> files that must
# contain it (so a misspelt or retired name fails here rather than being silently ignored in a pod).
LIBRARY_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "botocore/credentials.py",
    "AWS_SECRET_ACCESS_KEY": "botocore/credentials.py",
    "AWS_DEFAULT_REGION": "botocore/configprovider.py",
    "AWS_ENDPOINT_URL": "botocore/configprovider.py",
    "DAGSTER_HOME": "dagster/_core/instance/config.py",
    "DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT": "dagster/_core/executor/multiprocess.py",
    "PGPASSWORD": "psycopg2_binary.libs/libpq-*.so*",  # libpq reads it; the registry URL carries no password
}
# Set by the Dockerfile for Python and pip themselves.
INTERPRETER_VARIABLES = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"}
# Read by parts of issue 12 built alongside this one (all state on S3); drop a name once the code reads it.
def _load_check():
    spec = importlib.util.spec_from_file_location("deploy_check", DEPLOY / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK = _load_check()
STEPS = CHECK.instructions((DEPLOY / "Dockerfile").read_text())


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _config_map() -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / "mlops-config.yaml").read_text())


def _secret_keys() -> set[str]:
    """The Secret's keys, as deploy/README.md's `kubectl create secret` command creates them."""
    readme = (DEPLOY / "README.md").read_text()
    block = readme[readme.index("create secret generic mlops-secrets"):]
    block = block[:block.index("\n\n")]
    return set(re.findall(r"--from-literal=([A-Z_][A-Z0-9_]*)=", block))


def _project_reads() -> set[str]:
    """MLOPS_* names appearing in the package's source (what Settings and the core read)."""
    names = set()
    for path in (ROOT / "mlops_assets").rglob("*.py"):
        names |= set(re.findall(r"\bMLOPS_[A-Z0-9_]+\b", path.read_text()))
    return names


def _cmd() -> list[str]:
    return json.loads([args for keyword, args in STEPS if keyword == "CMD"][-1])


def test_every_yaml_in_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert files, "no YAML under deploy/"
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents and all(isinstance(d, dict) for d in documents), f"{path.name}: not a YAML mapping"


def test_every_variable_handed_to_the_pods_is_read_by_something_in_the_image():
    given = set(_config_map()["data"]) | _secret_keys()
    given |= {key for keyword, args in STEPS if keyword == "ENV" for key in CHECK.env_pairs(args)}
    assert {"MLOPS_REGISTRY_URL", "MLOPS_SPECS", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"} <= given
    read_by_project = _project_reads()
    unknown = []
    for name in sorted(given):
        if name.startswith("MLOPS_"):
            if name not in read_by_project:
                unknown.append(f"{name}: not read anywhere in mlops_assets/")
        elif name in LIBRARY_VARIABLES:
            files = list(SITE.glob(LIBRARY_VARIABLES[name]))
            assert files, f"{LIBRARY_VARIABLES[name]} not installed"
            if not any(name.encode() in f.read_bytes() for f in files):
                unknown.append(f"{name}: not in {LIBRARY_VARIABLES[name]}")
        elif name not in INTERPRETER_VARIABLES:
            unknown.append(f"{name}: read by nothing this test knows")
    assert not unknown, "\n".join(unknown)


def test_the_variable_check_catches_a_misspelt_name():
    # the same lookup as above, on a name one letter off a real one
    assert "MLOPS_REGISTRY_URL" in _project_reads()
    assert "MLOPS_REGISTY_URL" not in _project_reads()


def test_dockerfile_copies_only_what_exists_and_the_context_lets_through():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore should be an allowlist (everything else stays out of the context)"
    copies = [CHECK.copy_sources(args)[0] for keyword, args in STEPS if keyword == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
            assert source.rstrip("/") in allowed, f"COPY {source}: .dockerignore keeps it out of the context"


def test_dockerfile_installs_through_the_script_make_deploy_check_runs():
    runs = [args for keyword, args in STEPS if keyword == "RUN" and "install.sh" in args]
    assert len(runs) == 1 and "deploy/install.sh" in runs[0]
    assert (DEPLOY / "install.sh").stat().st_mode & 0o111, "deploy/install.sh must be executable"
    assert "[production]" in (DEPLOY / "install.sh").read_text()


def test_dockerfile_runs_as_a_numeric_non_root_user_and_the_chart_requires_it():
    users = [args for keyword, args in STEPS if keyword == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"
    deployment = _values()["dagster-user-deployments"]["deployments"][0]
    assert deployment["podSecurityContext"]["runAsUser"] == int(users[-1])
    run_pod = _values()["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert run_pod["securityContext"]["runAsUser"] == int(users[-1])


def test_the_cmd_module_loads_the_definitions(tmp_path):
    cmd = _cmd()
    assert cmd[:3] == ["dagster", "api", "grpc"]
    module = cmd[cmd.index("-m") + 1]
    env = {**os.environ, "MLOPS_SPECS": str(ROOT / "data" / "specs"), "MLOPS_DATA_DIR": str(tmp_path)}
    env.pop("MLOPS_REGISTRY_URL", None)
    code = f"import importlib; m = importlib.import_module({module!r}); print(len(m.defs.resolve_all_job_defs()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0


def test_chart_values_serve_the_image_the_dockerfile_builds():
    cmd = _cmd()
    deployment = _values()["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == cmd[cmd.index("-m"):cmd.index("-m") + 2]
    assert deployment["port"] == int(cmd[cmd.index("-p") + 1])
    probe = deployment["readinessProbe"]["exec"]["command"]
    assert probe[:3] == ["dagster", "api", "grpc-health-check"]
    assert probe[probe.index("-p") + 1] == str(deployment["port"])
    assert [c["name"] for c in deployment["envConfigMaps"]] == [_config_map()["metadata"]["name"]]
    assert [s["name"] for s in deployment["envSecrets"]] == ["mlops-secrets"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_chart_values_use_external_postgres_with_psycopg2_and_the_queued_coordinator():
    values = _values()
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"  # psycopg v3 is not installed
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert limits and all(limit["value"] == {"applyLimitPerUniqueValue": True} for limit in limits)


def test_tag_concurrency_limits_name_tags_the_project_sets_on_runs():
    limits = _values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    source = "\n".join(p.read_text() for p in (ROOT / "mlops_assets" / "defs").rglob("*.py"))
    for limit in limits:
        assert re.search(r'tags=\{[^}]*"' + re.escape(limit["key"]) + '"', source), \
            f"no run request or job in mlops_assets/defs sets the tag {limit['key']}"


@pytest.mark.parametrize("what", ["requests", "limits"])
def test_every_pod_has_a_memory_figure(what):
    values = _values()
    pods = [values["dagster-user-deployments"]["deployments"][0]["resources"],
            values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"],
            values["dagsterDaemon"]["resources"], values["dagsterWebserver"]["resources"]]
    for resources in pods:
        assert re.fullmatch(r"\d+(Mi|Gi)", resources[what]["memory"])
