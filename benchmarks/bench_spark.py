"""The pandas engine and the Spark engine (local mode) on the same generated file:
ingestion into MariaDB and batch scoring, rows/s and peak memory, Spark with 1 and 2 cores.

    python benchmarks/bench_spark.py                    # 1,000,000 rows
    python benchmarks/bench_spark.py --rows 10000000    # another size
    python benchmarks/bench_spark.py --quick            # 50,000 rows, a smoke run

Each measurement runs in a fresh process. Memory: the peak RSS of the Python driver
(``driver``) and the peak of its whole process tree, sampled every 0.2 s (``tree``: the
JVM and Spark's Python workers too). Ingestion writes into a scratch database on the
MariaDB at 127.0.0.1:3306 (--mysql to change it), dropped afterwards; scoring computes
every score (churn_kedro.inference.predict over the file) without writing them. The
Spark engine needs the JDBC driver of libmariadb-java. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, threading, time
import psutil, yaml
task, engine, cores, folder, url, registry = sys.argv[1:7]
sys.path.insert(0, os.path.join(sys.argv[7], "tests"))
conf = os.path.join(sys.argv[7], "conf")
schema = yaml.safe_load(open(os.path.join(conf, "base", "parameters.yml")))["schema"]
peak = [0]
def sample():
    me = psutil.Process()
    while True:
        try:
            rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
        except psutil.Error:
            continue
        peak[0] = max(peak[0], rss)
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
if engine == "spark":
    from churn_kedro.spark.session import session
    settings = yaml.safe_load(open(os.path.join(conf, "spark", "spark.yml")))
    session({**settings, "spark.master": f"local[{cores}]"})
    from churn_kedro.datasets import SparkSnapshotObjectsDataset as Objects
    from churn_kedro.datasets import SparkIngestionDatabaseDataset as Database
else:
    from churn_kedro.datasets import SnapshotObjectsDataset as Objects
    from churn_kedro.datasets import IngestionDatabaseDataset as Database
objects = Objects(path=folder, key_prefix="raw").load()
t0 = time.perf_counter()
if task == "ingest":
    from churn_kedro.pipelines.ingest_raw.nodes import ingest_raw_objects
    report = ingest_raw_objects(objects, Database(credentials={"con": url}).load(), schema,
                                {"chunk_rows": 100000}, False)
    assert not report["errors"], report["errors"]
    rows = report["loaded"][0]["rows_read"]
else:
    from churn_kedro.datasets import ModelRegistryDataset
    from churn_kedro.pipelines.score import nodes
    champion = ModelRegistryDataset(path=registry, form="serving").load()
    raw, source = nodes.select_snapshot_to_score(objects, "^insurance_data_(.*)$", {})
    valid, rejected = nodes.validate_snapshot_to_score(raw, source, schema)
    batch, report = nodes.score_customers(valid, rejected, champion, source, schema)
    rows = report["rows_scored"] + report["rows_rejected"]
seconds = time.perf_counter() - t0
print(json.dumps({"rows": rows, "seconds": seconds,
                  "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tree_mb": peak[0] / 2**20}))
"""


def measure(task: str, engine: str, cores: int, folder: Path, url: str, registry: Path) -> dict:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "KEDRO_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            task,
            engine,
            str(cores),
            str(folder),
            url,
            str(registry),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{task} {engine}: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def scratch(server: str):
    import sqlalchemy as sa

    name = f"bench_spark_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(server)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return engine, name, sa.make_url(server).set(database=name).render_as_string(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306")
    args = parser.parse_args(argv)
    rows = 50_000 if args.quick else args.rows
    sys.path.insert(0, str(REPO / "tests"))
    from serving_fixtures import build_registry

    from churn_kedro.generate import write_snapshot

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        folder = Path(tmp) / "raw"
        path, _ = write_snapshot(folder, Path(tmp) / "truth", rows, 7, "2026-11-01_06-00-00")
        registry = Path(tmp) / "registry"
        build_registry(registry, ("catboost",), promote="v1-catboost")
        print(
            f"{rows:,} generated rows, {path.stat().st_size / 2**20:.1f} MB CSV; catboost champion"
        )
        print(
            f"{'task':<8}{'engine':<16}{'seconds':>9}{'rows/s':>11}{'driver MB':>11}{'tree MB':>9}"
        )
        runs = [("pandas", 1), ("spark", 1), ("spark", 2)]
        for task in ("ingest", "score"):
            rates = {}
            for engine, cores in runs:
                server, name, url = scratch(args.mysql)
                try:
                    result = measure(task, engine, cores, folder, url, registry)
                finally:
                    with server.connect() as conn:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                label = "pandas" if engine == "pandas" else f"spark local[{cores}]"
                rates[label] = result["rows"] / result["seconds"]
                print(
                    f"{task:<8}{label:<16}{result['seconds']:>9.1f}{rates[label]:>11,.0f}"
                    f"{result['driver_mb']:>11.0f}{result['tree_mb']:>9.0f}",
                    flush=True,
                )
            print(
                f"{task}: Spark 2 cores / 1 core = "
                f"{rates['spark local[2]'] / rates['spark local[1]']:.2f}x; "
                f"Spark local[2] / pandas = {rates['spark local[2]'] / rates['pandas']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
