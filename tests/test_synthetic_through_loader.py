"""The synthetic dataset read by our own REFER / G-REFER loader: every target non-empty, areas agree."""

import numpy as np
import pytest

from refseg_core.data.refer import Refer
from refseg_core.data.synthetic import generate


@pytest.mark.parametrize("flavour", ["refcoco", "grefcoco"])
def test_loader_reads_every_mask(tmp_path, flavour):
    generate(tmp_path, flavour=flavour, seed=3, num_images=24, image_size=96)
    r = Refer(tmp_path, flavour, "unc")
    assert r.generalized == (flavour == "grefcoco")
    for ref in r.refs:
        m = r.ref_mask(ref)
        if r.is_no_target(ref):
            assert m.sum() == 0
            continue
        assert m.sum() > 0, f"ref {ref['ref_id']} decoded to an empty mask"
        if len(r.ann_ids(ref)) == 1:
            ann = r.anns[r.ann_ids(ref)[0]]
            assert m.sum() == pytest.approx(ann["area"], abs=1)
        img = np.asarray(r.load_image(ref))
        assert img.shape[:2] == m.shape
