import pytest

from mlops_assets.core.config.spec import SpecError, load_spec, spec_from_dict

from conftest import SPECS


def minimal(**overrides):
    raw = {
        "dataset": {"name": "d", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "start_date": "2024-01-01"},
        "features": {"x": {"type": "numeric", "min": 0, "max": 1},
                     "c": {"type": "categorical", "categories": ["a", "b"]}},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return raw


def test_shipped_specs_load(elec2_spec, synthetic_spec):
    assert elec2_spec.target == "class_up" and elec2_spec.label_delay_days == 1
    assert "vicprice" in elec2_spec.numeric_features and elec2_spec.slices == ("day",)
    assert synthetic_spec.entity_id == "customer_id"
    assert synthetic_spec.key_columns == ["event_time", "customer_id"]
    assert synthetic_spec.categorical_features == ["region", "plan"]


def test_minimal_spec_defaults():
    spec = spec_from_dict(minimal())
    assert spec.feature("x").min == 0.0 and spec.feature("c").categories == ("a", "b")
    assert spec.batch_columns == ["ts", "x", "c"] and spec.label_columns == ["ts", "y"]
    assert spec.key_metric == "roc_auc"
    assert spec_from_dict(minimal(dataset__task="regression")).key_metric == "rmse"


def test_every_mistake_is_reported_at_once():
    raw = minimal(dataset__task="ranking", dataset__start_date="yesterday", dataset__slices=["x"],
                  dataset__colour="blue")
    raw["features"]["x"]["min"] = 5
    raw["features"]["c"]["categories"] = []
    raw["training"] = {"window_days": "many"}
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="my.toml")
    text = str(err.value)
    for needle in ["my.toml", "dataset.task", "dataset.start_date", "dataset.slices", "dataset.colour",
                   "features.x: min (5.0) is greater than max", "features.c", "training.window_days"]:
        assert needle in text, needle
    assert len(err.value.problems) >= 7


def test_feature_cannot_be_target_and_file_errors(tmp_path):
    raw = minimal()
    raw["features"]["y"] = {"type": "numeric"}
    with pytest.raises(SpecError, match="features.y"):
        spec_from_dict(raw)
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset\nname=1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "missing.toml")


def test_no_other_module_names_a_dataset_column():
    """The spec is the only place that names columns: no Python module mentions Elec2's or the synthetic
    dataset's column names."""
    import mlops_assets

    from conftest import REPO

    names = set()
    for spec in (load_spec(SPECS / "elec2.toml"), load_spec(SPECS / "synthetic.toml")):
        names |= set(spec.feature_names) | {spec.target, spec.timestamp} | ({spec.entity_id} - {None})
    names -= {"timestamp", "day", "period"}  # ordinary words in code and docs
    offenders = []
    for path in (REPO / "mlops_assets").rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}: {n}" for n in names if f'"{n}"' in text or f"'{n}'" in text]
    assert not offenders, offenders
    assert mlops_assets


def test_auto_canary_lives_under_deployment():
    assert spec_from_dict(minimal()).deployment.auto_canary is False
    assert spec_from_dict(minimal(deployment__auto_canary=True)).deployment.auto_canary is True
    assert load_spec(SPECS / "elec2.toml").deployment.auto_canary is True
    assert not hasattr(spec_from_dict(minimal()).monitoring, "auto_canary")


def test_auto_canary_under_monitoring_is_rejected_naming_its_new_place_with_the_other_mistakes():
    raw = minimal(monitoring__auto_canary=True, monitoring__colour="blue", deployment__canary_window_days=0)
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="old.toml")
    problems = err.value.problems
    assert "monitoring.auto_canary: moved to [deployment] auto_canary" in problems
    assert any(p.startswith("monitoring.colour: unknown key") for p in problems)
    assert "deployment.canary_window_days: must be at least 1" in problems
    assert "auto_canary" not in " ".join(p for p in problems if p.startswith("monitoring.colour"))  # not a known key


def test_policies_are_importable_from_the_spec_module_and_their_own():
    from mlops_assets.core.config import policies, spec

    for name in ("TrainingPolicy", "GatePolicy", "MonitoringPolicy", "DeploymentPolicy", "SloPolicy"):
        assert getattr(spec, name) is getattr(policies, name)


def test_slo_section_defaults_and_overrides():
    slo = spec_from_dict(minimal()).slo
    assert (slo.max_ingest_delay_days, slo.max_scoring_delay_days, slo.label_grace_days, slo.max_retrain_wait_days,
            slo.max_champion_age_days, slo.evaluation_hour_utc) == (1, 1, 1, 2, 30, 7)
    custom = spec_from_dict(minimal(slo__max_champion_age_days=90, slo__label_grace_days=3)).slo
    assert custom.max_champion_age_days == 90 and custom.label_grace_days == 3 and custom.max_ingest_delay_days == 1
    for shipped in (SPECS / "elec2.toml", SPECS / "synthetic.toml"):
        assert load_spec(shipped).slo.max_champion_age_days > 0


def test_slo_mistakes_are_reported_with_their_keys_and_the_other_mistakes():
    raw = minimal(slo__max_ingest_delay_days=-1, slo__label_grace_days="two", slo__max_champion_age_days=True,
                  slo__evaluation_hour_utc=24, slo__stale_after=3, dataset__label_delay_days=1)
    raw["training"] = {"window_days": "many"}
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="slo.toml")
    problems = err.value.problems
    assert "slo.max_ingest_delay_days: must not be negative, got -1" in problems
    assert "slo.label_grace_days: expected int, got 'two'" in problems
    assert "slo.max_champion_age_days: expected int, got True" in problems
    assert "slo.evaluation_hour_utc: an hour of the day in 0..23, got 24" in problems
    assert any(p.startswith("slo.stale_after: unknown key") and "max_champion_age_days" in p for p in problems)
    assert any(p.startswith("training.window_days") for p in problems)


def test_a_champion_age_limit_every_new_champion_would_breach_is_refused():
    with pytest.raises(SpecError) as err:
        spec_from_dict(minimal(dataset__label_delay_days=5, slo__max_champion_age_days=7))
    [problem] = err.value.problems
    assert problem.startswith("slo.max_champion_age_days: must exceed dataset.label_delay_days + "
                              "slo.max_retrain_wait_days (5 + 2 = 7)")
    assert spec_from_dict(minimal(dataset__label_delay_days=5, slo__max_champion_age_days=8)).slo


def test_fixed_performance_drops_are_refused_saying_what_replaced_them():
    raw = minimal(monitoring__warn_performance_drop=0.03, monitoring__performance_warn_std=4.0,
                  monitoring__performance_error_std=3.0, monitoring__performance_min_rows=0)
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    problems = info.value.problems
    assert any(p.startswith("monitoring.warn_performance_drop: removed") and "performance_warn_std" in p
               for p in problems)
    assert any(p.startswith("monitoring.performance_warn_std: must not exceed monitoring.performance_error_std") for p in problems)
    assert any(p.startswith("monitoring.performance_min_rows") for p in problems)
    defaults = spec_from_dict(minimal()).monitoring
    assert (defaults.performance_min_rows, defaults.performance_max_days) == (500, 14)
    assert (defaults.performance_warn_std, defaults.performance_error_std) == (2.0, 3.0)
