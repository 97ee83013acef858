"""Benchmark: milliseconds per synthetic street scene (``render_scene``), for the record.

There is no baseline to compare with (the scenes are ours); this only prints the cost per scene at
the sizes the demo and the tests use, so that a slowdown shows up when someone runs it.

    python benchmarks/render_scene.py [--sizes 64,128] [--scenes 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from p2ptools_datasets.synthetic import render_scene


def ms_per_scene(size: int, scenes: int) -> float:
    """Mean wall time of ``render_scene`` at ``size`` over ``scenes`` seeds, in milliseconds."""
    start = time.perf_counter()
    for seed in range(scenes):
        render_scene(np.random.default_rng(seed), size)
    return (time.perf_counter() - start) / scenes * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128", help="comma-separated scene sizes in pixels")
    parser.add_argument("--scenes", type=int, default=5, help="scenes per size")
    args = parser.parse_args()
    for size in map(int, args.sizes.split(",")):
        print(f"render_scene {size}px: {ms_per_scene(size, args.scenes):.1f} ms/scene")


if __name__ == "__main__":
    main()
