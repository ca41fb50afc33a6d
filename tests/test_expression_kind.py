"""The keyword rule that sorts expressions by cue (chapters 1 and 6)."""

import pytest

from refseg_core.data.expression_kind import KINDS, expression_kind


@pytest.mark.parametrize(
    "text, kind",
    [
        ("the small green triangle", "attribute"),
        ("a red ring", "attribute"),
        ("the leftmost star", "location"),
        ("the hexagon in the top right corner", "location"),
        ("upper left box", "location"),
        ("the circle to the left of the blue square", "relation"),
        ("the star touching the ring", "relation"),
        ("the disc closest to the big hexagon", "relation"),
        ("Man on the LEFT next to the dog", "relation"),
    ],
)
def test_expression_kind(text, kind):
    assert expression_kind(text) == kind
    assert kind in KINDS


def test_every_synthetic_template_kind_is_recognised():
    from refseg_core.data import synthetic_lexicon as sl

    for loc, templates in sl.LOC_TEMPLATES.items():
        for t in templates:
            assert expression_kind(t.format(d="square")) == "location", t
    for rel, templates in sl.REL_TEMPLATES.items():
        for t in templates:
            assert expression_kind(t.format(d="square", l="red star")) == "relation", t
    for t in sl.ATTR_TEMPLATES:
        assert expression_kind(t.format(d="big blue square")) == "attribute", t
