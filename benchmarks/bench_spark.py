"""The pandas engine and the Spark engine (local mode) on the same generated file:
ingestion into MariaDB and batch scoring, rows/s and peak memory, Spark with 1 and 2 cores.

    python benchmarks/bench_spark.py                    # 1,000,000 and 10,000,000 rows
    python benchmarks/bench_spark.py --rows 10000000    # one size (or several)
    python benchmarks/bench_spark.py --quick            # 50,000 rows, a smoke run
    python benchmarks/bench_spark.py --read-only        # the reader: multiLine vs splits
    python benchmarks/bench_spark.py --rows 10000000 --only ingest   # pandas vs local[2]

Each measurement runs in a fresh process. A Spark run with N cores (``local[N]``) is
pinned to N CPUs, the JVM and its Python workers together: unpinned, ``local[1]`` keeps
more than one CPU busy (the JVM parses and serializes while a Python worker computes),
and its rate would not be one core's. The machine's own scaling, two processes of pure
Python against one, is printed first: the ceiling of the Spark ratio.

Memory, peak RSS: the Python driver (``driver``, the process's own high-water mark), the
JVM (``jvm``) and Spark's Python workers together (``workers``), sampled every 0.2 s.
Ingestion writes into a scratch database on the MariaDB at 127.0.0.1:3306 (--mysql to
change it), dropped afterwards; scoring computes every score
(churn_kedro.inference.predict over the file) without writing them. Also measured: the
server's INSERT ... SELECT of the loaded rows (the object's one transaction: serial).
From these the last lines project a Glue job's time for --project-rows rows on N G.1X
workers; the assumptions are printed with it. The Spark engine needs the JDBC driver of
libmariadb-java. The load average is printed before and after: the figures mean little
on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from child_memory import PEAK_RSS

REPO = Path(__file__).resolve().parents[1]

CHILD = (
    PEAK_RSS
    + r"""
import json, os, sys, threading, time
import psutil, yaml
task, engine, cores, folder, url, registry = sys.argv[1:7]
sys.path.insert(0, os.path.join(sys.argv[7], "tests"))
conf = os.path.join(sys.argv[7], "conf")
schema = yaml.safe_load(open(os.path.join(conf, "base", "parameters.yml")))["schema"]
peak = {"jvm": 0, "workers": 0}
def sample():
    me = psutil.Process()
    while True:
        jvm = workers = 0
        for child in me.children(recursive=True):
            try:
                if child.name() == "java":
                    jvm += child.memory_info().rss
                elif child.name().startswith("python"):
                    workers += child.memory_info().rss
            except psutil.Error:
                pass
        peak["jvm"], peak["workers"] = max(peak["jvm"], jvm), max(peak["workers"], workers)
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
if engine == "spark-multiline":  # the reader as for a file with quotes, for --read-only
    from pyspark.sql.readwriter import DataFrameReader
    csv = DataFrameReader.csv
    DataFrameReader.csv = lambda self, path, **options: csv(self, path, **{**options, "multiLine": True})
    engine = "spark"
if engine == "spark":
    # N cores: the JVM and its Python workers (children inherit it) on N CPUs
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: int(cores)])
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
if task == "read":  # the Spark reader's numbering pass alone
    from churn_kedro.spark.session import session
    from churn_kedro.spark.validation import read_snapshot
    read_snapshot(session(), next(iter(objects.values())))  # warm: the JVM's first job
    t0 = time.perf_counter()
    _, rows = read_snapshot(session(), next(iter(objects.values())))
elif task == "ingest":
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
                  "driver_mb": peak_rss() / 2**20,
                  "jvm_mb": peak["jvm"] / 2**20, "workers_mb": peak["workers"] / 2**20}))
"""
)


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


def server_move(engine, name: str) -> float:
    """Rows/s of the server's INSERT ... SELECT of the loaded rows into a copy (the move
    of an object's staged rows in its one transaction)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{name}`.copy LIKE `{name}`.policies_raw")
        started = time.perf_counter()
        moved = conn.exec_driver_sql(
            f"INSERT INTO `{name}`.copy SELECT * FROM `{name}`.policies_raw"
        ).rowcount
        return moved / (time.perf_counter() - started)


def _spin(_: int) -> int:
    total = 0
    for i in range(30_000_000):
        total += i * i % 7
    return total


