"""Retrain benchmark: `kedro run --pipeline retrain` beside a seed-style baseline.

Both run on the same generated snapshot, each as a subprocess measured the same
way (wall time; peak memory = the largest summed RSS of the process and all its
children, polled every 0.1 s). Printed: wall time, peak memory, holdout ROC-AUC
of each, and the oracle ROC-AUC (the generator's true probabilities) on each
one's holdout rows and on all rows.

The baseline follows the seed notebook's recipe: MinMaxScaler
fitted on all rows, train_test_split(0.2, stratified), SMOTE on the train split,
GridSearchCV 5-fold scored on F1 over logistic regression, random forest and
XGBoost, best by CV F1, ROC-AUC on its test split.

    python benchmarks/bench_retrain.py               # 20,000 rows, the full grids (~15+ min)
    python benchmarks/bench_retrain.py --quick       # 3,000 rows, small grids and budgets
    python benchmarks/bench_retrain.py --rows 50000 --keep
    python benchmarks/bench_retrain.py --rows 200000 --no-baseline   # ours only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# --quick: small search budgets (a smoke test of the script, not a comparison)
QUICK_BUDGETS = (
    "data_science.cv_folds=3,"
    "data_science.families.logistic_regression.n_trials=3,"
    "data_science.families.random_forest.n_trials=2,"
    "data_science.families.random_forest.search_space.n_estimators.high=150,"
    "data_science.families.hist_gradient_boosting.n_trials=2,"
    "data_science.families.hist_gradient_boosting.search_space.max_iter.high=150,"
    "data_science.families.catboost.n_trials=2,"
    "data_science.families.catboost.search_space.iterations.high=250"
)
BIN = Path(sys.executable).parent
STAMP = "2026-11-01_06-00-00"
SNAPSHOT = f"insurance_data_{STAMP}.csv"

BASELINE_GRIDS = {
    "logistic_regression": {"C": [0.01, 0.1, 1, 10, 100], "solver": ["liblinear", "lbfgs"]},
    "random_forest": {
        "n_estimators": [50, 100, 200],
        "max_depth": [10, 20, None],
        "min_samples_split": [2, 5, 10],
        "min_samples_leaf": [1, 2, 4],
    },
    "xgboost": {
        "n_estimators": [100, 200, 300],
        "learning_rate": [0.01, 0.1, 0.2],
        "max_depth": [3, 6, 9],
        "subsample": [0.8, 1.0],
        "colsample_bytree": [0.8, 1.0],
    },
}
QUICK_GRIDS = {
    "logistic_regression": {"C": [0.1, 1], "solver": ["liblinear"]},
    "random_forest": {"n_estimators": [50], "max_depth": [10, None]},
    "xgboost": {"n_estimators": [100], "learning_rate": [0.1], "max_depth": [3, 6]},
}


def run_measured(command: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a command; return wall seconds and peak summed RSS (MiB) of its process tree.

    Also prints the CPU seconds (user + system) of the tree, last seen while it ran: on a
    machine shared with other work they move far less than the wall time."""
    import psutil

    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore:register_new_resolver:UserWarning",
    }
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak, cpu = 0, {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            for p in tree:
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass  # a child ended between the listing and the reading
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    print(
        f"  {' '.join(Path(part).name for part in command[:3])}: {wall:.0f} s wall, {sum(cpu.values()):.0f} s CPU",
        flush=True,
    )
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}"
        )
    return wall, peak / 2**20, done


def make_project(root: Path) -> Path:
    """A throwaway copy of the project: conf (without local), metadata, empty data."""
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir(exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, root / name)
    (root / "src").mkdir(exist_ok=True)  # Kedro checks it exists; the package is installed
    return root


def oracle_probability(ids, truth_path: Path):
    """The generator's true churn probability of each id."""
    import pandas as pd

    truth = pd.read_csv(truth_path, dtype={"customer_id": str}).drop_duplicates("customer_id")
    return (
        pd.Series(list(ids), dtype=str)
        .map(truth.set_index("customer_id")["churn_probability"])
        .to_numpy()
    )


def oracle_auc(ids, labels, truth_path: Path) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(list(labels), oracle_probability(ids, truth_path)))


