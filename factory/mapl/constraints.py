"""Verifiable constraints (IFEval style): each kind's instruction text, code checker and proposer.

Every constraint is a frozen pydantic model whose field names are IFEval's kwargs names, so
`describe()` round-trips through `factory.mapl.loading.from_dict` and IFEval rows map onto it through
`from_ifeval`. A kind's `propose` measures a response (counts its words, finds its keywords, ...) and
returns candidates on both sides of the measurement; `factory.mapl.proposals` lets the checker decide
which side each one is on, so a proposed constraint is never kept on the proposer's word alone.

    >>> NumberWords(relation="at most", num_words=5).check("a short reply.")
    True
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from factory.mapl._text import (
    END_PHRASES,
    RARE_WORDS,
    content_words,
    count_bullets,
    count_capital_words,
    count_highlights,
    count_placeholders,
    count_sections,
    count_sentences,
    count_word,
    count_words,
    looks_english,
    split_paragraphs,
)

Relation = Literal["at least", "at most", "less than"]


class ConstraintError(ValueError):
    """A constraint dict or IFEval id that cannot be turned into a checkable constraint."""


def _compare(value: int, relation: Relation, n: int) -> bool:
    if relation == "at least":
        return value >= n
    if relation == "at most":
        return value <= n
    return value < n


def _thresholds(count: int, rng: random.Random) -> list[tuple[Relation, int]]:
    """(relation, N) pairs on both sides of a measured count; N is always >= 1."""
    spread = max(2, count // 2)
    out: list[tuple[Relation, int]] = [("at least", rng.randint(count + 1, count + spread))]
    out.append(("less than", rng.randint(count + 1, count + spread)))
    out.append(("at most", rng.randint(max(1, count), count + spread)))
    if count >= 1:
        out.append(("at least", rng.randint(max(1, (count + 1) // 2), count)))
        out.append(("less than", rng.randint(max(1, count // 2), count)))
    if count >= 2:
        out.append(("at most", rng.randint(max(1, count // 2), count - 1)))
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _quoted(words: Sequence[str]) -> str:
    return ", ".join(f'"{w}"' for w in words)


# --- the constraint kinds -----------------------------------------------------------------------


class Constraint(BaseModel):
    """One verifiable instruction: `instruction()` is appended to a prompt, `check()` verifies it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str] = ""
    # Kinds in one group overlap or contradict each other, so a prompt never gets two of them.
    group: ClassVar[str] = ""

    def instruction(self) -> str:
        """The natural-language instruction, worded as IFEval words it."""
        raise NotImplementedError

    def check(self, response: str) -> bool:
        """True when `response` follows the instruction."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain-data form `{"kind": ..., **params}`; `from_dict` reads it back."""
        return {"kind": self.kind, **self.model_dump(mode="json")}

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        """Candidates measured from `response`, some it satisfies and some it violates (unchecked)."""
        return [cls()]


class NumberWords(Constraint):
    kind: ClassVar[str] = "length_constraints:number_words"
    group: ClassVar[str] = "words"
    relation: Relation
    num_words: int = Field(ge=1)

    def instruction(self) -> str:
        return f"Answer with {self.relation} {_n(self.num_words, 'word')}."

    def check(self, response: str) -> bool:
        return _compare(count_words(response), self.relation, self.num_words)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        return [cls(relation=r, num_words=n) for r, n in _thresholds(count_words(response), rng)]


class NumberSentences(Constraint):
    kind: ClassVar[str] = "length_constraints:number_sentences"
    group: ClassVar[str] = "sentences"
    relation: Relation
    num_sentences: int = Field(ge=1)

    def instruction(self) -> str:
        return f"Your response should contain {self.relation} {_n(self.num_sentences, 'sentence')}."

    def check(self, response: str) -> bool:
        return _compare(count_sentences(response), self.relation, self.num_sentences)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        return [cls(relation=r, num_sentences=n) for r, n in _thresholds(count_sentences(response), rng)]


