"""Judge prompt injection: the attack suite run through a judge, and the detector's catch and
false-flag rates on fixed data.

Modules:
- `attack_suite`: judge prompt injection: an attack suite, and the attack success rate before and after our defences.
- `detection`: how well the injection defences catch attacks, and how often they flag ordinary answers;
"""

__all__ = ["attack_suite", "detection"]
