"""REFER / G-REFER loading: formats, masks, image modes, and every kind of bad input."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from _refer_fixtures import make_grefer, make_refer, write_json, write_pickle
from PIL import Image

from refseg_core.data.refer import AnnotationError, Refer, safe_load_pickle


@pytest.fixture()
def fx(tmp_path):
    return make_refer(tmp_path)


@pytest.fixture()
def refer(fx):
    return Refer(fx.root, "refcoco", "unc")


def ref_by_id(refer, ref_id):
    return next(r for r in refer.refs if r["ref_id"] == ref_id)


# -- loading and indexing ------------------------------------------------------------------------


def test_loads_refs_instances_and_splits(refer, fx):
    assert len(refer.refs) == 6
    assert refer.splits() == ["train", "val", "testA"]
    assert [r["ref_id"] for r in refer.split_refs("train")] == [1, 2, 4]
    assert len(refer.split_refs(None)) == 6
    assert set(refer.images) == {1, 2} and set(refer.anns) == {101, 102, 103, 104, 201}
    assert refer.cats == {1: "person", 2: "dog"}
    assert refer.image_dir == fx.image_dir
    assert not refer.generalized


def test_sentences_and_stats(refer):
    pairs = refer.sentences("train")
    assert [s["sent_id"] for _, s in pairs] == [10, 11, 20, 21, 22, 40]
    assert all(s["sent_id"] in r["sent_ids"] for r, s in pairs)
    st = refer.stats("val")
    # val: ref 3 ("crowd top right", "people"), ref 5 ("tall thing"): 3 sentences, 6 words, 2 images
    assert st["refs"] == 2 and st["sentences"] == 3 and st["images"] == 2
    assert st["mean_words"] == pytest.approx(6 / 3)
    assert st["no_target_refs"] == 0


def test_unknown_split_lists_present_ones(refer):
    with pytest.raises(ValueError, match=r"'testB'.*\['train', 'val', 'testA'\]"):
        refer.split_refs("testB")


@pytest.mark.parametrize(
    "dataset,split_by", [("refcoco+", "google"), ("refcocog", "unc"), ("refclef", "unc")]
)
def test_invalid_dataset_split_by(tmp_path, dataset, split_by):
    with pytest.raises(ValueError, match=r"refcocog \(umd/google\)"):
        Refer(tmp_path, dataset, split_by)


def test_refcocog_umd_path(tmp_path):
    fx = make_refer(tmp_path, "refcocog", "umd")
    r = Refer(fx.root, "refcocog", "umd")
    assert r.refs_file.name == "refs(umd).p" and len(r.refs) == 6


# -- masks ---------------------------------------------------------------------------------------


def test_polygon_parts_are_merged(refer, fx):
    m = refer.ref_mask(ref_by_id(refer, 1))
    assert m.dtype == np.uint8 and m.shape == (20, 30)
    np.testing.assert_array_equal(m, fx.masks[101])  # both rectangles, values in {0, 1}
    assert m[3, 3] == 1 and m[12, 20] == 1 and m.sum() == 36 + 60


def test_compressed_rle(refer, fx):
    np.testing.assert_array_equal(refer.ref_mask(ref_by_id(refer, 2)), fx.masks[102])


def test_rle_wrapped_in_a_list_as_official_refer_expects(fx):
    # The official REFER getMask indexes segmentation[0], so RLE in REFER files is a list of dicts.
    path = fx.root / "refcoco" / "instances.json"
    inst = json.loads(path.read_text())
    for ann in inst["annotations"]:
        if ann["id"] == 102:
            ann["segmentation"] = [ann["segmentation"]]
    write_json(path, inst)
    r = Refer(fx.root, "refcoco", "unc")
    np.testing.assert_array_equal(r.ref_mask(ref_by_id(r, 2)), fx.masks[102])


def test_uncompressed_rle(refer, fx):
    m = refer.ref_mask(ref_by_id(refer, 3))
    np.testing.assert_array_equal(m, fx.masks[103])
    assert m[4, 20] == 0 and m[4, 21] == 1


def test_zero_area_mask_kept_and_listed(refer):
    ref4 = ref_by_id(refer, 4)
    assert refer.ref_mask(ref4).sum() == 0 and not refer.is_no_target(ref4)
    assert [r["ref_id"] for r in refer.empty_mask_refs("train")] == [4]
    assert refer.empty_mask_refs("val") == []
    assert refer.mask_area(ref_by_id(refer, 1)) == 96


def test_image_id_absent_from_instances(tmp_path):
    fx = make_refer(tmp_path)
    fx.refs[0]["image_id"] = 999
    write_pickle(fx.folder / "refs(unc).p", fx.refs)
    refer = Refer(fx.root)
    with pytest.raises(AnnotationError, match=r"ref 1: image id 999 is not in .*instances.json"):
        refer.ref_mask(refer.refs[0])
    with pytest.raises(AnnotationError, match="ref 1"):
        refer.load_image(refer.refs[0])


def test_annotation_id_absent_from_instances(tmp_path):
    fx = make_refer(tmp_path)
    fx.refs[0]["ann_id"] = 555
    write_pickle(fx.folder / "refs(unc).p", fx.refs)
    with pytest.raises(AnnotationError, match="ref 1: annotation id 555"):
        Refer(fx.root).ref_mask(fx.refs[0])


# -- G-REFER -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_pickle", [False, True])
def test_grefer_multi_target_union_and_no_target(tmp_path, as_pickle):
    fx = make_grefer(tmp_path, as_pickle=as_pickle)
    g = Refer(fx.root, "grefcoco", "unc")
    assert g.generalized and g.refs_file.suffix == (".p" if as_pickle else ".json")
    r1, r2, r3, r4, r5 = (ref_by_id(g, i) for i in range(1, 6))
    assert g.ann_ids(r1) == [101, 102] and g.ann_ids(r2) == [] and g.ann_ids(r3) == [201]
    np.testing.assert_array_equal(g.ref_mask(r1), fx.masks[101] | fx.masks[102])
    for no_target, hw in ((r2, (20, 30)), (r4, (16, 12))):  # [-1] and a bare -1
        assert g.is_no_target(no_target)
        m = g.ref_mask(no_target)
        assert m.shape == hw and m.dtype == np.uint8 and m.sum() == 0
    # crowd annotation 103 is left out of a multi-target union, as in the gRefCOCO loader
    np.testing.assert_array_equal(g.ref_mask(r5), fx.masks[101])
    assert g.empty_mask_refs(None) == []  # no-target refs are not degenerate
    assert g.stats("val")["no_target_refs"] == 1


def test_grefer_missing_file_names_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"grefs\(unc\)\.json.*gRefCOCO"):
        Refer(tmp_path, "grefcoco", "unc")


# -- bad files -----------------------------------------------------------------------------------


def test_missing_refs_file_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"refcoco\+/refs\(unc\)\.p.*REFER release"):
        Refer(tmp_path, "refcoco+", "unc")


def test_corrupt_json(tmp_path):
    fx = make_refer(tmp_path)
    (fx.folder / "instances.json").write_text('{"images": [')
    with pytest.raises(AnnotationError, match=r"instances\.json: corrupt JSON"):
        Refer(fx.root)


def test_corrupt_pickle(tmp_path):
    fx = make_refer(tmp_path)
    data = (fx.folder / "refs(unc).p").read_bytes()
    (fx.folder / "refs(unc).p").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(AnnotationError, match=r"refs\(unc\)\.p: corrupt or truncated pickle"):
        Refer(fx.root)
    (fx.folder / "refs(unc).p").write_bytes(b"this is not a pickle")
    with pytest.raises(AnnotationError, match="corrupt"):
        Refer(fx.root)


class _Planted:
    """Unpickling this calls os.system: a safe loader must refuse it before anything runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_callable_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "x": _Planted(marker)}], protocol=2))
    with pytest.raises(AnnotationError, match=r"evil\.p: refused to load global '(posix|os|nt)\.system'"):
        safe_load_pickle(path)
    assert not marker.exists()
    # sanity of the attack itself: the ordinary unpickler would have run it
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_pickle_with_class_is_refused(tmp_path):
    fx = make_refer(tmp_path)
    write_pickle(fx.folder / "refs(unc).p", [{"ref_id": 1, "when": __import__("datetime").date(2020, 1, 1)}])
    with pytest.raises(AnnotationError, match=r"refs\(unc\)\.p: refused .*'datetime\.date'"):
        Refer(fx.root)


