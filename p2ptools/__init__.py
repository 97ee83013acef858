"""p2ptools: paired image-to-image translation in the style of pix2pix (Isola et al., 2017).

This package is the core: the CLI, the plugin contracts and registry, the dataset-building engine
(``buildkit``), the training machinery plugins share (``training``), edge detection (``edges``) and
the evaluator (``eval``). It may import only itself and third-party libraries; plugins and builders
import it, and the core reaches them only through :mod:`p2ptools.registry`.

Stages, each reading only the files of the one before:

- dataset builders (``p2ptools_datasets``) write aligned A|B datasets with a ``manifest.json``;
- model plugins (``p2ptools_pix2pix`` and third-party ones, found through entry points) train run
  directories from them and translate images;
- the evaluator scores translations (FCN-8s, Lab color histograms, image metrics) into reports.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("p2ptools")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