class NumberParagraphs(Constraint):
    kind: ClassVar[str] = "length_constraints:number_paragraphs"
    group: ClassVar[str] = "paragraphs"
    num_paragraphs: int = Field(ge=1)

    def instruction(self) -> str:
        return (
            f"There should be exactly {self.num_paragraphs} paragraphs. "
            "Paragraphs are separated with the markdown divider: ***"
        )

    def check(self, response: str) -> bool:
        paragraphs = split_paragraphs(response)
        return paragraphs is not None and len(paragraphs) == self.num_paragraphs

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = len(split_paragraphs(response) or [])
        # "exactly 1 paragraph" reads oddly as a satisfied instruction, so only ask for 2+.
        out: list[Constraint] = [cls(num_paragraphs=found + rng.randint(1, 2) if found >= 1 else 2)]
        if found >= 2:
            out += [cls(num_paragraphs=found), cls(num_paragraphs=found - 1)]
        return out


class BulletCount(Constraint):
    kind: ClassVar[str] = "detectable_format:number_bullet_lists"
    group: ClassVar[str] = "bullets"
    num_bullets: int = Field(ge=1)

    def instruction(self) -> str:
        return (
            f"Your answer must contain exactly {_n(self.num_bullets, 'bullet point')}. "
            "Use the markdown bullet points such as:\n* This is point 1.\n* This is point 2"
        )

    def check(self, response: str) -> bool:
        return count_bullets(response) == self.num_bullets

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = count_bullets(response)
        out: list[Constraint] = [cls(num_bullets=found + rng.randint(1, 3))]
        if found >= 1:
            out.append(cls(num_bullets=found))
        if found >= 2:
            out.append(cls(num_bullets=found - 1))
        return out


class JsonFormat(Constraint):
    kind: ClassVar[str] = "detectable_format:json_format"
    group: ClassVar[str] = "layout"

    def instruction(self) -> str:
        return "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```."

    def check(self, response: str) -> bool:
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", response.strip(), flags=re.IGNORECASE)
        try:
            value = json.loads(text)
        except ValueError:
            return False
        # A bare number or string is valid JSON but not what "JSON format" asks for.
        return isinstance(value, (dict, list))


class KeywordsPresent(Constraint):
    kind: ClassVar[str] = "keywords:existence"
    keywords: tuple[str, ...] = Field(min_length=1)

    def instruction(self) -> str:
        return f"Include keywords {_quoted(self.keywords)} in the response."

    def check(self, response: str) -> bool:
        return all(count_word(response, k) > 0 for k in self.keywords)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        present = content_words(response)
        absent = [w for w in RARE_WORDS if count_word(response, w) == 0]
        out: list[Constraint] = []
        if present:
            out.append(cls(keywords=tuple(rng.sample(present, min(2, len(present))))))
        if absent:
            out.append(cls(keywords=(rng.choice(absent), *rng.sample(present, min(1, len(present))))))
        return out


class ForbiddenWords(Constraint):
    kind: ClassVar[str] = "keywords:forbidden_words"
    forbidden_words: tuple[str, ...] = Field(min_length=1)

    def instruction(self) -> str:
        return f"Do not include keywords {_quoted(self.forbidden_words)} in the response."

    def check(self, response: str) -> bool:
        return not any(count_word(response, w) > 0 for w in self.forbidden_words)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        present = content_words(response)
        absent = [w for w in RARE_WORDS if count_word(response, w) == 0]
        out: list[Constraint] = []
        if absent:
            out.append(cls(forbidden_words=tuple(rng.sample(absent, min(2, len(absent))))))
        if present:
            out.append(cls(forbidden_words=(rng.choice(present),)))
        return out


class KeywordFrequency(Constraint):
    kind: ClassVar[str] = "keywords:frequency"
    keyword: str = Field(min_length=1)
    frequency: int = Field(ge=1)
    relation: Relation

    def instruction(self) -> str:
        return (
            f"In your response, the word {self.keyword} should appear "
            f"{self.relation} {_n(self.frequency, 'time')}."
        )

    def check(self, response: str) -> bool:
        return _compare(count_word(response, self.keyword), self.relation, self.frequency)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        words = content_words(response) or list(RARE_WORDS)
        word = rng.choice(words)
        found = count_word(response, word)
        return [cls(keyword=word, relation=r, frequency=n) for r, n in _thresholds(found, rng)]