def test_plain_pickle_round_trips(tmp_path):
    obj = [{"a": 1, "b": [1.5, None, True], "c": ("x", 2**70)}, {"ü": "é"}]
    write_pickle(tmp_path / "ok.p", obj)
    assert safe_load_pickle(tmp_path / "ok.p") == obj
    (tmp_path / "ok4.p").write_bytes(pickle.dumps([b"raw", frozenset()][:1], protocol=4))
    assert safe_load_pickle(tmp_path / "ok4.p") == [b"raw"]


def test_python2_str_pickle_decodes_as_utf8(tmp_path):
    # What Python 2 wrote for ['caf\xc3\xa9'] (a byte string, SHORT_BINSTRING) at protocol 2.
    (tmp_path / "py2.p").write_bytes(b"\x80\x02]q\x00U\x05caf\xc3\xa9q\x01a.")
    assert safe_load_pickle(tmp_path / "py2.p") == ["caf\u00e9"]


def test_malformed_ref_names_it(tmp_path):
    fx = make_refer(tmp_path)
    del fx.refs[1]["sentences"]
    write_pickle(fx.folder / "refs(unc).p", fx.refs)
    with pytest.raises(AnnotationError, match=r"ref 2 lacks \['sentences'\]"):
        Refer(fx.root)


