"""``refseg_core.data.fetch``: real-data sources served by a stand-in on 127.0.0.1, fetched, converted and
verified; the refs and masks come back identical through the project's loader; every bad input is one
sentence naming the culprit and leaves nothing half-written; a rerun makes no request."""

from __future__ import annotations

import errno
import io
import json
import pickle
import socket

import numpy as np
import pytest
from _source_forms import HF_SPLITS, REFS_SCHEMA, parquet_bytes, ref_rows, refs_repo, serve, synthetic_roots
from PIL import Image
from standin_server import StandIn

from refseg_core.data import coco_images, hf_refs, layout, sources
from refseg_core.data.errors import DataError, SourceUnreachable
from refseg_core.data.fetch import fetch
from refseg_core.data.refer import Refer
from refseg_core.data.verify import check_counts, check_masks, verify, verify_folder

ALL_VAL_SPLITS = ("val", "testA", "testB")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return synthetic_roots(tmp_path_factory.mktemp("sources"))


@pytest.fixture()
def stand(roots, tmp_path, monkeypatch):
    with StandIn() as st:
        over = serve(st, roots)
        path = tmp_path / "overlay.yaml"
        import yaml

        path.write_text(yaml.safe_dump(over))
        monkeypatch.setenv("REFSEG_DATA_SOURCES", str(path))
        monkeypatch.setenv("HF_ENDPOINT", st.url)
        monkeypatch.setattr(coco_images, "BACKOFF_S", 0.0)
        st.over, st.overlay = over, path
        yield st


def get(tmp_path, dataset="refcoco", **kw):
    kw.setdefault("cache_dir", tmp_path / "hf_cache")
    return fetch(dataset, tmp_path / "data", progress=False, **kw)


def same_masks(a: Refer, b: Refer, refs) -> None:
    for r in refs:
        ra = next(x for x in a.refs if x["ref_id"] == r["ref_id"])
        assert np.array_equal(a.ref_mask(ra), b.ref_mask(r)), r["ref_id"]


# -- round trips -----------------------------------------------------------------------------------------


def test_hugging_face_parquet_gives_back_the_refs_and_masks_in_the_refer_layout(stand, roots, tmp_path):
    man = get(tmp_path, images="val,testA")
    src = Refer(roots["refcoco"], "refcoco", "unc")
    got = Refer(tmp_path / "data", "refcoco", "unc")
    assert got.refs == sorted(src.refs, key=lambda r: r["ref_id"])  # every field of every ref
    assert got.images == src.images and got.anns == src.anns
    same_masks(src, got, got.refs)
    # what the official REFER API reads: a plain pickle, and instances.json with a categories table
    refs = pickle.loads((tmp_path / "data" / "refcoco" / "refs(unc).p").read_bytes())
    inst = json.loads((tmp_path / "data" / "refcoco" / "instances.json").read_text())
    assert refs == got.refs and len(inst["categories"]) == 80 and inst["categories"][0]["name"] == "person"
    # images of val and testA, byte for byte, loaded by the loader at their recorded size
    for r in got.split_refs("val") + got.split_refs("testA"):
        name = got.images[r["image_id"]]["file_name"]
        assert (got.image_dir / name).read_bytes() == (src.image_dir / name).read_bytes()
        assert got.load_image(r).size == (
            got.images[r["image_id"]]["width"],
            got.images[r["image_id"]]["height"],
        )
    assert not any(
        (got.image_dir / got.images[r["image_id"]]["file_name"]).exists() for r in got.split_refs("testB")
    )
    # the manifest: source, resolved revision, sums, counts
    assert man["source"]["resolved_revision"] == stand.repos["jxu124/refcoco"]["sha"]
    assert set(man["source"]["downloaded"]) == {
        f"data/{s}-00000-of-00001.parquet" for s in HF_SPLITS["refcoco"]
    }
    assert set(man["files"]) == {"refs(unc).p", "instances.json"}
    assert man["counts"]["unc"]["val"] == {k: src.stats("val")[k] for k in ("refs", "images", "sentences")}
    assert man["images"]["splits"] == ["val", "testA"] and "REFSEG_DATA_SOURCES" in man["expected_from"]
    assert verify("refcoco", tmp_path / "data", progress=False).images_checked == man["images"]["count"]
    assert not list((tmp_path / "data").glob(".fetch-*"))


