"""The LTS paper's checked statements as data: every claim names its source, the gains are the abstract's."""

from refseg_core.lts_paper import ABSTRACT, CLAIMS, GAINS, claims_table


def test_every_claim_names_the_abstract_or_fig2_and_what_the_book_does():
    for claim, source, book in CLAIMS:
        assert claim and book
        assert source in ("abstract", "Fig. 2 caption", "abstract, Fig. 2 caption")


def test_the_abstract_gains_appear_in_the_claims_table():
    assert [(g["dataset"], g["points"]) for g in GAINS] == [("RefCOCO+", 3.2), ("RefCOCOg", 3.4)]
    assert all(g["source"] == ABSTRACT for g in GAINS)
    table = claims_table()
    assert "+3.2 points on RefCOCO+, +3.4 points on RefCOCOg over the previous state of the art" in table
    assert len(table.splitlines()) == 2 + len(CLAIMS)
