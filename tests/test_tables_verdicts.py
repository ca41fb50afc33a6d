"""The one table formatter, the margin verdicts, the published-numbers lookup and RLE both ways."""

import math

import numpy as np
import pytest

from refseg_core import published, tables, verdicts
from refseg_core.data.rle import mask_to_rle, rle_to_mask


def test_markdown_table_formats_rows_and_refuses_ragged_ones():
    md = tables.markdown_table([{"a": 1, "b": 0.12345, "c": None}, {"a": "x|y", "b": math.nan, "c": 3}])
    lines = md.splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| 1 | 0.12 | – |" and lines[3] == "| x\\|y | – | 3 |"
    # a pipe in a header would end its column: escaped like one in a cell
    assert tables.markdown_table([[1]], headers=["max |d|"]).splitlines()[0] == "| max \\|d\\| |"
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        tables.markdown_table([[1, 2]], headers=["a", "b", "c"])


def test_metrics_table_prints_percentages():
    md = tables.metrics_table({"model": {"mIoU": 0.5, "oIoU": 0.25}}, keys=("mIoU", "oIoU", "prec@0.5"))
    assert md.splitlines()[2] == "| model | 50.00 | 25.00 | – |"


def test_verdicts_apply_the_margin_both_ways():
    assert verdicts.difference(0.50, 0.47) == 1 and verdicts.difference(0.47, 0.50) == -1
    assert verdicts.difference(0.50, 0.49) == 0  # 1 point: inside the 2-point margin
    assert "Cannot tell" in verdicts.compare(0.3214, 0.3127, "no prior", "filtering")
    assert verdicts.compare(0.461, 0.272, "CRIS", "baseline").startswith("CRIS is above baseline")
    assert "is below" in verdicts.compare(0.20, 0.30, "a", "b")


def test_best_baseline_and_versus_baseline():
    b = {"whole_image": {"mIoU": 0.1}, "largest_object": {"mIoU": 0.28}}
    assert verdicts.best_baseline(b)[0] == "largest_object"
    assert "largest object" in verdicts.versus_baseline(0.2878, b, "CRIS-tiny")
    assert "Cannot tell" in verdicts.versus_baseline(
        0.2878, b, "CRIS-tiny"
    )  # 28.78 vs 28.10 in the old chapter 4
    with pytest.raises(ValueError):
        verdicts.best_baseline({})


def test_published_lookup_and_paper_numbers():
    rows = published.lookup(method="CRIS-R50", dataset="refcoco", split="val")
    assert [r["value"] for r in rows] == [69.52] and rows[0]["metric"] == "mIoU"
    assert {r["method"] for r in published.lookup(method="CRIS*")} >= {"CRIS-R50", "CRIS-R101", "CRIS"}
    row = {"model": "cris_r50", "dataset": "refcoco", "split": "testA", "synthetic": False}
    assert [p["value"] for p in published.paper_numbers(row)] == [72.72]
    assert published.paper_numbers(dict(row, synthetic=True)) == []
    assert published.paper_numbers(dict(row, synthetic=None)) == []  # unknown data: never compared
    with pytest.raises(ValueError, match="unknown field"):
        published.lookup(methd="CRIS")


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((17, 23)) > 0.6
    rle = mask_to_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [17, 23]
    assert np.array_equal(rle_to_mask(rle), m)
    assert np.array_equal(rle_to_mask(dict(rle, counts=rle["counts"].encode())), m)


def test_list_models_names_every_builder():
    from refseg_core.models import build_model, list_models, uses_word_vocabulary

    assert list_models() == ["cris_r101", "cris_r50", "cris_tiny", "lts", "lts_tiny"]
    assert [n for n in list_models() if uses_word_vocabulary(n)] == ["lts", "lts_tiny"]
    with pytest.raises(ValueError, match="valid names: cris_r101"):
        build_model("cris_r18")
