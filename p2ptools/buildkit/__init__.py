"""Dataset building engine: the builder contract, the shared runner, its worker pool and source readers."""

from p2ptools.buildkit.contract import BuildOptions, DatasetBuilder, NoOptions, PairJob, PairResult, job_rng
from p2ptools.buildkit.runner import run_build
from p2ptools.buildkit.sources import MultiSource, SourceTree, open_source, open_sources, safe_extract

__all__ = [
    "BuildOptions",
    "DatasetBuilder",
    "MultiSource",
    "NoOptions",
    "PairJob",
    "PairResult",
    "SourceTree",
    "job_rng",
    "open_source",
    "open_sources",
    "run_build",
    "safe_extract",
]
