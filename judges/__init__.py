"""Judges: protocols, judge / jury / debate graphs, human sets, agreement metrics, calibration, report.

Modules:
- `verdicts`: the two verdict types, each defined once (a verdict; a verdict column's value).
"""

__all__ = ["verdicts"]
