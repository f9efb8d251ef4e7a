"""Training: the loop, checkpoints, recipes, calibration and distributed launch."""
