"""`make bench`: run every bench/bench_*.py to its end, then name each figure that missed its
target (from outputs/bench/*.json) and each script that failed; exit 1 if there is any.

    python bench/run_all.py                 # all scripts
    python bench/run_all.py sim data        # bench_sim.py and bench_data.py only
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import OUT_DIR

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if argv:
        scripts = [BENCH_DIR / f"bench_{name}.py" for name in argv]
        missing = [s.name for s in scripts if not s.is_file()]
        if missing:
            print(f"no such bench scripts: {missing}", file=sys.stderr)
            return 2
    problems = []
    for script in scripts:
        print(f"\n==== {script.name}", flush=True)
        result = OUT_DIR / f"{script.stem.removeprefix('bench_')}.json"
        result.unlink(missing_ok=True)  # a stale file must not stand in for this run
        code = subprocess.call([sys.executable, str(script)])
        if not result.is_file():
            problems.append(f"{script.name}: wrote no {result.name} (exit code {code})")
            continue
        missed = json.loads(result.read_text())["missed"]
        problems += [f"{script.name}: {name}" for name in missed]
        if code != 0 and not missed:
            problems.append(f"{script.name}: exit code {code}")
    print("\n==== bench summary")
    for line in problems:
        print(f"  MISSED {line}")
    print("  all figures met their targets" if not problems else
          f"  {len(problems)} problem(s); details in {OUT_DIR}/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
