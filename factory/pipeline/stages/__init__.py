"""The per-prompt stages of a build: generate -> judge -> pairs -> rationale -> MAPL variants.

Modules:
- `mapl_variants`: the build's MAPL stage (arXiv 2505.12845): verified prompt variants of each shard's judged pairs.
- `pairs`: preference pairs cut from one prompt's judgments.
- `per_prompt`: the build's stages.
- `strength_pairs`: pairs cut by Bradley-Terry strength gap (`judging.select: listwise` or `bradley_terry`).
"""

__all__ = ["mapl_variants", "pairs", "per_prompt", "strength_pairs"]
