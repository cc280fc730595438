"""Run every benchmarks/bench_*.py in turn (what `make bench` calls).

python benchmarks/run_all.py            # full benchmarks
python benchmarks/run_all.py --quick    # smoke run: each script's --quick mode
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py in turn.")
    parser.add_argument(
        "--quick", action="store_true", help="pass --quick: a short smoke run of each"
    )
    quick = ["--quick"] if parser.parse_args(argv).quick else []
    failed = []
    for script in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        print(f"=== {script.name} {' '.join(quick)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(script), *quick]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
