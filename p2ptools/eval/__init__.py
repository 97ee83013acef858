"""Evaluation: FCN scores, color histograms, image metrics, reports and ablation tables.

What computes scores: ``scorers`` (the scorer contract and the ``p2ptools.scorers`` entry points),
``scorer`` (FCN-8s weights and preprocessing), ``drn_scorer`` (DRN-D-105), ``miou`` (the mIoU
protocol of pix2pixHD / SPADE), ``confusion`` (the streaming
confusion matrix and its numbers), ``color`` (Lab histograms), ``metrics`` (L1, PSNR, SSIM),
``matching`` (results to ground truth), ``fidelity`` (FID, KID and LPIPS in the pass, with
:mod:`p2ptools.metrics`), ``evaluate`` (one streaming pass over a results folder), ``partial``
(the summable state, ``--shard`` and ``merge``) and ``fcn_train`` (training a scorer). What writes
reports: ``report`` (one report folder) and ``tables`` (ablation tables over runs). ``api`` is the one entry point that ties them together.
"""
