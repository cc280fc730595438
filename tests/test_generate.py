"""churn-generate, run as a user runs it, and what its files hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churn_kedro.generate import main
from churn_kedro.schema import Schema, validate_frame

REPO = Path(__file__).resolve().parents[1]
STAMP = "2026-11-01_06-00-00"
INSURANCE = ["customer_id", "age", "annual_premium", "policy_type", "claims_count", "churn"]


def schema_of(env: str) -> Schema:
    return Schema.from_params(
        yaml.safe_load((REPO / f"conf/{env}/parameters.yml").read_text())["schema"]
    )


def generate(
    tmp_path: Path, *args: str, stamp: str = STAMP, dataset: str = "insurance"
) -> tuple[Path, Path]:
    assert (
        main(
            [
                "--out",
                str(tmp_path / "raw"),
                "--truth-dir",
                str(tmp_path / "truth"),
                "--timestamp",
                stamp,
                "--dataset",
                dataset,
                *args,
            ]
        )
        == 0
    )
    prefix = {"insurance": "insurance_data", "telco": "telco_churn"}[dataset]
    name = f"{prefix}_{stamp}.csv"
    return tmp_path / "raw" / name, tmp_path / "truth" / name


def read_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def test_console_script_writes_the_named_snapshot_and_its_truth(tmp_path):
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "churn-generate"),
            "--rows",
            "1500",
            "--seed",
            "3",
            "--timestamp",
            STAMP,
            "--out",
            "raw",
            "--truth-dir",
            "truth",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1500 rows" in done.stdout
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [f"insurance_data_{STAMP}.csv"]
    raw = read_raw(tmp_path / "raw" / f"insurance_data_{STAMP}.csv")
    truth = pd.read_csv(
        tmp_path / "truth" / f"insurance_data_{STAMP}.csv", dtype={"customer_id": str}
    )
    assert list(raw.columns) == INSURANCE and len(raw) == 1500
    assert list(truth.columns) == ["customer_id", "churn_probability"]
    assert truth["customer_id"].tolist() == raw["customer_id"].tolist()  # aligned row for row
    assert truth["churn_probability"].between(0, 1).all()


def test_module_entry_point_and_default_timestamp(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "churn_kedro.generate",
            "--rows",
            "10",
            "--out",
            "raw",
            "--truth-dir",
            "truth",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    [name] = [p.name for p in (tmp_path / "raw").iterdir()]
    assert (
        name.startswith("insurance_data_20")
        and name.endswith(".csv")
        and len(name) == len(f"insurance_data_{STAMP}.csv")
    )
    assert (tmp_path / "truth" / name).exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--timestamp", "yesterday", "--out", str(tmp_path / "raw")])
    with pytest.raises(SystemExit):  # the truth would be picked up as a raw snapshot
        main(["--out", str(tmp_path / "raw"), "--truth-dir", str(tmp_path / "raw" / "truth")])
    assert not (tmp_path / "raw").exists()


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    a = generate(tmp_path / "a", "--rows", "3000", "--seed", "9")
    b = generate(tmp_path / "b", "--rows", "3000", "--seed", "9")
    c = generate(tmp_path / "c", "--rows", "3000", "--seed", "10")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()


def test_dirty_rows_are_caught_by_the_schema_with_reasons(tmp_path):
    raw_path, truth_path = generate(tmp_path, "--rows", "20000", "--seed", "1")
    raw = read_raw(raw_path)
    assert len(raw) == 20000
    features = ["age", "annual_premium", "policy_type", "claims_count"]
    assert 0.01 < raw[features].isna().any(axis=1).mean() < 0.03  # ~2% with a blank feature
    assert 0.003 < raw.duplicated().mean() < 0.008  # ~0.5% exact repeats

    result = validate_frame(raw, schema_of("base"), raw_path.name)
    reasons = result.rejected["reason"]
    assert reasons.str.startswith("duplicate: repeats row").sum() == raw.duplicated().sum()
    broken = reasons[~reasons.str.startswith("duplicate")]
    assert 20 <= len(broken) <= 80  # ~0.2% rule breakers
    for expected in (
        "age: 150 is above the maximum",
        "age: 5 is below the minimum",
        "annual_premium: -120.0 is not greater than 0",
        "policy_type: 'boat' is not one of",
        "'abc' is not a number",
        "churn: 'maybe' is not one of",
    ):
        assert broken.str.contains(expected, regex=False).any(), expected
    assert len(result.valid) + len(result.rejected) == 20000
    churn = result.valid["churn"].mean()
    assert 0.18 < churn < 0.22


def test_clean_mode_has_nothing_to_reject(tmp_path):
    raw_path, _ = generate(tmp_path, "--rows", "20000", "--seed", "1", "--clean")
    raw = read_raw(raw_path)
    result = validate_frame(raw, schema_of("base"), raw_path.name)
    assert result.rejected.empty and len(result.valid) == 20000
    assert not raw.isna().any().any()
    assert raw["customer_id"].is_unique


def test_the_truth_holds_signal_a_linear_model_misses(tmp_path):
    """The oracle ranks clearly better than a logistic regression on the raw columns."""
    raw_path, truth_path = generate(tmp_path, "--rows", "6000", "--seed", "2", "--clean")
    frame = validate_frame(read_raw(raw_path), schema_of("base"), raw_path.name).valid
    truth = pd.read_csv(truth_path)["churn_probability"]
    y = frame["churn"]
    oracle = roc_auc_score(y, truth)
    linear = make_pipeline(
        make_column_transformer(
            (StandardScaler(), ["age", "annual_premium", "claims_count"]),
            (OneHotEncoder(), ["policy_type"]),
        ),
        LogisticRegression(max_iter=500),
    )
    out_of_fold = cross_val_predict(linear, frame, y, cv=3, method="predict_proba")[:, 1]
    assert oracle > 0.72
    assert oracle - roc_auc_score(y, out_of_fold) > 0.04


def test_drift_changes_the_behaviour(tmp_path):
    base = generate(tmp_path / "a", "--rows", "20000", "--seed", "4", "--clean")
    drifted = generate(
        tmp_path / "b", "--rows", "20000", "--seed", "4", "--clean", "--drift", "1.0"
    )
    base_p = pd.read_csv(base[1])["churn_probability"]
    drift_p = pd.read_csv(drifted[1])["churn_probability"]
    assert drift_p.mean() > base_p.mean() + 0.04  # a higher base rate
    assert 0.22 < read_raw(drifted[0])["churn"].astype(int).mean() < 0.30


def test_noise_labels_carry_no_signal(tmp_path):
    raw_path, truth_path = generate(
        tmp_path, "--rows", "20000", "--seed", "5", "--noise-labels", "--clean"
    )
    raw = read_raw(raw_path)
    y = raw["churn"].astype(int)
    assert 0.18 < y.mean() < 0.22
    assert pd.read_csv(truth_path)["churn_probability"].nunique() == 1
    # the best the features can do is chance: any single feature ranks at ~0.5
    for column in ("age", "annual_premium", "claims_count"):
        assert abs(roc_auc_score(y, raw[column].astype(float)) - 0.5) < 0.03


def test_telco_is_another_shape_validated_by_its_own_configuration(tmp_path):
    raw_path, truth_path = generate(
        tmp_path, "--rows", "10000", "--seed", "6", "--clean", dataset="telco"
    )
    assert raw_path.name == f"telco_churn_{STAMP}.csv"
    raw = read_raw(raw_path)
    schema = schema_of("telco")
    assert list(raw.columns) == schema.required_columns()
    assert raw["CustomerID"].str.fullmatch(r"C-\d{6}").all()
    assert set(raw["Churn"]) == {"Yes", "No"}
    result = validate_frame(raw, schema, raw_path.name)
    assert result.rejected.empty and len(result.valid) == 10000
    assert 0.22 < result.valid["Churn"].mean() < 0.28
    truth = pd.read_csv(truth_path)
    assert truth["CustomerID"].tolist() == raw["CustomerID"].tolist()
    assert roc_auc_score(result.valid["Churn"], truth["churn_probability"]) > 0.8

    dirty_path, _ = generate(tmp_path / "dirty", "--rows", "10000", "--seed", "6", dataset="telco")
    rejected = validate_frame(read_raw(dirty_path), schema, dirty_path.name).rejected
    assert rejected["reason"].str.contains("Churn: 'maybe' is not one of Yes, No").any()
    assert rejected["reason"].str.startswith("duplicate").any()


def test_telco_environment_overrides_whole_keys():
    base = yaml.safe_load((REPO / "conf/base/globals.yml").read_text())
    telco = yaml.safe_load((REPO / "conf/telco/globals.yml").read_text())
    assert set(telco["paths"]) == set(base["paths"])
    assert all(path.startswith("data/telco/") for path in telco["paths"].values())
    pattern = yaml.safe_load((REPO / "conf/telco/parameters.yml").read_text())["snapshot_pattern"]
    assert re.match(pattern, f"telco_churn_{STAMP}").group(1) == STAMP


def test_a_large_run_is_chunked_and_complete(tmp_path):
    raw_path, truth_path = generate(tmp_path, "--rows", "200001", "--seed", "7")
    # two chunks: ids continue across the chunk boundary, one header only
    ids = pd.read_csv(raw_path, usecols=["customer_id"], dtype=str)["customer_id"]
    assert len(ids) == 200001
    distinct = pd.to_numeric(ids, errors="coerce").dropna().astype(np.int64).unique()
    assert distinct.max() > 199_900 and len(distinct) > 198_000  # ~0.5% ids replaced by repeats
    assert sum(1 for _ in truth_path.open()) == 200002


def test_the_bundled_sample_matches_its_truth():
    name = f"insurance_data_{STAMP}.csv"
    raw = read_raw(REPO / "data/01_raw" / name)
    truth = pd.read_csv(REPO / "data/truth" / name, dtype={"customer_id": str})
    assert len(raw) == 5000 and truth["customer_id"].tolist() == raw["customer_id"].tolist()
    result = validate_frame(raw, schema_of("base"), name)
    assert 0 < len(result.rejected) < 100
    # the truth never sits where a snapshot could be read
    for path in (REPO / "data/01_raw").rglob("*.csv"):
        assert "churn_probability" not in path.open().readline(), path
