"""The pix2pix model plugin (entry point ``pix2pix`` in group ``p2ptools.models``).

Its own modules are the networks, losses, options, trainer loop, model loading and reference import;
everything a second plugin would need too comes from the core (``p2ptools.training``).

How to add a model plugin
-------------------------
1. Copy ``_template.py`` (a complete small plugin) into your package.
2. Subclass :class:`p2ptools.plugin.ModelPlugin`: ``name``, ``version`` and ``summary`` as string
   literals (``p2ptools models`` reads them without importing your code), and ``Options``: a frozen
   dataclass whose fields, with defaults and ``metadata={"help": ..., "choices": ...}``, become
   command-line options (``p2ptools train --model NAME --help``).
3. ``train(options, request)`` writes a run directory with ``config.json`` (keys ``plugin``,
   ``plugin_version``, ``options``, ``data``) and safetensors weights; ``load(run_dir, options)``
   returns a :class:`p2ptools.plugin.TrainedModel` whose ``translate(images)`` maps uint8 images to
   uint8 images. ``import_checkpoint`` is optional.
4. Register ``[project.entry-points."p2ptools.models"] yourname = "yourpkg.module:YourPlugin"`` and
   install; the registry smoke test then trains and translates it on tiny data.
"""
__version__ = "0.1.0"
