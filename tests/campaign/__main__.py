"""``python -m tests.campaign --seed 7 --seconds 60 [--runs 20] [--minutes 30]``.

Runs seeds from ``--seed`` on, one after another, each with ``--seconds`` of faults,
``--runs`` of them or until ``--minutes`` have passed; prints each report and stops at
the first that fails (exit 1), naming its seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.campaign.runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.campaign")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0, help="Faults per run.")
    parser.add_argument("--runs", type=int, default=1, help="Seeds to run, from --seed on.")
    parser.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="Keep running seeds until this long has passed (overrides --runs).",
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the logs here.")
    args = parser.parse_args(argv)
    started = time.monotonic()
    seed, runs = args.seed, 0
    while True:
        report = run(seed, args.seconds, workers=args.workers, workdir=args.workdir)
        print(report.render(), flush=True)
        runs += 1
        if not report.passed:
            print(f"seed {seed} FAILED; replay: python -m tests.campaign --seed {seed} "
                  f"--seconds {args.seconds:.0f}", file=sys.stderr)  # fmt: skip
            return 1
        seed += 1
        if args.minutes:
            if time.monotonic() - started >= args.minutes * 60:
                break
        elif runs >= args.runs:
            break
    print(f"{runs} runs passed in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