class LetterFrequency(Constraint):
    kind: ClassVar[str] = "keywords:letter_frequency"
    letter: str = Field(min_length=1, max_length=1)
    let_frequency: int = Field(ge=1)
    let_relation: Relation

    def instruction(self) -> str:
        return (
            f"In your response, the letter {self.letter} should appear "
            f"{self.let_relation} {_n(self.let_frequency, 'time')}."
        )

    def check(self, response: str) -> bool:
        return _compare(response.lower().count(self.letter.lower()), self.let_relation, self.let_frequency)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        letter = rng.choice(sorted({c for c in response.lower() if "a" <= c <= "z"}) or ["q"])
        found = response.lower().count(letter)
        return [cls(letter=letter, let_relation=r, let_frequency=n) for r, n in _thresholds(found, rng)]


class NoComma(Constraint):
    kind: ClassVar[str] = "punctuation:no_comma"

    def instruction(self) -> str:
        return "In your entire response, refrain from the use of any commas."

    def check(self, response: str) -> bool:
        return "," not in response


class AllLowercase(Constraint):
    kind: ClassVar[str] = "change_case:english_lowercase"
    group: ClassVar[str] = "case"

    def instruction(self) -> str:
        return "Your entire response should be in all lowercase letters. No capital letters are allowed."

    def check(self, response: str) -> bool:
        return response.islower()


class AllUppercase(Constraint):
    kind: ClassVar[str] = "change_case:english_capital"
    group: ClassVar[str] = "case"

    def instruction(self) -> str:
        return "Your entire response should be in all capital letters."

    def check(self, response: str) -> bool:
        return response.isupper()


class CapitalWordFrequency(Constraint):
    kind: ClassVar[str] = "change_case:capital_word_frequency"
    group: ClassVar[str] = "case"
    capital_frequency: int = Field(ge=1)
    capital_relation: Relation

    def instruction(self) -> str:
        return (
            f"In your response, words with all capital letters should appear "
            f"{self.capital_relation} {_n(self.capital_frequency, 'time')}."
        )

    def check(self, response: str) -> bool:
        return _compare(count_capital_words(response), self.capital_relation, self.capital_frequency)

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = count_capital_words(response)
        return [cls(capital_relation=r, capital_frequency=n) for r, n in _thresholds(found, rng)]


class EndPhrase(Constraint):
    kind: ClassVar[str] = "startend:end_checker"
    group: ClassVar[str] = "end"
    end_phrase: str = Field(min_length=1)

    def instruction(self) -> str:
        return (
            f"Finish your response with this exact phrase {self.end_phrase}. "
            "No other words should follow this phrase."
        )

    def check(self, response: str) -> bool:
        # IFEval compares case-insensitively after trimming whitespace; we keep its rule.
        return response.strip().lower().endswith(self.end_phrase.strip().lower())

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        text = response.strip()
        tokens = list(re.finditer(r"\S+", text))
        out: list[Constraint] = [cls(end_phrase=rng.choice(END_PHRASES))]
        if len(tokens) >= 2:
            tail = text[tokens[-rng.randint(2, min(4, len(tokens)))].start() :]
            if "\n" not in tail and len(tail) <= 80:
                out.append(cls(end_phrase=tail))
        return out


class Quotation(Constraint):
    kind: ClassVar[str] = "startend:quotation"
    group: ClassVar[str] = "layout"

    def instruction(self) -> str:
        return "Wrap your entire response with double quotation marks."

    def check(self, response: str) -> bool:
        text = response.strip()
        return len(text) > 1 and text[0] == '"' and text[-1] == '"'


class Title(Constraint):
    kind: ClassVar[str] = "detectable_format:title"

    def instruction(self) -> str:
        return (
            "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
        )

    def check(self, response: str) -> bool:
        return any(t.strip() for t in re.findall(r"<<([^\n]+?)>>", response))


class HighlightedSections(Constraint):
    kind: ClassVar[str] = "detectable_format:number_highlighted_sections"
    num_highlights: int = Field(ge=1)

    def instruction(self) -> str:
        return (
            f"Highlight at least {_n(self.num_highlights, 'section')} in your answer with markdown, "
            "i.e. *highlighted section*."
        )

    def check(self, response: str) -> bool:
        return count_highlights(response) >= self.num_highlights

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = count_highlights(response)
        out: list[Constraint] = [cls(num_highlights=found + rng.randint(1, 3))]
        if found >= 1:
            out.append(cls(num_highlights=rng.randint(1, found)))
        return out


