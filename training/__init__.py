"""Training, tuning, calibration and evaluation of the detector."""
