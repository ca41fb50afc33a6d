"""refseg_core: the tested package behind the refseg-book.

Referring image segmentation with LTS ("Locate then Segment", Jing et al., CVPR 2021) and CRIS
("CLIP-Driven Referring Image Segmentation", Wang et al., CVPR 2022).
"""

__version__ = "0.1.0"

REPO_URL = "https://github.com/refseg-book/refseg-book"
"""The one place the repository URL is defined (Colab links, install cells, the book config)."""
