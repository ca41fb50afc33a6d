"""The page check of refseg_core.verdicts: claims only in verdict sentences, with numbers that agree."""

from refseg_core import verdicts


def test_compare_sentences_are_recognised_and_backed():
    text = " ".join(
        [
            "Intro.",
            verdicts.compare(0.461, 0.272, "CRIS-tiny", "the best language-blind baseline (largest object)"),
            verdicts.compare(0.3214, 0.3127, "no prior", "filtering"),
            verdicts.compare(0.20, 0.30, "system A", "system B", metric="oIoU"),
            "The square above the red circle is the target.",  # a spatial word, not a claim
        ]
    )
    assert verdicts.unbacked_claims(text) == []


def test_a_typed_claim_is_flagged():
    for claim in [
        "The model is well above the baseline (28.78 vs 28.10).",
        "The prior helps (+4.1).",
        "Ours is better than the official code.",
        "meets_target True",
        "CRIS-R50 meets the target on this CPU.",
    ]:
        problems = verdicts.unbacked_claims(claim)
        assert len(problems) == 1 and "outside a verdict sentence" in problems[0], claim


def test_a_verdict_whose_numbers_disagree_is_flagged():
    good = verdicts.compare(0.461, 0.272, "A", "B")
    assert verdicts.unbacked_claims(good) == []
    tampered = good.replace("46.10", "28.90")  # says "above" with a difference of +1.70 written as +18.90
    assert any("is not" in p for p in verdicts.unbacked_claims(tampered))
    inside = "A is above B: A 28.78 vs B 28.10 mIoU, +0.68 points (more than the 2-point margin)."
    assert any("inside the 2-point margin" in p for p in verdicts.unbacked_claims(inside))
    wrong_side = "A is below B: A 40.00 vs B 30.00 mIoU, +10.00 points (more than the 2-point margin)."
    assert any("says below" in p for p in verdicts.unbacked_claims(wrong_side))
    cannot = verdicts.compare(0.40, 0.30, "A", "B").replace(
        "A is above B", "Cannot tell A from B at this scale"
    )
    cannot = cannot.replace(
        " (more than the 2-point margin).",
        ", within the 2-point margin that float rounding alone can move a smoke run.",
    )
    assert any("exceeds the 2-point margin" in p for p in verdicts.unbacked_claims(cannot))


def test_meets_target_applies_the_margin_and_the_load():
    assert verdicts.meets_target(1.9, 1.5, "our train step").startswith("our train step meets the x1.5")
    assert verdicts.meets_target(1.2, 1.5, "our train step").startswith("our train step misses")
    assert "within the 10% margin" in verdicts.meets_target(1.53, 1.5, "ours")
    # chapter 8's CPU row: x1.028 against x1.0, measured at load 7.6 on 2 cores
    loaded = verdicts.meets_target(1.028, 1.0, "ours", loadavg=7.6, cores=2)
    assert "load 7.6 on 2 cores" in loaded and loaded.startswith("Cannot tell")
    for s in [
        verdicts.meets_target(1.9, 1.5, "ours"),
        verdicts.meets_target(1.2, 1.5, "ours"),
        verdicts.meets_target(1.53, 1.5, "ours"),
        loaded,
    ]:
        assert verdicts.unbacked_claims(s) == [], s
    assert verdicts.unbacked_claims("ours meets the x1.5 target: x1.53, more than 10% above it.")
    assert verdicts.unbacked_claims(
        "Cannot tell whether ours meets the x1 target: x1.03 was measured at load 0.5 on 2 cores, where "
        "other work shared the CPU."
    )
