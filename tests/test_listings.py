"""class_source: a class's listing keeps its head and the named methods, and says what it left out."""

import ast

import pytest

from refseg_core.listings import class_source
from refseg_core.models.gru_text import GRUTextEncoder
from refseg_core.models.lts import LTS
from refseg_core.models.lts_segment import SegmentHead


def _functions(src):
    return [n.name for n in ast.parse(src).body[0].body if isinstance(n, ast.FunctionDef)]


def test_a_class_with_only_init_and_forward_is_shown_whole():
    src = class_source(SegmentHead)
    assert _functions(src) == ["__init__", "forward"]
    assert "not shown here" not in src
    assert '"""Light-weight segmentation network' in src  # the docstring stays


def test_other_methods_are_left_out_and_named():
    src = class_source(GRUTextEncoder)
    assert _functions(src) == ["__init__", "forward"]
    assert "# not shown here: init_from_glove (in refseg_core.models.gru_text)" in src
    lts = class_source(LTS, ("__init__", "forward_features", "loss"))
    assert _functions(lts) == ["__init__", "forward_features", "loss"]  # the file's order
    assert "decoder_stride = 8" in lts  # class attributes before the first method stay
    for name in ("_check", "prior_targets", "param_groups"):
        assert name in lts.splitlines()[-1]


def test_a_method_the_class_does_not_define_is_an_error():
    with pytest.raises(ValueError, match="no method"):
        class_source(SegmentHead, ("__init__", "loss"))