def ours(project: Path, quick: bool) -> dict:
    import pandas as pd

    command = [str(BIN / "kedro"), "run", "--pipeline", "retrain"]
    if quick:
        command += ["--params", QUICK_BUDGETS]
    wall, peak, done = run_measured(command, project)
    for line in done.stderr.splitlines():  # each family's search, as the run logged it
        if "CV ROC-AUC" in line or "time cap" in line:
            print("  " + line.split(": ", 1)[-1], flush=True)
    [card_path] = (project / "data/06_models/registry/versions").glob("*/card.json")
    card = json.loads(card_path.read_text())
    holdout = pd.read_parquet(project / "data/05_model_input/holdout.parquet")
    truth = project / "data/truth" / SNAPSHOT
    oracle = oracle_probability(holdout["customer_id"], truth)
    y = holdout["churn"].to_numpy()
    report = json.loads((project / "data/08_reporting/evaluation_metrics.json").read_text())
    for family, m in report.get("models", {}).items():
        print(
            f"  {family:<20} ROC-AUC {m['roc_auc']:.4f}  Brier {m['brier']:.4f}  "
            f"calibration error {m.get('calibration_error', float('nan')):.4f}  "
            f"mean predicted {m.get('mean_predicted', float('nan')):.3f}",
            flush=True,
        )
    for family, c in report.get("candidates", {}).items():  # what each family's search saw
        search = c["search"]
        print(
            f"  {family:<20} CV ROC-AUC {c['cv_roc_auc']:.4f}: {search['trials']} of "
            f"{search['trial_budget']} trials on {search['rows']:,} of {search['train_rows']:,} "
            f"train rows in {search['seconds']:.0f} s"
            + (" (time cap hit)" if search["time_cap_hit"] else ""),
            flush=True,
        )
    refit = card.get("refit", {})
    print(
        f"  refit of {card['family']} on {refit.get('rows', 0):,} rows in {refit.get('seconds', 0):.0f} s"
    )
    return {
        "wall_s": wall,
        "peak_mib": peak,
        "family": card["family"],
        "holdout_roc_auc": card["metrics"]["roc_auc"],
        "holdout_brier": card["metrics"]["brier"],
        "holdout_calibration_error": card["metrics"].get("calibration_error", float("nan")),
        "holdout_rows": len(holdout),
        "oracle_on_holdout": oracle_auc(holdout["customer_id"], y, truth),
        "oracle_brier": float(((oracle - y) ** 2).mean()),
        "search": card.get("search"),
    }


def baseline(project: Path, quick: bool) -> dict:
    result_path = project / "baseline.json"
    command = [
        sys.executable,
        __file__,
        "--run-baseline",
        str(project / "data/01_raw" / SNAPSHOT),
        str(result_path),
        *(["--quick"] if quick else []),
    ]
    wall, peak, _ = run_measured(command, project)
    result = json.loads(result_path.read_text())
    result["oracle_on_holdout"] = oracle_auc(
        result.pop("holdout_ids"), result.pop("holdout_labels"), project / "data/truth" / SNAPSHOT
    )
    return {"wall_s": wall, "peak_mib": peak, **result}


