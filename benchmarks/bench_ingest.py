"""Ingestion benchmark: the same generated CSV loaded three ways, on MariaDB and SQLite.

    python benchmarks/bench_ingest.py                 # 1,000,000 rows
    python benchmarks/bench_ingest.py --rows 200000   # another size
    python benchmarks/bench_ingest.py --quick         # 50,000 rows, a smoke run

Methods, each in a fresh process (so its peak memory is its own):
  ours      the ingest_raw node: chunked read, schema validation, duplicate check,
            exactly-once log row, one transaction (LOAD DATA of validated chunks on MySQL)
  to_sql    the seed's way: pd.read_csv of the whole file, then
            df.to_sql(table, engine, if_exists="append", index=False)
  load_data MySQL: LOAD DATA LOCAL INFILE of the raw CSV, no validation at all, into a
            table of the file's columns keyed on the id (the fastest a server can take the file)
  load_data_policies_raw  the same LOAD DATA into policies_raw itself (its real key
            (source_file, customer_id), source_file, row_number and ingested_at set by the
            server): what the table costs the server, whoever loads it
  executemany  SQLite's nearest equivalent: csv.reader rows into executemany, no validation

Prints rows/s and peak RSS (and the growth over the process's RSS after its imports).
MariaDB: the server at 127.0.0.1:3306 as root (override with --mysql URL); a scratch
database is created and dropped. Run on an otherwise idle machine for stable figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from child_memory import PEAK_RSS

REPO = Path(__file__).resolve().parents[1]

CHILD = (
    PEAK_RSS
    + r"""
import json, sys, time
import psutil
import pandas as pd, sqlalchemy as sa, yaml
from churn_kedro.database import create_engine
method, url, csv_path, chunk_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
schema_params = yaml.safe_load(open(sys.argv[5]))["schema"]
start_rss = psutil.Process().memory_info().rss
engine = create_engine(url)
header = open(csv_path).readline().strip().split(",")
columns = "customer_id VARCHAR(128) PRIMARY KEY, age DOUBLE, annual_premium DOUBLE, policy_type VARCHAR(255), claims_count DOUBLE, churn SMALLINT"
t0 = time.perf_counter()
if method == "ours":
    from pathlib import Path
    from churn_kedro.datasets import IngestionDatabaseDataset, SnapshotObjectsDataset
    from churn_kedro.pipelines.ingest_raw.nodes import ingest_raw_objects
    objects = SnapshotObjectsDataset(path=str(Path(csv_path).parent), key_prefix="raw").load()
    database = IngestionDatabaseDataset(credentials={"con": url}).load()
    t0 = time.perf_counter()
    report = ingest_raw_objects(objects, database, schema_params, {"chunk_rows": chunk_rows}, False)
    assert not report["errors"], report["errors"]
    rows = report["loaded"][0]["rows_loaded"]
elif method == "to_sql":
    frame = pd.read_csv(csv_path)
    frame.to_sql("seed_policies", engine, if_exists="append", index=False)
    rows = len(frame)
elif method == "load_data":
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE raw_policies ({columns})")
        rows = conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE raw_policies FIELDS TERMINATED BY ',' "
            f"OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\n' IGNORE 1 LINES ({', '.join(header)})",
            (csv_path,)).rowcount
elif method == "load_data_policies_raw":
    from churn_kedro.database import create_tables
    from churn_kedro.schema import Schema
    create_tables(engine, Schema.from_params(schema_params))
    with engine.begin() as conn:
        conn.exec_driver_sql("SET @n = 0")
        rows = conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE policies_raw FIELDS TERMINATED BY ',' "
            f"OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\n' IGNORE 1 LINES ({', '.join(header)}) "
            f"SET source_file = %s, ingested_at = NOW(), `row_number` = (@n := @n + 1)",
            (csv_path, "raw/" + csv_path.rsplit("/", 1)[-1])).rowcount
elif method == "executemany":
    import csv
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE raw_policies ({columns})")
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            conn.exec_driver_sql(f"INSERT INTO raw_policies ({', '.join(header)}) VALUES ({', '.join('?' * len(header))})",
                                 [tuple(r) for r in reader])
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM raw_policies").scalar()
seconds = time.perf_counter() - t0
peak = peak_rss()
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak / 2**20, "growth_mb": (peak - start_rss) / 2**20}))
"""
)


def measure(method: str, url: str, csv_path: Path, chunk_rows: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            method,
            url,
            str(csv_path),
            str(chunk_rows),
            str(REPO / "conf/base/parameters.yml"),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_mysql(method: str, server_url: str, csv_path: Path, chunk_rows: int) -> dict:
    """One method into a scratch database of its own, dropped afterwards."""
    import sqlalchemy as sa

    server = sa.create_engine(sa.make_url(server_url))
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        return measure(method, url, csv_path, chunk_rows)
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")


def rate(result: dict) -> float:
    return result["rows"] / result["seconds"]


def generate(rows: int, folder: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "churn_kedro.generate",
            "--rows",
            str(rows),
            "--clean",
            "--timestamp",
            "2026-11-01_06-00-00",
            "--out",
            str(folder / "raw"),
            "--truth-dir",
            str(folder / "truth"),
        ],
        check=True,
        capture_output=True,
    )
    return next((folder / "raw").glob("*.csv"))


def report(backend: str, results: dict[str, dict], reference: str) -> None:
    print(
        f"\n{backend}: {'method':<22} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'vs ' + reference:>14} "
        f"{'peak RSS MB':>12} {'growth MB':>10}"
    )
    for method, r in results.items():
        ratio = rate(r) / rate(results[reference])
        print(
            f"{'':<{len(backend) + 1}} {method:<22} {r['rows']:>9} {r['seconds']:>8.1f} {rate(r):>9.0f} "
            f"{ratio:>13.2f}x {r['peak_mb']:>12.0f} {r['growth_mb']:>10.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--skip-mysql", action="store_true")
    args = parser.parse_args(argv)
    rows = 50_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp)
        csv_path = generate(rows, folder)
        print(
            f"{rows} generated rows, {csv_path.stat().st_size / 2**20:.1f} MB CSV, chunks of {args.chunk_rows}"
        )
        if not args.skip_mysql:
            results = {
                m: measure_mysql(m, args.mysql, csv_path, args.chunk_rows)
                for m in ("load_data", "load_data_policies_raw", "ours", "to_sql")
            }
            report("MariaDB", results, "load_data")
            same = results["load_data_policies_raw"]
            print(
                f"MariaDB: ours is {rate(results['ours']) / rate(same):.2f}x the rows/s of LOAD DATA "
                "into the same table (policies_raw)"
            )
        results = {}
        for method in ("executemany", "ours", "to_sql"):
            db = folder / f"{method}.db"
            results[method] = measure(method, f"sqlite:///{db}", csv_path, args.chunk_rows)
        report("SQLite", results, "executemany")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
