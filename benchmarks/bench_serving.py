"""Serving benchmark: our Lambda handler against a seed-style handler that
unpickles the model on every request, for each model family.

    python benchmarks/bench_serving.py            # full: models at realistic sizes
    python benchmarks/bench_serving.py --quick    # smoke run: small models, few requests

Measured per family, in the same run:
  cold start   a fresh `python` process: interpreter, imports, champion load, first
               answer (wall time of the whole process, median of N runs)
  p50 / p99    one-row POST /predict through the Lambda handler, in process (JSON,
               validation, inference, JSON), after the first request
  rows/s       a 10,000-row batch through the handler, and through the inference
               function alone (median of 5 calls)
Targets on this machine: cold start <= 1.0 s, p50 <= 1 ms, p99 <= 5 ms, >= 50,000 rows/s.
The models are fitted with models.py on the bundled sample snapshot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "logistic_regression": {"C": 1.0},
    "random_forest": {
        "n_estimators": 200,
        "max_depth": 16,
        "min_samples_leaf": 3,
        "max_features": "sqrt",
    },
    "catboost": {"iterations": 400, "depth": 6, "learning_rate": 0.08},
}
QUICK = {
    "logistic_regression": {"C": 1.0},
    "random_forest": {"n_estimators": 50, "max_depth": 8},
    "catboost": {"iterations": 80, "depth": 4},
}

COLD = r"""
import json, sys
from churn_kedro.serving.lambda_handler import handler
r = handler({"httpMethod": "POST", "path": "/predict", "headers": {"Content-Type": "application/json"},
             "body": json.dumps({"instances": [ROW]})}, None)
assert r["statusCode"] == 200, r
"""

SEED_COLD = r"""
import json, sys
import joblib, pandas as pd
def handler(event, context):
    model = joblib.load(MODEL)
    frame = pd.DataFrame(json.loads(event["body"])["instances"])
    return {"statusCode": 200, "body": json.dumps({"p": model.predict_proba(frame[FEATURES])[:, 1].tolist()})}
r = handler({"body": json.dumps({"instances": [ROW]})}, None)
assert r["statusCode"] == 200
"""


def sample_frame(schema) -> pd.DataFrame:
    from churn_kedro.schema import validate_frame

    path = sorted((REPO / "data" / "01_raw").glob("insurance_data_*.csv"))[-1]
    frame = validate_frame(pd.read_csv(path, dtype=str), schema, path.name).valid
    # as the pipelines read it back from parquet: NaN, not None (SimpleImputer skips None)
    for name in schema.categorical_features:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return frame


def build(root: Path, quick: bool):
    from churn_kedro.export import build_serving_export
    from churn_kedro.pipelines.data_science.models import FAMILIES
    from churn_kedro.registry import ModelRegistry
    from churn_kedro.schema import Schema

    params = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())["schema"]
    schema = Schema.from_params(params)
    data = sample_frame(schema)
    registry = ModelRegistry(str(root))
    for family, family_params in (QUICK if quick else PARAMS).items():
        model = FAMILIES[family](
            schema.numeric_features, schema.categorical_features, family_params, 0, "balanced"
        )
        model.fit(data[schema.features], data[schema.target])
        card = {
            "version": family,
            "family": family,
            "created_at": "2026-11-01T00:00:00Z",
            "threshold": 0.5,
            "features": schema.features,
            "schema": schema.to_dict(),
            "params": family_params,
        }
        export = build_serving_export(model, card)  # as ModelRegistryDataset.save does
        registry.register(family, model, {**card, "serving": export.card_entry}, export.files)
    return registry, data, schema


def instances(data: pd.DataFrame, schema, rows: int) -> list[dict]:
    picked = data.sample(rows, replace=True, random_state=0)
    out = []
    for record in picked[[schema.id_column, *schema.features]].to_dict("records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, float) and np.isnan(value):
                value = None
            elif (
                key in schema.numeric_features
                and schema.numeric[schema.numeric_features.index(key)].integer
            ):
                value = int(value)
            row[key] = value
        out.append(row)
    return out


def cold_start(code: str, env: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timings(call, count: int) -> list[float]:
    """Seconds of each of ``count`` calls."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def latencies(call, count: int) -> tuple[float, float]:
    call()  # the first request is the cold start's, measured above
    times = sorted(timings(call, count))
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99) - 1] * 1e3


def median_seconds(call, runs: int) -> float:
    return statistics.median(timings(call, runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    requests = 200 if args.quick else 2000
    cold_runs = 1 if args.quick else 5
    batch_runs = 1 if args.quick else 5
    batch_rows = 10_000

    import joblib

    from churn_kedro.inference import predict
    from churn_kedro.serving.app import Application
    from churn_kedro.serving.lambda_handler import handler

    with tempfile.TemporaryDirectory() as tmp:
        registry, data, schema = build(Path(tmp) / "registry", args.quick)
        one = instances(data, schema, 1)
        batch = instances(data, schema, batch_rows)
        one_event = {
            "httpMethod": "POST",
            "path": "/predict",
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"instances": one}),
        }
        batch_event = {**one_event, "body": json.dumps({"instances": batch})}
        columns = {name: [row[name] for row in batch] for name in schema.features}
        results = []
        for family in PARAMS:
            registry.promote(family, "benchmark")
            env = {"CHURN_REGISTRY": registry.url, "PATH": "/usr/bin:/bin"}
            ours_cold = cold_start(COLD.replace("ROW", repr(one[0])), env, cold_runs)
            model_path = str(Path(registry.url) / "versions" / family / "model.joblib")
            seed_code = (
                SEED_COLD.replace("ROW", repr(one[0]))
                .replace("MODEL", repr(model_path))
                .replace("FEATURES", repr(schema.features))
            )
            seed_cold = cold_start(seed_code, env, cold_runs)

            app = Application(registry.url, refresh_seconds=3600, max_batch=batch_rows)
            p50, p99 = latencies(lambda: handler(one_event, None, app=app), requests)
            assert handler(batch_event, None, app=app)["statusCode"] == 200
            api_rows = batch_rows / median_seconds(
                lambda: handler(batch_event, None, app=app), batch_runs
            )
            champion = app.champions.get()
            fn_rows = batch_rows / median_seconds(lambda: predict(champion, columns), batch_runs)

            def seed_handler(event):
                model = joblib.load(model_path)
                frame = pd.DataFrame(json.loads(event["body"])["instances"])
                frame[schema.categorical_features] = (
                    frame[schema.categorical_features].astype(object).fillna(np.nan)
                )
                return model.predict_proba(frame[schema.features])[:, 1]

            seed_p50, seed_p99 = latencies(lambda: seed_handler(one_event), max(20, requests // 20))
            seed_rows = batch_rows / median_seconds(lambda: seed_handler(batch_event), batch_runs)
            results.append((family, "ours", ours_cold, p50, p99, api_rows, fn_rows))
            results.append((family, "seed", seed_cold, seed_p50, seed_p99, seed_rows, float("nan")))

    print(
        f"{'family':<20} {'handler':<6} {'cold s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rows/s API':>11} {'rows/s fn':>10}"
    )
    for family, who, cold, p50, p99, api_rows, fn_rows in results:
        fn = "" if np.isnan(fn_rows) else f"{fn_rows:,.0f}"
        print(f"{family:<20} {who:<6} {cold:7.3f} {p50:8.3f} {p99:8.3f} {api_rows:11,.0f} {fn:>10}")
    print(
        "targets: cold start <= 1.0 s, p50 <= 1 ms, p99 <= 5 ms, >= 50,000 rows/s"
        + (" (quick run: small models)" if args.quick else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
