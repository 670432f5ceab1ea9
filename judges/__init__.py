"""Judges: protocols, judge / jury / debate graphs, human sets, agreement metrics, calibration, report."""
