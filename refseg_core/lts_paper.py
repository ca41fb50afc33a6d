"""What the LTS paper ("Locate then Segment", Jing et al., CVPR 2021) states, as far as it could be checked
for this book: its abstract and the caption of its Fig. 2. The full text was not reachable, so no section
of it is cited; everything the paper does not state there is this book's choice
(:func:`refseg_core.models.lts.choices_table`).

Kept as data so that a chapter prints the paper's claims with their source instead of typing them:
:data:`CLAIMS` (what the paper says, where, and what this book does with it) and :data:`GAINS` (the
abstract's improvements over the previous state of the art, in points).
"""

from __future__ import annotations

ABSTRACT = "abstract"
FIG2 = "Fig. 2 caption"
BOTH = f"{ABSTRACT}, {FIG2}"

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
        "DarkNet-53 (reported by others) and a bi-GRU",
    ),
    (
        "visual and textual features are fused into cross-modal features",
        BOTH,
        "the fusion is this book's design",
    ),
    (
        'a cross-modal interaction ("e.g. filtering and transformer") locates the referent: the position prior',
        BOTH,
        "both built; their layers and the prior's target are this book's",
    ),
    (
        "the prior is concatenated with the cross-modal features; a light-weight convolutional network gives the mask",
        BOTH,
        "concatenated; the head is this book's",
    ),
    (
        ", ".join(f"+{g['points']:.1f} points on {g['dataset']}" for g in GAINS)
        + " over the previous state of the art",
        ABSTRACT,
        "not checked: smoke scale, and the earlier method's numbers are not shipped",
    ),
    (
        '"more interpretable", shown by visualisation',
        ABSTRACT,
        "measured: the prior's peak inside the object",
    ),
)
"""``(claim, where in the paper, what this book does with it)`` for each statement the book relies on."""


def claims_table() -> str:
    """:data:`CLAIMS` as a Markdown table."""
    from refseg_core.tables import markdown_table

    return markdown_table(list(CLAIMS), headers=["the LTS paper says", "where", "this book"])
