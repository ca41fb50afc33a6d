"""gRefCOCO no-target is a property of the ref (ReLA: ``ann_id == [-1]``), not of an empty mask.

Values follow the rule of ReLA's ``gres_model/evaluation/refer_evaluation.py``: a targeted sample predicted empty is FP (gIoU term 0,
U += |G|), a no-target sample predicted empty is TP (gIoU term 1). A targeted ref whose annotation decodes to an empty
mask must therefore count as FP, where the old mask-based rule made it TP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _refer_fixtures import make_grefer, make_ref, write_json
from torch import nn

from refseg_core import engine
from refseg_core.data.refer import Refer
from refseg_core.metrics import RefSegMetrics


def test_metrics_take_the_no_target_flag_from_the_caller():
    z = np.zeros((4, 4), bool)
    m = RefSegMetrics()
    m.update(z, z, no_target=False)  # targeted ref, empty mask, predicted empty: FP
    r = m.compute()
    assert (r["T-acc"], r["gIoU"], r["no_target_samples"]) == (0.0, 0.0, 0)
    m.update(z, z, no_target=True)  # no-target ref predicted empty: TP
    r = m.compute()
    assert r["N-acc"] == 1.0 and r["gIoU"] == pytest.approx(0.5) and r["no_target_samples"] == 1
    # no flag: the mask decides (an empty target is "no target"), for callers without refs
    assert RefSegMetrics().update_many([z], [z]) == [0.0]
    legacy = RefSegMetrics()
    legacy.update_many([z], [z])
    assert legacy.compute()["N-acc"] == 1.0


class _PredictsNothing(nn.Module):
    """Logits -20 everywhere: every prediction is empty. ``(B, 3, S, S)`` -> ``(B, 1, S/4, S/4)``."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.tokenizer = lambda texts: torch.ones(len(texts), 4, dtype=torch.long)

    def forward(self, images, tokens):
        s = images.shape[-1] // 4
        return torch.full((images.shape[0], 1, s, s), -20.0) + 0 * self.p


def test_evaluate_scores_a_targeted_ref_with_an_empty_mask_as_a_miss(tmp_path):
    fx = make_grefer(tmp_path)
    # ann 104 is a degenerate polygon: it decodes to an empty mask although the ref refers to it
    refs = [
        make_ref(7, [104], 1, "val", ["a speck"], 70, category_id=[1]),
        make_ref(8, [-1], 1, "val", ["a cat"], 80, category_id=[-1]),
    ]
    write_json(fx.folder / "grefs(unc).json", refs)
    g = Refer(fx.root, "grefcoco", "unc")
    assert g.ref_mask(refs[0]).sum() == 0 and not g.is_no_target(refs[0]) and g.is_no_target(refs[1])
    r = engine.evaluate(_PredictsNothing(), g, split="val", input_size=16, batch_size=2, device="cpu")
    assert r["n"] == 2 and r["no_target_samples"] == 1
    assert r["N-acc"] == 1.0 and r["T-acc"] == 0.0  # ref 8: TP; ref 7: FP, not a second TP
    assert r["gIoU"] == pytest.approx(0.5)
    base = engine.trivial_baselines(g, "val")["whole_image"]
    assert base["no_target_samples"] == 1 and base["T-acc"] == 1.0  # ref 7 predicted non-empty: TN
