"""RefSegDataset and collate on tiny on-disk REFER / G-REFER fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _refer_fixtures import make_grefer, make_refer, write_pickle
from torch.utils.data import DataLoader

from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.refer import AnnotationError, Refer
from refseg_core.data.transforms import LetterboxParams, inverse_letterbox
from refseg_core.text import ClipTokenizer, WordVocab

S = 32


@pytest.fixture(scope="module")
def clip_tok():
    return ClipTokenizer(word_len=8)


@pytest.fixture()
def fx(tmp_path):
    return make_refer(tmp_path)


@pytest.fixture()
def refer(fx):
    return Refer(fx.root)


def train_set(refer, tokenizer, **kw):
    """A training set on the REFER fixture, whose zero-area ref 4 is skipped with a warning."""
    with pytest.warns(UserWarning, match="zero-area"):
        return RefSegDataset(refer, "train", tokenizer, input_size=S, **kw)


def test_train_one_item_per_ref_skipping_zero_area(refer, clip_tok):
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 refs.*1 with a zero-area mask"):
        ds = RefSegDataset(refer, "train", clip_tok, input_size=S, train=True)
    assert len(ds) == 2 and [r["ref_id"] for r, _ in ds.items] == [1, 2]


def test_eval_one_item_per_sentence(refer, clip_tok):
    ds = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False)
    assert len(ds) == 3 and [ds[i]["meta"]["sent_id"] for i in range(3)] == [30, 31, 50]
    first = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False, first_sentence_only=True)
    assert [first[i]["meta"]["sent_id"] for i in range(len(first))] == [30, 50]
    # evaluation keeps the degenerate ref: every sentence is scored
    assert len(RefSegDataset(refer, "train", clip_tok, input_size=S, train=False)) == 6


def test_max_items_truncates_deterministically(refer, clip_tok):
    ds = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False, max_items=2)
    assert len(ds) == 2 and [ds[i]["meta"]["sent_id"] for i in range(2)] == [30, 31]


def test_item_shapes_and_values(refer, fx, clip_tok):
    ds = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False)
    item = ds[2]  # ref 5 on the 16x12 image (portrait): columns letterboxed
    assert item["image"].shape == (3, S, S) and item["image"].dtype == torch.float32
    assert item["tokens"].shape == (8,) and item["tokens"].dtype == torch.long
    assert torch.equal(item["tokens"], clip_tok(["tall thing"])[0])
    assert (
        item["mask"].shape == (1, S, S) and 0 <= float(item["mask"].min()) <= float(item["mask"].max()) <= 1
    )
    meta = item["meta"]
    assert {k: meta[k] for k in ("ref_id", "sent_id", "image_id", "sentence", "no_target")} == {
        "ref_id": 5,
        "sent_id": 50,
        "image_id": 2,
        "sentence": "tall thing",
        "no_target": False,
    }
    p = LetterboxParams.from_dict(meta["letterbox"])
    assert (p.orig_h, p.orig_w, p.new_h, p.new_w, p.left) == (16, 12, 32, 24, 4)
    assert item["image"][:, :, :4].abs().max() < 1e-6  # CLIP-mean border normalises to 0
    np.testing.assert_array_equal(meta["orig_mask"], fx.masks[201])
    assert meta["orig_mask"].dtype == np.uint8
    # the letterboxed target maps back onto the original one
    back = inverse_letterbox(item["mask"][0], p) > 0.5
    np.testing.assert_array_equal(back.numpy(), fx.masks[201].astype(bool))


def test_train_items_have_no_orig_mask(refer, clip_tok):
    ds = train_set(refer, clip_tok)
    assert "orig_mask" not in ds[0]["meta"] and ds[0]["mask"].sum() > 0


def test_sentence_draw_is_reproducible_per_epoch(refer, clip_tok):
    def draws(ds, epochs, order):
        out = {}
        for e in epochs:
            ds.set_epoch(e)
            for i in order:
                out[(e, i)] = ds[i]["meta"]["sent_id"]
        return out

    a, b, c = (train_set(refer, clip_tok, seed=s) for s in (3, 3, 4))
    da = draws(a, range(12), [0, 1])
    assert da == draws(b, reversed(range(12)), [1, 0])  # independent of access order
    assert {v for (e, i), v in da.items() if i == 1} == {20, 21, 22}  # ref 2's sentences all drawn
    assert da != draws(c, range(12), [0, 1])  # the seed matters


def test_empty_sentence_is_tokenised_as_the_official_clip_tokenizer_does(fx, clip_tok):
    """Official CLIP ``tokenize``: ``[SOT] + bpe("") + [EOT]`` with no BPE tokens for an empty or
    whitespace-only text, so the row is ``[SOT, EOT, 0, ...]``; the dataset counts such sentences."""
    fx.refs[3]["sentences"][1]["sent"] = "   "  # ref 3 (val), sentence 31
    fx.refs[2]["sentences"][0]["sent"] = ""  # ref 4 (train), its only sentence; zero-area: skipped
    fx.refs[0]["sentences"] = [dict(s, sent="") for s in fx.refs[0]["sentences"]]  # ref 1 (train): all empty
    write_pickle(fx.folder / "refs(unc).p", fx.refs)
    with pytest.warns(UserWarning, match=r"split 'val': 1 empty or whitespace-only sentences"):
        ds = RefSegDataset(Refer(fx.root), "val", clip_tok, input_size=S, train=False)
    assert ds.empty_sentences == 1
    item = ds[1]
    assert item["meta"]["sent_id"] == 31
    want = [clip_tok.sot_id, clip_tok.eot_id] + [0] * (clip_tok.word_len - 2)
    assert item["tokens"].tolist() == want
    with pytest.warns(UserWarning, match="2 empty"):
        train = RefSegDataset(Refer(fx.root), "train", clip_tok, input_size=S, train=True)
    assert train.empty_sentences == 2  # ref 1's two sentences; ref 4 is not a training item
    for epoch in range(3):  # every draw of every training item loads
        train.set_epoch(epoch)
        assert [train[i]["tokens"].shape for i in range(len(train))]
    # the word vocabulary (LTS, no official code) gives one <unk> so the bi-GRU has a step to read
    vocab = WordVocab.from_expressions(["man on the left"], max_len=4)
    with pytest.warns(UserWarning, match="1 empty"):
        lts = RefSegDataset(Refer(fx.root), "val", vocab, input_size=S, train=False)
    assert lts[1]["tokens"].tolist() == [1, 0, 0, 0]
    # outside a dataset an empty expression is still refused (predict relies on this)
    with pytest.raises(ValueError, match="empty"):
        clip_tok(["  "])
    with pytest.raises(ValueError, match="empty"):
        vocab([""])


def test_missing_and_corrupt_image_name_ref(refer, fx, clip_tok):
    ds = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False)
    fx.image_file(2).write_bytes(b"garbage")
    with pytest.raises(AnnotationError, match=r"000000000002\.png: unreadable image for ref 5"):
        ds[2]
    fx.image_file(2).unlink()
    with pytest.raises(FileNotFoundError, match=r"000000000002\.png not found \(image of ref 5\)"):
        ds[2]


def test_grefer_no_target_items(tmp_path, clip_tok):
    fx = make_grefer(tmp_path)
    g = Refer(fx.root, "grefcoco")
    ds = RefSegDataset(g, "train", clip_tok, input_size=S)  # no warning: no-target refs are kept
    assert len(ds) == 2
    multi, empty = ds[0], ds[1]
    assert not multi["meta"]["no_target"] and multi["mask"].sum() > 0
    assert empty["meta"]["no_target"] and empty["mask"].sum() == 0
    ev = RefSegDataset(g, "val", clip_tok, input_size=S, train=False)
    assert [it["meta"]["no_target"] for it in (ev[i] for i in range(len(ev)))] == [False, True, False]
    assert ev[1]["meta"]["orig_mask"].shape == (16, 12) and ev[1]["meta"]["orig_mask"].sum() == 0


def test_collate_pads_tokens_and_keeps_meta(refer):
    vocab = WordVocab.from_expressions(["crowd top right", "people", "tall thing"], max_len=None)
    ds = RefSegDataset(refer, "val", vocab, input_size=S, train=False)
    items = [ds[i] for i in range(3)]
    assert [len(it["tokens"]) for it in items] == [3, 1, 2]
    batch = collate(items)
    assert batch["image"].shape == (3, 3, S, S) and batch["mask"].shape == (3, 1, S, S)
    assert batch["tokens"].shape == (3, 3)
    assert batch["tokens"][1, 1:].tolist() == [0, 0] and batch["tokens"][1, 0] == items[1]["tokens"][0]
    assert vocab.decode(batch["tokens"][0]) == "crowd top right"
    assert [m["sent_id"] for m in batch["meta"]] == [30, 31, 50]
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_dataloader_with_workers(refer, clip_tok):
    ds = RefSegDataset(refer, "val", clip_tok, input_size=S, train=False)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [2, 1]
    assert [m["sent_id"] for b in batches for m in b["meta"]] == [30, 31, 50]
    ref = collate([ds[0], ds[1]])
    assert torch.equal(batches[0]["image"], ref["image"]) and torch.equal(batches[0]["tokens"], ref["tokens"])
    assert batches[1]["meta"][0]["orig_mask"].shape == (16, 12)


def test_bad_arguments(refer, clip_tok):
    with pytest.raises(ValueError, match="input_size"):
        RefSegDataset(refer, "val", clip_tok, input_size=0)
    with pytest.raises(ValueError, match="max_items"):
        RefSegDataset(refer, "val", clip_tok, max_items=-1)
    with pytest.raises(ValueError, match="'testC'"):
        RefSegDataset(refer, "testC", clip_tok)
