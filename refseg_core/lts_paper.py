"""What the LTS paper ("Locate then Segment", Jing et al., CVPR 2021) states, as far as it could be checked
for this book: its abstract and the caption of its Fig. 2. The full text was not reachable, so no section
of it is cited; everything the paper does not state there is this book's choice
(:func:`refseg_core.models.lts.choices_table`).

Kept as data so that a chapter prints the paper's claims with their source instead of typing them:
:data:`CLAIMS` (what the paper says, where, and what this book does with it) and :data:`GAINS` (the
abstract's improvements over the previous state of the art, in points).
"""

from __future__ import annotations

ABSTRACT = "LTS paper, abstract"
FIG2 = "LTS paper, Fig. 2 caption"

GAINS = (
    {"dataset": "RefCOCO+", "points": 3.2, "source": ABSTRACT},
    {"dataset": "RefCOCOg", "points": 3.4, "source": ABSTRACT},
)
"""The abstract's gains over the best method before LTS (which method, on which split, is not stated
there). This book ships no numbers of that earlier method, so it cannot check them."""

CLAIMS = (
    (
        "a ConvNet encodes the image, a bi-GRU the expression",
        FIG2,
        "DarkNet-53 (reported by others, not stated there) and a bi-GRU",
    ),
    (
        "visual and textual features are fused into cross-modal features",
        f"{ABSTRACT}; {FIG2}",
        "how they are fused is this book's design (Fusion)",
    ),
    (
        'a cross-modal interaction ("e.g. filtering and transformer") locates the referent '
        "as an object position prior",
        f"{ABSTRACT}; {FIG2}",
        "both interactions built (TransformerLocate, FilterLocate); their layers and the prior's "
        "target are this book's designs",
    ),
    (
        "the prior is concatenated with the cross-modal features; a light-weight convolutional "
        "network produces the mask",
        f"{ABSTRACT}; {FIG2}",
        "concatenation as the paper says; the head (SegmentHead) is this book's design",
    ),
    (
        "gains over the previous state of the art: "
        + ", ".join(f"+{g['points']:.1f} points on {g['dataset']}" for g in GAINS),
        ABSTRACT,
        "not checked: the smoke scale cannot reach it and the earlier method's numbers are not shipped",
    ),
    (
        'the model is "more interpretable", shown by visualisation',
        ABSTRACT,
        "measured: how often the prior's peak falls inside the referred object",
    ),
)
"""``(claim, source, what this book does with it)`` for each statement of the paper the book relies on."""


def claims_table() -> str:
    """:data:`CLAIMS` as a Markdown table."""
    from refseg_core.tables import markdown_table

    return markdown_table(list(CLAIMS), headers=["the paper says", "where", "this book"])
