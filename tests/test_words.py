"""refseg_core/words.py (the word split) and refseg_core/data/synthetic_lexicon.py (the generator's words)
are light: the models and the expression-kind analysis use them without importing the generator."""

import subprocess
import sys


def test_models_and_analysis_do_not_import_the_generator():
    code = (
        "import sys; import refseg_core.models.lts, refseg_core.data.expression_kind; "
        "print(sorted(m for m in sys.modules if m.startswith('refseg_core.data.synthetic') and not m.endswith('_lexicon')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_vocabulary_module_is_light():
    code = "import sys, refseg_core.words, refseg_core.data.synthetic_lexicon; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
