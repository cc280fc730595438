"""Synthetic churn snapshots with a known truth: ``churn-generate``.

Writes one raw snapshot CSV (the file naming and columns of the data contract in docs/architecture.md) and, under
``--truth-dir``, a file of the same name holding every row's true churn
probability (``customer_id, churn_probability``, row for row), so the oracle
ROC-AUC of any snapshot is known. The truth never goes under the raw folder.

Insurance (``--dataset insurance``, the default): one row per policyholder.

* ``policy_type``: auto 50%, home 30%, life 20%.
* ``age``: Normal(46, 16) rounded and clipped to 18..95.
* ``annual_premium``: log-normal around 1,100 (auto), 800 (home), 1,600 (life),
  sigma 0.45; auto policies of drivers under 25 cost 60% more.
* ``claims_count``: Poisson with rate 0.6 (auto), 0.35 (home), 0.15 (life),
  times 1.8 for drivers under 25.
* ``churn`` ~ Bernoulli(p), ``p = sigmoid(b0 + f)`` where ``f`` is

  ===============================================  ==========================
  U-shape in age                                   ``0.0016 * (age - 50)^2``
  claims, with a jump at 3                         ``0.25*min(claims, 2) + 1.6*[claims >= 3]``
  young drivers paying a lot                       ``+1.3`` if age < 30 and premium > 1,400
  policy_type                                      auto +0.3, home -0.2, life -0.5
  policy_type x premium (log ratio to 1,100)       auto +1.1, home +0.3, life -0.9 per unit
  ===============================================  ==========================

  and ``b0`` is calibrated (bisection on a fixed sample) so that ~20% churn.
  None of these terms but the claims slope is linear in the raw columns: a
  tree model beats a logistic regression on them (oracle ROC-AUC ~0.76,
  a logistic regression on the raw columns ~0.68).

* ``--drift D`` shifts the inputs and the behaviour: ages are drawn around
  ``46 - 6D``, premiums rise by ``15% * D``; the age minimum moves to ``50 - 12D``,
  the claims jump weakens by ``D*1.2``, the premium interaction turns (auto
  ``1.1 - 1.4D``, home ``0.3 + 0.8D``, life ``-0.9 + 1.4D``) and the base rate
  becomes ``0.20 + 0.06D`` (max 0.45). A model fitted before a drift of 1.0 loses
  about 0.08 of ROC-AUC after it.
* ``--noise-labels``: labels Bernoulli(0.20) independent of the features; the truth
  is then the constant 0.20 (oracle AUC 0.5).

Telco (``--dataset telco``): ``CustomerID`` ('C-000001'), ``tenure_months``
(0..72), ``monthly_charges``, ``total_charges`` (blank for new customers, as in
the well-known public dataset), ``contract`` (month-to-month / one-year /
two-year), ``payment_method`` (4 values), ``internet_service`` (dsl / fiber /
none), ``paperless_billing`` (yes/no) and the label ``Churn`` as Yes/No, ~25%
churn. Signal: month-to-month +1.2, two-year -1.3; ``-0.45*log1p(tenure)``;
+0.9 in the first 6 months of a month-to-month contract; fiber x charges
(+0.035 per unit above 70); electronic check +0.6; paperless +0.25.

``--dirty`` (default) injects what real extracts contain, each independently
per row: ~2% rows with one feature blank, ~0.5% rows that exactly repeat an
earlier row, ~0.2% rows breaking a rule (age 150 or 5, a negative premium,
policy_type 'boat', 'abc' in a numeric column, churn 'maybe'; the telco
equivalents). ``--clean`` injects nothing.

Rows are generated and written in chunks of 200,000, so memory does not grow
with ``--rows``; for a given ``--seed`` (and chunk size) the output is identical.

Panel (``--panel N --every 30d``, insurance only): N snapshots of one customer base,
``--every`` apart from ``--timestamp``. Each customer keeps an id and a policy type;
age grows with time, the premium follows a mean-reverting log-normal path (AR(1),
rho 0.9, the same marginal as above) and claims are drawn again each period. The
label of a snapshot is whether the customer churned before the next one: churners
are gone from it, and new customers (drawn as above) keep the base at ``--rows``.
Twelve unwritten periods run first, so the written snapshots start from the base's
steady state: without drift the snapshots are drawn from one distribution.
``--drift D --drift-from K`` switches to the drifted behaviour from snapshot K
(0-based) on. Each snapshot has its truth file, as above.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

CHUNK_ROWS = 200_000
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
DATASETS = {"insurance": "insurance_data", "telco": "telco_churn"}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Process:
    """The knobs of one generating process (baseline or drifted)."""

    dataset: str
    drift: float = 0.0
    noise_labels: bool = False

    @property
    def base_rate(self) -> float:
        base = 0.20 if self.dataset == "insurance" else 0.25
        return min(base + 0.06 * self.drift, 0.45)


# --- insurance ---------------------------------------------------------------------------

_POLICIES = np.array(["auto", "home", "life"], dtype=object)
_POLICY_SHARE = [0.5, 0.3, 0.2]
_PREMIUM_CENTRE = np.array([1100.0, 800.0, 1600.0])
_CLAIMS_RATE = np.array([0.6, 0.35, 0.15])


def _insurance_features(rng: np.random.Generator, n: int, drift: float) -> dict[str, np.ndarray]:
    policy = rng.choice(3, size=n, p=_POLICY_SHARE)
    age = np.clip(np.rint(rng.normal(46 - 6 * drift, 16, n)), 18, 95).astype(np.int64)
    young = age < 25
    premium = _PREMIUM_CENTRE[policy] * np.exp(rng.normal(0, 0.45, n))
    premium *= np.where(young & (policy == 0), 1.6, 1.0) * (1 + 0.15 * drift)
    claims = rng.poisson(_CLAIMS_RATE[policy] * np.where(young, 1.8, 1.0))
    return {"policy": policy, "age": age, "premium": np.round(premium, 2), "claims": claims}


def _insurance_score(f: dict[str, np.ndarray], drift: float) -> np.ndarray:
    """The linear predictor without intercept (see the module docstring)."""
    age, premium, claims, policy = f["age"], f["premium"], f["claims"], f["policy"]
    log_ratio = np.log(premium / 1100.0)
    return (
        0.0016 * (age - (50 - 12 * drift)) ** 2
        + 0.25 * np.minimum(claims, 2)
        + max(1.6 - 1.2 * drift, 0.0) * (claims >= 3)
        + 1.3 * ((age < 30) & (premium > 1400))
        + np.array([0.3, -0.2, -0.5])[policy]
        + np.array([1.1 - 1.4 * drift, 0.3 + 0.8 * drift, -0.9 + 1.4 * drift])[policy] * log_ratio
    )


def _insurance_frame(f: dict[str, np.ndarray], ids: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "age": f["age"],
            "annual_premium": f["premium"],
            "policy_type": _POLICIES[f["policy"]],
            "claims_count": f["claims"],
            "churn": labels.astype(np.int64),
        }
    )


# Rule breakers: (column, bad value); one is drawn per broken row.
_INSURANCE_BREAKS = [
    ("age", 150),
    ("age", 5),
    ("annual_premium", -120.0),
    ("policy_type", "boat"),
    ("claims_count", "abc"),
    ("annual_premium", "abc"),
    ("churn", "maybe"),
]

# --- telco -------------------------------------------------------------------------------

_CONTRACTS = np.array(["month-to-month", "one-year", "two-year"], dtype=object)
_PAYMENTS = np.array(
    ["electronic-check", "mailed-check", "bank-transfer", "credit-card"], dtype=object
)
_INTERNET = np.array(["dsl", "fiber", "none"], dtype=object)
_YES_NO = np.array(["no", "yes"], dtype=object)


def _telco_features(rng: np.random.Generator, n: int, drift: float) -> dict[str, np.ndarray]:
    contract = rng.choice(3, size=n, p=[0.55, 0.25, 0.20])
    # longer contracts go with longer tenure
    tenure = np.clip(np.rint(rng.exponential(np.array([14.0, 32.0, 50.0])[contract])), 0, 72)
    internet = rng.choice(3, size=n, p=[0.35, 0.45, 0.20])
    monthly = np.array([55.0, 85.0, 22.0])[internet] + rng.normal(0, 12, n) + 10 * drift
    monthly = np.round(np.clip(monthly, 18.0, 130.0), 2)
    total = np.round(tenure * monthly * rng.normal(1.0, 0.03, n), 2)
    return {
        "contract": contract,
        "tenure": tenure.astype(np.int64),
        "internet": internet,
        "monthly": monthly,
        "total": total,
        "payment": rng.choice(4, size=n, p=[0.35, 0.2, 0.22, 0.23]),
        "paperless": (rng.random(n) < 0.6).astype(np.int64),
    }


def _telco_score(f: dict[str, np.ndarray], drift: float) -> np.ndarray:
    month_to_month = f["contract"] == 0
    return (
        np.array([1.2, 0.0, -1.3])[f["contract"]]
        - (0.45 - 0.15 * drift) * np.log1p(f["tenure"])
        + 0.9 * (month_to_month & (f["tenure"] < 6))
        + 0.035 * (f["internet"] == 1) * np.maximum(f["monthly"] - 70.0, 0.0)
        + 0.6 * (f["payment"] == 0)
        + 0.25 * f["paperless"]
    )


def _telco_frame(f: dict[str, np.ndarray], ids: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    total = pd.Series(f["total"]).where(f["tenure"] > 0)  # blank for brand-new customers
    return pd.DataFrame(
        {
            "CustomerID": "C-" + pd.Series(ids).astype(str).str.zfill(6),
            "tenure_months": f["tenure"],
            "monthly_charges": f["monthly"],
            "total_charges": total,
            "contract": _CONTRACTS[f["contract"]],
            "payment_method": _PAYMENTS[f["payment"]],
            "internet_service": _INTERNET[f["internet"]],
            "paperless_billing": _YES_NO[f["paperless"]],
            "Churn": np.where(labels, "Yes", "No"),
        }
    )


_TELCO_BREAKS = [
    ("tenure_months", -3),
    ("tenure_months", 400),
    ("monthly_charges", "abc"),
    ("monthly_charges", -5.0),
    ("contract", "weekly"),
    ("internet_service", "satellite"),
    ("Churn", "maybe"),
]

_SPECS = {
    "insurance": (
        _insurance_features,
        _insurance_score,
        _insurance_frame,
        _INSURANCE_BREAKS,
        "customer_id",
        "churn",
    ),
    "telco": (_telco_features, _telco_score, _telco_frame, _TELCO_BREAKS, "CustomerID", "Churn"),
}


@cache
def intercept(dataset: str, drift: float) -> float:
    """The intercept that gives the process its base rate, found by bisection on a
    fixed sample (so it does not depend on --seed or --rows)."""
    features, score, *_ = _SPECS[dataset]
    linear = score(features(np.random.default_rng(20261101), 200_000, drift), drift)
    target = Process(dataset, drift).base_rate
    low, high = -15.0, 15.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(mid + linear).mean() < target else (low, mid)
    return (low + high) / 2


def generate_chunk(
    process: Process, rng: np.random.Generator, first_id: int, n: int, dirty: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` rows of the snapshot and their truth (``customer_id, churn_probability``)."""
    features, score, to_frame, breaks, id_column, target = _SPECS[process.dataset]
    f = features(rng, n, process.drift)
    if process.noise_labels:
        probability = np.full(n, process.base_rate)
    else:
        probability = _sigmoid(intercept(process.dataset, process.drift) + score(f, process.drift))
    labels = rng.random(n) < probability
    frame = to_frame(f, np.arange(first_id, first_id + n), labels)
    if dirty:
        frame, probability = _make_dirty(frame, probability, rng, breaks, id_column, target)
    truth = pd.DataFrame({id_column: frame[id_column].to_numpy(), "churn_probability": probability})
    return frame, truth