def test_refcocog_umd_maps_the_hub_test_split_to_test(stand, roots, tmp_path):
    get(tmp_path, "refcocog")
    got = Refer(tmp_path / "data", "refcocog", "umd")
    src = Refer(roots["refcocog"], "refcocog", "umd")
    assert got.splits() == ["train", "val", "test"] or set(got.splits()) == {"train", "val", "test"}
    assert got.refs == sorted(src.refs, key=lambda r: r["ref_id"])
    same_masks(src, got, got.refs)


def test_a_rerun_makes_no_request_and_a_removed_image_alone_is_fetched_again(stand, tmp_path):
    man = get(tmp_path, images="val")
    stand.clear()
    assert get(tmp_path, images="val")["files"] == man["files"]
    assert stand.requests() == []
    first = sorted((tmp_path / "data" / "images" / "train2014").iterdir())[0]
    first.unlink()
    get(tmp_path, images="val")
    assert [r[1] for r in stand.requests()] == [f"/coco/train2014/{first.name}"]


def test_the_archive_gives_the_released_files_and_an_interrupted_transfer_resumes(stand, roots, tmp_path):
    stand.cut_once["/wayback/refcoco.zip"] = 3000
    with pytest.raises(SourceUnreachable, match="run the same command again to resume"):
        get(tmp_path, source="archive")
    assert not (tmp_path / "data" / "refcoco").exists()
    partial = tmp_path / "data" / ".downloads" / "refcoco.zip.partial"
    assert partial.stat().st_size == 3000
    man = get(tmp_path, source="archive")
    assert stand.requests("/wayback/")[-1][2] == "bytes=3000-"  # the second request asked for the rest
    for name in ("refs(unc).p", "instances.json"):
        assert (tmp_path / "data" / "refcoco" / name).read_bytes() == (
            roots["refcoco"] / "refcoco" / name
        ).read_bytes()
    assert set(man["counts"]) == {"unc", "google"} and not partial.exists()
    assert not (tmp_path / "data" / ".downloads" / "refcoco.zip").exists()  # removed without keep_zip
    assert man["source"]["revision"] == "as served"


def test_grefcoco_files_arrive_byte_for_byte(stand, roots, tmp_path):
    man = get(tmp_path, "grefcoco")
    for name in ("grefs(unc).json", "instances.json"):
        assert (tmp_path / "data" / "grefcoco" / name).read_bytes() == (
            roots["grefcoco"] / "grefcoco" / name
        ).read_bytes()
    g = Refer(tmp_path / "data", "grefcoco", "unc")
    assert g.generalized and any(g.is_no_target(r) for r in g.refs)
    assert "no published per-split counts" in man["expected_from"]


def test_refcoco_m_is_written_with_its_photos_and_masks_as_given(stand, roots, tmp_path):
    man = get(tmp_path, "refcoco_m")
    m = Refer(tmp_path / "data", "refcoco_m", "unc")
    src = Refer(roots["refcoco"], "refcoco", "unc")
    assert m.image_dir == tmp_path / "data" / "refcoco_m" / "images"
    assert {r["ref_id"] for r in m.refs} == {r["ref_id"] for r in src.split_refs("val")}
    for r in m.refs:
        s = next(x for x in src.refs if x["ref_id"] == r["ref_id"])
        assert [x["raw"] for x in r["sentences"]] == [x["raw"] for x in s["sentences"]]
        assert np.array_equal(m.ref_mask(r), src.ref_mask(s))
        assert np.array_equal(np.asarray(m.load_image(r)), np.asarray(src.load_image(s)))
    assert man["label"].startswith("RefCOCO-M") and "not RefCOCO val" in man["label"]
    assert man["images"]["count"] == len({r["image_id"] for r in m.refs}) and "images/" in " ".join(
        man["files"]
    )


