"""Check: the demo shows the paper's orderings for several seeds, not only for the default one.

Runs the whole demo (default configuration) once per seed, each in its own folder, and prints each
table's FCN scores and colour intersections with the problems :func:`p2ptools.demo.ordering_problems`
finds (none: ground truth > L1+cGAN > L1 on per-pixel accuracy and class IoU, each gap >= 0.02, and
L1+cGAN's Lab intersections above L1's). Writes the same as JSON with ``--json``.

    python benchmarks/demo_seeds.py [--seeds 0 1 2] [--workdir DIR] [--json out.json]

Each seed takes what ``make demo`` takes (about 3 minutes on 2 CPU cores). Exit code 1 when a seed
breaks an ordering.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from p2ptools.demo import COLOR_COLUMNS, ORDERED_SCORES, DemoConfig, ordering_problems, read_table, run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, default=None, help="where the demos go (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = []
        for seed in args.seeds:
            start = time.perf_counter()
            table = run_demo(DemoConfig(out=Path(tmp) / f"seed_{seed}", seed=seed, progress=False)).with_suffix(".csv")
            frame = read_table(table)
            rows = {str(row): {c: round(float(frame.loc[row, c]), 4) for c in (*ORDERED_SCORES, *COLOR_COLUMNS) if pd.notna(frame.loc[row, c])}
                    for row in frame.index}
            results.append({"seed": seed, "seconds": round(time.perf_counter() - start, 1), "rows": rows, "problems": ordering_problems(table)})
            print(f"seed {seed} ({results[-1]['seconds']:.0f} s):")
            for row, values in rows.items():
                print(f"  {row:14s} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
            print("  orderings hold" if not results[-1]["problems"] else "  PROBLEMS: " + "; ".join(results[-1]["problems"]))
            sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
