"""Monitoring benchmark: false alarms, detection, delay to retrain, and cost.

    python benchmarks/bench_monitor.py            # 100 drift-free snapshots, 20 panels a drift level, 1,000,000 rows
    python benchmarks/bench_monitor.py --quick    # a smoke run (small sizes)
    python benchmarks/bench_monitor.py --only cost   # one part: false_alarms, detection, delay, cost

1. False alarms: one drift-free panel (``churn-generate --panel``), the reference profile
   from its first snapshot, then every later snapshot through the monitor's data-drift
   statistics with the default parameters (conf/base/parameters_monitor.yml): the share
   of snapshots with any feature flagged, with its 95% Wilson interval.
2. Detection: for each ``--drift`` level, panels whose second snapshot is drifted; the
   share where a feature is flagged; the smallest level flagged in at least 90%.
3. Delay: a model (sklearn HistGradientBoosting) fitted on the first snapshot of a panel
   with drift from snapshot 3; each snapshot is scored, then judged with its labels
   (realized performance, prediction and data drift, the verdict rules of the pipeline):
   the first snapshot whose verdict is ``retrain``, counted from the drift onset.
4. Cost: the monitor's nodes (newest snapshot read in chunks, prediction drift and
   realized performance of a scored batch of the same rows) on 250,000 and 1,000,000
   rows, each in a fresh process: wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from child_memory import PEAK_RSS
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
SETTINGS = yaml.safe_load((REPO / "conf/base/parameters_monitor.yml").read_text())["monitor"]
SCHEMA = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())["schema"]
NUMERIC = ["age", "annual_premium", "claims_count"]


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def read_valid(path: Path) -> pd.DataFrame:
    from churn_kedro.schema import Schema, validate_frame

    raw = pd.read_csv(path, dtype=str)
    return validate_frame(raw, Schema.from_params(SCHEMA), path.name).valid


def profile_of(frame: pd.DataFrame, scores: np.ndarray | None = None, threshold: float = 0.5):
    from churn_kedro.monitoring.profile import build_profile

    return build_profile(
        {c: frame[c].to_numpy(dtype=float) for c in NUMERIC},
        {"policy_type": frame["policy_type"].to_numpy(dtype=object)},
        np.zeros(10) if scores is None else scores,
        threshold,
        SETTINGS["profile"]["fine_bins"],
        SETTINGS["profile"]["psi_bins"],
    )


def flagged(profile, frame: pd.DataFrame) -> list[dict]:
    from churn_kedro.monitoring.drift import SnapshotCounts, feature_drift

    counts = SnapshotCounts(profile)
    counts.add(frame)
    return feature_drift(counts, SETTINGS["data_drift"])


def panel(folder: Path, snapshots: int, rows: int, seed: int, drift=0.0, drift_from=0):
    from churn_kedro.generate import write_panel

    return [
        p
        for p, _ in write_panel(
            folder / "raw", folder / "truth", rows, seed, "2026-01-01_00-00-00",
            snapshots, drift=drift, drift_from=drift_from,
        )
    ]  # fmt: skip


def false_alarms(work: Path, snapshots: int, rows: int) -> None:
    paths = panel(work / "fa", snapshots + 1, rows, seed=11)
    reference = profile_of(read_valid(paths[0]))
    alarms, per_feature = 0, {}
    for path in paths[1:]:
        records = flagged(reference, read_valid(path))
        hits = [r["feature"] for r in records if r["flagged"]]
        alarms += bool(hits)
        for h in hits:
            per_feature[h] = per_feature.get(h, 0) + 1
    low, high = wilson(alarms, snapshots)
    print(
        f"false alarms: {alarms}/{snapshots} drift-free snapshots of {rows} rows with any "
        f"feature flagged = {alarms / snapshots:.1%} (95% CI {low:.1%}-{high:.1%}; target <= 5%); "
        f"by feature {per_feature or 'none'}"
    )


def detection(work: Path, levels: list[float], repeats: int, rows: int) -> None:
    smallest = None
    for level in levels:
        hits, by_feature = 0, {}
        for r in range(repeats):
            paths = panel(
                work / f"det-{level}-{r}", 2, rows, seed=100 + r, drift=level, drift_from=1
            )
            records = flagged(profile_of(read_valid(paths[0])), read_valid(paths[1]))
            names = [x["feature"] for x in records if x["flagged"]]
            hits += bool(names)
            for n in names:
                by_feature[n] = by_feature.get(n, 0) + 1
        share = hits / repeats
        low, high = wilson(hits, repeats)
        print(
            f"detection: --drift {level}: flagged in {hits}/{repeats} = {share:.0%} "
            f"(95% CI {low:.0%}-{high:.0%}); by feature {by_feature or 'none'}"
        )
        if smallest is None and share >= 0.9:
            smallest = level
    print(f"detection: smallest --drift flagged in >= 90% of snapshots of {rows} rows: {smallest}")


def delay(work: Path, level: float, rows: int, onset: int = 3, snapshots: int = 6) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    from churn_kedro.monitoring.drift import decide, prediction_drift, realized_performance

    paths = panel(work / f"delay-{level}", snapshots, rows, seed=5, drift=level, drift_from=onset)

    def design(frame):
        x = frame[NUMERIC].astype(float).copy()
        for value in ("auto", "home", "life"):
            x[value] = (frame["policy_type"] == value).astype(float)
        return x

    first = read_valid(paths[0])
    train, holdout = train_test_split(first, test_size=0.2, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=0)
    model.fit(design(train), train["churn"].astype(int))
    holdout_p = model.predict_proba(design(holdout))[:, 1]
    threshold = float(np.quantile(holdout_p, 0.8))
    y = holdout["churn"].to_numpy(dtype=int)
    card = {"roc_auc": stats.mannwhitneyu(holdout_p[y == 1], holdout_p[y == 0]).statistic
            / ((y == 1).sum() * (y == 0).sum()), "brier": float(np.mean((holdout_p - y) ** 2))}  # fmt: skip
    reference = profile_of(train, holdout_p, threshold)
    verdicts = []
    for k, path in enumerate(paths[1:], start=1):
        frame = read_valid(path)
        p = model.predict_proba(design(frame))[:, 1]
        features = flagged(reference, frame)
        batch = {
            "source_file": path.name,
            **prediction_drift(reference["score"], p, SETTINGS["prediction_drift"]),
        }
        performance = realized_performance(
            frame["churn"].to_numpy(dtype=int), p, card, SETTINGS["performance"]
        )
        verdict, _ = decide(features, [batch], performance, [], SETTINGS["verdict"])
        verdicts.append((k, verdict, performance["roc_auc"]))
    first_retrain = next((k for k, v, _ in verdicts if v == "retrain"), None)
    shown = ", ".join(f"{k}:{v} (AUC {a:.3f})" for k, v, a in verdicts)
    print(
        f"delay: --drift {level} from snapshot {onset}, {rows} rows, card ROC-AUC {card['roc_auc']:.3f}: "
        f"{shown}; first retrain at snapshot {first_retrain} "
        f"= {None if first_retrain is None else first_retrain - onset} snapshot(s) after the onset"
    )


CHILD = (
    PEAK_RSS
    + r"""
