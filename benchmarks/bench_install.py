"""What a new user waits for: venv size and first-run wall time of `make run` and of
`make test`'s installs, from fresh clones, with a cold and a warm pip cache.

Each case clones the repository (its committed HEAD) into a temporary folder and runs
make there, timing each step:

* make run: installing the runtime (requirements.txt), then the pipelines (ingest,
  retrain, ingest processed, registry status); its first result on screen is the end.
* make test: installing the runtime, the tools (requirements-dev.txt: tests, Spark,
  CatBoost, notebooks, kedro-viz, linters) and checkov's own venv; the suite itself is
  not run here (README: tests).
* the full install before the runtime/tools split: the runtime and the tools, then the
  same pipelines: what `make run` used to cost, measured side by side.

Cold: an empty pip cache (packages come from the configured index, sdists are built).
Warm: the cache the cold installs filled. Nothing is asserted; figures are printed.

    python benchmarks/bench_install.py            # cold and warm (~15-30 min on 2 cores)
    python benchmarks/bench_install.py --quick    # warm cache, make run only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def size_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1e6


def timed_make(clone: Path, cache: Path, *targets: str) -> float:
    env = {**os.environ, "PIP_CACHE_DIR": str(cache), "KEDRO_DISABLE_TELEMETRY": "true"}
    env.pop("VIRTUAL_ENV", None)
    started = time.perf_counter()
    result = subprocess.run(
        ["make", *targets], cwd=clone, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"make {' '.join(targets)} failed in {clone}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def case(name: str, cache: Path, steps: list[tuple[str, ...]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-install-") as folder:
        clone = Path(folder) / "churn-kedro"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        seconds = {" ".join(step): timed_make(clone, cache, *step) for step in steps}
        venv, checkov = size_mb(clone / ".venv"), size_mb(clone / ".venv-checkov")
    total = sum(seconds.values())
    parts = ", ".join(f"{step} {s:.0f} s" for step, s in seconds.items())
    print(
        f"{name:<34} {total:6.0f} s   .venv {venv:6.0f} MB"
        + (f" (+ .venv-checkov {checkov:.0f} MB)" if checkov else "")
        + f"   [{parts}]",
        flush=True,
    )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="warm cache, make run only")
    quick = parser.parse_args(argv).quick
    runtime = (".venv/.runtime-installed",)
    tools = (".venv/.dev-installed",)
    run = ("run",)
    load = os.getloadavg()[0]
    print(f"from fresh clones of {REPO} (HEAD), {os.cpu_count()} cores, load {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-install-cache-") as caches:
        cold_run, cold_test = Path(caches) / "run", Path(caches) / "test"
        if quick:
            # warm: fill a cache with the runtime first, then time a second clone
            case("(filling the cache)", cold_run, [runtime])
            case("make run, warm cache", cold_run, [runtime, run])
            return 0
        case("make run, cold cache", cold_run, [runtime, run])
        case("make test installs, cold cache", cold_test, [runtime, tools, ("checkov",)])
        lean = case("make run, warm cache", cold_test, [runtime, run])
        case("make test installs, warm cache", cold_test, [runtime, tools, ("checkov",)])
        full = case("runtime + tools, then run, warm", cold_test, [runtime, tools, run])
    ratio = sum(lean.values()) / sum(full.values())
    print(f"make run's first result, lean install / full install (warm): {ratio:.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
