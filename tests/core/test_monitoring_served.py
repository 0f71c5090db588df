"""What the monitoring reports look at, as plain functions: the served rows, those rows with labels, and the
serving model's cost history."""

import pandas as pd
import pytest

from mlops_assets.core.config.spec import spec_from_dict
from mlops_assets.core.monitoring.served import NothingServed, cost_history, labelled_rows, served_rows

DAY = "2025-03-10"


def rows(version, route, entities, scores):
    ts = [pd.Timestamp(DAY) + pd.Timedelta(hours=i) for i in range(len(entities))]
    return pd.DataFrame({"entity": entities, "timestamp": ts, "score": scores, "model_version": version,
                         "route": route, "acted_on": route != "shadow"})


def test_the_champion_route_is_what_was_served():
    ledger = pd.concat([rows("v1", "champion", ["a", "b"], [0.1, 0.9]), rows("v2", "canary", ["c"], [0.5]),
                        rows("v1", "shadow", ["c"], [0.4])], ignore_index=True)
    served = served_rows(ledger, DAY)
    assert served.version == "v1" and served.rows["entity"].tolist() == ["a", "b"]


def test_a_canary_serving_every_row_is_what_was_served():
    ledger = pd.concat([rows("v2", "canary", ["a", "b"], [0.1, 0.9]), rows("v1", "shadow", ["a", "b"], [0.2, 0.8])],
                       ignore_index=True)
    served = served_rows(ledger, DAY)
    assert served.version == "v2" and served.rows["route"].tolist() == ["canary", "canary"]


def test_a_day_with_no_acted_on_rows_is_refused():
    with pytest.raises(NothingServed, match=f"no acted-on predictions in the ledger for {DAY}$"):
        served_rows(rows("v9", "shadow", ["a"], [0.3]), DAY)
    with pytest.raises(NothingServed):
        served_rows(rows("v1", "champion", [], []), DAY)


def test_labelled_rows_are_the_served_rows_with_a_landed_label():
    spec = spec_from_dict({
        "dataset": {"name": "tiny", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "entity_id": "id", "start_date": "2025-01-01"},
        "features": {"x1": {"type": "numeric"}}, "training": {"estimator": "logistic_regression"},
    })
    served = rows("v1", "champion", ["a", "b", "c"], [0.1, 0.9, 0.6])
    served["timestamp"] = served["timestamp"].astype("datetime64[ns]")  # the ledger's unit need not match
    labeled = pd.DataFrame({"ts": served["timestamp"][[0, 2]].to_numpy(), "id": ["a", "c"], "x1": [0.0, 1.0],
                            "y": [0, 1]})
    out = labelled_rows(served, labeled, spec)
    assert out["entity"].tolist() == ["a", "c"] and out["label"].tolist() == [0, 1]
    assert out["score"].tolist() == [0.1, 0.6]


def test_cost_history_is_the_same_champion_s_earlier_days_and_retraining_up_to_the_day():
    stats = {
        "2025-03-07": {"champion": "v1", "rows": 1}, "2025-03-08": {"champion": "v2", "rows": 2},
        "2025-03-09": {"champion": "v2", "rows": 3}, DAY: {"champion": "v2", "rows": 4},
        "2025-03-11": {"champion": "v2", "rows": 5},
    }
    candidates = {"2025-03-06": {"train_seconds": 1.5}, DAY: {"train_seconds": 2.0},
                  "2025-03-12": {"train_seconds": 9.0}, "2025-03-01": {}}  # an old document without a time
    history = cost_history("v2", DAY, dict(reversed(stats.items())), candidates)
    assert [s["rows"] for s in history.scoring] == [2, 3]  # oldest first, whatever the mapping's order
    assert (history.retrains, history.retrain_seconds) == (3, 3.5)
    assert cost_history("v9", DAY, stats, {}).scoring == [] and cost_history("v9", DAY, {}, {}).retrains == 0