def test_instances_without_images_key(tmp_path):
    fx = make_refer(tmp_path)
    write_json(fx.folder / "instances.json", {"annotations": []})
    with pytest.raises(AnnotationError, match="instances.json.*'images'"):
        Refer(fx.root)


# -- images --------------------------------------------------------------------------------------


def test_rgb_image_loads_exactly(refer, fx):
    img = refer.load_image(ref_by_id(refer, 1))
    assert img.mode == "RGB" and img.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(img), fx.images[1])
    assert refer.image_path(ref_by_id(refer, 1)) == fx.image_file(1)  # not the ref's own file_name


def test_missing_image_names_path_and_ref(refer, fx):
    fx.image_file(2).unlink()
    with pytest.raises(
        FileNotFoundError, match=r"COCO_train2014_000000000002\.png not found \(image of ref 5\)"
    ):
        refer.load_image(ref_by_id(refer, 5))


@pytest.mark.parametrize("payload", [b"", b"not an image at all", None])
def test_corrupt_image_names_file_and_ref(refer, fx, payload):
    path = fx.image_file(2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if payload is None else payload)
    with pytest.raises(AnnotationError, match=r"000000000002\.png: unreadable image for ref 6"):
        refer.load_image(ref_by_id(refer, 6))


def test_image_size_mismatch(refer, fx):
    Image.new("RGB", (5, 5)).save(fx.image_file(2))
    with pytest.raises(AnnotationError, match=r"image is 5x5 .* says 12x16 for ref 5"):
        refer.load_image(ref_by_id(refer, 5))


def _save_and_load(refer, fx, img: Image.Image, fmt: str = "PNG") -> np.ndarray:
    path = fx.image_file(2)
    img.save(path, format=fmt)
    out = refer.load_image(ref_by_id(refer, 5))
    assert out.mode == "RGB" and out.size == (12, 16)
    a = np.asarray(out)
    assert a.dtype == np.uint8 and a.shape == (16, 12, 3)
    return a


def test_grayscale_image(refer, fx):
    g = np.arange(16 * 12, dtype=np.uint8).reshape(16, 12)
    a = _save_and_load(refer, fx, Image.fromarray(g, "L"))
    np.testing.assert_array_equal(a, np.repeat(g[..., None], 3, axis=2))


def test_rgba_composited_on_clip_mean(refer, fx):
    rgba = np.zeros((16, 12, 4), np.uint8)
    rgba[..., :3] = (200, 10, 50)
    rgba[:8, :, 3] = 255  # top half opaque, bottom half transparent
    rgba[8:, :6, 3] = 0
    rgba[8:, 6:, 3] = 128
    a = _save_and_load(refer, fx, Image.fromarray(rgba, "RGBA"))
    assert (a[:8] == (200, 10, 50)).all()
    assert (a[8:, :6] == (123, 117, 104)).all()
    half = np.round((np.array([200, 10, 50]) * 128 + np.array([123, 117, 104]) * 127) / 255)
    assert np.abs(a[8:, 6:].astype(int) - half).max() <= 1


