"""Numbers about judges: agreement (kappa, Fleiss, Krippendorff), biases, baselines, length control,
human-likeness, Bradley-Terry strengths, and the per-setting score row.

Modules:
- `agreement`: agreement between judges and humans, and among raters: Cohen's / Fleiss' kappa, Krippendorff's alpha.
- `baselines`: trivial judges a real one must beat: the longer answer, the first position, the answer with a list.
- `bias`: judge biases that agreement numbers hide: answer position, answer length, and the judge's own model.
- `bradley_terry`: bradley-Terry strengths from pairwise outcomes: P(i beats j) = s_i / (s_i + s_j).
- `human_likeness`: is the judge as close to each annotator as the annotators are to each other? (Judge's Verdict)
- `length_control`: agreement and win rates with answer length controlled (AlpacaEval's length-controlled win rate).
- `scoring`: one agreement entry per judge setting: kappa against humans, bias, jurors, cost and latency.
"""

__all__ = ["agreement", "baselines", "bias", "bradley_terry", "human_likeness", "length_control", "scoring"]
