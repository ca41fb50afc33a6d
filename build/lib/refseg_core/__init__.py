"""refseg_core: the tested package behind the refseg-book.

Referring image segmentation with LTS ("Locate then Segment", Jing et al., CVPR 2021) and CRIS
("CLIP-Driven Referring Image Segmentation", Wang et al., CVPR 2022).
"""

__version__ = "0.1.0"

REPO_URL = "https://github.com/refseg-book/refseg-book"
"""The repository URL (Colab links, the book config). Each chapter's Colab cell names it with ``REPO_REF``
before the package is installed; tests/test_notebooks.py checks they agree."""
REPO_REF = f"v{__version__}"
"""The git ref a chapter's Colab cell installs: this release's tag."""
