"""The synthetic dataset: determinism, exact REFER / G-REFER formats, unique expressions, atomicity, CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from refseg_core.data import synthetic as syn
from refseg_core.data import synthetic_language as lang
from refseg_core.data.synthetic_lexicon import split_words, synthetic_vocabulary

N, SIZE = 16, 72


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    for flavour in ("refcoco", "refcoco+", "grefcoco"):
        syn.generate(out, flavour, seed=3, num_images=N, image_size=SIZE)
    return out


def _refs(root: Path, dataset: str) -> list[dict]:
    if dataset == "grefcoco":
        return json.loads((root / dataset / "grefs(unc).json").read_text())
    with open(root / dataset / "refs(unc).p", "rb") as fh:
        return pickle.load(fh)


def _instances(root: Path, dataset: str) -> dict:
    return json.loads((root / dataset / "instances.json").read_text())


def _ann_mask(ann: dict, img: dict) -> np.ndarray:
    """Decode an annotation the way REFER's getMask does (segmentation[0] decides polygon vs RLE)."""
    seg = ann["segmentation"]
    rle = mask_utils.frPyObjects(seg, img["height"], img["width"]) if isinstance(seg[0], list) else seg
    return mask_utils.decode(rle).sum(axis=2) > 0


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_deterministic_and_independent_of_workers(tmp_path):
    a = syn.generate(tmp_path / "a", "grefcoco", seed=5, num_images=8, image_size=64)
    b = syn.generate(tmp_path / "b", "grefcoco", seed=5, num_images=8, image_size=64, num_workers=2)
    syn.generate(tmp_path / "c", "grefcoco", seed=6, num_images=8, image_size=64)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 8 + 3 and fa == fb
    assert a["counts"] == b["counts"]
    assert fa["grefcoco/grefs(unc).json"] != fc["grefcoco/grefs(unc).json"]


def test_refer_format(root):
    for dataset in ("refcoco", "refcoco+"):
        refs, inst = _refs(root, dataset), _instances(root, dataset)
        assert isinstance(refs, list) and refs and all(type(r) is dict for r in refs)
        assert set(inst) == {"images", "annotations", "categories"}
        imgs = {i["id"]: i for i in inst["images"]}
        anns = {a["id"]: a for a in inst["annotations"]}
        assert len(imgs) == N and {c["name"] for c in inst["categories"]} == set(syn.scenes.SHAPES)
        sent_ids = []
        for r in refs:
            assert set(r) == {
                "ref_id",
                "ann_id",
                "category_id",
                "image_id",
                "file_name",
                "split",
                "sent_ids",
                "sentences",
            }
            assert type(r["ann_id"]) is int and type(r["category_id"]) is int
            assert anns[r["ann_id"]]["image_id"] == r["image_id"]
            assert anns[r["ann_id"]]["category_id"] == r["category_id"]
            assert r["file_name"] == imgs[r["image_id"]]["file_name"][:-4] + f"_{r['ann_id']}.jpg"
            assert r["split"] in ("train", "val", "testA", "testB")
            assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] and 1 <= len(r["sentences"]) <= 3
            for s in r["sentences"]:
                assert set(s) == {"raw", "sent", "sent_id", "tokens"}
                assert s["sent"] == s["raw"].lower().rstrip(".") and s["tokens"] == s["sent"].split()
            sent_ids += r["sent_ids"]
        assert len(set(sent_ids)) == len(sent_ids)
        assert len({r["ref_id"] for r in refs}) == len(refs)


def test_instances_segmentations(root):
    """Non-crowd polygons only (as ReLA's ``grefer.py`` and lichengunc/refer ``refer.py`` read them); the written polygons decode to the areas and boxes."""
    inst = _instances(root, "refcoco")
    imgs = {i["id"]: i for i in inst["images"]}
    for a in inst["annotations"]:
        img = imgs[a["image_id"]]
        seg = a["segmentation"]
        assert isinstance(seg, list) and seg and a["iscrowd"] == 0
        assert all(isinstance(p, list) and len(p) % 2 == 0 and len(p) >= 6 for p in seg)
        m = _ann_mask(a, img)
        assert m.sum() > 0 and abs(m.sum() - a["area"]) <= 0.02 * a["area"] + 2
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(m)
        assert abs(x - xs.min()) <= 1 and abs(x + w - xs.max() - 1) <= 1 and abs(y - ys.min()) <= 1
        side = min(img["height"], img["width"])
        assert 0.10 * side <= max(w, h) <= 0.40 * side  # objects are 12-35 % of the side (+ rotation)
    sizes = {(i["width"], i["height"]) for i in inst["images"]}
    assert any(w != h for w, h in sizes) and len(sizes) > 3


