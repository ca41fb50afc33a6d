"""``python -m refseg_core <command>`` (and ``torchrun ... -m refseg_core``): see :mod:`refseg_core.cli`."""

import sys

from refseg_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