def machine_scaling() -> float:
    """Two processes of pure Python against one: what a second core gives here."""
    started = time.perf_counter()
    _spin(0)
    one = time.perf_counter() - started
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(abs, [0, 1])  # the workers have started
        started = time.perf_counter()
        pool.map(_spin, [0, 1])
        two = time.perf_counter() - started
    return 2 * one / two


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def project(rows: int, rates: dict, move_rate: float) -> None:
    """A Glue job's time for ``rows`` rows on N G.1X workers (4 vCPU each), from the
    per-core rates measured here."""
    print(
        f"\nProjection for {rows:,} rows in one file on Glue, N G.1X workers (4 vCPU each). "
        "Assumptions: one worker is the driver, so 4 x (N - 1) executor cores; a Glue vCPU "
        "does what one core does here (local[1], pinned to one CPU); the cores add up with "
        "the efficiency measured from 1 to 2 cores here (capped at 1); the file has no "
        "double quote, so it is read in splits (a file with one is parsed by one task: "
        "--read-only measures that rate); for ingestion the database's one INSERT ... SELECT "
        "does not scale; each rate includes its run's fixed cost (jobs, Python workers), so "
        "the figures lean pessimistic; Glue's own start (about a minute) and S3 reads are "
        "not counted."
    )
    print(f"{'N':>4}" + "".join(f"{task + ' (min)':>16}" for task in rates))
    for workers in (2, 3, 5, 10, 20, 50):
        cells = []
        for task, (one_core, two_cores) in rates.items():
            efficiency = min(1.0, two_cores / one_core / 2)
            seconds = rows / (one_core * 4 * (workers - 1) * efficiency)
            if task == "ingest":
                seconds += rows / move_rate
            cells.append(f"{seconds / 60:>16.1f}")
        print(f"{workers:>4}" + "".join(cells))


def print_row(task: str, label: str, result: dict) -> None:
    print(
        f"{task:<8}{label:<20}{result['seconds']:>9.1f}"
        f"{result['rows'] / result['seconds']:>11,.0f}{result['driver_mb']:>11.0f}"
        f"{result['jvm_mb']:>8.0f}{result['workers_mb']:>12.0f}",
        flush=True,
    )


def read_only(folder: Path, registry: Path) -> None:
    for engine, cores in [(e, c) for e in ("spark-multiline", "spark") for c in (1, 2)]:
        result = measure("read", engine, cores, folder, "", registry)
        print_row("read", f"{'multiLine' if engine != 'spark' else 'split'} local[{cores}]", result)


def engines(
    tasks: list[str], runs: list[tuple[str, int]], folder: Path, registry: Path, mysql: str
) -> tuple[dict, float]:
    """Each task on each (engine, cores): a row of figures each, then the ratios. Returns
    the Spark rates per task (1 core, 2 cores) and the server's INSERT ... SELECT rate."""
    per_core, move_rate = {}, 0.0
    for task in tasks:
        rates = {}
        for engine, cores in runs:
            server, name, url = scratch(mysql)
            try:
                result = measure(task, engine, cores, folder, url, registry)
                if task == "ingest" and engine == "pandas":
                    move_rate = server_move(server, name)
            finally:
                with server.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            label = "pandas" if engine == "pandas" else f"spark local[{cores}]"
            rates[label] = result["rows"] / result["seconds"]
            print_row(task, label, result)
        two_cores = rates["spark local[2]"]
        line = f"{task}: "
        if "spark local[1]" in rates:
            per_core[task] = (rates["spark local[1]"], two_cores)
            line += f"Spark 2 cores / 1 core = {two_cores / rates['spark local[1]']:.2f}x; "
        print(line + f"Spark local[2] / pandas = {two_cores / rates['pandas']:.2f}x", flush=True)
    return per_core, move_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="file sizes, one file each (default: 1,000,000 and 10,000,000)",
    )
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--project-rows", type=int, default=100_000_000)
    parser.add_argument(
        "--only",
        choices=("ingest", "score"),
        help="one task, pandas and Spark local[2] only (no projection): a size too large "
        "for the whole set",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="only Spark's read (the numbering pass): with multiLine (a file that holds a "
        "quote) and in splits (the default for this file)",
    )
    args = parser.parse_args(argv)
    sizes = [50_000] if args.quick else args.rows
    sys.path.insert(0, str(REPO / "tests"))
    from serving_fixtures import build_registry

    from churn_kedro.generate import write_snapshot

    print(load_average(), flush=True)
    print(f"this machine: 2 processes / 1 process of pure Python = {machine_scaling():.2f}x")
    per_core, move_rate = {}, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        registry = Path(tmp) / "registry"
        build_registry(registry, ("hist_gradient_boosting",), promote="v1-hist_gradient_boosting")
        for rows in sizes:
            folder = Path(tmp) / f"raw-{rows}"
            path, _ = write_snapshot(
                folder, Path(tmp) / f"truth-{rows}", rows, 7, "2026-11-01_06-00-00"
            )
            print(
                f"\n{rows:,} generated rows, {path.stat().st_size / 2**20:.1f} MB CSV; "
                "champion: histogram gradient boosting (the default family)"
            )
            print(
                f"{'task':<8}{'engine':<20}{'seconds':>9}{'rows/s':>11}"
                f"{'driver MB':>11}{'JVM MB':>8}{'workers MB':>12}"
            )
            if args.read_only:
                read_only(folder, registry)
            elif args.only:
                engines([args.only], [("pandas", 1), ("spark", 2)], folder, registry, args.mysql)
            else:
                # the projection takes the largest file's rates: the least fixed cost a row
                per_core, move_rate = engines(
                    ["ingest", "score"],
                    [("pandas", 1), ("spark", 1), ("spark", 2)],
                    folder,
                    registry,
                    args.mysql,
                )
            shutil.rmtree(folder)
    if per_core:
        print(f"\nserver INSERT ... SELECT: {move_rate:,.0f} rows/s")
        project(args.project_rows, per_core, move_rate)
    print(load_average())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
