"""Run the chaos suite and print its convergence figures as a Markdown table.

    python bench/chaos_report.py               # all of tests/chaos (about 2–3 minutes)
    python bench/chaos_report.py -k redis      # extra pytest arguments select tests

Each chaos test reports how long the system took to be whole again after its fault
(``tests/chaos/conftest.py: report``); with ``--runs N`` the suite runs N times and the table shows
the median and the spread. Servers are started by the tests themselves (``scripts/test`` installs
them; set ``SKALDS_TANSU_BIN`` if Tansu is not at ``.cache/tansu/tansu``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="run the suite this many times")
    args, pytest_args = parser.parse_known_args()
    figures: dict[str, list[float]] = {}
    outcomes = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "chaos.jsonl"
            env = dict(os.environ, SKALDS_CHAOS_REPORT=str(out))
            env.setdefault("SKALDS_TANSU_BIN", str(ROOT / ".cache" / "tansu" / "tansu"))
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/chaos", *pytest_args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
            outcomes.append(f"{summary} ({time.monotonic() - started:.0f} s)")
            if out.exists():
                for line in out.read_text().splitlines():
                    row = json.loads(line)
                    figures.setdefault(row["fault"], []).append(row["seconds"])
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"command: python bench/chaos_report.py --runs {args.runs} {' '.join(pytest_args)}".rstrip())
    for outcome in outcomes:
        print(f"suite: {outcome}")
    print()
    print("| fault → recovered | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for fault, values in figures.items():
        print(f"| {fault} | {len(values)} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    return 0 if all("failed" not in o and "error" not in o for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
