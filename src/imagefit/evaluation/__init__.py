"""Evaluation: metrics, calibration, summaries and the evaluation of a run on its splits."""
