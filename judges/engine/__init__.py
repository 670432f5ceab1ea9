"""Judging one item: a single judge, a jury or a debate, in fixed or both orders, through the gateway.

Modules:
- `ask`: one judge conversation through the gateway: ask, parse, and re-prompt once on a parse failure.
- `debate`: lLM debate as a LangGraph graph: ChatEval's one-by-one referees, as the Fellowship paper ran it.
- `graphs`: judge, jury and debate as LangGraph graphs, compiled once per setting and run with `ainvoke`.
- `jury`: jury reducers: how the jurors' verdicts (item orientation) become the jury's one verdict.
- `order`: position handling: which order(s) a pair is shown in, and how verdicts map back to the item.
- `outcome`: what one evaluation produced: a verdict (or why there is none), scores, raw outputs and usage.
- `pairwise`: judge one pair with any judge setting (judge, jury or debate), returning one judgments-table row.
- `settings`: how a judge setting is described: one judge, a jury of judges, or a debate.
- `votes`: the one vote rule (plurality, weighted), for juries, calibrated juries and human labels.
"""

__all__ = ["ask", "debate", "graphs", "jury", "order", "outcome", "pairwise", "settings", "votes"]
