"""Judge protocols of the Fellowship of the LLMs paper (arXiv 2408.08688): prompts and parsers.

Three strategies, all built on the MT-Bench judge instruction:

* ``direct``: both answers in one prompt, ``### Answer: A``, ``B`` or ``C`` (tie);
* ``independent``: each answer scored alone, ``### Overall Score: X/10``; higher wins, equal ties;
* ``combined``: both answers in one prompt, ``### Score Assistant A: X/N`` and ``### Score Assistant B: Y/N``.

Beyond the paper, ``listwise`` ranks 2-8 answers in one call (``### Ranking: [[3]] > [[1]] > [[2]]``);
see ``_listwise.py``.

A reply that cannot be read gives ``Parsed(verdict=None, unscored_reason=...)``, never a guess; the
caller may send ``render_reprompt(...)`` once and parse again.

>>> from judges.protocols import render_pairwise, parse_combined
>>> messages = render_pairwise("combined", "What is 2+2?", "4", "5", scale=10)
>>> parse_combined("### Score Assistant A: 9/10\\n### Score Assistant B: 2/10").verdict
'A'
"""

from judges.protocols._detect import injection_markers, neutralize
from judges.protocols._listwise import (
    INCOMPLETE_RANKING,
    INVALID_RANKING,
    LISTWISE_REASONS,
    MAX_ANSWERS,
    NO_RANKING_MARKER,
    ParsedRanking,
    parse_ranking,
    render_listwise,
    render_listwise_reprompt,
)
from judges.protocols._parsers import (
    AMBIGUOUS_SCORE,
    AMBIGUOUS_VERDICT,
    EMPTY,
    INVALID_SCORE,
    INVALID_STRUCTURED,
    INVALID_VERDICT,
    MISSING_SCORE,
    NO_SCORE_MARKER,
    NO_VERDICT_MARKER,
    REFUSAL,
    SCORE_OUT_OF_RANGE,
    TRUNCATED,
    UNSCORED_REASONS,
    WRONG_SCALE,
    Parsed,
    Verdict,
    combine_single_scores,
    parse_combined,
    parse_direct,
    parse_single_score,
    verdict_from_scores,
)
from judges.protocols._prompts import (
    DEFAULT_SCALE,
    PROTOCOLS,
    SCALES,
    Answer,
    Protocol,
    Question,
    render_pairwise,
    render_reprompt,
    render_single,
)
from judges.protocols._schemas import (
    CombinedScores,
    DirectVerdict,
    SingleScore,
    schema_for,
    verdict_from_structured,
)

__all__ = [
    "AMBIGUOUS_SCORE",
    "AMBIGUOUS_VERDICT",
    "DEFAULT_SCALE",
    "EMPTY",
    "INCOMPLETE_RANKING",
    "INVALID_RANKING",
    "INVALID_SCORE",
    "INVALID_STRUCTURED",
    "INVALID_VERDICT",
    "LISTWISE_REASONS",
    "MAX_ANSWERS",
    "MISSING_SCORE",
    "NO_RANKING_MARKER",
    "NO_SCORE_MARKER",
    "NO_VERDICT_MARKER",
    "PROTOCOLS",
    "REFUSAL",
    "SCALES",
    "SCORE_OUT_OF_RANGE",
    "TRUNCATED",
    "UNSCORED_REASONS",
    "WRONG_SCALE",
    "Answer",
    "CombinedScores",
    "DirectVerdict",
    "Parsed",
    "ParsedRanking",
    "Protocol",
    "Question",
    "SingleScore",
    "Verdict",
    "combine_single_scores",
    "injection_markers",
    "neutralize",
    "parse_combined",
    "parse_direct",
    "parse_ranking",
    "parse_single_score",
    "render_listwise",
    "render_listwise_reprompt",
    "render_pairwise",
    "render_reprompt",
    "render_single",
    "schema_for",
    "verdict_from_scores",
    "verdict_from_structured",
]
