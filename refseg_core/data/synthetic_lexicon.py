"""The synthetic lexicon: the colour, shape, size and count words and the sentence templates the
generator (:mod:`refseg_core.data.synthetic_language`) realises its forms with, and
:func:`synthetic_vocabulary`, every word that lexicon can produce (LTS's default vocabulary).

It imports neither torch nor the rest of the data package, so the models and the rendering workers can
both use it; words are split by :func:`refseg_core.words.split_words`.
"""

from __future__ import annotations

from refseg_core.words import split_words

# ------------------------------------------------------------------------------- synthetic lexicon
COLOUR_NAMES = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPE_WORDS = {
    "circle": ["circle", "disc", "round shape"],
    "square": ["square", "box"],
    "triangle": ["triangle"],
    "star": ["star"],
    "hexagon": ["hexagon"],
    "ring": ["ring", "donut"],
}
PLURAL_WORDS = {
    "circle": ["circles", "discs"],
    "square": ["squares", "boxes"],
    "triangle": ["triangles"],
    "star": ["stars"],
    "hexagon": ["hexagons"],
    "ring": ["rings", "donuts"],
}
NOUNS = ["shape", "object", "thing", "one"]
SIZE_WORDS = {"big": ["big", "large"], "small": ["small", "little"]}
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}

LOC_TEMPLATES = {
    "left": ["the {d} on the left", "the leftmost {d}", "the {d} on the far left", "left {d}"],
    "right": ["the {d} on the right", "the rightmost {d}", "the {d} on the far right", "right {d}"],
    "top": ["the {d} at the top", "the top {d}", "the upper {d}", "the highest {d}"],
    "bottom": ["the {d} at the bottom", "the bottom {d}", "the lower {d}", "the lowest {d}"],
    "top left": ["the {d} in the top left corner", "the top left {d}", "upper left {d}"],
    "top right": ["the {d} in the top right corner", "the top right {d}", "upper right {d}"],
    "bottom left": ["the {d} in the bottom left corner", "the bottom left {d}", "lower left {d}"],
    "bottom right": ["the {d} in the bottom right corner", "the bottom right {d}", "lower right {d}"],
    "middle": ["the {d} in the middle", "the {d} in the center", "the middle {d}"],
}
REL_TEMPLATES = {
    "left of": ["the {d} left of the {l}", "the {d} to the left of the {l}"],
    "right of": ["the {d} right of the {l}", "the {d} to the right of the {l}"],
    "above": ["the {d} above the {l}", "the {d} over the {l}"],
    "below": ["the {d} below the {l}", "the {d} under the {l}", "the {d} beneath the {l}"],
    "near": [
        "the {d} next to the {l}",
        "the {d} near the {l}",
        "the {d} closest to the {l}",
        "{d} by the {l}",
    ],
    "touching": ["the {d} touching the {l}", "the {d} overlapping the {l}", "{d} that touches the {l}"],
}
ATTR_TEMPLATES = ["the {d}", "{d}", "a {d}", "the {d} here"]
PLURAL_TEMPLATES_ALL = ["all {d}", "all the {d}", "every {d_one}", "the {d}"]
PLURAL_TEMPLATES_N = ["the {n} {d}", "{n} {d}", "both {d}"]
NO_TARGET_TEMPLATES = ["the {d}", "{d}", "a {d}"]


def synthetic_vocabulary() -> list[str]:
    """Every lower-case word the synthetic generator can emit, sorted (split as :func:`split_words`)."""
    texts = []
    for table in (LOC_TEMPLATES, REL_TEMPLATES):
        texts += [t for v in table.values() for t in v]
    texts += ATTR_TEMPLATES + PLURAL_TEMPLATES_ALL + PLURAL_TEMPLATES_N + NO_TARGET_TEMPLATES
    texts += [w for v in SHAPE_WORDS.values() for w in v] + [w for v in PLURAL_WORDS.values() for w in v]
    texts += NOUNS + [n + "s" for n in NOUNS] + [w for v in SIZE_WORDS.values() for w in v]
    texts += list(COLOUR_NAMES) + list(COUNT_WORDS.values())
    words = set()
    for t in texts:
        for slot in ("{d}", "{l}", "{n}", "{d_one}"):
            t = t.replace(slot, " ")
        words.update(split_words(t))
    return sorted(words)