def test_rle_and_degenerate_annotations_survive_the_conversion(tmp_path):
    """The loader fixture's compressed and uncompressed RLE and zero-area polygon, through the parquet."""
    from _refer_fixtures import make_refer

    fx = make_refer(tmp_path / "src")
    src = Refer(fx.root, "refcoco", "unc")
    paths = {}
    for hf_split, split in {"train": "train", "validation": "val", "test": "testA"}.items():
        p = tmp_path / f"{hf_split}.parquet"
        p.write_bytes(parquet_bytes(ref_rows(src, split), REFS_SCHEMA))
        paths[hf_split] = [p]
    refs, inst = hf_refs.convert(paths, {"train": "train", "validation": "val", "test": "testA"}, {})
    out = tmp_path / "out" / "refcoco"
    out.mkdir(parents=True)
    layout.write_refs(out / "refs(unc).p", refs)
    layout.write_instances(out / "instances.json", inst)
    got = Refer(tmp_path / "out", "refcoco", "unc", image_dir=fx.image_dir)
    same_masks(src, got, got.refs)
    (warn,) = check_masks(got)  # ref 4's zero-area polygon: kept, and named
    assert "1 refs have an empty mask" in warn and "[4]" in warn
    with pytest.raises(DataError, match=r"refcoco \(unc\) train: 42,404 refs expected .*3 found"):
        verify_folder(tmp_path / "out", "refcoco")  # the published counts: a 6-ref fixture is far off


# -- the published counts --------------------------------------------------------------------------------


def test_the_counts_check_uses_the_published_numbers(monkeypatch):
    monkeypatch.delenv("REFSEG_DATA_SOURCES", raising=False)
    table, source = sources.expected_counts("refcoco")
    assert table["unc"]["val"] == {"refs": 3811, "sentences": 10834, "images": 1500}
    assert table["unc"]["train"] == {"refs": 42404, "sentences": 120624, "images": 16994}
    assert "published.yaml" in source and "third-party" in source
    found = {s: dict(v) for s, v in table["unc"].items()}
    assert check_counts("refcoco", "unc", found, table["unc"], source, "f") == []
    found["val"]["sentences"] = 10833
    (warn,) = check_counts("refcoco", "unc", found, table["unc"], source, "f")
    assert "10,834" in warn and "10,833" in warn and "val" in warn
    found["testB"]["refs"] = 1809
    with pytest.raises(DataError, match=r"refcoco \(unc\) testB: 1,810 refs expected .*1,809 found"):
        check_counts("refcoco", "unc", found, table["unc"], source, "f")
    g, _ = sources.expected_counts("refcocog")
    assert g["umd"]["test"] == {"refs": 5023, "sentences": 9602, "images": 2600}
    plus, _ = sources.expected_counts("refcoco+")
    assert (
        plus["unc"]["testB"]["refs"] == 1798 and sum(v["sentences"] for v in plus["unc"].values()) == 141564
    )
    with pytest.raises(DataError, match="testC"):
        check_counts(
            "refcoco",
            "unc",
            {**table["unc"], "testC": {"refs": 1, "images": 1, "sentences": 1}},
            table["unc"],
            source,
            "f",
        )


# -- what verification catches ---------------------------------------------------------------------------


def _replace_refs(stand, roots, hook):
    stand.add_repo(
        "jxu124/refcoco", refs_repo(Refer(roots["refcoco"], "refcoco", "unc"), HF_SPLITS["refcoco"], hook)
    )


def test_a_dropped_row_is_a_count_error_and_nothing_is_left(stand, roots, tmp_path):
    _replace_refs(stand, roots, lambda s, rows: rows[1:] if s == "validation" else rows)
    n = len(Refer(roots["refcoco"], "refcoco", "unc").split_refs("val"))
    with pytest.raises(DataError, match=rf"refcoco \(unc\) val: {n} refs expected .*, {n - 1} found"):
        get(tmp_path)
    assert not (tmp_path / "data" / "refcoco").exists() and not list((tmp_path / "data").glob(".fetch-*"))