import json, sys, time
import numpy as np, pandas as pd, yaml
from churn_kedro.datasets import SnapshotObjectsDataset
from churn_kedro.pipelines.monitor.nodes import monitor_snapshot, monitor_predictions, monitor_performance
import churn_kedro.pipelines.model_promotion.metrics  # imported by any kedro run before its nodes
raw_dir, rows, profile_path, repo, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "batch"
settings = yaml.safe_load(open(f"{repo}/conf/base/parameters_monitor.yml"))["monitor"]
params = yaml.safe_load(open(f"{repo}/conf/base/parameters.yml"))
objects = SnapshotObjectsDataset(path=raw_dir, key_prefix="raw").load()
(key,) = objects
name = key.rsplit("/", 1)[-1]
profile = json.load(open(profile_path))
champion = {"version": "v1", "profile": profile, "card": {"metrics": {"roc_auc": 0.7, "brier": 0.2},
            "data": {"source_file": "raw/insurance_data_2020-01-01_00-00-00.csv"}}}
rng = np.random.default_rng(0)
ids = pd.read_csv(f"{raw_dir}/{name}", usecols=["customer_id"], dtype=str)["customer_id"] if batch else pd.Series([], dtype=str)
scores = pd.DataFrame({"model_version": "v1", "source_file": f"raw_to_score/{name}",
                       "customer_id": ids, "churn_probability": rng.random(len(ids)),
                       "churn": False, "scored_at": pd.Timestamp("2020-01-01")})
del ids
history = {"monitored": pd.DataFrame({"model_version": [], "source_file": []}), "labels_known": {}}
t0 = time.perf_counter()
snapshot, labels = monitor_snapshot(objects, {}, champion, scores, params["snapshot_pattern"], params["schema"], settings)
batches = monitor_predictions(champion, scores, history, settings)
performance = monitor_performance(champion, scores, snapshot, labels, history, params["snapshot_pattern"], settings)
seconds = time.perf_counter() - t0
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak_rss() / 2**20,
                  "valid": snapshot["rows_valid"], "realized_rows": performance.get("rows", 0)}))
"""
)


def cost(work: Path, sizes: list[int]) -> None:
    from churn_kedro.generate import write_snapshot

    reference = work / "cost-ref"
    (path,) = [
        write_snapshot(reference / "raw", reference / "truth", 5000, 1, "2020-01-01_00-00-00")[0]
    ]
    profile_path = work / "profile.json"
    profile_path.write_text(
        json.dumps(profile_of(read_valid(path), np.random.default_rng(1).random(5000)))
    )
    for rows in sizes:
        folder = work / f"cost-{rows}"
        write_snapshot(folder / "raw", folder / "truth", rows, 2, "2026-01-01_00-00-00")
        for batch in ("snapshot", "batch"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(folder / "raw"), str(rows), str(profile_path),
                 str(REPO), batch],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            what = "snapshot only" if batch == "snapshot" else "and a scored batch of as many"
            print(
                f"cost: {rows:,} rows ({what}): {figures['seconds']:.1f} s, "
                f"peak RSS {figures['peak_mib']:.0f} MiB ({figures['valid']:,} valid rows, "
                f"{figures['realized_rows']:,} joined for realized performance)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes")
    parser.add_argument(
        "--drift-free", type=int, default=100, help="drift-free snapshots (default 100)"
    )
    parser.add_argument(
        "--only", choices=["false_alarms", "detection", "delay", "cost"], help="one part only"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.quick:
            false_alarms(work, 5, 2000)
            detection(work, [0.5, 1.0], 3, 2000)
            delay(work, 1.0, 4000)
            cost(work, [50_000])
        else:
            parts = {
                "false_alarms": lambda: false_alarms(work, args.drift_free, 5000),
                "detection": lambda: detection(work, [0.1, 0.2, 0.3, 0.5, 0.75, 1.0], 20, 5000),
                "delay": lambda: (delay(work, 1.0, 5000), delay(work, 0.5, 5000)),
                "cost": lambda: cost(work, [250_000, 1_000_000]),
            }
            for name, part in parts.items():
                if args.only in (None, name):
                    part()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
