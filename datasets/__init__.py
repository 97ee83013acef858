"""Dataset builders of p2ptools, installed as the package ``p2ptools_datasets``: stage one, sources -> dataset.

Each module holds one builder (plus ``_photos``, helpers shared by the photo builders); builders may
import the core (``p2ptools.buildkit`` above all) and each other's helpers, never a model plugin.
Each builder is registered in ``pyproject.toml`` under
``[project.entry-points."p2ptools.datasets"]`` exactly as a third-party package would.

How to add a dataset builder
----------------------------
1. Copy ``_template.py`` to ``<yourdataset>.py`` (or into your own package).
2. Subclass :class:`p2ptools.buildkit.DatasetBuilder`: set ``name``, ``version``, ``summary`` and
   ``source_layout``; put your options in a frozen dataclass with defaults and ``metadata={"help":
   ...}`` (they become ``p2ptools make-dataset NAME --your-option`` automatically).
3. ``plan()`` lists every pair (split, output name, source names, a small picklable payload) in a
   deterministic order; open archives with :func:`p2ptools.buildkit.open_sources` there.
   ``make_pair()`` makes one pair as RGB uint8 arrays (runs in worker processes); raise
   :class:`p2ptools.errors.InputFileError` naming the file for a bad item.
4. Register it: ``yourdataset = "yourpackage.module:YourBuilder"`` in the group above, reinstall,
   and ``p2ptools datasets`` lists it. The registry smoke test then builds it on tiny data.

The shared runner gives every builder parallel workers, a progress bar, atomic writes, resume after
interruption, ``--skip-bad``, ``--limit`` and the manifest.
"""
