"""Text measurements shared by the checkers and the generators (IFEval's counting rules)."""

from __future__ import annotations

import re

_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "that",
        "this",
        "these",
        "those",
        "with",
        "without",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "above",
        "below",
        "for",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "it",
        "its",
        "they",
        "them",
        "their",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "so",
        "too",
        "very",
        "can",
        "will",
        "just",
        "should",
        "would",
        "could",
        "may",
        "might",
        "must",
        "also",
        "your",
        "you",
        "yours",
        "our",
        "we",
        "us",
        "his",
        "her",
        "him",
        "she",
        "he",
        "i",
        "me",
        "my",
        "mine",
    ]
)
# Words that rarely occur in ordinary answers: the pool for "absent keyword" constraints.
RARE_WORDS = (
    "lighthouse",
    "saffron",
    "glacier",
    "quasar",
    "marmalade",
    "tapestry",
    "zeppelin",
    "origami",
    "walrus",
    "nebula",
    "cobblestone",
    "harpsichord",
    "lantern",
    "meadow",
    "turquoise",
    "avalanche",
)
END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "That is all you need!",
    "Does this make sense?",
)


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of word characters (so "don't" is two words)."""
    return len(re.findall(r"\w+", text))


def count_sentences(text: str) -> int:
    """Sentences: text pieces ending in . ! or ? followed by whitespace (a heuristic; "e.g. x" splits)."""
    pieces = re.split(r"(?<=[.!?])\s+", text.strip())
    return sum(1 for p in pieces if re.search(r"\w", p))


def split_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by the markdown divider `***`; None when an inner paragraph is empty."""
    parts = re.split(r"\s?\*\*\*\s?", text)
    kept: list[str] = []
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif 0 < i < len(parts) - 1:
            return None  # "a *** *** b" is malformed, as in IFEval
    return kept


def count_bullets(text: str) -> int:
    """Markdown bullet lines starting with `* ` or `- ` (a `*highlight*` line is not a bullet)."""
    return len(re.findall(r"^\s*[*-]\s+\S", text, flags=re.MULTILINE))


def count_highlights(text: str) -> int:
    """Non-empty `*highlighted*` or `**bold**` spans on one line (IFEval's rule)."""
    singles = [m for m in re.findall(r"\*[^\n*]*\*", text) if m.strip("*").strip()]
    doubles = [m for m in re.findall(r"\*\*[^\n*]*\*\*", text) if m.strip("*").strip()]
    return len(singles) + len(doubles)


def count_word(text: str, word: str) -> int:
    """Whole-word, case-insensitive occurrences of `word`."""
    return len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE))


def count_capital_words(text: str) -> int:
    """Words written in all capitals ("NASA", and also "I", as IFEval counts them)."""
    return sum(1 for w in re.findall(r"\w+", text) if w.isupper())


def count_sections(text: str, splitter: str) -> int:
    """Sections opened by `<splitter> <number>`; text before the first marker does not count."""
    return len(re.split(rf"\s?{re.escape(splitter)}\s?\d+\s?", text)) - 1


def content_words(text: str) -> list[str]:
    """Distinct lower-case words of 4+ letters that are not stopwords, sorted for determinism."""
    return sorted({w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)} - _STOPWORDS)


def count_placeholders(text: str) -> int:
    """`[placeholder]` spans in square brackets on one line."""
    return len(re.findall(r"\[[^\[\]\n]+\]", text))


# Words common in English and rare as words in other Latin-script languages.
_ENGLISH_FUNCTION_WORDS = frozenset(
    [
        "the",
        "and",
        "of",
        "to",
        "is",
        "are",
        "that",
        "this",
        "with",
        "for",
        "you",
        "it",
        "be",
        "have",
        "has",
        "not",
        "they",
        "we",
        "what",
        "which",
        "from",
        "at",
        "by",
        "or",
        "your",
        "their",
        "there",
        "can",
        "would",
        "should",
        "could",
        "been",
        "were",
        "on",
        "he",
        "she",
        "his",
        "her",
        "my",
        "our",
        "how",
        "why",
        "when",
        "where",
        "who",
        "if",
        "but",
        "so",
        "does",
        "all",
        "more",
        "some",
        "than",
        "then",
        "them",
        "these",
        "those",
        "into",
        "about",
        "just",
        "will",
        "one",
        "i",
    ]
)


def looks_english(text: str) -> bool:
    """Heuristic English test: >= 90% of letters are ASCII and, for texts of 20+ words, >= 8% of the
    words are common English function words. Other scripts fail it, and so does most Latin-script
    text in other languages, but not every sentence of every language: it is a heuristic."""
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(c.isascii() for c in letters) < 0.9 * len(letters):
        return False
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    return len(words) < 20 or sum(w in _ENGLISH_FUNCTION_WORDS for w in words) >= 0.08 * len(words)