def run_baseline(snapshot: Path, out: Path, quick: bool) -> None:
    """The seed-style recipe, as the notebook it replaces did it (leakage included)."""
    import numpy as np
    import pandas as pd
    from imblearn.over_sampling import SMOTE
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.preprocessing import MinMaxScaler
    from xgboost import XGBClassifier

    frame = pd.read_csv(snapshot).drop_duplicates()
    for column in ("age", "annual_premium", "claims_count", "churn"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna()
    frame = frame[frame["churn"].isin([0, 1])]
    ids = frame.pop("customer_id").astype(str)
    y = frame.pop("churn").astype(int)
    X = pd.get_dummies(frame, columns=["policy_type"], dtype=float)
    X = pd.DataFrame(
        MinMaxScaler().fit_transform(X), columns=X.columns, index=X.index
    )  # on all rows
    X_train, X_test, y_train, y_test, _, ids_test = train_test_split(
        X, y, ids, test_size=0.2, stratify=y, random_state=42
    )
    X_train, y_train = SMOTE(random_state=42).fit_resample(X_train, y_train)

    grids = QUICK_GRIDS if quick else BASELINE_GRIDS
    estimators = {
        "logistic_regression": LogisticRegression(max_iter=1000),
        "random_forest": RandomForestClassifier(random_state=42),
        "xgboost": XGBClassifier(random_state=42, eval_metric="logloss", n_jobs=1),
    }
    searches = {}
    for name, estimator in estimators.items():
        search = GridSearchCV(estimator, grids[name], cv=5, scoring="f1", n_jobs=-1)
        searches[name] = search.fit(X_train, y_train)
        print(f"{name}: CV F1 {search.best_score_:.4f} {search.best_params_}", flush=True)
    best = max(searches, key=lambda n: searches[n].best_score_)
    probability = searches[best].predict_proba(X_test)[:, 1]
    out.write_text(
        json.dumps(
            {
                "family": best,
                "cv_f1": float(searches[best].best_score_),
                "holdout_roc_auc": float(roc_auc_score(y_test, probability)),
                "holdout_rows": int(len(y_test)),
                "fits": int(sum(len(s.cv_results_["params"]) * 5 for s in searches.values())),
                "holdout_ids": ids_test.tolist(),
                "holdout_labels": np.asarray(y_test).tolist(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, help="rows to generate (default 20000; 3000 with --quick)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--quick", action="store_true", help="small data, small grids and budgets (smoke test)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="run ours only (large row counts)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary project and print its path"
    )
    parser.add_argument(
        "--run-baseline", nargs=2, metavar=("SNAPSHOT", "OUT_JSON"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.run_baseline:
        run_baseline(Path(args.run_baseline[0]), Path(args.run_baseline[1]), args.quick)
        return 0

    rows = args.rows or (3000 if args.quick else 20000)
    workdir = Path(tempfile.mkdtemp(prefix="bench_retrain_"))
    try:
        project = make_project(workdir)
        subprocess.run(
            [
                str(BIN / "churn-generate"),
                "--rows",
                str(rows),
                "--seed",
                str(args.seed),
                "--timestamp",
                STAMP,
                "--out",
                "data/01_raw",
                "--truth-dir",
                "data/truth",
            ],
            cwd=project,
            check=True,
            capture_output=True,
        )
        oracle_all = _oracle_all(
            project / "data/01_raw" / SNAPSHOT, project / "data/truth" / SNAPSHOT
        )
        mode = "quick (reduced grids and budgets)" if args.quick else "full"
        print(
            f"bench_retrain: {rows} rows, seed {args.seed}, {mode}; oracle ROC-AUC on all rows "
            f"{oracle_all:.4f}; load average {_load()}",
            flush=True,
        )
        results = {"ours (kedro retrain)": ours(project, args.quick)}
        print(f"  ours done in {results['ours (kedro retrain)']['wall_s']:.0f} s", flush=True)
        if not args.no_baseline:
            results["seed-style baseline"] = baseline(project, args.quick)
            print(
                f"  baseline done in {results['seed-style baseline']['wall_s']:.0f} s", flush=True
            )
    finally:
        if args.keep:
            print(f"project kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"load average at the end {_load()} (2 cores shared with other work inflate wall times)")
    header = f"{'':22} {'wall s':>8} {'peak MiB':>9} {'best':>20} {'holdout AUC':>12} {'oracle (same rows)':>19}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:22} {r['wall_s']:8.1f} {r['peak_mib']:9.0f} {r['family']:>20} "
            f"{r['holdout_roc_auc']:12.4f} {r['oracle_on_holdout']:19.4f}"
        )
    ours_r, base_r = results["ours (kedro retrain)"], results.get("seed-style baseline")
    print(
        f"ours: Brier {ours_r['holdout_brier']:.4f} (oracle {ours_r['oracle_brier']:.4f} on the "
        f"same rows), calibration error {ours_r['holdout_calibration_error']:.4f}; "
        f"challenger's search: {ours_r['search']}"
    )
    if base_r is None:
        print(
            f"oracle - ours AUC {ours_r['oracle_on_holdout'] - ours_r['holdout_roc_auc']:+.4f} "
            f"({ours_r['holdout_rows']} holdout rows)"
        )
        return 0
    print(
        f"speed-up {base_r['wall_s'] / ours_r['wall_s']:.1f}x; "
        f"ours - baseline AUC {ours_r['holdout_roc_auc'] - base_r['holdout_roc_auc']:+.4f}; "
        f"oracle - ours AUC {ours_r['oracle_on_holdout'] - ours_r['holdout_roc_auc']:+.4f} "
        f"(holdouts: ours {ours_r['holdout_rows']} rows, baseline {base_r['holdout_rows']} rows)"
    )
    return 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _oracle_all(raw_path: Path, truth_path: Path) -> float:
    """Oracle ROC-AUC over every row that carries a 0/1 label."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    labels = pd.read_csv(raw_path, dtype=str)["churn"]
    truth = pd.read_csv(truth_path)["churn_probability"]
    keep = labels.isin(["0", "1"])
    return float(roc_auc_score(labels[keep].astype(int), truth[keep]))


if __name__ == "__main__":
    raise SystemExit(main())