def test_a_changed_sentence_count_is_a_warning_naming_both_numbers(stand, roots, tmp_path):
    def drop_sentence(s, rows):
        if s == "test":
            r = next(r for r in rows if len(r["sentences"]) > 1)
            r["sentences"], r["sent_ids"] = r["sentences"][1:], r["sent_ids"][1:]
        return rows

    _replace_refs(stand, roots, drop_sentence)
    n = Refer(roots["refcoco"], "refcoco", "unc").stats("testA")["sentences"]
    man = get(tmp_path)
    assert any(f"testA: {n} sentences expected" in w and f"{n - 1} found" in w for w in man["warnings"])


def test_a_row_whose_split_disagrees_with_its_file_is_an_error(stand, roots, tmp_path):
    def move(s, rows):
        if s == "validation":
            rows[0]["split"] = "train"
        return rows

    _replace_refs(stand, roots, move)
    with pytest.raises(DataError, match="split column says 'train' but the file is the 'validation' split"):
        get(tmp_path)


def test_a_file_whose_sum_differs_from_the_hubs_record_is_refused(stand, tmp_path):
    stand.hub_sha256[("jxu124/refcoco", "data/test-00000-of-00001.parquet")] = "0" * 64
    with pytest.raises(DataError, match="checksum mismatch .*test-00000-of-00001.parquet"):
        get(tmp_path)
    assert not (tmp_path / "data" / "refcoco").exists()


@pytest.mark.parametrize(
    "key,value,message", [("size", 123, "size mismatch"), ("sha256_prefix", "00000000", "checksum mismatch")]
)
def test_an_archive_whose_size_or_sum_differs_is_refused(stand, tmp_path, monkeypatch, key, value, message):
    import yaml

    stand.over["sources"]["archive-refcoco"][key] = value
    stand.overlay.write_text(yaml.safe_dump(stand.over))
    with pytest.raises(DataError, match=f"{message} for .*refcoco.zip"):
        get(tmp_path, source="archive")
    assert not (tmp_path / "data" / "refcoco").exists()
    assert not list((tmp_path / "data" / ".downloads").glob("*"))  # a wrong file is not kept for resume


def test_a_truncated_or_wrong_sized_image_is_refused_and_the_others_kept(stand, tmp_path):
    get(tmp_path)  # annotations only
    val = [im["file_name"] for im in _val_images(tmp_path)]
    bad = f"/coco/train2014/{val[0]}"
    good = stand.files[bad]
    stand.files[bad] = good[: len(good) // 2]  # a truncated JPEG, served with its own (short) length
    with pytest.raises(
        DataError, match=rf"1 of {len(val)} images could not be fetched .*{val[0]}: the image does not decode"
    ):
        get(tmp_path, images="val")
    assert len(stand.requests(bad)) == 1 + coco_images.RETRIES
    assert not (tmp_path / "data" / "images" / "train2014" / val[0]).exists()
    assert all((tmp_path / "data" / "images" / "train2014" / n).exists() for n in val[1:])
    buf = io.BytesIO()
    Image.new("RGB", (10, 7)).save(buf, "JPEG")
    stand.files[bad] = buf.getvalue()
    with pytest.raises(DataError, match=r"is 10x7 \(WxH\) but instances.json records"):
        get(tmp_path, images="val")
    stand.files[bad] = good
    assert get(tmp_path, images="val")["fetched_images"] == {"present": len(val) - 1, "fetched": 1}


def _val_images(tmp_path):
    r = Refer(tmp_path / "data", "refcoco", "unc")
    return coco_images.needed(r, ["val"])


def test_verify_catches_a_damaged_image_and_an_edited_refs_file(stand, tmp_path):
    get(tmp_path, images="val")
    img = tmp_path / "data" / "images" / "train2014" / _val_images(tmp_path)[0]["file_name"]
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=f"{img.name} does not decode"):
        verify("refcoco", tmp_path / "data", progress=False)
    img.write_bytes(data)
    refs_file = tmp_path / "data" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_file.read_bytes())
    refs_file.write_bytes(pickle.dumps(refs[1:], protocol=2))
    with pytest.raises(DataError, match=r"refs\(unc\).p has .* the manifest records"):
        verify("refcoco", tmp_path / "data", progress=False)