def _make_dirty(frame, probability, rng, breaks, id_column, target):
    """Blank cells, exact repeats and rule breakers; the row count stays the same."""
    n = len(frame)
    columns = list(frame.columns)
    features = [i for i, c in enumerate(columns) if c not in (id_column, target)]
    cells = frame.to_numpy(dtype=object)  # a numeric column may receive 'abc'
    blank = np.flatnonzero(rng.random(n) < 0.02)
    cells[blank, rng.choice(features, size=len(blank))] = None
    broken = np.flatnonzero(rng.random(n) < 0.002)
    # cycle through the kinds of breakage, so that even a small snapshot shows each
    for k, row in enumerate(broken, start=rng.integers(len(breaks))):
        column, value = breaks[k % len(breaks)]
        cells[row, columns.index(column)] = value
    # a repeat replaces a row by a copy of an earlier one (its truth comes along);
    # in row order, so that a copy of a copy is still an exact repeat
    probability = probability.copy()
    repeats = np.flatnonzero(rng.random(n) < 0.005)
    repeats = repeats[repeats > 0]
    for row, source in zip(repeats, (rng.random(len(repeats)) * repeats).astype(np.int64)):
        cells[row] = cells[source]
        probability[row] = probability[source]
    return pd.DataFrame(cells, columns=columns), probability


