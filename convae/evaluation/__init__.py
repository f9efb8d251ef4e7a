"""Evaluation: distortion and rate of a model, the RD report, classical baselines, plots."""
