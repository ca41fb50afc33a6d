"""The one word split of referring expressions, shared by LTS's word vocabulary
(:class:`refseg_core.text.WordVocab`), the synthetic generator and the expression-kind analysis, so that a
vocabulary built from data and the sentences the generator writes split the same way.

It imports neither torch nor numpy, so the rendering workers can use it cheaply.
"""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-case word split: runs of letters and digits are words, every other non-space character
    is a token of its own (``"Upper-left box." -> ["upper", "-", "left", "box", "."]``)."""
    return _WORD_RE.findall(text.lower())
