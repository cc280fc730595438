"""churn-registry: look into the model registry, promote a version, roll back.

    churn-registry status                 the champion, its latest monitoring verdict, the last run's decision
    churn-registry list                   every version, the champion marked
    churn-registry show VERSION           a version's card (JSON)
    churn-registry promote VERSION        make VERSION the champion
    churn-registry rollback               restore the champion before the current one
    churn-registry benchmarks             every run's benchmark rows as one CSV table

Errors (a version that is missing or incomplete, a file of the registry that cannot be
read or lacks a field) are one line naming the file, and exit code 2.

The registry is --registry PATH|s3://..., else $CHURN_REGISTRY, else the `model_registry`
path of the Kedro environment given by --env (default: local, i.e. data/06_models/registry).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from churn_kedro.registry import CARD_FILE, ModelRegistry, RegistryError


def _registry_from_conf(env: str | None) -> str:
    import warnings

    from kedro.config import OmegaConfigLoader

    warnings.filterwarnings("ignore", message="register_new_resolver")

    from churn_kedro.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source="conf", env=env, **CONFIG_LOADER_ARGS)
    return loader["catalog"]["model_registry"]["path"]


@contextlib.contextmanager
def _fields_of(name: str, field: str = "field"):
    """Turn a missing or mistyped field of the file ``name`` into a RegistryError naming it."""
    try:
        yield
    except KeyError as exc:
        raise RegistryError(f"{name} has no {exc.args[0]!r} {field}") from exc
    except (TypeError, ValueError, IndexError) as exc:
        raise RegistryError(f"{name} has a malformed {field}: {exc}") from exc


# what `status` shows of the last run
BENCHMARK_COLUMNS = (
    "run_at",
    "snapshot",
    "model",
    "role",
    "cv_roc_auc",
    "holdout_roc_auc",
    "decision",
    "reason",
)


def _with_ci(metrics: dict, name: str) -> str:
    low, high = metrics[f"{name}_ci"]
    return f"{metrics[name]:.4f} (CI {low:.4f}-{high:.4f})"


def _proper_scores(metrics: dict) -> list[str]:
    """Log loss, Brier score and calibration error with their intervals (cards written
    before these were recorded show the Brier score alone)."""
    if "calibration_error" not in metrics:
        return [f"  Brier {metrics['brier']:.4f}"]
    return [
        f"  log loss {_with_ci(metrics, 'log_loss')}, Brier {_with_ci(metrics, 'brier')}",
        f"  calibration error {_with_ci(metrics, 'calibration_error')}: mean predicted "
        f"{metrics['mean_predicted']:.3f} for a churn rate of {metrics['positive_rate']:.3f}",
    ]


def _card_name(registry: ModelRegistry, version: str) -> str:
    return registry.fs.unstrip_protocol(registry.version_path(version, CARD_FILE))


def _status(registry: ModelRegistry) -> str:
    lines = []
    champion = registry.champion()
    if champion is None:
        lines.append(f"No champion in {registry.url} yet.")
    else:
        card = registry.card(champion["version"])
        with _fields_of(_card_name(registry, champion["version"])):
            m = card["metrics"]
            lines += [
                f"Champion: {champion['version']} ({card['family']}), since {champion.get('promoted_at')}",
                f"  holdout ROC-AUC {_with_ci(m, 'roc_auc')}, average precision "
                f"{m['average_precision']:.4f}, threshold {card['threshold']:.3f}",
                *_proper_scores(m),
                f"  trained on {card['data']['training_rows']} rows of {card['data']['source_file']}",
                _monitoring_line(registry, champion["version"]),
            ]
    runs = registry.benchmarks()
    if len(runs):
        with _fields_of(registry.fs.unstrip_protocol(registry.benchmark_files()[-1]), "column"):
            lines += _last_run(runs)
    return "\n".join(lines)


def _last_run(runs) -> list[str]:
    for column in BENCHMARK_COLUMNS:
        if column not in runs.columns:
            raise KeyError(column)
    last = runs[runs["run_at"] == runs["run_at"].iloc[-1]]
    lines = [f"Last run {last['run_at'].iloc[0]} on {last['snapshot'].iloc[0]}:"]
    for row in last.itertuples():
        cv = "" if row.cv_roc_auc != row.cv_roc_auc else f"CV {row.cv_roc_auc:.4f}  "
        brier = getattr(row, "holdout_brier", float("nan"))
        ece = getattr(row, "holdout_calibration_error", float("nan"))
        scores = "".join(
            f"  {name} {value:.4f}"
            for name, value in (("Brier", brier), ("calibration error", ece))
            if value == value  # rows written before these columns existed have NaN
        )
        holdout = (
            f"holdout ROC-AUC {row.holdout_roc_auc:.4f}{scores}"
            if row.holdout_roc_auc == row.holdout_roc_auc
            else "not refitted"  # a family the challenger beat by CV
        )
        lines.append(f"  {row.model:<22} {cv}{holdout}  {row.decision}")
    challenger = last[last["role"] == "challenger"]
    if len(challenger):
        lines.append(f"Decision: {challenger['reason'].iloc[0]}")
    return lines


def _monitoring_line(registry: ModelRegistry, version: str) -> str:
    """The champion's latest monitoring verdict and its date (``kedro run --pipeline monitor``)."""
    from churn_kedro.monitoring.profile import read_latest_verdict

    latest = read_latest_verdict(registry, version)
    if latest is None:
        return "  monitoring: not monitored yet (kedro run --pipeline monitor)"
    reasons = "; ".join(latest.get("reasons") or [])
    return f"  monitoring: {latest.get('verdict')} at {latest.get('at')}" + (
        f": {reasons}" if reasons else ""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="churn-registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--registry", help="registry folder or s3:// prefix")
    parser.add_argument("--env", help="Kedro environment whose catalog names the registry")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the champion and the last run's decision")
    commands.add_parser("list", help="every version, the champion marked with *")
    show = commands.add_parser("show", help="a version's card")
    show.add_argument("version")
    promote = commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion")
    rollback = commands.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("--reason", default="manual rollback")
    commands.add_parser("benchmarks", help="every run's benchmark rows as one CSV table")
    args = parser.parse_args(argv)

    location = args.registry or os.environ.get("CHURN_REGISTRY") or _registry_from_conf(args.env)
    try:
        registry = ModelRegistry(location)
        if args.command == "status":
            print(_status(registry))
        elif args.command == "list":
            champion = registry.champion()
            current = champion["version"] if champion else None
            for version in registry.versions():
                card = registry.card(version)
                mark = "*" if version == current else " "
                with _fields_of(_card_name(registry, version)):
                    print(
                        f"{mark} {version}  {card['family']:<22} "
                        f"holdout ROC-AUC {card['metrics']['roc_auc']:.4f}  {card['created_at']}"
                    )
        elif args.command == "show":
            print(json.dumps(registry.card(args.version), indent=2))
        elif args.command == "promote":
            doc = registry.promote(args.version, args.reason)
            print(f"champion is now {doc['version']}")
        elif args.command == "rollback":
            doc = registry.rollback(args.reason)
            print(f"champion is now {doc['version']} ({doc['reason']})")
        elif args.command == "benchmarks":
            print(registry.benchmarks().to_csv(index=False), end="")
    except RegistryError as exc:
        print(f"churn-registry: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the store itself: permissions, network, credentials
        print(f"churn-registry: error: cannot use the registry {location}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
