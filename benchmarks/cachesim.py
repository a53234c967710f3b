"""L1 cache misses per call on the instruction-counted paths, by cachegrind's cache simulation:
whether a path's time follows its instruction count, or its code and data leave the caches.

    python benchmarks/cachesim.py                  # the miss and plain aiohttp's, side by side
    python benchmarks/cachesim.py --only "client hit"

Each program of ``instructions.py`` runs under ``valgrind --tool=cachegrind --cache-sim=yes``
(the simulated caches take this machine's sizes), twice with different numbers of calls, as
``instructions.py`` counts; the difference per call is printed: instructions (I refs), L1
instruction misses, data reads and writes (D refs), L1 data misses, last-level misses. Issue 20
used it to tell whether the miss's own part, three times slower per bytecode than the same code
in a tight loop, pays for a large footprint or for its instructions: its L1 miss rate is aiohttp's
own, so its time follows its instructions (BENCHMARKS.md, "Issue 20, sixth pass").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from instructions import HIGH, LOW, MISS, PLAIN_MISS, PROGRAMS, compiled

HERE = Path(__file__).resolve().parent
FIGURES = ("I   refs", "I1  misses", "D   refs", "D1  misses", "LL misses")


def simulated(program: str, calls: int, checkout: Path) -> dict[str, int]:
    """Cachegrind's totals for one run of ``program`` with ``calls`` calls."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(checkout))
    env.pop("PYTHONDEVMODE", None)
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=yes"]
    command += ["--cachegrind-out-file=/dev/null", sys.executable, "-c", program, str(calls)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=checkout)
    totals = {}
    for figure in FIGURES:
        found = re.search(re.escape(figure) + r":\s*([\d,]+)", out.stderr)
        if out.returncode != 0 or found is None:
            raise SystemExit(f"cachegrind run failed ({out.returncode}):\n{out.stderr[-2000:]}")
        totals[figure] = int(found.group(1).replace(",", ""))
    return totals


def per_call(program: str, checkout: Path) -> dict[str, float]:
    low, high = (LOW // 5, HIGH // 5) if program in (MISS, PLAIN_MISS) else (LOW, HIGH)
    a, b = simulated(program, low, checkout), simulated(program, high, checkout)
    return {figure: (b[figure] - a[figure]) / (high - low) for figure in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(PROGRAMS), default="miss")
    args = parser.parse_args()
    checkout = HERE.parent
    compiled(checkout)
    runs = {args.only: PROGRAMS[args.only]}
    if args.only == "miss":
        runs["miss, plain aiohttp"] = PLAIN_MISS
    print(f"per call (cachegrind; Python {sys.version.split()[0]})")
    print(f"  {'':<22}" + "".join(f"{figure:>14}" for figure in FIGURES))
    for name, program in runs.items():
        figures = per_call(program, checkout)
        print(f"  {name:<22}" + "".join(f"{figures[f]:>14,.0f}" for f in FIGURES), flush=True)


if __name__ == "__main__":
    main()
