"""Which cue a referring expression uses, read from its words (book chapters 1 and 6).

A rough, transparent rule, not a parser: a *relation* word ("above", "next to", "touching", "of" ...)
makes it a relation expression; else a *location* word ("left", "top", "middle" ...) a location
expression; else it names attributes only (colour, size, category). The word lists cover the synthetic
templates (``refseg_core.data.synthetic_lexicon``) and the common RefCOCO phrasings.
"""

from __future__ import annotations

from refseg_core.words import split_words

KINDS = ("attribute", "location", "relation")
RELATION_WORDS = frozenset(
    "above below under beneath over beside next near nearest closest by touching touches overlapping behind "
    "between of than".split()
)
LOCATION_WORDS = frozenset(
    "left right top bottom middle center centre leftmost rightmost upper lower highest lowest corner far".split()
)


def expression_kind(text: str) -> str:
    """``"relation"``, ``"location"`` or ``"attribute"`` for one expression (see the module docstring)."""
    words = set(split_words(text))
    if words & RELATION_WORDS:
        return "relation"
    if words & LOCATION_WORDS:
        return "location"
    return "attribute"
