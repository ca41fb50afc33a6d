"""One image under two sentences (sentence_pairs) and the prior-peak check on a split (prior_peaks), on a
small generated dataset, with stand-in models whose priors are known: an oracle that puts its peak on the
object its sentence names, and a prior that ignores the sentence."""

import pytest
import torch
from torch import nn

from refseg_core.data.dataset import RefSegDataset
from refseg_core.data.refer import Refer
from refseg_core.data.synthetic import generate
from refseg_core.prior_peaks import centre_in_target, prior_peak_rates
from refseg_core.sentence_pairs import first_sentence_items, partners, same_image_pairs
from refseg_core.text import WordVocab

SIZE = 96


@pytest.fixture(scope="module")
def refer(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, seed=5, num_images=40, image_size=SIZE)
    return Refer(root, "refcoco", "unc")


def test_partners_name_other_objects_of_the_same_image(refer):
    items = first_sentence_items(refer, "val")
    found = partners(refer, "val")
    assert found, "the generated val split has images with two refs"
    for i, j in found.items():
        (ra, sa), (rb, sb) = items[i], items[j]
        assert ra["image_id"] == rb["image_id"] and ra["ann_id"] != rb["ann_id"]
        assert refer.sentence_text(sa) != refer.sentence_text(sb)
    pairs = same_image_pairs(refer, "val", 3)
    assert 1 <= len(pairs) <= 3
    assert len({items[i][0]["image_id"] for i, _ in pairs}) == len(pairs)  # one pair per image


class StandIn(nn.Module):
    """A model with LTS's ``forward_features`` keys whose prior is given by ``prior_of(tokens row)``."""

    def __init__(self, tokenizer, prior_of):
        super().__init__()
        self.tokenizer, self.prior_of = tokenizer, prior_of
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward_features(self, images, tokens, return_attention=True):
        grid = images.shape[-1] // 8
        prior = torch.stack([self.prior_of(tuple(t.tolist()), grid) for t in tokens])
        return {"prior_logits": prior[:, None]}


def _setup(refer):
    texts = [refer.sentence_text(s) for _, s in refer.sentences("val")]
    vocab = WordVocab.from_expressions(texts)
    ds = RefSegDataset(refer, "val", vocab, SIZE, train=False, first_sentence_only=True)
    masks = {tuple(it["tokens"].tolist()): it["mask"][0] for it in (ds[i] for i in range(len(ds)))}
    return vocab, masks


def _at_centres(mask, grid):
    cell = mask.shape[-1] // grid
    return mask[cell // 2 :: cell, cell // 2 :: cell][:grid, :grid]


def test_an_oracle_prior_hits_its_own_object(refer):
    vocab, masks = _setup(refer)
    oracle = StandIn(vocab, lambda t, g: _at_centres(masks[t], g))
    r = prior_peak_rates(oracle, refer, "val", SIZE, batch_size=7)
    assert r["n"] == len(partners(refer, "val"))
    assert r["own"] == 1.0  # every object covers the centre of some cell at this size
    assert r["other_sentence"] < r["own"]  # pointing at the other object misses this one
    assert 0 < r["chance"] < r["own"]
    # The centre reference: the share of these objects that cover the input's centre pixel.
    items = first_sentence_items(refer, "val")
    ds = RefSegDataset(refer, "val", vocab, SIZE, train=False, first_sentence_only=True)
    covers = [bool(ds[i]["mask"][0, SIZE // 2, SIZE // 2] > 0.5) for i in partners(refer, "val")]
    assert len(items) >= len(covers) and r["centre"] == pytest.approx(sum(covers) / len(covers))


def test_a_prior_that_ignores_the_sentence_scores_the_same_for_both(refer):
    vocab, _ = _setup(refer)
    blind = StandIn(vocab, lambda t, g: torch.arange(g * g, dtype=torch.float).reshape(g, g))
    r = prior_peak_rates(blind, refer, "val", SIZE)
    assert r["own"] == r["other_sentence"]  # always the last cell, whatever the words


def test_a_model_without_prior_is_a_clear_error(refer):
    vocab, _ = _setup(refer)
    none = StandIn(vocab, lambda t, g: torch.zeros(g, g))
    none.forward_features = lambda images, tokens, return_attention=True: {"prior_logits": None}
    with pytest.raises(ValueError, match="no position prior"):
        prior_peak_rates(none, refer, "val", SIZE)


def test_centre_in_target_reads_the_centre_pixel():
    masks = torch.zeros(3, 1, 8, 10)
    masks[0, 0, 4, 5] = 1  # exactly the centre pixel (8 // 2, 10 // 2)
    masks[1, 0, :4] = 1  # the top half, which stops just above it
    masks[2, 0, 3:6, 4:7] = 0.6
    assert centre_in_target(masks).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="masks"):
        centre_in_target(torch.zeros(8, 10))
