"""``p2ptools sweep``: ablation tables as one resumable command (rows x seeds, mean ± std).

- :mod:`p2ptools.sweep.spec`: the TOML spec, validated as ``train`` and ``eval`` validate their options;
- :mod:`p2ptools.sweep.store`: the sweep directory, the stored spec, the cells' state records;
- :mod:`p2ptools.sweep.cell`: one cell (row, seed): train -> translate -> evaluate, resumable;
- :mod:`p2ptools.sweep.backends`: where cells run (local processes, Ray, Slurm through submitit);
- :mod:`p2ptools.sweep.runner`: the driver (spec -> cells -> results) and its progress lines;
- :mod:`p2ptools.sweep.results`: the table with mean ± std over seeds, ``cells.csv`` and the plots.

Importing this package imports no torch.
"""