def test_a_damaged_image_already_in_place_is_not_replaced_without_overwrite(stand, tmp_path):
    get(tmp_path)
    name = _val_images(tmp_path)[0]["file_name"]
    target = tmp_path / "data" / "images" / "train2014" / name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"{name} is present but does not decode.*--overwrite"):
        get(tmp_path, images="val")
    assert target.read_bytes() == b"not a jpeg"
    get(tmp_path, images="val", overwrite=True)
    assert target.read_bytes() == stand.files[f"/coco/train2014/{name}"]


def test_an_existing_dataset_is_not_replaced_without_overwrite(stand, tmp_path):
    get(tmp_path)
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        get(tmp_path, source="archive")
    assert get(tmp_path, source="archive", overwrite=True)["source"]["route"] == "archive"


def test_the_coco_zip_resumes_extracts_only_what_is_needed_and_is_kept_when_asked(stand, tmp_path):
    stand.cut_once["/coco/zips/train2014.zip"] = 5000
    with pytest.raises(SourceUnreachable, match="resume"):
        get(tmp_path, images="val", image_source="zip")
    man = get(tmp_path, images="val", image_source="zip", keep_zip=True)
    assert stand.requests("/coco/zips/")[-1][2] == "bytes=5000-"
    have = sorted(p.name for p in (tmp_path / "data" / "images" / "train2014").iterdir())
    assert have == sorted(im["file_name"] for im in _val_images(tmp_path)) and man["images"]["route"] == "zip"
    assert (tmp_path / "data" / ".downloads" / "train2014.zip").is_file()
    stand.clear()
    get(tmp_path, images="val", image_source="zip")
    assert stand.requests() == []


# -- bad input, one sentence each --------------------------------------------------------------------------


def test_an_unreachable_source_names_the_other_sources(stand, tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(
        SourceUnreachable, match=r"could not reach Hugging Face dataset jxu124/refcoco.*--source archive"
    ):
        get(tmp_path)
    assert not (tmp_path / "data" / "refcoco").exists() and not list((tmp_path / "data").glob(".fetch-*"))


def test_a_full_disk_is_one_sentence_and_leaves_nothing(stand, tmp_path, monkeypatch):
    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(layout, "write_instances", full)
    with pytest.raises(DataError, match=r"^disk full while writing under .*instances.json"):
        get(tmp_path)
    assert not (tmp_path / "data" / "refcoco").exists() and not list((tmp_path / "data").glob(".fetch-*"))


def test_unknown_names_are_refused(stand, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'refclef'"):
        get(tmp_path, "refclef")
    with pytest.raises(ValueError, match="grefcoco has no 'archive' source"):
        get(tmp_path, "grefcoco", source="archive")
    get(tmp_path)
    with pytest.raises(DataError, match=r"--images names \['testC'\]"):
        get(tmp_path, images="testC")


def test_refcoco_m_objects_pair_with_their_refcoco_masks(stand, tmp_path):
    from refseg_core.data.refcoco_m import pair_with_refcoco

    get(tmp_path)
    get(tmp_path, "refcoco_m")
    m, coco = Refer(tmp_path / "data", "refcoco_m", "unc"), Refer(tmp_path / "data", "refcoco", "unc")
    pairs = pair_with_refcoco(m, coco)
    assert len(pairs) == len(m.refs)  # the stand-in's RefCOCO-M masks are RefCOCO's own: IoU 1 each
    ann_of = {x["ref_id"]: x["ann_id"] for x in coco.refs}  # RefCOCO-M's ids here are RefCOCO's ref ids
    assert all(iou == 1.0 and c["ann_id"] == ann_of[r["ref_id"]] for r, c, iou in pairs)


def test_verify_checks_a_copy_from_elsewhere_by_content(stand, roots, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(roots["refcoco"] / "refcoco", tmp_path / "data" / "refcoco")  # no manifest
    rep = verify("refcoco", tmp_path / "data", progress=False)  # the overlay expects the copy's counts
    assert not rep.manifest and "no refseg_manifest.json" in rep.warnings[-1]
    monkeypatch.delenv("REFSEG_DATA_SOURCES")
    with pytest.raises(DataError, match="42,404 refs expected"):  # the published counts: not RefCOCO
        verify("refcoco", tmp_path / "data", progress=False)
