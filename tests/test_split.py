"""The customer-stable train/holdout split, called directly on small frames."""

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro_project import REPO

from churn_kedro.pipelines.data_processing.nodes import holdout_side, split_train_holdout
from churn_kedro.schema import SnapshotError

CONF = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
PARAMS = yaml.safe_load((REPO / "conf/base/parameters_data_processing.yml").read_text())[
    "data_processing"
]


def snapshot(ids: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": ids.astype(str),
            "age": rng.integers(18, 90, ids.size).astype(float),
            "annual_premium": rng.uniform(100, 3000, ids.size),
            "claims_count": rng.integers(0, 5, ids.size).astype(float),
            "policy_type": rng.choice(["auto", "home", "life"], ids.size),
            "churn": rng.binomial(1, 0.2, ids.size),  # labels change between snapshots
        }
    )


def split(rows: pd.DataFrame, **params):
    train, holdout, _ = split_train_holdout(
        rows, {"source_file": "snap"}, {}, CONF["schema"], {**PARAMS, **params}
    )
    return train, holdout


def test_a_customer_stays_on_its_side_between_snapshots():
    first = snapshot(np.arange(0, 5000), seed=1)
    # the next month: 500 customers left, 700 joined, every label redrawn
    second = snapshot(np.arange(500, 5700), seed=2)
    train_1, holdout_1 = split(first)
    train_2, holdout_2 = split(second)
    assert not set(holdout_2["customer_id"]) & set(train_1["customer_id"])
    assert not set(train_2["customer_id"]) & set(holdout_1["customer_id"])
    shared = set(first["customer_id"]) & set(second["customer_id"])
    assert set(holdout_1["customer_id"]) & shared == set(holdout_2["customer_id"]) & shared


def test_the_split_has_the_fraction_and_each_class_near_it():
    rows = snapshot(np.arange(20_000), seed=3)
    train, holdout = split(rows)
    assert len(train) + len(holdout) == len(rows)
    assert len(holdout) / len(rows) == pytest.approx(PARAMS["holdout_fraction"], abs=0.01)
    share_by_class = holdout["churn"].value_counts() / rows["churn"].value_counts()
    assert share_by_class.to_numpy() == pytest.approx([PARAMS["holdout_fraction"]] * 2, abs=0.02)


def test_another_salt_is_another_split():
    ids = pd.Series(np.arange(2000).astype(str))
    a = holdout_side(ids, "a", 0.2)
    assert (a == holdout_side(ids, "a", 0.2)).all()
    assert (a != holdout_side(ids, "b", 0.2)).mean() > 0.2
    # a larger fraction only adds customers to the holdout
    assert (holdout_side(ids, "a", 0.3) >= a).all()


def test_too_few_rows_for_a_holdout_is_an_error_naming_the_file():
    with pytest.raises(Exception, match="snap.*too few"):
        split(snapshot(np.arange(3), seed=0))
    with pytest.raises(ValueError, match="holdout_fraction"):
        holdout_side(pd.Series(["1"]), "a", 1.5)


def test_a_snapshot_with_no_valid_row_is_quarantined_and_stops_naming_the_reasons():
    from churn_kedro.pipelines.data_processing.nodes import validate_snapshot

    raw = snapshot(np.arange(1, 31), seed=3).astype(str)
    raw["policy_type"] = "boat"
    raw.loc[:4, "age"] = "12"
    valid, quarantine, report = validate_snapshot(raw, {"source_file": "raw/x.csv"}, CONF["schema"])

    assert valid.empty and len(quarantine) == 30  # every row goes to the quarantine report
    with pytest.raises(SnapshotError) as failure:
        split_train_holdout(valid, {"source_file": "raw/x.csv"}, report, CONF["schema"], PARAMS)
    message = str(failure.value)
    assert message.startswith("raw/x.csv: has no valid rows (30 rejected")
    assert "policy_type: 'boat' is not one of auto, home, life (30 rows)" in message
    assert "age: 12 is below the minimum 18 (5 rows)" in message
