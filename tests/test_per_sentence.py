"""refseg_core.per_sentence: evaluation records joined to their sentences, grouped, scored, drawn."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _engine_data import synthetic_root  # noqa: E402

from refseg_core import per_sentence  # noqa: E402
from refseg_core.data.expression_kind import KINDS, expression_kind  # noqa: E402
from refseg_core.data.refer import Refer  # noqa: E402
from refseg_core.data.rle import mask_to_rle  # noqa: E402


def _records(refer, split="val"):
    """One record per sentence: the target itself as the prediction, an IoU that grows with the index."""
    pairs = refer.sentences(split)
    return [
        {
            "ref_id": ref["ref_id"],
            "sent_id": s["sent_id"],
            "iou": i / len(pairs),
            "mask": mask_to_rle(refer.ref_mask(ref)),
        }
        for i, (ref, s) in enumerate(pairs)
    ]


def test_group_score_rank_and_pick(tmp_path):
    refer = Refer(synthetic_root(tmp_path, num_images=24), "refcoco", "unc")
    recs = _records(refer)
    index = per_sentence.sentence_index(refer, ["val"])
    assert len(index) == len(recs)
    groups = per_sentence.by_kind(recs, index)
    assert list(groups) == list(KINDS) and sum(map(len, groups.values())) == len(recs)
    for kind, rs in groups.items():
        assert all(expression_kind(index[r["sent_id"]][1]["raw"]) == kind for r in rs)
    scores = per_sentence.kind_scores(groups)
    for kind, rs in groups.items():
        if rs:
            ious = np.array([r["iou"] for r in rs])
            assert scores[kind]["n"] == len(rs) and np.isclose(scores[kind]["mIoU"], ious.mean())
            assert np.isclose(scores[kind]["prec@0.5"], (ious > 0.5).mean())
    assert [r["iou"] for r in per_sentence.ranked(recs[::-1])] == sorted(r["iou"] for r in recs)
    distinct = len({ref["image_id"] for ref, _ in index.values()})
    assert distinct >= 2
    picked = per_sentence.first_per_image(recs, index, distinct + 1)  # asks for more than there are
    images = [index[r["sent_id"]][0]["image_id"] for r in picked]
    assert len(picked) == distinct and len(set(images)) == distinct
    assert len(per_sentence.first_per_image(recs, index, 1)) == 1
    assert np.isnan(per_sentence.mean_iou([]))


def test_target_kinds_on_grefcoco(tmp_path):
    grefer = Refer(synthetic_root(tmp_path, "grefcoco", num_images=40), "grefcoco", "unc")
    recs = _records(grefer)
    index = per_sentence.sentence_index(grefer, ["val"])
    groups = per_sentence.by_target_kind(recs, grefer, index)
    assert {"single", "multi", "no target"} <= set(groups)
    for r in groups["no target"]:
        assert grefer.is_no_target(index[r["sent_id"]][0])
    for r in groups["multi"]:
        assert len(grefer.ann_ids(index[r["sent_id"]][0])) > 1


def test_draw_puts_each_record_on_its_image(tmp_path):
    refer = Refer(synthetic_root(tmp_path, num_images=24), "refcoco", "unc")
    recs = _records(refer)[:3]
    index = per_sentence.sentence_index(refer, ["val"])
    fig, axes = plt.subplots(1, 3)
    per_sentence.draw(axes, recs, refer, index, title=lambda r, ref, s: f"#{r['sent_id']}")
    for ax, r in zip(axes, recs):
        assert ax.get_title() == f"#{r['sent_id']}" and ax.images
        h, w = refer.ref_mask(index[r["sent_id"]][0]).shape
        assert ax.images[0].get_array().shape[:2] == (h, w)
    plt.close(fig)
