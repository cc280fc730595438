"""Run every benchmarks/bench_*.py in turn (what `make bench` calls).

    python benchmarks/run_all.py            # full benchmarks
    python benchmarks/run_all.py --quick    # smoke run: each script's --quick mode
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = ["--quick"] if "--quick" in args else []
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