def snapshot_name(dataset: str, timestamp: str) -> str:
    datetime.strptime(timestamp, TIMESTAMP_FORMAT)  # ValueError names the bad value
    return f"{DATASETS[dataset]}_{timestamp}.csv"


def write_snapshot(
    out: Path,
    truth_dir: Path,
    rows: int,
    seed: int,
    timestamp: str,
    dataset: str = "insurance",
    drift: float = 0.0,
    noise_labels: bool = False,
    dirty: bool = True,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[Path, Path]:
    """Write the snapshot and its truth file chunk by chunk; return both paths.

    Each file is written under a temporary name and renamed at the end, so a
    watcher of the raw folder never sees half a snapshot."""
    out, truth_dir = Path(out), Path(truth_dir)
    if truth_dir.resolve().is_relative_to(out.resolve()):
        raise ValueError(
            f"--truth-dir {truth_dir} is inside the raw folder {out}: the truth "
            "would be read as a snapshot; put it elsewhere"
        )
    if rows < 1:
        raise ValueError(f"--rows must be at least 1, got {rows}")
    name = snapshot_name(dataset, timestamp)
    process = Process(dataset, drift, noise_labels)
    out.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    raw_path, truth_path = out / name, truth_dir / name
    raw_tmp, truth_tmp = (
        raw_path.with_suffix(".csv.partial"),
        truth_path.with_suffix(".csv.partial"),
    )
    starts = range(0, rows, chunk_rows)
    chunk_seeds = np.random.SeedSequence(seed).spawn(len(starts))
    with open(raw_tmp, "w", newline="") as raw_file, open(truth_tmp, "w", newline="") as truth_file:
        for index, (start, chunk_seed) in enumerate(zip(starts, chunk_seeds)):
            n = min(chunk_rows, rows - start)
            rng = np.random.default_rng(chunk_seed)
            frame, truth = generate_chunk(process, rng, first_id=start + 1, n=n, dirty=dirty)
            frame.to_csv(raw_file, index=False, header=index == 0)
            truth.to_csv(truth_file, index=False, header=index == 0, float_format="%.6f")
    os.replace(truth_tmp, truth_path)
    os.replace(raw_tmp, raw_path)
    return raw_path, truth_path


PANEL_BURN_IN = 12
PREMIUM_RHO = 0.9


def _every(text: str) -> timedelta:
    """``30d``, ``12h`` or ``2w`` as a time step."""
    match = re.fullmatch(r"(\d+)([dhw])", text.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a period like 30d, 12h or 2w")
    unit = {"d": "days", "h": "hours", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def write_panel(
    out: Path,
    truth_dir: Path,
    rows: int,
    seed: int,
    timestamp: str,
    snapshots: int,
    every: timedelta = timedelta(days=30),
    drift: float = 0.0,
    drift_from: int = 0,
    dirty: bool = True,
) -> list[tuple[Path, Path]]:
    """Write ``snapshots`` snapshots of one customer base (see the module docstring);
    return their (snapshot, truth) paths, oldest first."""
    out, truth_dir = Path(out), Path(truth_dir)
    if truth_dir.resolve().is_relative_to(out.resolve()):
        raise ValueError(
            f"--truth-dir {truth_dir} is inside the raw folder {out}: the truth "
            "would be read as a snapshot; put it elsewhere"
        )
    if rows < 1 or snapshots < 1:
        raise ValueError(f"--rows and --panel must be at least 1, got {rows} and {snapshots}")
    start = datetime.strptime(timestamp, TIMESTAMP_FORMAT)
    rng = np.random.default_rng(seed)
    years = every.total_seconds() / (365.25 * 86400)

    def joiners(n: int, joining_drift: float = 0.0) -> dict[str, np.ndarray]:
        return {
            "policy": rng.choice(3, size=n, p=_POLICY_SHARE),
            "age": np.clip(rng.normal(46 - 6 * joining_drift, 16, n), 18, 95),
            "z": rng.normal(0, 1, n),
        }

    base = joiners(rows)
    ids = np.arange(1, rows + 1)
    next_id = rows + 1
    out.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for period in range(-PANEL_BURN_IN, snapshots):
        d = drift if period >= drift_from else 0.0
        age = np.clip(np.rint(base["age"]), 18, 95).astype(np.int64)
        young, policy = age < 25, base["policy"]
        premium = _PREMIUM_CENTRE[policy] * np.exp(0.45 * base["z"])
        premium *= np.where(young & (policy == 0), 1.6, 1.0) * (1 + 0.15 * d)
        claims = rng.poisson(_CLAIMS_RATE[policy] * np.where(young, 1.8, 1.0))
        f = {"policy": policy, "age": age, "premium": np.round(premium, 2), "claims": claims}
        probability = _sigmoid(intercept("insurance", d) + _insurance_score(f, d))
        churned = rng.random(len(ids)) < probability
        if period >= 0:
            frame = _insurance_frame(f, ids, churned)
            truth_p = probability
            if dirty:
                frame, truth_p = _make_dirty(
                    frame, probability, rng, _INSURANCE_BREAKS, "customer_id", "churn"
                )
            stamp = (start + period * every).strftime(TIMESTAMP_FORMAT)
            name = snapshot_name("insurance", stamp)
            truth = pd.DataFrame(
                {"customer_id": frame["customer_id"].to_numpy(), "churn_probability": truth_p}
            )
            raw_tmp, truth_tmp = out / f"{name}.partial", truth_dir / f"{name}.partial"
            frame.to_csv(raw_tmp, index=False)
            truth.to_csv(truth_tmp, index=False, float_format="%.6f")
            os.replace(truth_tmp, truth_dir / name)
            os.replace(raw_tmp, out / name)
            written.append((out / name, truth_dir / name))
        # the next period: churners leave, the others age and their premium moves,
        # new customers keep the base at `rows`
        stay = ~churned
        z = base["z"][stay]
        z = PREMIUM_RHO * z + np.sqrt(1 - PREMIUM_RHO**2) * rng.normal(0, 1, len(z))
        new = joiners(rows - int(stay.sum()), drift if period + 1 >= drift_from else 0.0)
        base = {
            "policy": np.concatenate([base["policy"][stay], new["policy"]]),
            "age": np.concatenate([base["age"][stay] + years, new["age"]]),
            "z": np.concatenate([z, new["z"]]),
        }
        ids = np.concatenate([ids[stay], np.arange(next_id, next_id + len(new["z"]))])
        next_id += len(new["z"])
    return written


def _timestamp(text: str) -> str:
    try:
        datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a YYYY-MM-DD_HH-MM-SS timestamp"
        ) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="churn-generate",
        description="Write a synthetic churn snapshot and the true churn probability of each row.",
    )
    parser.add_argument(
        "--rows", type=int, default=5000, help="rows in the snapshot (default 5000)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--timestamp",
        type=_timestamp,
        help="timestamp in the file name, YYYY-MM-DD_HH-MM-SS (default: now, UTC)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/01_raw"), help="raw folder (default data/01_raw)"
    )
    parser.add_argument(
        "--truth-dir",
        type=Path,
        default=Path("data/truth"),
        help="folder for the truth file, outside the raw folder (default data/truth)",
    )
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="insurance")
    parser.add_argument(
        "--drift",
        type=float,
        default=0.0,
        help="shift the generating process (0 = the baseline behaviour)",
    )
    parser.add_argument(
        "--noise-labels", action="store_true", help="labels independent of the features"
    )
    parser.add_argument(
        "--panel",
        type=int,
        metavar="N",
        help="write N snapshots of one customer base over time (insurance only)",
    )
    parser.add_argument(
        "--every",
        type=_every,
        default=timedelta(days=30),
        help="time between panel snapshots: 30d (default), 12h, 2w",
    )
    parser.add_argument(
        "--drift-from",
        type=int,
        default=0,
        metavar="K",
        help="with --panel: the drift starts at snapshot K (0-based; default 0)",
    )
    dirt = parser.add_mutually_exclusive_group()
    dirt.add_argument(
        "--dirty",
        dest="dirty",
        action="store_true",
        default=True,
        help="inject missing values, duplicates and rule breakers (default)",
    )
    dirt.add_argument("--clean", dest="dirty", action="store_false", help="inject nothing")
    args = parser.parse_args(argv)
    if args.drift < 0:
        parser.error("--drift must be >= 0")
    timestamp = args.timestamp or datetime.now(UTC).strftime(TIMESTAMP_FORMAT)
    if args.panel is not None:
        if args.dataset != "insurance" or args.noise_labels:
            parser.error("--panel supports the insurance dataset without --noise-labels")
        try:
            written = write_panel(
                args.out,
                args.truth_dir,
                args.rows,
                args.seed,
                timestamp,
                args.panel,
                args.every,
                args.drift,
                args.drift_from,
                args.dirty,
            )
        except ValueError as exc:
            parser.error(str(exc))
        for raw_path, truth_path in written:
            print(f"wrote {raw_path} and its truth {truth_path}")
        return 0
    try:
        raw_path, truth_path = write_snapshot(
            args.out,
            args.truth_dir,
            args.rows,
            args.seed,
            timestamp,
            args.dataset,
            args.drift,
            args.noise_labels,
            args.dirty,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {raw_path} ({args.rows} rows) and its truth {truth_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
