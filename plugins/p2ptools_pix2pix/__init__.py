"""The pix2pix model plugin (entry point ``pix2pix`` in group ``p2ptools.models``).

Its own modules are the networks, losses, options, training step, model and reference import;
everything a second plugin would need too comes from the core (``p2ptools.training``).

How to add a model plugin
-------------------------
1. Copy ``_loop_template.py`` (a small GAN on the shared training loop: options, networks, losses,
   step, loaded model) into your package; ``_template.py`` is the bare contract for a model that is
   not trained by gradient steps. ``plugins/README.md`` lists what the core gives a plugin.
2. Subclass :class:`p2ptools.plugin.ModelPlugin`: ``name``, ``version`` and ``summary`` as string
   literals (``p2ptools models`` reads them without importing your code), and ``Options``: a frozen
   dataclass extending :class:`p2ptools.training.options.TrainOptions`, whose fields, with defaults
   and ``metadata={"help": ..., "choices": ..., "range": ...}``, become command-line options
   (``p2ptools train --model NAME --help``).
3. ``train(options, request)`` runs :func:`p2ptools.training.epoch_loop.run_epochs` with your step
   after :func:`p2ptools.training.session.open_session`; ``load(run_dir, options)`` returns a
   :class:`p2ptools.generator_model.GeneratorModel` (via :func:`p2ptools.generator_model.load_generator`,
   which honours ``--epoch``). ``import_checkpoint`` is optional.
4. Register ``[project.entry-points."p2ptools.models"] yourname = "yourpkg.module:YourPlugin"`` and
   install; the registry smoke test then trains and translates it on tiny data.
"""
__version__ = "0.1.0"
