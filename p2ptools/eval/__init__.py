"""Evaluation: FCN scores, color histograms, image metrics, reports and ablation tables."""