class Placeholders(Constraint):
    kind: ClassVar[str] = "detectable_content:number_placeholders"
    num_placeholders: int = Field(ge=1)

    def instruction(self) -> str:
        return (
            f"The response must contain at least {_n(self.num_placeholders, 'placeholder')} "
            "represented by square brackets, such as [address]."
        )

    def check(self, response: str) -> bool:
        return count_placeholders(response) >= self.num_placeholders

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = count_placeholders(response)
        out: list[Constraint] = [cls(num_placeholders=found + rng.randint(1, 3))]
        if found >= 1:
            out.append(cls(num_placeholders=rng.randint(1, found)))
        return out


class Postscript(Constraint):
    kind: ClassVar[str] = "detectable_content:postscript"
    group: ClassVar[str] = "end"
    postscript_marker: str = Field(default="P.S.", min_length=1)

    def instruction(self) -> str:
        return (
            "At the end of your response, please explicitly add a postscript starting with "
            f"{self.postscript_marker}"
        )

    def check(self, response: str) -> bool:
        # A line that starts with the marker; "P.P.S" and "P.S." tolerate a space after each dot.
        marker = r"\.\s?".join(re.escape(part) for part in self.postscript_marker.split("."))
        return re.search(rf"^\s*{marker}", response, flags=re.IGNORECASE | re.MULTILINE) is not None

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        return [cls(postscript_marker="P.S."), cls(postscript_marker="P.P.S")]


class Sections(Constraint):
    kind: ClassVar[str] = "detectable_format:multiple_sections"
    group: ClassVar[str] = "paragraphs"
    section_spliter: str = Field(default="SECTION", min_length=1)  # IFEval's spelling of the kwarg
    num_sections: int = Field(ge=1)

    def instruction(self) -> str:
        s = self.section_spliter
        return (
            f"Your response must have exactly {_n(self.num_sections, 'section')}. "
            f"Mark the beginning of each section with {s} X, such as:\n"
            f"{s} 1\n[content of section 1]\n{s} 2\n[content of section 2]"
        )

    def check(self, response: str) -> bool:
        return count_sections(response, self.section_spliter) == self.num_sections

    @classmethod
    def propose(cls, response: str, rng: random.Random) -> list[Constraint]:
        found = count_sections(response, "SECTION")
        out: list[Constraint] = [cls(num_sections=found + rng.randint(1, 2))]
        if found >= 1:
            out.append(cls(num_sections=found))
        return out


class ConstrainedResponse(Constraint):
    kind: ClassVar[str] = "detectable_format:constrained_response"
    group: ClassVar[str] = "layout"
    OPTIONS: ClassVar[tuple[str, ...]] = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

    def instruction(self) -> str:
        return f"Answer with one of the following options: {_quoted(self.OPTIONS)}"

    def check(self, response: str) -> bool:
        return any(option in response for option in self.OPTIONS)


class ResponseLanguage(Constraint):
    """Only English is checkable, by a heuristic rather than a language model (see `looks_english`)."""

    kind: ClassVar[str] = "language:response_language"
    language: Literal["en"] = "en"

    def instruction(self) -> str:
        return "Your ENTIRE response should be in English language, no other language is allowed."

    def check(self, response: str) -> bool:
        return looks_english(response)


KINDS: dict[str, type[Constraint]] = {
    cls.kind: cls
    for cls in (
        NumberWords,
        NumberSentences,
        NumberParagraphs,
        BulletCount,
        JsonFormat,
        KeywordsPresent,
        ForbiddenWords,
        KeywordFrequency,
        LetterFrequency,
        NoComma,
        AllLowercase,
        AllUppercase,
        CapitalWordFrequency,
        EndPhrase,
        Quotation,
        Title,
        HighlightedSections,
        Placeholders,
        Postscript,
        Sections,
        ConstrainedResponse,
        ResponseLanguage,
    )
}
"""Every constraint kind by its IFEval instruction id."""


__all__ = [
    "KINDS",
    "Constraint",
    "ConstraintError",
    "Relation",
    "count_sentences",
    "count_words",
]