def test_image_files_match_instances(root):
    from PIL import Image

    inst = _instances(root, "refcoco+")
    for img in inst["images"]:
        with Image.open(root / "images" / "train2014" / img["file_name"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (img["width"], img["height"])
    assert all(2_000_000 < i["id"] <= 3_000_000 for i in inst["images"])


def test_every_expression_denotes_exactly_its_targets():
    for flavour in ("refcoco", "refcoco+", "grefcoco"):
        kinds = set()
        for index in range(12):
            plan = syn.plan_image(3, flavour, index, SIZE)
            for ref in plan["refs"]:
                for text, form in ref["sentences"]:
                    got = lang.denote(form, plan["objs"], plan["full"], plan["w"], plan["h"])
                    assert got == frozenset(ref["targets"]), (flavour, index, text)
                    kinds.add(form["t"])
        want = {
            "refcoco": {"attr", "loc", "rel"},
            "refcoco+": {"attr", "rel"},
            "grefcoco": {"attr", "loc", "rel", "plural"},
        }[flavour]
        assert kinds == want, (flavour, kinds)


def test_plan_matches_written_sentences(root):
    refs = _refs(root, "refcoco")
    i = 0
    for index in range(N):
        for ref in syn.plan_image(3, "refcoco", index, SIZE)["refs"]:
            assert [s["sent"] for s in refs[i]["sentences"]] == [t for t, _ in ref["sentences"]]
            i += 1
    assert i == len(refs)


def test_denote_rejects_ambiguity():
    from refseg_core.data.synthetic_scenes import Obj

    a = Obj("circle", "red", "big", 20, 50, 12, 0)
    b = Obj("circle", "red", "big", 80, 50, 12, 0)
    masks = [np.zeros((100, 100), bool)] * 2
    assert lang.denote(
        {"t": "attr", "shape": "circle", "colour": "red", "size": None}, [a, b], masks, 100, 100
    ) == frozenset([0, 1])
    left = {"t": "loc", "shape": "circle", "colour": None, "size": None, "loc": "left"}
    assert lang.denote(left, [a, b], masks, 100, 100) == frozenset([0])
    b.cx = 25  # now too close to call
    assert lang.denote(left, [a, b], masks, 100, 100) is None


def test_refcoco_plus_has_no_location_words(root):
    words = {w for r in _refs(root, "refcoco+") for s in r["sentences"] for w in s["tokens"]}
    assert words and not words & lang.LOCATION_WORDS
    words_rc = {w for r in _refs(root, "refcoco") for s in r["sentences"] for w in s["tokens"]}
    assert words_rc & lang.LOCATION_WORDS  # the check above could fail


def test_grefcoco_conventions(root):
    refs, inst = _refs(root, "grefcoco"), _instances(root, "grefcoco")
    imgs = {i["id"]: i for i in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    n_multi = n_none = 0
    for r in refs:
        assert isinstance(r["ann_id"], list) and isinstance(r["category_id"], list)
        assert len(r["ann_id"]) == len(r["category_id"])
        assert type(r["no_target"]) is bool and r["no_target"] == (r["ann_id"] == [-1])
        if r["ann_id"] == [-1]:
            n_none += 1
            assert r["category_id"] == [-1]
            continue
        n_multi += len(r["ann_id"]) > 1
        assert len(set(r["ann_id"])) == len(r["ann_id"])
        union = np.zeros((imgs[r["image_id"]]["height"], imgs[r["image_id"]]["width"]), bool)
        for a, c in zip(r["ann_id"], r["category_id"]):
            assert anns[a]["image_id"] == r["image_id"] and anns[a]["category_id"] == c
            union |= _ann_mask(anns[a], imgs[r["image_id"]])
        assert union.any()
    assert n_multi > 0 and n_none > 0
    m = json.loads((root / "grefcoco" / "synthetic.json").read_text())
    assert m["counts"]["multi_target_refs"] == n_multi and m["counts"]["no_target_refs"] == n_none


def test_grefcoco_proportions():
    """Over more images the ref mix approaches the documented ~30 % multi / ~10 % no-target."""
    kinds = {"single": 0, "multi": 0, "none": 0}
    for index in range(60):
        for ref in syn.plan_image(0, "grefcoco", index, 64)["refs"]:
            n = len(ref["targets"])
            kinds["none" if n == 0 else "single" if n == 1 else "multi"] += 1
    total = sum(kinds.values())
    assert 0.04 < kinds["none"] / total < 0.2 and 0.15 < kinds["multi"] / total < 0.4, kinds


def test_expression_matters_largest_object_baseline():
    """Picking the largest object ignores the sentence and should score well below the 0.5 goal."""
    ious = []
    for index in range(40):
        plan = syn.plan_image(1, "refcoco", index, 96)
        areas = [m.sum() for m in plan["full"]]
        big = int(np.argmax(areas))
        for ref in plan["refs"]:
            ious.append(1.0 if ref["targets"] == [big] else 0.0)  # objects barely overlap
    assert 0.1 < float(np.mean(ious)) < 0.45


def test_vocabulary_covers_generated_words(root):
    vocab = synthetic_vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() and split_words(w) == [w] for w in vocab)
    for dataset in ("refcoco", "refcoco+", "grefcoco"):
        for r in _refs(root, dataset):
            for s in r["sentences"]:
                assert set(split_words(s["raw"])) - {"."} <= set(vocab), s["raw"]


def test_word_split_known_values():
    assert split_words("The big red star.") == ["the", "big", "red", "star", "."]
    assert split_words("upper-left box, 2 rings") == ["upper", "-", "left", "box", ",", "2", "rings"]
    assert split_words("A\tB  c") == ["a", "b", "c"]


def test_manifest_and_splits(root):
    m = json.loads((root / "refcoco" / "synthetic.json").read_text())
    assert (m["flavour"], m["seed"], m["num_images"], m["image_size"]) == ("refcoco", 3, N, SIZE)
    sp = m["counts"]["splits"]
    assert sum(v["images"] for v in sp.values()) == N and sp["val"]["images"] == sp["testA"]["images"] == 2
    refs = _refs(root, "refcoco")
    by_img = {}
    for r in refs:
        by_img.setdefault(r["image_id"], set()).add(r["split"])
    assert all(len(v) == 1 for v in by_img.values())  # split by image
    assert m["counts"]["refs"] == len(refs)


def test_refuses_to_overwrite_and_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "d"
    syn.generate(out, "refcoco", seed=0, num_images=4, image_size=56)
    before = _files(out)
    with pytest.raises(FileExistsError, match="overwrite"):
        syn.generate(out, "refcoco", seed=1, num_images=4, image_size=56)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(syn, "_write_annotations", boom)
    with pytest.raises(RuntimeError):
        syn.generate(out, "refcoco", seed=1, num_images=4, image_size=56, overwrite=True)
    assert _files(out) == before and sorted(p.name for p in out.iterdir()) == ["images", "refcoco"]
    with pytest.raises(RuntimeError):
        syn.generate(tmp_path / "fresh", "refcoco+", seed=1, num_images=4, image_size=56)
    assert not (tmp_path / "fresh" / "refcoco+").exists()
    assert not any(p.name.startswith(".") for p in (tmp_path / "fresh").iterdir())


def test_overwrite_replaces_and_drops_stale_images(tmp_path):
    out = tmp_path / "d"
    syn.generate(out, "refcoco", seed=0, num_images=6, image_size=56)
    syn.generate(out, "grefcoco", seed=0, num_images=4, image_size=56)
    syn.generate(out, "refcoco", seed=2, num_images=4, image_size=56, overwrite=True)
    names = sorted(p.name for p in (out / "images" / "train2014").iterdir())
    assert len(names) == 8  # 4 refcoco (stale 2 removed) + 4 grefcoco untouched
    assert json.loads((out / "refcoco" / "synthetic.json").read_text())["seed"] == 2


def test_ensure_synthetic_generates_only_when_needed(tmp_path):
    root = syn.ensure_synthetic(tmp_path, "refcoco", seed=0, num_images=4, image_size=56)
    mf = root / "refcoco" / "synthetic.json"
    t0 = mf.stat().st_mtime_ns
    assert syn.ensure_synthetic(tmp_path, "refcoco", seed=0, num_images=4, image_size=56) == root
    assert mf.stat().st_mtime_ns == t0
    # Issue 14 item 4: different data is never generated over the existing data without being asked.
    with pytest.raises(ValueError, match="4 images of size 56.*not replaced silently.*--overwrite"):
        syn.ensure_synthetic(tmp_path, "refcoco", seed=0, num_images=5, image_size=56)
    assert mf.stat().st_mtime_ns == t0 and json.loads(mf.read_text())["num_images"] == 4
    syn.ensure_synthetic(tmp_path, "refcoco", seed=0, num_images=5, image_size=56, regenerate=True)
    assert json.loads(mf.read_text())["num_images"] == 5
    (root / "images" / "train2014" / syn.image_file_name(syn.ID_BASE["refcoco"] + 5)).unlink()
    syn.ensure_synthetic(tmp_path, "refcoco", seed=0, num_images=5, image_size=56)  # the same data, restored
    assert (root / "images" / "train2014" / syn.image_file_name(syn.ID_BASE["refcoco"] + 5)).is_file()


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"flavour": "refcocog"}, "flavour"),
        ({"num_images": 2}, "num_images"),
        ({"image_size": 8}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_parameter(tmp_path, kw, name):
    with pytest.raises(ValueError, match=name):
        syn.generate(tmp_path, **kw)


def test_cli(tmp_path, capsys):
    from refseg_core.__main__ import main

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--flavour",
                "grefcoco",
                "--seed",
                "1",
                "--num-images",
                "5",
                "--image-size",
                "56",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote grefcoco" in out and "no-target" in out
    assert (tmp_path / "grefcoco" / "grefs(unc).json").is_file()
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--flavour",
                "grefcoco",
                "--seed",
                "2",
                "--num-images",
                "5",
                "--image-size",
                "56",
            ]
        )
        == 2
    )
    assert "overwrite" in capsys.readouterr().out