def test_la_and_transparent_palette(refer, fx):
    la = np.zeros((16, 12, 2), np.uint8)
    la[..., 0], la[:, :6, 1] = 90, 255
    a = _save_and_load(refer, fx, Image.fromarray(la, "LA"))
    assert (a[:, :6] == 90).all() and (a[:, 6:] == (123, 117, 104)).all()
    p = Image.new("P", (12, 16), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.paste(0, (0, 0, 12, 4))
    p.info["transparency"] = 0
    a = _save_and_load(refer, fx, p)
    assert (a[:4] == (123, 117, 104)).all() and (a[4:] == (10, 200, 30)).all()


def test_cmyk_image(refer, fx):
    cmyk = np.zeros((16, 12, 4), np.uint8)
    cmyk[:8, :, 0] = 255  # pure cyan -> (0, 255, 255)
    cmyk[8:, :, 3] = 255  # pure black -> (0, 0, 0)
    a = _save_and_load(refer, fx, Image.fromarray(cmyk, "CMYK"), fmt="TIFF")
    assert (a[:8] == (0, 255, 255)).all() and (a[8:] == 0).all()


def test_16bit_image_scaled_by_dtype_max(refer, fx):
    # A dark 16-bit image (max 4112): scaling by the image's own max would make its brightest pixel 255.
    v = np.array([[0, 257, 2056, 4112]], np.uint16).repeat(16, 0).repeat(3, 1)
    a = _save_and_load(refer, fx, Image.fromarray(v))
    np.testing.assert_array_equal(a[0, ::3, 0], [0, 1, 8, 16])  # v * 255 / 65535, rounded
    assert (a[..., 0] == a[..., 2]).all() and a.max() == 16


def test_32bit_int_and_float_images(refer, fx):
    v = np.array([[0, 257, 65535, 70000]], np.int32).repeat(16, 0).repeat(3, 1)
    a = _save_and_load(refer, fx, Image.fromarray(v, "I"), fmt="TIFF")
    assert list(a[0, ::3, 1]) == [0, 1, 255, 255]
    f = np.array([[-3.0, 0.4, 127.6, 300.0]], np.float32).repeat(16, 0).repeat(3, 1)
    a = _save_and_load(refer, fx, Image.fromarray(f, "F"), fmt="TIFF")
    assert list(a[0, ::3, 0]) == [0, 0, 128, 255]


def test_refs_file_is_a_json_dict_not_list(tmp_path):
    fx = make_grefer(tmp_path)
    (fx.folder / "grefs(unc).json").write_text(json.dumps({"refs": []}))
    with pytest.raises(AnnotationError, match="expected a list of refs"):
        Refer(fx.root, "grefcoco")


def test_grefer_reads_the_pickle_when_both_files_exist(tmp_path):
    """G_REFER (gRefCOCO ``grefer.py``) opens ``grefs(unc).p`` when it exists and the JSON otherwise."""
    fx = make_grefer(tmp_path)  # writes grefs(unc).json
    only_in_pickle = [dict(fx.refs[2], sentences=[dict(fx.refs[2]["sentences"][0], sent="from the pickle")])]
    write_pickle(fx.folder / "grefs(unc).p", only_in_pickle)
    g = Refer(fx.root, "grefcoco", "unc")
    assert g.refs_file.name == "grefs(unc).p" and len(g.refs) == 1
    assert g.refs[0]["sentences"][0]["sent"] == "from the pickle"
    (fx.folder / "grefs(unc).p").unlink()
    assert len(Refer(fx.root, "grefcoco", "unc").refs) == len(fx.refs)


def test_exif_orientation_is_ignored_so_pixels_stay_in_the_annotation_frame(refer, fx):
    """Kept on purpose (issue 15 item 8): an orientation tag (6 = rotate 90 degrees) is not applied; the
    image stays W x H as instances.json says, pixel for pixel as stored. Pins the documented behaviour."""
    arr = np.arange(16 * 12 * 3, dtype=np.uint8).reshape(16, 12, 3)
    img = Image.fromarray(arr, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(fx.image_file(2), format="PNG", exif=exif.tobytes())
    with Image.open(fx.image_file(2)) as check:
        assert check.getexif().get(0x0112) == 6  # the tag really is in the file
    np.testing.assert_array_equal(np.asarray(refer.load_image(ref_by_id(refer, 5))), arr)
